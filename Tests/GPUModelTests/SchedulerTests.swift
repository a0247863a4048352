import Testing
import Synchronization
import PVZContract
import PVZServer
@testable import GPUModel

/// Which kick the one firmware processor runs next (KickQueues: pure data,
/// driven by the firmware thread in PVZDaemon.FirmwareProcessor).
@Suite struct SchedulerTests {
    func t(_ head: UInt16) -> KickTicket { KickTicket(head: head, raw: 0, length: 8, epoch: 0) }

    /// Drains the queues, returning the OSIDs in the order served.
    func order(_ q: inout KickQueues) -> [UInt32] {
        var out: [UInt32] = []
        while let (o, _) = q.next() { out.append(o.rawValue) }
        return out
    }

    @Test func servesByPriority() {
        var q = KickQueues(osids: 8, capacity: 4)
        q.setPriority(OSID(1), 1)
        q.setPriority(OSID(2), 5)
        q.setPriority(OSID(3), 3)
        for o: UInt32 in [1, 2, 3] { for h in 0..<2 { let ok = q.append(OSID(o), t(UInt16(h))); #expect(ok) } }
        #expect(q.stats(OSID(2))?.queued == 2)
        #expect(order(&q) == [2, 2, 3, 3, 1, 1])
        #expect(q.stats(OSID(2))?.served == 2)
        #expect(q.isEmpty)
    }

    @Test func roundRobinWithinAPriority() {
        var q = KickQueues(osids: 8, capacity: 4)
        for o: UInt32 in [4, 5, 6] {
            q.setPriority(OSID(o), 2)
            for h in 0..<3 { q.append(OSID(o), t(UInt16(h))) }
        }
        #expect(order(&q) == [4, 5, 6, 4, 5, 6, 4, 5, 6])
    }

    @Test func boundedPerOSIDAndOutOfRangeRefused() {
        var q = KickQueues(osids: 4, capacity: 3)
        for h in 0..<3 { let ok = q.append(OSID(1), t(UInt16(h))); #expect(ok) }
        #expect(q.isFull(OSID(1)))
        let full = q.append(OSID(1), t(9))
        let other = q.append(OSID(2), t(0))       // another OSID is not affected
        let beyond = q.append(OSID(4), t(0))      // beyond maxOSIDs
        #expect(!full && other && !beyond)
        #expect(q.stats(OSID(9)) == nil)
    }

    @Test func aPreemptedKickGoesBackAheadOfItsOSIDsLaterKicks() {
        var q = KickQueues(osids: 4, capacity: 4)
        for h: UInt16 in [10, 11, 12] { q.append(OSID(1), t(h)) }
        let (o, first) = q.next()!
        #expect(o == OSID(1) && first.head == 10)
        q.pushFront(OSID(1), first)
        let a = q.next(of: OSID(1)), b = q.next(of: OSID(1))
        #expect(a?.head == 10 && b?.head == 11)
    }

    @Test func removeAllCancelsAndCounts() {
        var q = KickQueues(osids: 4, capacity: 4)
        for h: UInt16 in [1, 2, 3] { q.append(OSID(1), t(h)) }
        let removed = q.removeAll(OSID(1))
        #expect(removed.map(\.head) == [1, 2, 3])
        #expect(q.stats(OSID(1))?.cancelled == 3)
        let none = q.next()
        #expect(none == nil)
    }

    @Test func higherPriorityQueuedSeesOnlyHigher() {
        var q = KickQueues(osids: 4, capacity: 4)
        q.setPriority(OSID(1), 1)
        q.setPriority(OSID(2), 5)
        q.append(OSID(1), t(0))
        #expect(!q.higherPriorityQueued(than: 1))
        q.append(OSID(2), t(0))
        #expect(q.higherPriorityQueued(than: 1))
        #expect(!q.higherPriorityQueued(than: 5))
    }
}
