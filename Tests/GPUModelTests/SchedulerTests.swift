import Testing
import Synchronization
import PVZServer
@testable import GPUModel

final class Order: Sendable {
    let m = Mutex<[UInt32]>([])
    func add(_ v: UInt32) { m.withLock { $0.append(v) } }
    var all: [UInt32] { m.withLock { $0 } }
}

@Suite struct SchedulerTests {
    @Test func servesByPriorityWhilePaused() {
        let s = FirmwareScheduler()
        defer { s.shutdown() }
        s.setPriority(osid: OSID(1), priority: 1)
        s.setPriority(osid: OSID(2), priority: 5)
        s.setPriority(osid: OSID(3), priority: 3)
        s.pause()
        let order = Order()
        for o: UInt32 in [1, 2, 3] {
            for _ in 0..<2 { #expect(s.submit(osid: OSID(o)) { order.add(o) }) }
        }
        #expect(s.stats(osid: OSID(2))?.queued == 2)
        s.resume()
        for o: UInt32 in [1, 2, 3] { #expect(s.waitIdle(osid: OSID(o), timeout: .seconds(5))) }
        #expect(order.all == [2, 2, 3, 3, 1, 1])
        #expect(s.stats(osid: OSID(2))?.served == 2)
    }

    @Test func roundRobinWithinAPriority() {
        let s = FirmwareScheduler()
        defer { s.shutdown() }
        s.pause()
        let order = Order()
        for o: UInt32 in [4, 5, 6] {
            s.setPriority(osid: OSID(o), priority: 2)
            for _ in 0..<3 { s.submit(osid: OSID(o)) { order.add(o) } }
        }
        s.resume()
        for o: UInt32 in [4, 5, 6] { #expect(s.waitIdle(osid: OSID(o), timeout: .seconds(5))) }
        #expect(order.all == [4, 5, 6, 4, 5, 6, 4, 5, 6])
    }

    @Test func waitIdleTimesOutWhilePausedAndCancelDrops() {
        let s = FirmwareScheduler()
        defer { s.shutdown() }
        s.pause()
        let order = Order()
        for _ in 0..<3 { s.submit(osid: OSID(1)) { order.add(1) } }
        let t0 = ContinuousClock.now
        #expect(s.waitIdle(osid: OSID(1), timeout: .milliseconds(50)) == false)
        #expect(ContinuousClock.now - t0 >= .milliseconds(50))
        #expect(s.cancel(osid: OSID(1)) == 3)
        #expect(s.waitIdle(osid: OSID(1), timeout: .milliseconds(50)))
        s.resume()
        #expect(s.stats(osid: OSID(1))?.cancelled == 3)
        #expect(order.all.isEmpty)
    }

    @Test func refusesOutOfRangeAndAfterShutdown() {
        let s = FirmwareScheduler(maxOSIDs: 4)
        #expect(s.submit(osid: OSID(4)) {} == false)
        #expect(s.stats(osid: OSID(9)) == nil)
        s.shutdown()
        #expect(s.submit(osid: OSID(1)) {} == false)
    }

    @Test func deadlineOverrunsCounted() {
        let s = FirmwareScheduler()
        defer { s.shutdown() }
        // Deadline well above scheduling noise on a shared machine.
        s.setParameters(isolationThreshold: 7, hcsDeadlineMs: 50)
        #expect(s.isolationThreshold == 7 && s.hcsDeadlineMs == 50)
        s.submit(osid: OSID(1)) {
            let t = ContinuousClock.now
            while ContinuousClock.now - t < .milliseconds(80) {}
        }
        s.submit(osid: OSID(1)) {}
        #expect(s.waitIdle(osid: OSID(1), timeout: .seconds(5)))
        #expect(s.stats(osid: OSID(1))?.deadlineOverruns == 1)
    }

    @Test func runsFirmwareKicksForTwoOSIDs() {
        // The firmware of two OSIDs on the one thread, each on its own heap and bank.
        let s = FirmwareScheduler()
        defer { s.shutdown() }
        let banks = [RegisterBank(osid: OSID(1)), RegisterBank(osid: OSID(2))]
        let heaps = [Heap(ringSize: 256), Heap(ringSize: 256)]
        let fws = Mutex([Firmware(osid: OSID(1)), Firmware(osid: OSID(2))])
        for k in 0..<2 {
            heaps[k].command(at: 0, op: 1, seq: 1, arg0: 0x2000, arg1: UInt64(k + 10))
            nonisolated(unsafe) let heap = heaps[k].buf
            let bank = banks[k]
            s.submit(osid: OSID(UInt32(k + 1))) {
                let r = fws.withLock { $0[k].run(heap: heap, upTo: 32, clockNs: bank.clockNs) { bank.raise($0) } }
                bank.recordKick(r)
            }
        }
        #expect(s.waitIdle(osid: OSID(1), timeout: .seconds(5)) && s.waitIdle(osid: OSID(2), timeout: .seconds(5)))
        #expect(heaps[0].get64(0x2000) == 10 && heaps[1].get64(0x2000) == 11)
        #expect(banks.allSatisfy { $0.nextEvent() == GPUEvent(type: .firmware, code: 0, value: 1) })
    }
}
