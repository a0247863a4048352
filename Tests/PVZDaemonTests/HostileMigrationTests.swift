import Testing
import CPVZShim
import Foundation
import PVZContract
import PVZDaemon
import TestFrontEnd
import VhostUser
#if canImport(Glibc)
import Glibc
#endif

/// A front-end that starts a device-state load on an fd that never delivers
/// (an eventfd), then goes away: the guest thread must not wait out the
/// transfer's 30 s deadline before it serves the next front-end.
@Suite struct HostileMigrationTests {
    @Test func deviceStateLoadThenDisconnect() throws {
        let h = try Harness()
        let fe = try TestFrontEnd(path: h.socket(1))
        try fe.start()
        _ = try fe.stopQueues()
        let proto = try fe.getU64(.getProtocolFeatures)
        #expect(proto & VhostUserProtocolFeature.deviceState != 0)
        try fe.send(.setProtocolFeatures, payload: TestFrontEnd.u64(proto))
        let never = eventfd(0, Int32(EFD_CLOEXEC))
        defer { close(never) }
        var b = [UInt8](repeating: 0, count: DeviceStateTransferPayload.size)
        b.withUnsafeMutableBytes { DeviceStateTransferPayload(direction: DeviceStateTransferPayload.Direction.load.rawValue, phase: 0).encode(into: $0) }
        try fe.send(.setDeviceStateFD, payload: b, fds: [never])
        #expect(try fe.receive().1.withUnsafeBytes { $0.le64(0) } & 0xFF == 0)
        fe.closeSocket()
        // Before the fix the next front-end got in only after ~30 s.
        let start = ContinuousClock.now
        let next = try TestFrontEnd(path: h.socket(1))
        try next.start()
        #expect(ContinuousClock.now - start < .seconds(5), "the next front-end waited \(ContinuousClock.now - start)")
    }
}
