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

/// Front-ends that start a device-state load on an fd that never delivers
/// (an eventfd): the guest thread must never wait out the transfer's 30 s
/// deadline.
@Suite struct HostileMigrationTests {
    /// Then the front-end goes away: the next one is served at once.
    @Test func deviceStateLoadThenDisconnect() throws {
        let h = try Harness()
        try Self.withLoadThatNeverEnds(h) { (fe) throws in
            fe.closeSocket()
            // Before the fix the next front-end got in only after ~30 s.
            let start = ContinuousClock.now
            let next = try TestFrontEnd(path: h.socket(1))
            try next.start()
            #expect(ContinuousClock.now - start < .seconds(5), "the next front-end waited \(ContinuousClock.now - start)")
        }
    }

    /// Then another SET_DEVICE_STATE_FD (found by the long `vhost-user` fuzz
    /// run as a 10 s timeout): the new transfer replaces the old one at once.
    @Test func deviceStateLoadTwiceOnAnFDThatNeverDelivers() throws {
        try Self.withLoadThatNeverEnds(try Harness()) { (fe) throws in
            // Before the fix the guest thread joined the first transfer: ~30 s.
            let never = eventfd(0, Int32(EFD_CLOEXEC))
            defer { close(never) }
            let start = ContinuousClock.now
            #expect(try Self.setDeviceStateFD(fe, .load, never) == 0)
            #expect(ContinuousClock.now - start < .seconds(5), "the second SET_DEVICE_STATE_FD waited \(ContinuousClock.now - start)")
        }
    }

    /// Then CHECK_DEVICE_STATE, the transfer not ended (QEMU ends it first: it
    /// closes the pipe it wrote, or reads it to its end): a failure, soon.
    @Test func checkDeviceStateBeforeTheTransferEnded() throws {
        try Self.withLoadThatNeverEnds(try Harness()) { (fe) throws in
            let start = ContinuousClock.now
            #expect(try fe.getU64(.checkDeviceState) != 0, "a load that received no end of state was taken")
            #expect(ContinuousClock.now - start < .seconds(5), "CHECK_DEVICE_STATE waited \(ContinuousClock.now - start)")
            // The guest thread serves the connection again.
            #expect(try fe.getU64(.getFeatures) != 0)
        }
    }

    /// A started guest, its rings stopped, DEVICE_STATE negotiated, and a load
    /// begun on an eventfd (never readable, never ends).
    static func withLoadThatNeverEnds(_ h: Harness, _ body: (TestFrontEnd) throws -> Void) throws {
        let fe = try TestFrontEnd(path: h.socket(1))
        try fe.start()
        _ = try fe.stopQueues()
        let proto = try fe.getU64(.getProtocolFeatures)
        #expect(proto & VhostUserProtocolFeature.deviceState != 0)
        try fe.send(.setProtocolFeatures, payload: TestFrontEnd.u64(proto))
        let never = eventfd(0, Int32(EFD_CLOEXEC))
        defer { close(never) }
        #expect(try setDeviceStateFD(fe, .load, never) == 0)
        try body(fe)
    }

    /// SET_DEVICE_STATE_FD's reply code (bits 0-7).
    static func setDeviceStateFD(_ fe: TestFrontEnd, _ d: DeviceStateTransferPayload.Direction, _ fd: Int32) throws -> UInt64 {
        var b = [UInt8](repeating: 0, count: DeviceStateTransferPayload.size)
        b.withUnsafeMutableBytes { DeviceStateTransferPayload(direction: d.rawValue, phase: 0).encode(into: $0) }
        try fe.send(.setDeviceStateFD, payload: b, fds: [fd])
        return try fe.receive().1.withUnsafeBytes { $0.le64(0) } & 0xFF
    }
}
