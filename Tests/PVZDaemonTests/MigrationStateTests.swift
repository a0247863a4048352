import Testing
import Foundation
import PVZContract
import GPUModel
import PVZDaemon
import PVZServer
import TestFrontEnd
import VhostUser

/// A guest's daemon-side state moves from one daemon to another (the
/// DEVICE_STATE payload of a live migration), and a destination that is not
/// configured for it refuses it without changing anything.
@Suite("migration: the device state of one OSID", .serialized)
struct MigrationStateTests {
    /// Source: device config, firmware heap, a ring run twice, events pending.
    static func busySource() throws -> (Harness, Guest, [UInt8], UInt64) {
        let src = try Harness()
        let g = try src.connect(1)
        #expect(g.call(.createDevConfig)?.status == .ok)
        #expect(g.mapFirmwareHeap() == .ok)
        #expect(g.call(.writeReg, Guest.u32(PVZRegister.scratch) + Guest.u32(0x5A5A))?.status == .ok)
        g.initRing()
        g.command(0, op: 1, seq: 1, arg0: 0x2000, arg1: 111)   // FENCE
        g.command(1, op: 2, seq: 2, arg0: 0x2008)              // TIMESTAMP
        #expect(g.kick(writeOffset: 64))
        let ts = g.fe.load(Guest.fwHeap + 0x2008, as: UInt64.self)
        #expect(ts > 0)
        // What QEMU does before it saves the state: stop the device.
        try g.fe.send(.setStatus, payload: TestFrontEnd.u64(0))
        _ = try g.fe.stopQueues()
        let bytes = try src.daemon.guests[0].device.saveState()
        return (src, g, bytes, ts)
    }

    @Test func theStateMovesAndTheGuestCarriesOn() throws {
        let (src, g, bytes, ts) = try Self.busySource()
        #expect(Array(bytes[0..<4]) == Array("PVZS".utf8))
        let dst = try Harness(guests: [(1, false, GuestPolicy())])
        try dst.daemon.guests[0].device.loadState(bytes)
        let a = src.daemon.hostServer.snapshot(osid: OSID(1))!, b = dst.daemon.hostServer.snapshot(osid: OSID(1))!
        #expect(b.online && b.devConfigCreated)
        #expect(a.heaps == b.heaps)
        #expect(b.priority == a.priority)

        // The front-end moves over (QEMU on the destination, same guest RAM).
        try g.fe.reconnect(path: dst.socket(1))
        try g.fe.start()
        // The source let go of the OSID when its front-end left.
        var n = 0
        while !src.daemon.hostServer.snapshot(osid: OSID(1))!.heaps.isEmpty && n < 200 { usleep(10_000); n += 1 }
        #expect(src.daemon.hostServer.snapshot(osid: OSID(1))!.heaps.isEmpty)
        // Registers, ledger and firmware carry on.
        #expect(g.call(.readReg, Guest.u32(PVZRegister.scratch))?.output.le32(0) == 0x5A5A)
        #expect(g.mapFirmwareHeap() == .alreadyExists)
        g.command(2, op: 2, seq: 3, arg0: 0x2010)              // TIMESTAMP after the move
        g.command(3, op: 1, seq: 4, arg0: 0x2018, arg1: 222)   // FENCE
        #expect(g.kick(writeOffset: 128))
        #expect(g.fe.load(Guest.fwHeap + 0x2018, as: UInt64.self) == 222)
        #expect(g.fe.load(Guest.fwHeap + 0x10, as: UInt64.self) == 4)          // completed_seq
        #expect(g.fe.load(Guest.fwHeap + 0x2010, as: UInt64.self) > ts)        // the clock never goes back
        let kicks = try #require(g.call(.readReg, Guest.u32(PVZRegister.kicks)))
        #expect(kicks.output.le32(0) == 2)                                     // one kick each side
    }

