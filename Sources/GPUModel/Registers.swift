import CPVZShim
import PVZContract
import PVZServer
import Synchronization

struct BankState {
    var fwStatus = FirmwareStatus()
    var irqStatus: UInt32 = 0
    /// Both lines enabled at reset so a guest that never writes IRQ_ENABLE gets interrupts.
    var irqEnable: UInt32 = PVZRegister.irqMask
    var scratch: UInt32 = 0
    var fwReadOffset: UInt32 = 0
    var completedSeq: UInt64 = 0
    var clockLatchHi: UInt32 = 0
    var calls: UInt32 = 0
    var kicks: UInt32 = 0
    var commands: UInt32 = 0
    var faults: UInt32 = 0
    var eventsRaised: UInt32 = 0
    var backlog: EventBacklog
}

/// One OSID's register bank and its pending events. Thread-safe: the
/// hypercall path (READ_REG/WRITE_REG), the firmware thread and the eventq
/// side all reach it.
public final class RegisterBank: RegisterFile, Sendable {
    public let osid: OSID
    /// B<<48 | V<<32 | N<<16 | C.
    public let bvnc: UInt64
    private let epoch: ContinuousClock.Instant
    /// Added to the local clock so a migrated GPU's clock carries on from
    /// where the source's was (TIMESTAMP never goes back).
    private let clockOffset = Atomic<UInt64>(0)
    private let state: Mutex<BankState>

    public init(osid: OSID, bvnc: UInt64 = VirtioPVZ.defaultBVNC, backlogCapacity: Int = 64) {
        self.osid = osid
        self.bvnc = bvnc
        self.epoch = .now
        self.state = Mutex(BankState(backlog: EventBacklog(capacity: backlogCapacity)))
    }

    /// Nanoseconds since the bank was made: the GPU clock.
    public var clockNs: UInt64 {
        let d = ContinuousClock.now - epoch
        let (s, atto) = d.components
        return (UInt64(max(s, 0)) &* 1_000_000_000 &+ UInt64(max(atto, 0) / 1_000_000_000)) &+ clockOffset.load(ordering: .relaxed)
    }

    // MARK: RegisterFile

    public func read(offset: UInt32) -> Result<UInt32, PVZStatus> {
        guard offset & 3 == 0, UInt64(offset) < PVZRegister.bankSize else { return .failure(.invalidParams) }
        let clock = offset == PVZRegister.clockLo ? clockNs : 0
        return .success(state.withLock { s in
            if offset == PVZRegister.clockLo { s.clockLatchHi = UInt32(truncatingIfNeeded: clock >> 32) }
            return value(offset, s, clock: clock)
        })
    }

    /// Writable: IRQ_STATUS (write 1 to clear), IRQ_ENABLE, SCRATCH. Bits
    /// outside the IRQ mask are refused. Everything else, defined or not,
    /// refuses writes with INVALID_PARAMS.
    public func write(offset: UInt32, value: UInt32) -> PVZStatus {
        state.withLock { s in
            switch offset {
            case PVZRegister.irqStatus:
                guard value & ~PVZRegister.irqMask == 0 else { return .invalidParams }
                s.irqStatus &= ~value
            case PVZRegister.irqEnable:
                guard value & ~PVZRegister.irqMask == 0 else { return .invalidParams }
                s.irqEnable = value
            case PVZRegister.scratch:
                s.scratch = value
            default:
                return .invalidParams
            }
            return .ok
        }
    }

    public func hypercallCompleted(function: PVZFunction?, status: PVZStatus) {
        state.withLock { $0.calls &+= 1 }
    }

