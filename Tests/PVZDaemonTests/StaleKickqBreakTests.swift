import Foundation
import Logging
@testable import PVZDaemon
import PVZContract
import PVZServer
import Testing
import VhostUser
#if canImport(Glibc)
import Glibc
#endif

/// A kickq break the firmware thread reported for one connection belongs to
/// that connection's ring. Found while making the vhost-user fuzz target's
/// inputs independent: one input's break turned up in the next input's first wake.
@Suite struct StaleKickqBreakTests {
    /// A connection driven in-process, as the fuzz target drives it.
    final class Connection {
        let backend: Backend
        let fds: [Int32]
        init(_ device: PVZDevice) throws {
            var sv: [Int32] = [-1, -1]
            #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) == 0)
            fds = sv
            backend = try Backend(device: device, socketFD: sv[0], logger: Logger(label: "test"))
            device.frontEndConnected(backend)
        }
        func end(_ device: PVZDevice) {
            device.frontEndDisconnected(backend, reason: .frontEndClosed)
            backend.teardown()
            fds.forEach { close($0) }
        }
    }

    /// The firmware thread finds kickq broken and wakes the guest thread, but
    /// the front-end is gone before the guest thread looks: the next
    /// front-end's kickq must not be marked broken for it (NEEDS_RESET on a
    /// device that did nothing wrong). Failed before the fix: the next
    /// connection's first wake reported the old break.
    @Test func breakDoesNotOutliveItsConnection() throws {
        let processor = try FirmwareProcessor(maxOSIDs: 4)
        defer { processor.shutdown() }
        let spec = GuestSpec(osid: OSID(1), carveout: IPARange(start: IPA(0x0800_0000), size: 0x0400_0000)!, policy: GuestPolicy())
        let server = try PVZHostServer(maxOSIDs: 4, guests: [spec])
        let gpu = GuestGPU(osid: spec.osid, carveout: spec.carveout, processor: processor)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let device = PVZDevice(osid: spec.osid, hostServer: server, settings: GuestSettings(), gpu: gpu, logger: logger)

        let first = try Connection(device)
        // What FirmwareProcessor.pullKicks does on a bad kickq chain.
        gpu.kickqBroken("descriptor index 70000 out of range (queue size 64)")
        first.end(device)

        let second = try Connection(device)
        defer { second.end(device) }
        device.wake(second.backend)
        #expect(second.backend.status & DeviceStatus.needsReset == 0,
                "the new connection's kickq was marked broken for the old connection's ring")
        #expect(second.backend.vrings[PVZQueue.kickq.rawValue].brokenReason == nil)
    }
}
