import PVZContract
// What the server needs from the device glue, and what it hands back.

/// The guest's RAM as the vhost-user memory table describes it. The glue
/// answers; the server never touches guest memory itself.
public protocol GuestRAM {
    /// True when every byte of `range` is backed by a memory-table region.
    func contains(_ range: IPARange) -> Bool
}

/// The OSID's firmware as the server sees it: a firmware heap leaves the
/// ledger (UNMAP, DESTROY) only after the glue has stopped the firmware and
/// detached it, so no firmware access can reach memory the guest takes back.
public protocol FirmwareControl {
    /// Stops the firmware at a command boundary (queued kicks are cancelled)
    /// and detaches it from `heap`. Returns once nothing can touch the heap.
    func release(_ heap: HeapRecord)
}

/// For callers with no firmware (tests of the ledger).
public struct NoFirmware: FirmwareControl {
    public init() {}
    public func release(_ heap: HeapRecord) {}
}

/// An OSID's register bank (GPUModel's RegisterBank conforms). Offsets reach
/// it already checked to be 4-aligned and inside the 64 KiB bank.
public protocol RegisterFile {
    func read(offset: UInt32) -> Result<UInt32, PVZStatus>
    func write(offset: UInt32, value: UInt32) -> PVZStatus
    /// Told about every hypercall the server answered (for the bank's counters).
    func hypercallCompleted(function: PVZFunction?, status: PVZStatus)
}

extension RegisterFile {
    public func hypercallCompleted(function: PVZFunction?, status: PVZStatus) {}
}

/// A register file for callers with no bank (tests of the ledger, a host
/// with the GPU model switched off): reads 0 everywhere, refuses writes.
public struct NoRegisters: RegisterFile {
    public init() {}
    public func read(offset: UInt32) -> Result<UInt32, PVZStatus> { .success(0) }
    public func write(offset: UInt32, value: UInt32) -> PVZStatus { .notImplemented }
}

/// What a successful call changed, so the glue can start or stop the
/// firmware and refresh config space (and send CONFIG_CHANGE).
public enum CallEffect: Equatable, Sendable {
    case none
    case devConfigCreated(irq: UInt32, registers: IPARange)
    case devConfigDestroyed
    /// Host-origin heaps allocated from the carve-out; `fw` non-nil means the
    /// firmware heap now exists and the firmware may start on it.
    case heapsCreated(fw: HeapRecord?, gpu: HeapRecord?)
    case heapsDestroyed(fw: HeapRecord?, gpu: HeapRecord?)
    /// The guest-origin firmware heap was mapped: start the firmware on it.
    case fwHeapMapped(HeapRecord)
    case fwHeapUnmapped(HeapRecord)
    case registerWritten(offset: UInt32, value: UInt32)
}

public struct CallOutcome: Equatable, Sendable {
    /// Bytes of the response buffer written (the used-ring `len`): 0 when the
    /// buffer could not hold the 16-byte response header.
    public var bytesWritten: Int
    /// The function as sent, even when unknown (0 when the request was too short to say).
    public var rawFunction: UInt32
    public var function: PVZFunction?
    public var status: PVZStatus
    public var effect: CallEffect
    public init(bytesWritten: Int, rawFunction: UInt32, function: PVZFunction?, status: PVZStatus, effect: CallEffect) {
        self.bytesWritten = bytesWritten; self.rawFunction = rawFunction; self.function = function
        self.status = status; self.effect = effect
    }
}

extension CallEffect {
    /// Effects that change what must survive a restart (register writes do not).
    public var changesLedger: Bool {
        switch self {
        case .none, .registerWritten: return false
        default: return true
        }
    }
}