    private func value(_ offset: UInt32, _ s: BankState, clock: UInt64) -> UInt32 {
        switch offset {
        case PVZRegister.coreID: return PVZRegister.coreIDValue
        case PVZRegister.bvncLo: return UInt32(truncatingIfNeeded: bvnc)
        case PVZRegister.bvncHi: return UInt32(truncatingIfNeeded: bvnc >> 32)
        case PVZRegister.osid: return osid.rawValue
        case PVZRegister.fwStatus: return s.fwStatus.rawValue
        case PVZRegister.irqStatus: return s.irqStatus
        case PVZRegister.irqEnable: return s.irqEnable
        case PVZRegister.scratch: return s.scratch
        case PVZRegister.fwReadOffset: return s.fwReadOffset
        case PVZRegister.fwCompletedSeqLo: return UInt32(truncatingIfNeeded: s.completedSeq)
        case PVZRegister.fwCompletedSeqHi: return UInt32(truncatingIfNeeded: s.completedSeq >> 32)
        case PVZRegister.clockLo: return UInt32(truncatingIfNeeded: clock)
        case PVZRegister.clockHi: return s.clockLatchHi
        case PVZRegister.calls: return s.calls
        case PVZRegister.kicks: return s.kicks
        case PVZRegister.commands: return s.commands
        case PVZRegister.faults: return s.faults
        case PVZRegister.eventsDropped: return UInt32(truncatingIfNeeded: s.backlog.dropped)
        case PVZRegister.eventsRaised: return s.eventsRaised
        case PVZRegister.eventsPending: return UInt32(s.backlog.count)
        default: return 0   // reserved offsets read as zero
        }
    }

    // MARK: the live mirror in guest memory

    /// Writes every defined register at its offset in the bank at `base`
    /// (the carve-out's first 64 KiB, 4-byte aligned), with release stores so
    /// a guest reading it sees whole values. A guest's own stores there are
    /// overwritten at the next mirror. Reserved offsets are left alone.
    public func mirror(into base: UnsafeMutableRawPointer) {
        let clock = clockNs
        let s = state.withLock { s -> BankState in
            s.clockLatchHi = UInt32(truncatingIfNeeded: clock >> 32)
            return s
        }
        for off in PVZRegister.all {
            pvz_store_release_u32(base + Int(off), value(off, s, clock: clock))
        }
    }

    // MARK: status, events, firmware progress

    public func setStatus(_ bits: FirmwareStatus, _ on: Bool) {
        state.withLock { s in
            if on { s.fwStatus.formUnion(bits) } else { s.fwStatus.subtract(bits) }
        }
    }
    public var status: FirmwareStatus { state.withLock { $0.fwStatus } }

    /// Raises an event: IRQ_STATUS gets the kind's bit (always, so a masked
    /// line can still be polled); the event is queued for eventq only when
    /// IRQ_ENABLE has that bit. Returns whether it was queued.
    @discardableResult
    public func raise(_ e: GPUEvent) -> Bool {
        state.withLock { s in
            s.irqStatus |= e.type.irqBit
            s.eventsRaised &+= 1
            guard s.irqEnable & e.type.irqBit != 0 else { return false }
            s.backlog.push(e)
            return true
        }
    }

    /// The oldest queued event, for the next posted eventq buffer.
    public func nextEvent() -> GPUEvent? { state.withLock { $0.backlog.pop() } }
    /// Events queued for eventq.
    public var pendingEvents: Int { state.withLock { $0.backlog.count } }
    public var droppedEvents: UInt64 { state.withLock { $0.backlog.dropped } }

    /// Raises a firmware fault that no kick run reported (a refused or
    /// cancelled kick) and counts it.
    public func raiseFault(_ f: FirmwareFault, detail: UInt32) {
        state.withLock { $0.faults &+= 1 }
        raise(GPUEvent(type: .firmware, code: GPUEvent.codeFirmwareFault, value: UInt64(f.rawValue) << 32 | UInt64(detail)))
    }

    /// Records a served kick: mirrors read offset / completed seq, counts.
    public func recordKick(_ r: FirmwareRunResult) {
        state.withLock { s in
            s.kicks &+= 1
            s.commands &+= UInt32(truncatingIfNeeded: r.commandsRun)
            s.faults &+= UInt32(truncatingIfNeeded: r.faults + (r.kickError == nil ? 0 : 1))
            s.fwReadOffset = r.readOffset
            s.completedSeq = r.completedSeq
            if r.kickError == nil { s.fwStatus.subtract(.lastKickFailed) } else { s.fwStatus.formUnion(.lastKickFailed) }
        }
    }