    @Test func aDestinationWithAnotherCarveoutRefusesAndChangesNothing() throws {
        let (_, _, bytes, _) = try Self.busySource()
        let dst = try Harness(guests: [(1, false, GuestPolicy())], carveout: IPARange(start: IPA(0x0C00_0000), size: 0x0400_0000)!)
        #expect(throws: MigrationError.self) { try dst.daemon.guests[0].device.loadState(bytes) }
        do { try dst.daemon.guests[0].device.loadState(bytes) } catch {
            #expect("\(error)".contains("carve-out"))
        }
        let b = dst.daemon.hostServer.snapshot(osid: OSID(1))!
        #expect(!b.online && !b.devConfigCreated && b.heaps.isEmpty)
    }

    @Test func anotherPolicyOrOSIDOrGarbageIsRefused() throws {
        let (_, _, bytes, _) = try Self.busySource()
        var p = GuestPolicy()
        p.fwHeapSize = 16 << 20
        let other = try Harness(guests: [(1, false, p)])
        #expect(throws: MigrationError.self) { try other.daemon.guests[0].device.loadState(bytes) }
        let osid2 = try Harness(guests: [(2, false, GuestPolicy())])
        #expect(throws: MigrationError.wrongOSID(sent: 1, here: 2)) { try osid2.daemon.guests[0].device.loadState(bytes) }
        let dst = try Harness(guests: [(1, false, GuestPolicy())])
        for bad in [[UInt8](), Array(bytes.prefix(12)), Array("PVZS".utf8) + [9, 0, 0, 0, 0, 0, 0, 0],
                    Array(bytes.prefix(bytes.count - 1)), bytes.map { $0 == UInt8(ascii: "1") ? UInt8(ascii: "9") : $0 }] {
            #expect(throws: MigrationError.self) { try dst.daemon.guests[0].device.loadState(bad) }
        }
        #expect(dst.daemon.hostServer.snapshot(osid: OSID(1))!.heaps.isEmpty)
    }
}

/// The same over the vhost-user socket: SET_DEVICE_STATE_FD / CHECK_DEVICE_STATE
/// with a pipe, as QEMU's vhost_save_backend_state / vhost_load_backend_state do.
@Suite("migration: DEVICE_STATE over the socket", .serialized)
struct DeviceStateMessageTests {
    @Test func saveThenLoadThroughThePipe() throws {
        let src = try Harness()
        let g = try src.connect(1)
        #expect(g.call(.createDevConfig)?.status == .ok)
        #expect(g.mapFirmwareHeap() == .ok)
        // Refused while the device runs.
        #expect(throws: TestFrontEnd.Failure.self) { _ = try g.fe.saveDeviceState() }
        try g.fe.send(.setStatus, payload: TestFrontEnd.u64(0))
        _ = try g.fe.stopQueues()
        let state = try g.fe.saveDeviceState()
        #expect(state.count > 12)

        let dst = try Harness(guests: [(1, false, GuestPolicy())])
        try g.fe.reconnect(path: dst.socket(1))
        try g.fe.negotiate()
        #expect(try g.fe.loadDeviceState(state) == 0)
        #expect(dst.daemon.hostServer.snapshot(osid: OSID(1))!.heaps.count == 1)
        try g.fe.start()
        #expect(g.call(.createDevConfig)?.status == .alreadyExists)
    }

    @Test func aMismatchedDestinationAnswersCheckWithAnError() throws {
        let src = try Harness()
        let g = try src.connect(1)
        #expect(g.call(.createDevConfig)?.status == .ok)
        try g.fe.send(.setStatus, payload: TestFrontEnd.u64(0))
        _ = try g.fe.stopQueues()
        let state = try g.fe.saveDeviceState()
        let dst = try Harness(guests: [(1, false, GuestPolicy())], carveout: IPARange(start: IPA(0x0C00_0000), size: 0x0400_0000)!)
        let fe2 = try TestFrontEnd(path: dst.socket(1))
        try fe2.negotiate()
        #expect(try fe2.loadDeviceState(state) != 0)
        #expect(try fe2.loadDeviceState(Array(state.prefix(20))) != 0)
        #expect(!dst.daemon.hostServer.snapshot(osid: OSID(1))!.devConfigCreated)
        // The source still serves its guest (a failed migration leaves it running there).
        try g.fe.start()
        #expect(g.call(.createDevConfig)?.status == .alreadyExists)
    }
}
