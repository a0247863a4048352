import PVZContract
import PVZServer

/// One doorbell waiting for the firmware: the kickq chain it came on, its
/// 8 bytes (write_offset, flags) or `UInt64.max` when the buffer was not 8
/// bytes, and the cancel epoch it was queued under.
public struct KickTicket: Equatable, Sendable {
    public var head: UInt16
    public var raw: UInt64
    /// Bytes the kickq buffer held (for the bad-kick fault's detail).
    public var length: UInt32
    public var epoch: UInt32
    public init(head: UInt16, raw: UInt64, length: UInt32, epoch: UInt32) {
        self.head = head; self.raw = raw; self.length = length; self.epoch = epoch
    }
}

/// Which OSID's kick the one firmware processor runs next (spec 7): the
/// highest priority with work first, round-robin among equal priorities, one
/// kick per turn; a pre-empted kick's rest goes back first in its OSID's
/// queue. Each OSID holds at most `capacity` kicks (a guest cannot make the
/// daemon grow). Plain data owned by the firmware thread: storage is made
/// once, so queueing and picking never allocate.
public struct KickQueues {
    public struct Stats: Equatable, Sendable {
        public var queued: Int
        public var priority: UInt32
        public var served: UInt64
        public var cancelled: UInt64
    }

    private struct Ring {
        var slots: [KickTicket]
        var start = 0
        var count = 0
        var priority: UInt32 = 0
        var served: UInt64 = 0
        var cancelled: UInt64 = 0
    }

    public let capacity: Int
    private var rings: [Ring]
    private var lastServed = -1

    public init(osids: Int, capacity: Int) {
        self.capacity = capacity
        let empty = KickTicket(head: 0, raw: 0, length: 0, epoch: 0)
        rings = Array(repeating: Ring(slots: Array(repeating: empty, count: capacity)), count: osids)
    }

    private func index(_ osid: OSID) -> Int? { Int(osid.rawValue) < rings.count ? Int(osid.rawValue) : nil }

    public func count(_ osid: OSID) -> Int { index(osid).map { rings[$0].count } ?? 0 }
    public func isFull(_ osid: OSID) -> Bool { index(osid).map { rings[$0].count == capacity } ?? true }
    public var isEmpty: Bool { rings.allSatisfy { $0.count == 0 } }

    /// Queues a kick behind the OSID's others; false when its queue is full
    /// or the OSID is out of range.
    @discardableResult
    public mutating func append(_ osid: OSID, _ t: KickTicket) -> Bool {
        guard let i = index(osid), rings[i].count < capacity else { return false }
        rings[i].slots[(rings[i].start + rings[i].count) % capacity] = t
        rings[i].count += 1
        return true
    }

    /// Puts a pre-empted kick back ahead of the OSID's later kicks (they must
    /// not run before it: the firmware reads the ring in order). Always room:
    /// it came out of this queue.
    public mutating func pushFront(_ osid: OSID, _ t: KickTicket) {
        guard let i = index(osid), rings[i].count < capacity else { return }
        rings[i].start = (rings[i].start + capacity - 1) % capacity
        rings[i].slots[rings[i].start] = t
        rings[i].count += 1
    }

    /// The next kick to run, and whose.
    public mutating func next() -> (OSID, KickTicket)? {
        let n = rings.count
        var best: Int?
        for k in 1...n {
            let i = (lastServed + k + n) % n
            guard rings[i].count > 0 else { continue }
            if best == nil || rings[i].priority > rings[best!].priority { best = i }
        }
        guard let i = best else { return nil }
        return (OSID(UInt32(i)), pop(i))
    }

    /// The next kick of one OSID (a drain before its ring stops).
    public mutating func next(of osid: OSID) -> KickTicket? {
        guard let i = index(osid), rings[i].count > 0 else { return nil }
        return pop(i)
    }

    private mutating func pop(_ i: Int) -> KickTicket {
        let t = rings[i].slots[rings[i].start]
        rings[i].start = (rings[i].start + 1) % capacity
        rings[i].count -= 1
        rings[i].served &+= 1
        lastServed = i
        return t
    }

    /// Takes every queued kick of an OSID out (to be returned unrun, or dropped).
    public mutating func removeAll(_ osid: OSID) -> [KickTicket] {
        guard let i = index(osid) else { return [] }
        var out: [KickTicket] = []
        out.reserveCapacity(rings[i].count)
        while rings[i].count > 0 {
            out.append(rings[i].slots[rings[i].start])
            rings[i].start = (rings[i].start + 1) % capacity
            rings[i].count -= 1
        }
        rings[i].cancelled &+= UInt64(out.count)
        return out
    }

    public mutating func setPriority(_ osid: OSID, _ p: UInt32) {
        if let i = index(osid) { rings[i].priority = p }
    }

    public func priority(_ osid: OSID) -> UInt32 { index(osid).map { rings[$0].priority } ?? 0 }

    /// True when an OSID of higher priority than `p` has a kick queued.
    public func higherPriorityQueued(than p: UInt32) -> Bool {
        rings.contains { $0.count > 0 && $0.priority > p }
    }

    public func stats(_ osid: OSID) -> Stats? {
        index(osid).map { Stats(queued: rings[$0].count, priority: rings[$0].priority, served: rings[$0].served,
                                cancelled: rings[$0].cancelled) }
    }
}