    /// Back to reset state (OnVmOffline, device reset); counters are kept.
    public func resetDevice() {
        state.withLock { s in
            s.irqStatus = 0
            s.irqEnable = PVZRegister.irqMask
            s.scratch = 0
            s.fwReadOffset = 0
            s.completedSeq = 0
            s.fwStatus = []
            s.backlog.removeAll()
        }
    }

    // MARK: migration

    /// Everything of the bank that lives only in the daemon, for a live
    /// migration of its guest.
    public struct Snapshot: Equatable, Sendable, Codable {
        public var fwStatus: UInt32
        public var irqStatus: UInt32
        public var irqEnable: UInt32
        public var scratch: UInt32
        public var fwReadOffset: UInt32
        public var completedSeq: UInt64
        public var calls: UInt32
        public var kicks: UInt32
        public var commands: UInt32
        public var faults: UInt32
        public var eventsRaised: UInt32
        public var eventsDropped: UInt64
        public var clockNs: UInt64
        /// Pending events, oldest first: (type, code, value).
        public var events: [[UInt64]]
    }

    public func snapshot() -> Snapshot {
        let clock = clockNs
        return state.withLock { s in
            var events: [[UInt64]] = []
            var b = s.backlog
            while let e = b.pop() { events.append([UInt64(e.type.rawValue), UInt64(e.code), e.value]) }
            return Snapshot(fwStatus: s.fwStatus.rawValue, irqStatus: s.irqStatus, irqEnable: s.irqEnable, scratch: s.scratch,
                            fwReadOffset: s.fwReadOffset, completedSeq: s.completedSeq, calls: s.calls, kicks: s.kicks,
                            commands: s.commands, faults: s.faults, eventsRaised: s.eventsRaised,
                            eventsDropped: s.backlog.dropped, clockNs: clock, events: events)
        }
    }

    /// Takes a source's bank over. Values from the wire are checked: an
    /// IRQ bit outside the mask or a malformed event is refused, as are
    /// more events than the backlog holds.
    public func restore(_ m: Snapshot) throws(BankRestoreError) {
        guard m.irqStatus & ~PVZRegister.irqMask == 0, m.irqEnable & ~PVZRegister.irqMask == 0 else {
            throw .invalid("IRQ bits 0x\(String(m.irqStatus | m.irqEnable, radix: 16)) outside the mask 0x\(String(PVZRegister.irqMask, radix: 16))")
        }
        var backlog = EventBacklog(capacity: state.withLock { $0.backlog.capacity })
        guard m.events.count <= backlog.capacity else {
            throw .invalid("\(m.events.count) pending events, the backlog holds \(backlog.capacity)")
        }
        for e in m.events {
            guard e.count == 3, e[0] <= UInt64(UInt32.max), e[1] <= UInt64(UInt32.max),
                  let kind = GPUEvent.Kind(rawValue: UInt32(e[0])) else {
                throw .invalid("malformed pending event \(e)")
            }
            backlog.push(GPUEvent(type: kind, code: UInt32(e[1]), value: e[2]))
        }
        backlog.setDropped(m.eventsDropped)
        let local = clockNs &- clockOffset.load(ordering: .relaxed)
        clockOffset.store(m.clockNs > local ? m.clockNs - local : 0, ordering: .relaxed)
        state.withLock { s in
            s.fwStatus = FirmwareStatus(rawValue: m.fwStatus & 0x1F)
            s.irqStatus = m.irqStatus
            s.irqEnable = m.irqEnable
            s.scratch = m.scratch
            s.fwReadOffset = m.fwReadOffset
            s.completedSeq = m.completedSeq
            s.calls = m.calls
            s.kicks = m.kicks
            s.commands = m.commands
            s.faults = m.faults
            s.eventsRaised = m.eventsRaised
            s.backlog = backlog
        }
    }
}

public enum BankRestoreError: Error, Equatable, CustomStringConvertible {
    case invalid(String)
    public var description: String {
        switch self { case .invalid(let s): return "register bank state: \(s)" }
    }
}
