import Foundation
import Platform
import PVZContract
import PVZDaemon
import PVZServer
import Testing
import TestFrontEnd
import VhostUser
#if canImport(Glibc)
import Glibc
#endif

/// What reaches the guest as an interrupt: a used-buffer notification is
/// never lost to a call fd being replaced, and a config change is sent when
/// config space changed, never for a call that left it as it was.
@Suite struct NotificationTests {
    /// The back-end channel's messages that arrive within `ms`.
    static func messages(_ fd: Int32, within ms: Int32) -> [UInt32] {
        var got: [UInt32] = []
        var h = [UInt8](repeating: 0, count: VhostUserHeader.size)
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while poll(&p, 1, ms) > 0 {
            guard h.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, Int32(MSG_WAITALL)) }) == h.count else { break }
            got.append(VhostUserHeader(h).request)
        }
        return got
    }

    /// Before: every WRITE_REG (a DDK's MISR clears IRQ_STATUS with one per
    /// interrupt) sent a config change, so each GPU interrupt cost the guest
    /// a second interrupt and a config re-read.
    @Test func registerWritesLeaveConfigSpaceAlone() throws {
        let h = try Harness()
        let g = try h.connect(1)
        var sv: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv) == 0)
        defer { close(sv[0]) }
        #expect(try g.fe.sendAcked(.setBackendReqFD, fds: [sv[1]]) == 0)
        close(sv[1])
        let change: UInt32 = 2  // VHOST_USER_BACKEND_CONFIG_CHANGE_MSG (vhost-user spec)

        for _ in 0..<20 {
            #expect(g.call(.writeReg, Guest.u32(PVZRegister.scratch) + Guest.u32(0x1234))?.status == .ok)
            #expect(g.call(.writeReg, Guest.u32(PVZRegister.irqStatus) + Guest.u32(1))?.status == .ok)
        }
        #expect(Self.messages(sv[0], within: 200).filter { $0 == change }.isEmpty,
                "register writes sent CONFIG_CHANGE_MSG")

        // A call that changes config space (status: device config created) still says so.
        #expect(g.call(.createDevConfig)?.status == .ok)
        #expect(Self.messages(sv[0], within: 2000).contains(change), "CREATE_DEV_CONFIG sent no CONFIG_CHANGE_MSG")
    }

    static func readable(_ fd: Int32, within ms: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, ms) > 0
    }

    /// QEMU starts a ring with its own "masked" notifier as the call fd and
    /// gives the guest's notifier afterwards (vhost_virtqueue_mask); what the
    /// device signalled in between is dropped. With EVENT_IDX the driver is
    /// not told again until it reaps, so one lost notification stalls the
    /// queue for good. Before: the new call fd was never signalled.
    @Test func aNewCallFDIsSignalled() throws {
        let h = try Harness()
        let g = try h.connect(1)
        let masked = try EventFD(nonBlocking: true)
        #expect(try g.fe.sendAcked(.setVringCall, payload: TestFrontEnd.u64(0), fds: [masked.fd]) == 0)
        // Answered while the call fd is the masked one: that signal is lost.
        g.fe.write(g.req, Guest.header(PVZFunction.readReg.rawValue, requestID: 7) + Guest.u32(0))
        g.hypercallq.add([(g.req, 20, false), (g.resp, 64, true)])
        #expect(Self.readable(masked.fd, within: 2000), "the call was not answered")
        let guestNotifier = try EventFD(nonBlocking: true)
        #expect(try g.fe.sendAcked(.setVringCall, payload: TestFrontEnd.u64(0), fds: [guestNotifier.fd]) == 0)
        #expect(Self.readable(guestNotifier.fd, within: 1000),
                "the guest's notifier was never signalled: the answer given meanwhile is never seen")
    }
}
