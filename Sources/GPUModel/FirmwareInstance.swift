import PVZContract
import PVZServer
import Synchronization

/// One OSID's firmware bound to its heap and register bank: what the glue
/// submits to the scheduler on each kick.
///
/// Lifetime rule: while attached, the instance holds the heap's owner (the
/// guest memory object whose mapping backs the heap), so the mapping cannot
/// be unmapped under a kick. `detach()` and `interrupt()` ask a running kick
/// to stop at the next command boundary and return once it has, so the wait
/// is bounded by one command, never by the ring's length or the queue.
public final class FirmwareInstance: Sendable {
    public let bank: RegisterBank
    private struct State: @unchecked Sendable {
        var firmware: Firmware
        var heap: UnsafeMutableRawBufferPointer?
        /// Keeps `heap`'s mapping alive while attached.
        var owner: AnyObject?
        /// Told each heap range (offset, length) a kick stored to.
        var wrote: (@Sendable (Int, Int) -> Void)?
        /// A migrated firmware's progress, applied at the next attach.
        var pending: Firmware.Snapshot?
    }
    private let state: Mutex<State>
    /// Set by detach/interrupt: a running kick stops at its next command boundary.
    private let stopRequests = Atomic<Int>(0)

    public init(bank: RegisterBank) {
        self.bank = bank
        state = Mutex(State(firmware: Firmware(osid: bank.osid)))
    }

    /// Starts the firmware on a heap (host view of the guest's firmware heap)
    /// held alive by `owner`. `keepRing` re-points a running firmware at a new
    /// mapping of the same heap (a memory-table change) without forgetting
    /// where its ring was. `wrote` is told each heap range (offset, length)
    /// a kick stores to (a migration's dirty log).
    public func attach(heap: UnsafeMutableRawBufferPointer, owner: AnyObject, keepRing: Bool = false,
                       wrote: (@Sendable (Int, Int) -> Void)? = nil) {
        stopRequests.add(1, ordering: .relaxed)
        state.withLock { s in
            if let p = s.pending {
                s.firmware.reset()
                _ = s.firmware.restore(p)
                s.pending = nil
            } else if !keepRing {
                s.firmware.reset()
            }
            s.heap = heap
            s.owner = owner
            s.wrote = wrote
        }
        stopRequests.subtract(1, ordering: .relaxed)
        bank.setStatus([.running, .heapMapped], true)
    }

    /// Stops it: a running kick ends at a command boundary; once this returns
    /// nothing touches the heap and its owner is released.
    public func detach() {
        stopRequests.add(1, ordering: .relaxed)
        let owner = state.withLock { s -> AnyObject? in
            s.heap = nil
            s.wrote = nil
            s.pending = nil
            s.firmware.reset()
            defer { s.owner = nil }
            return s.owner
        }
        stopRequests.subtract(1, ordering: .relaxed)
        bank.setStatus([.running, .heapMapped], false)
        // The last reference may unmap the memory: outside the lock.
        _ = owner
    }

    /// Makes a running kick stop at its next command boundary (it reports
    /// `preempted`) and returns once it has; the firmware stays attached.
    public func interrupt() {
        stopRequests.add(1, ordering: .relaxed)
        state.withLock { _ in }
        stopRequests.subtract(1, ordering: .relaxed)
    }

    public var isAttached: Bool { state.withLock { $0.heap != nil } }

    /// The firmware's own progress, for a migration (the device is stopped).
    public var snapshot: Firmware.Snapshot { state.withLock { $0.firmware.snapshot } }

    /// Whether a migrated firmware's progress holds together.
    public func checkRestore(_ m: Firmware.Snapshot) -> Bool {
        var f = Firmware(osid: bank.osid)
        return f.restore(m)
    }

    /// Takes a migrated firmware's progress; false (nothing changed) when it
    /// does not hold together. Detached, it is kept for the next attach (the
    /// memory table arrives after the state on the destination).
    public func restore(_ m: Firmware.Snapshot) -> Bool {
        guard checkRestore(m) else { return false }
        state.withLock { s in
            if s.heap == nil { s.pending = m } else { _ = s.firmware.restore(m) }
        }
        return true
    }

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

    /// `deadlineNs` (bank clock, 0 = none): the HCS deadline of this run; once
    /// it has passed the run stops at a command boundary if `yield` says more
    /// important work waits. A stop request (detach, interrupt) ends the run
    /// early the same way.
    @discardableResult
    public func kick(writeOffset: UInt32, deadlineNs: UInt64 = 0, yield: () -> Bool = { true }) -> FirmwareRunResult? {
        let bank = self.bank
        // Non-escaping all the way down: the kick path allocates nothing.
        let r = state.withLock { s -> FirmwareRunResult? in
            guard let heap = s.heap else { return nil }
            func deadline() -> Bool {
                stopRequests.load(ordering: .relaxed) != 0
                    || (deadlineNs != 0 && bank.clockNs >= deadlineNs && yield())
            }
            // Not `s.wrote ?? {}`: a closure through the generic `??` is
            // re-abstracted, two allocations per kick.
            guard let wrote = s.wrote else {
                return s.firmware.run(heap: heap, upTo: writeOffset, clockNs: bank.clockNs, deadline: deadline) { bank.raise($0) }
            }
            return s.firmware.run(heap: heap, upTo: writeOffset, clockNs: bank.clockNs, deadline: deadline,
                                  wrote: wrote) { bank.raise($0) }
        }
        if let r { bank.recordKick(r) }
        return r
    }
}
