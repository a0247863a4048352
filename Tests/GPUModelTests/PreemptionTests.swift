import Testing
import PVZContract
import PVZServer
@testable import GPUModel

/// The HCS deadline: a kick that runs past it stops at a command boundary
/// and the rest runs later, with exactly one kick-done event at the end.
@Suite struct PreemptionTests {
    @Test func deadlinePreemptsAtACommandBoundaryAndTheRestRunsLater() {
        let h = Heap()
        var fw = Firmware(osid: OSID(1))
        for i in 0..<10 { h.command(at: 32 * i, op: 1, seq: UInt64(i + 1), arg0: 0x8000 + 8 * UInt64(i), arg1: UInt64(i + 100)) }
        var ev: [GPUEvent] = []
        // A deadline that has always passed: one command, then the switch.
        let first = fw.run(heap: h.buf, upTo: 320, clockNs: 1, deadline: { true }) { ev.append($0) }
        #expect(first.preempted)
        #expect(first.commandsRun == 1)
        #expect(h.get32(FirmwareRing.readOffsetField) == 32)
        #expect(h.get64(FirmwareRing.completedSeqField) == 1)
        #expect(ev.isEmpty)  // no kick-done until the kick is finished
        // After three more commands the deadline passes again.
        var budget = 3
        let second = fw.run(heap: h.buf, upTo: 320, clockNs: 2, deadline: { budget -= 1; return budget < 0 }) { ev.append($0) }
        #expect(second.preempted)
        #expect(second.commandsRun == 4)
        #expect(h.get32(FirmwareRing.readOffsetField) == 160)
        let last = fw.run(heap: h.buf, upTo: 320, clockNs: 3) { ev.append($0) }
        #expect(!last.preempted)
        #expect(last.commandsRun == 5)
        #expect(h.get64(FirmwareRing.completedSeqField) == 10)
        #expect(ev.count == 1 && ev[0].code == GPUEvent.codeKickDone && ev[0].value == 10)
        for i in 0..<10 { #expect(h.get64(0x8000 + 8 * i) == UInt64(i + 100)) }
    }

    @Test func noDeadlineRunsTheWholeKick() {
        let h = Heap()
        var fw = Firmware(osid: OSID(1))
        for i in 0..<5 { h.command(at: 32 * i, op: 0, seq: UInt64(i + 1)) }
        var ev: [GPUEvent] = []
        let r = fw.run(heap: h.buf, upTo: 160, clockNs: 1) { ev.append($0) }
        #expect(!r.preempted && r.commandsRun == 5 && ev.count == 1)
    }
}
