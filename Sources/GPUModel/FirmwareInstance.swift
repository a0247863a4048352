import PVZServer
import Synchronization

/// The kickq buffer (spec 7): write_offset u32 @0, flags u32 @4 (reserved, 0).
public struct KickRequest: Equatable, Sendable {
    public static let size = 8
    public var writeOffset: UInt32
    public var flags: UInt32
    public init(writeOffset: UInt32, flags: UInt32 = 0) { self.writeOffset = writeOffset; self.flags = flags }
    /// nil unless exactly 8 bytes.
    public static func decode(from b: UnsafeRawBufferPointer) -> KickRequest? {
        guard b.count == size else { return nil }
        return KickRequest(writeOffset: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)),
                           flags: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeBytes(of: writeOffset.littleEndian, toByteOffset: 0, as: UInt32.self)
        b.storeBytes(of: flags.littleEndian, toByteOffset: 4, as: UInt32.self)
        return true
    }
}

/// One OSID's firmware bound to its heap and register bank: what the glue
/// submits to the scheduler on each kick. `detach()` waits for a running kick
/// to finish, so once it returns the heap's memory may be unmapped.
public final class FirmwareInstance: Sendable {
    public let bank: RegisterBank
    private struct State {
        var firmware: Firmware
        /// Host address and size of the heap (an address, not a pointer, so
        /// the state stays Sendable; valid only while attached).
        var heapBase: UInt = 0
        var heapSize = 0
    }
    private let state: Mutex<State>

    public init(bank: RegisterBank) {
        self.bank = bank
        state = Mutex(State(firmware: Firmware(osid: bank.osid)))
    }

    /// Starts the firmware on a heap (host view of the guest's firmware heap).
    public func attach(heap: UnsafeMutableRawBufferPointer) {
        state.withLock { s in
            s.firmware.reset()
            s.heapBase = UInt(bitPattern: heap.baseAddress)
            s.heapSize = heap.count
        }
        bank.setStatus([.running, .heapMapped], true)
    }

    /// Stops it; returns after any kick in progress has finished.
    public func detach() {
        state.withLock { s in
            s.heapBase = 0
            s.heapSize = 0
            s.firmware.reset()
        }
        bank.setStatus([.running, .heapMapped], false)
    }

    public var isAttached: Bool { state.withLock { $0.heapBase != 0 } }

    /// Serves one kick buffer's bytes. nil when detached or when the kick
    /// buffer is malformed (not 8 bytes, flags not 0): the latter raises a
    /// fault event so the guest learns of it.
    @discardableResult
    public func kick(_ buffer: UnsafeRawBufferPointer) -> FirmwareRunResult? {
        guard let k = KickRequest.decode(from: buffer), k.flags == 0 else {
            bank.raise(GPUEvent(type: .firmware, code: GPUEvent.codeFirmwareFault,
                                value: UInt64(FirmwareFault.badKick.rawValue) << 32 | UInt64(buffer.count)))
            return nil
        }
        return kick(writeOffset: k.writeOffset)
    }

    /// `deadlineNs` (bank clock, 0 = none): the HCS deadline of this run.
    @discardableResult
    public func kick(writeOffset: UInt32, deadlineNs: UInt64 = 0) -> FirmwareRunResult? {
        let bank = self.bank
        let r = state.withLock { s -> FirmwareRunResult? in
            guard let base = UnsafeMutableRawPointer(bitPattern: s.heapBase) else { return nil }
            let heap = UnsafeMutableRawBufferPointer(start: base, count: s.heapSize)
            let deadline: (() -> Bool)? = deadlineNs == 0 ? nil : { bank.clockNs >= deadlineNs }
            return s.firmware.run(heap: heap, upTo: writeOffset, clockNs: bank.clockNs, deadline: deadline) { bank.raise($0) }
        }
        if let r { bank.recordKick(r) }
        return r
    }
}
