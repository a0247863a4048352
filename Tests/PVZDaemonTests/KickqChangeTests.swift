import Testing
import Foundation
import PVZContract
import PVZDaemon
import Platform
import TestFrontEnd
import VhostUser

/// kickq is served on the firmware thread; the front-end may still change the
/// ring while it runs (QEMU: SET_FEATURES with LOG_ALL and SET_VRING_ADDR with
/// the log flag at a migration's start, SET_VRING_CALL when the guest masks a
/// vector). Each change takes the ring back from the firmware thread first.
@Suite("a running kickq changed by the front-end", .serialized)
struct KickqChangeTests {
    /// Rings the doorbell while the firmware is held, so the kick is taken off
    /// the ring and waits in the firmware thread's queue.
    private func holdAKick(_ h: Harness, _ g: Guest) {
        #expect(g.mapFirmwareHeap() == .ok)
        g.initRing()
        g.command(0, op: FirmwareOp.nop.rawValue, seq: 1, arg0: 0)
        h.daemon.processor.pause()
        let b = g.fe.alloc(8)
        g.fe.store(b, UInt32(FirmwareRing.commandSize)); g.fe.store(b + 4, UInt32(0))
        g.kickq.add([(b, 8, false)])
        usleep(50_000)
    }

    private func addr(_ g: Guest) -> [UInt8] {
        let q = g.kickq
        return TestFrontEnd.vringAddr(index: UInt32(q.index), desc: g.fe.userBase + (q.descGPA - g.fe.ramGPA),
                                      used: g.fe.userBase + (q.usedGPA - g.fe.ramGPA),
                                      avail: g.fe.userBase + (q.availGPA - g.fe.ramGPA))
    }

    /// Found by the long `vhost-user` fuzz run as a trap on the firmware thread
    /// (`Vring.armAndRecheck`: the queue it had just checked was gone): a
    /// refused SET_VRING_ADDR on a started kickq dropped the ring under the
    /// firmware thread, so the kick it held ran and never came back.
    @Test func refusedAddressesLeaveTheRingAsItWasAndLoseNoKick() throws {
        let h = try Harness()
        let g = try h.connect(1)
        holdAKick(h, g)
        // Below the front-end's RAM (which starts at `userBase`).
        let outside = TestFrontEnd.vringAddr(index: UInt32(g.kickq.index), desc: 0x1000, used: 0x2000, avail: 0x3000)
        #expect(try g.fe.sendAcked(.setVringAddr, payload: outside) != 0)
        h.daemon.processor.resume()
        #expect(g.kickq.waitUsed(timeoutMs: 10_000) != nil, "the kick held across the refused SET_VRING_ADDR never came back")
        #expect(g.kickq.waitUsed(timeoutMs: 300) == nil)
        #expect(h.daemon.guests[0].device.gpu.counters.kicks == 1)
        // The ring runs on, at its old addresses.
        #expect(g.kick(writeOffset: 2 * UInt32(FirmwareRing.commandSize)))
        #expect(h.daemon.guests[0].device.gpu.counters.kicks == 2)
    }

    /// What QEMU sends to a running device: a kick held across each change
    /// runs once, comes back once, and its interrupt reaches the new call fd.
    @Test func aKickHeldAcrossEachChangeRunsOnce() throws {
        let h = try Harness()
        let fe = try TestFrontEnd(path: h.socket(1))
        let features = try fe.start()
        let g = Guest(fe: fe)
        holdAKick(h, g)
        let newCall = try EventFD(nonBlocking: true)
        #expect(try g.fe.sendAcked(.setVringCall, payload: TestFrontEnd.u64(UInt64(g.kickq.index)), fds: [newCall.fd]) == 0)
        newCall.drain()  // the daemon tells a new call fd once
        #expect(try g.fe.sendAcked(.setFeatures, payload: TestFrontEnd.u64(features)) == 0)
        #expect(try g.fe.sendAcked(.setVringAddr, payload: addr(g)) == 0)
        h.daemon.processor.resume()
        #expect(g.kickq.waitUsed(timeoutMs: 10_000) != nil)
        var p = pollfd(fd: newCall.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 2000) == 1, "no interrupt on the call fd set while the kick was held")
        #expect(g.kickq.waitUsed(timeoutMs: 300) == nil)
        #expect(h.daemon.guests[0].device.gpu.counters.kicks == 1)
        #expect(g.kick(writeOffset: 2 * UInt32(FirmwareRing.commandSize)))
        #expect(h.daemon.guests[0].device.gpu.counters.kicks == 2)
    }
}
