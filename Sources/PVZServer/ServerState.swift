import PVZContract
import Synchronization

// The server's mutable state, split so that a call of one guest takes no lock
// another guest's call takes: each OSID has its own ledger (and counters)
// behind its own Mutex, with its online flag readable without a lock; what
// guests share (the host heap pool, priorities, VMMConfigure parameters) sits
// apart and is touched only by create/destroy/release and the VM manager.
// Lock order: an OSID's ledger before the shared state, never the reverse.
// Storage is fixed at init (counter arrays included), so the hypercall path
// only mutates in place and never allocates.

struct LedgerEntry {
    let spec: GuestSpec
    var online = false
    var frontEndConnected = false
    var priority: UInt32 = 0
    var devConfigCreated = false
    /// Host-origin heaps from CREATE_DEV_PHYS_HEAPS (exist together or not at all).
    var hostHeapsCreated = false
    var hostFwHeap: HeapRecord?
    var hostGpuHeap: HeapRecord?
    /// The guest-origin firmware heap from MAP_DEV_PHYS_HEAP.
    var guestFwHeap: HeapRecord?
    /// Index 0 counts unknown functions, 1...10 the PVZFunction raw values.
    var callsByFunction: [UInt64]
    /// Indexed by PVZStatus raw value.
    var callsByStatus: [UInt64]
    var disconnects: UInt64 = 0
    /// The answers of the last ledger-changing calls of this boot, so a call
    /// replayed after a daemon restart (in flight when it died) is answered
    /// as it was, not run twice. Written under the same lock hold as the
    /// ledger change, so the state file never has one without the other.
    var recentCalls: [CallRecord] = []

    init(spec: GuestSpec) {
        self.spec = spec
        callsByFunction = Array(repeating: 0, count: Int(PVZFunction.writeReg.rawValue) + 1)
        callsByStatus = Array(repeating: 0, count: Int(PVZStatus.invalidPVZConfig.rawValue) + 1)
    }

    /// The firmware heap in use, whichever origin it has.
    var fwHeap: HeapRecord? { hostFwHeap ?? guestFwHeap }

    mutating func remember(request: UnsafeRawBufferPointer, status: PVZStatus, output: UnsafeRawBufferPointer) {
        if recentCalls.count >= CallRecord.kept { recentCalls.removeFirst(recentCalls.count - CallRecord.kept + 1) }
        recentCalls.append(CallRecord(request: Array(request), status: status, output: Array(output)))
    }

    mutating func count(function raw: UInt32, status: PVZStatus) {
        let f = raw <= PVZFunction.writeReg.rawValue ? Int(raw) : 0
        callsByFunction[f] &+= 1
        callsByStatus[Int(status.rawValue)] &+= 1
    }
}

/// One configured OSID: its ledger and counters, and its online flag
/// mirrored for the lock-free check every call makes first.
final class OSIDLedger: Sendable {
    let spec: GuestSpec
    /// The ledger mutex: every call of this OSID that reads or changes its
    /// entry takes it, no other OSID's call does.
    let entry: Mutex<LedgerEntry>
    /// Written only under `entry`'s lock, together with `entry.online`.
    let online = Atomic<Bool>(false)

    init(spec: GuestSpec) {
        self.spec = spec
        entry = Mutex(LedgerEntry(spec: spec))
    }

    /// Runs `body` on the ledger; keeps the lock-free online flag in step.
    func withEntry<R>(_ body: (inout LedgerEntry) throws -> R) rethrows -> R {
        try entry.withLock { s in
            defer { online.store(s.online, ordering: .releasing) }
            return try body(&s)
        }
    }
}

/// What all guests share.
struct SharedState {
    /// OnVmOnline / VMM_CONF_PRIO_OSIDn priority of every OSID, the host's included.
    var priorities: [UInt32]
    var isolationThreshold: UInt32 = 0
    var hcsDeadline: UInt32 = 0
    /// 23.x knobs: stored and reported (the emulated firmware has one
    /// scheduler; isolation groups and time slices are the DDK's to enforce).
    var isolationGroups = [UInt32](repeating: 0, count: 8)
    var timeSlices = [UInt32](repeating: 0, count: 8)
    var timeSliceInterval: UInt32 = 0
    var connectionCooldown: UInt32 = 0
    var hostPoolUsed: UInt64 = 0
    let hostPoolLimit: UInt64

    /// Takes `bytes` from the host pool; false when it does not fit.
    mutating func reserve(_ bytes: UInt64) -> Bool {
        guard hostPoolUsed <= hostPoolLimit, bytes <= hostPoolLimit - hostPoolUsed else { return false }
        hostPoolUsed += bytes
        return true
    }

    mutating func giveBack(_ bytes: UInt64) {
        hostPoolUsed = bytes <= hostPoolUsed ? hostPoolUsed - bytes : 0
    }
}

/// A ledger-changing call as it was answered: its request bytes exactly as
/// the guest sent them (header with the request id included), the status and
/// the output.
public struct CallRecord: Equatable, Sendable {
    /// Answers kept per OSID: more than a queue's worth of create/map calls
    /// in flight at once is not something a driver does.
    public static let kept = 32
    /// Longest request and output a record holds (every PVZ call is shorter).
    public static let maxRequest = 64
    public static let maxOutput = 64
    public var request: [UInt8]
    public var status: PVZStatus
    public var output: [UInt8]
    public init(request: [UInt8], status: PVZStatus, output: [UInt8]) {
        self.request = request; self.status = status; self.output = output
    }
}
