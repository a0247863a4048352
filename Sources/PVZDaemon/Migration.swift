// FoundationEssentials, not Foundation: keeps libFoundation and ICU out of the daemon (docs/benchmarks.md, memory).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import PVZContract
import GPUModel
import Logging
import PVZServer
import VhostUser
import Virtqueue

/// What lives only in the daemon for one guest, carried by a live migration
/// (vhost-user DEVICE_STATE): its OSID's ledger and policy, the register
/// bank (status, IRQ lines, counters, pending events, the GPU clock) and the
/// firmware's own progress. Guest RAM (heaps, rings, the firmware's ring
/// fields) travels with QEMU's RAM migration; vring indices with QEMU's
/// vhost state. Framed as "PVZS", format version, length, then JSON.
public struct DeviceState: Codable, Equatable, Sendable {
    public static let magic: [UInt8] = Array("PVZS".utf8)
    public static let formatVersion: UInt32 = 1
    /// A hostile source cannot make the destination read more than this.
    public static let maxBytes = 1 << 20

    public var osid: UInt32
    public var ledger: MigratedLedger
    public var bank: RegisterBank.Snapshot
    public var firmware: Firmware.Snapshot

    public func encoded() -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let body = (try? enc.encode(self)).map(Array.init) ?? []
        var out = Self.magic
        withUnsafeBytes(of: Self.formatVersion.littleEndian) { out += $0 }
        withUnsafeBytes(of: UInt32(body.count).littleEndian) { out += $0 }
        return out + body
    }

    public static func decode(_ bytes: [UInt8]) throws(MigrationError) -> DeviceState {
        guard bytes.count >= 12, Array(bytes[0..<4]) == magic else {
            throw .invalid("\(bytes.count) bytes without the PVZS header")
        }
        let version = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) }
        guard version == formatVersion else { throw .invalid("format version \(version), this daemon reads \(formatVersion)") }
        let length = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        guard Int(length) == bytes.count - 12, Int(length) <= maxBytes else {
            throw .invalid("body length \(length), \(bytes.count - 12) bytes present (limit \(maxBytes))")
        }
        do {
            return try JSONDecoder().decode(DeviceState.self, from: Data(bytes[12...]))
        } catch {
            throw .invalid("\(error)")
        }
    }
}

extension PVZDevice {
    public var supportsMigration: Bool { true }

    public func saveState(_ ctx: BackendContext) -> Result<[UInt8], DeviceStateError> {
        do { return .success(try saveState()) } catch { return .failure(DeviceStateError(error.description)) }
    }

    public func loadState(_ bytes: [UInt8], _ ctx: BackendContext) -> DeviceStateError? {
        do { try loadState(bytes) } catch { return DeviceStateError(error.description) }
        // The destination's memory table (if it came first) holds the heap.
        if ctx.memory.regions.count > 0 {
            gpu.attachMemory(ctx.memory, fwHeap: hostServer.configView(osid: osid)?.fwHeap?.ipa)
        }
        return nil
    }

    /// The source side: this guest's state, with the device stopped (its
    /// rings are stopped first, so no kick is in flight).
    public func saveState() throws(MigrationError) -> [UInt8] {
        let ledger: MigratedLedger
        do { ledger = try hostServer.migrationLedger(osid: osid) } catch { throw .invalid("\(error)") }
        return DeviceState(osid: osid.rawValue, ledger: ledger, bank: gpu.bank.snapshot(),
                           firmware: gpu.firmware.snapshot).encoded()
    }

    /// The destination side: checks the state against this daemon's
    /// configuration for the socket's OSID, then takes it over. A mismatch
    /// changes nothing and says what differs; the migration then fails and
    /// the guest keeps running on the source.
    public func loadState(_ bytes: [UInt8]) throws(MigrationError) {
        let s = try DeviceState.decode(bytes)
        guard s.osid == osid.rawValue else { throw .wrongOSID(sent: s.osid, here: osid.rawValue) }
        guard gpu.firmware.checkRestore(s.firmware) else {
            throw .invalid("firmware ring size \(s.firmware.ringSize) / read offset \(s.firmware.readOffset) do not hold together")
        }
        // The bank first (it can refuse); then the ledger (it can refuse, and changes nothing if so).
        let before = gpu.bank.snapshot()
        do { try gpu.bank.restore(s.bank) } catch { throw .invalid(error.description) }
        do {
            try hostServer.takeMigratedLedger(s.ledger, osid: osid)
        } catch {
            try? gpu.bank.restore(before)
            throw error
        }
        _ = gpu.firmware.restore(s.firmware)
        if s.ledger.guest.online { gpu.vmOnline(priority: s.ledger.guest.priority) }
        ledgerChanged()
        logger.info("migrated state taken over: \(s.ledger.guest.devConfigCreated ? "device config, " : "")firmware heap \(s.ledger.guest.guestFwHeapIPA.map { "0x" + String($0, radix: 16) } ?? "none"), \(s.bank.events.count) pending events, clock \(s.bank.clockNs) ns")
    }
}
