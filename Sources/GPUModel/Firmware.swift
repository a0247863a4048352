import CPVZShim
import PVZServer

/// Layout of the kernel command ring at the start of a firmware heap (spec 7).
public enum Ring {
    public static let magic: UInt32 = 0x474E_4952   // "RING"
    public static let magicOffset = 0x000
    public static let sizeOffset = 0x004
    public static let writeOffsetField = 0x008
    public static let readOffsetField = 0x00C
    public static let completedSeqField = 0x010
    /// The header page; commands start after it.
    public static let headerSize = 0x1000
    public static let commandSize = 32
    /// Bytes of the header page reserved for ring fields: fence and timestamp
    /// targets may use the rest of the page.
    public static let reservedHeaderBytes = 0x40
}

public enum FirmwareOp: UInt32, Sendable {
    case nop = 0
    case fence = 1
    case timestamp = 2
    case irq = 3
}

/// Why a command or a whole kick failed. The raw value goes in the high
/// half of the fault event's value (low half: the ring offset or the bad value).
public enum FirmwareFault: UInt32, Sendable, Equatable {
    // whole kick
    case heapTooSmall = 1
    case heapMisaligned = 2
    case badMagic = 3
    case ringSizeNotPowerOfTwo = 4
    case ringTooLarge = 5
    case writeOffsetOutOfRing = 6
    case writeOffsetUnaligned = 7
    /// The kickq buffer was not 8 bytes or had flags set (detail: its length).
    case badKick = 8
    /// The OSID already had `GuestGPU.maxQueuedKicks` kicks queued: this one
    /// was returned at once, not run (detail: the kick's write_offset).
    case kickQueueFull = 9
    /// The kick was returned without running: its ring stopped (pause,
    /// reset, disconnect) before the firmware reached it (detail: write_offset).
    case kickCancelled = 10
    // one command
    case unknownOp = 16
    case reservedFlags = 17
    case targetOutsideHeap = 18
    case targetUnaligned = 19
    case targetInRingArea = 20
    case irqCodeTooLarge = 21
}

public struct FirmwareRunResult: Equatable, Sendable {
    public var commandsRun: Int = 0
    /// Commands that failed alone (counted, one fault event each).
    public var faults: Int = 0
    public var completedSeq: UInt64
    public var readOffset: UInt32
    public var irqsRaised: Int = 0
    /// Set when the ring itself was bad: nothing was run.
    public var kickError: FirmwareFault?
    /// The HCS deadline passed before `writeOffset` was reached: the rest of
    /// the kick runs when the firmware comes back to this OSID (no kick-done
    /// event yet; read_offset in the heap shows how far it got).
    public var preempted = false
    public var lastFault: FirmwareFault?
}

/// The emulated firmware of one OSID. It keeps its own read offset and
/// completed sequence: the copies in the heap are outputs only (a guest
/// scribbling over them cannot move the firmware).
///
/// The heap is guest memory another thread (the guest) may write at any
/// time: every header field and command field is loaded exactly once with
/// an acquire load into a local, validated, then acted on; firmware outputs
/// are release stores. Nothing outside `heap` is ever touched.
public struct Firmware: Sendable {
    public let osid: OSID
    public private(set) var readOffset: UInt32 = 0
    public private(set) var completedSeq: UInt64 = 0
    public private(set) var ringSize: UInt32 = 0
    /// Last value written by TIMESTAMP: the firmware clock never goes back.
    public private(set) var lastTimestamp: UInt64 = 0

    public init(osid: OSID) { self.osid = osid }

    /// Serves one kick: runs commands from the firmware's read offset up to
    /// `writeOffset` (exclusive, wrapping). Events (IRQ commands, faults, and
    /// one kick-done event with value = completed_seq) go to `emit`.
    /// `deadline`, when given, is checked between commands (the firmware's hard
    /// context switch): once it returns true after at least one command, the run
    /// stops there with `preempted` set.
    /// `wrote(offset, length)` is told every heap range the run stored to,
    /// after the store (a migration's dirty log marks those pages).
    public mutating func run(heap: UnsafeMutableRawBufferPointer, upTo writeOffset: UInt32, clockNs: UInt64,
                             deadline: () -> Bool = { false }, wrote: (Int, Int) -> Void = { _, _ in },
                             emit: (GPUEvent) -> Void) -> FirmwareRunResult {
        var r = FirmwareRunResult(completedSeq: completedSeq, readOffset: readOffset)
        func failKick(_ f: FirmwareFault, _ detail: UInt64) -> FirmwareRunResult {
            r.kickError = f
            r.lastFault = f
            emit(GPUEvent(type: .firmware, code: GPUEvent.codeFirmwareFault, value: UInt64(f.rawValue) << 32 | (detail & 0xFFFF_FFFF)))
            return r
        }
        guard let base = heap.baseAddress, heap.count >= Ring.headerSize + Ring.commandSize else {
            return failKick(.heapTooSmall, UInt64(heap.count))
        }
        guard UInt(bitPattern: base) & 7 == 0 else { return failKick(.heapMisaligned, UInt64(UInt(bitPattern: base) & 7)) }
        let magic = pvz_load_acquire_u32(base + Ring.magicOffset)
        guard magic == Ring.magic else { return failKick(.badMagic, UInt64(magic)) }
        let size = pvz_load_acquire_u32(base + Ring.sizeOffset)
        guard size >= UInt32(Ring.commandSize), size & (size - 1) == 0 else {
            return failKick(.ringSizeNotPowerOfTwo, UInt64(size))
        }
        guard Int(size) <= heap.count - Ring.headerSize else { return failKick(.ringTooLarge, UInt64(size)) }
        guard writeOffset < size else { return failKick(.writeOffsetOutOfRing, UInt64(writeOffset)) }
        guard writeOffset % UInt32(Ring.commandSize) == 0 else { return failKick(.writeOffsetUnaligned, UInt64(writeOffset)) }
        if size != ringSize {
            if ringSize == 0 {
                // First kick since attach: resume from the firmware's own fields in
                // the heap (they survive a daemon restart or a reconnect; a fresh
                // ring has them at 0).
                let persisted = pvz_load_acquire_u32(base + Ring.readOffsetField)
                readOffset = persisted < size && persisted % UInt32(Ring.commandSize) == 0 ? persisted : 0
                completedSeq = pvz_load_acquire_u64(base + Ring.completedSeqField)
            } else {
                // The guest re-initialised the ring with another size: start at its beginning.
                readOffset = 0
            }
            ringSize = size
        }

        let ringEnd = Ring.headerSize + Int(size)
        var off = readOffset
        while off != writeOffset {
            if r.commandsRun + r.faults > 0, deadline() {
                r.preempted = true
                break
            }
            let cmd = base + Ring.headerSize + Int(off)
            let op = pvz_load_acquire_u32(cmd)
            let flags = pvz_load_acquire_u32(cmd + 4)
            let seq = pvz_load_acquire_u64(cmd + 8)
            let arg0 = pvz_load_acquire_u64(cmd + 16)
            let arg1 = pvz_load_acquire_u64(cmd + 24)
            if let fault = execute(op: op, flags: flags, seq: seq, arg0: arg0, arg1: arg1, base: base,
                                   heapSize: heap.count, ringEnd: ringEnd, clockNs: clockNs, wrote: wrote, emit: emit) {
                r.faults += 1
                r.lastFault = fault
                emit(GPUEvent(type: .firmware, code: GPUEvent.codeFirmwareFault, value: UInt64(fault.rawValue) << 32 | UInt64(off)))
            } else {
                r.commandsRun += 1
                if op == FirmwareOp.irq.rawValue { r.irqsRaised += 1 }
            }
            // A failed command still completes: the ring moves past it.
            completedSeq = seq
            off = (off + UInt32(Ring.commandSize)) & (size - 1)
        }
        readOffset = off
        pvz_store_release_u32(base + Ring.readOffsetField, readOffset)
        pvz_store_release_u64(base + Ring.completedSeqField, completedSeq)
        wrote(Ring.readOffsetField, Ring.completedSeqField + 8 - Ring.readOffsetField)
        r.readOffset = readOffset
        r.completedSeq = completedSeq
        if !r.preempted { emit(GPUEvent(type: .firmware, code: GPUEvent.codeKickDone, value: completedSeq)) }
        return r
    }

    private mutating func execute(op: UInt32, flags: UInt32, seq: UInt64, arg0: UInt64, arg1: UInt64,
                                  base: UnsafeMutableRawPointer, heapSize: Int, ringEnd: Int, clockNs: UInt64,
                                  wrote: (Int, Int) -> Void, emit: (GPUEvent) -> Void) -> FirmwareFault? {
        guard let op = FirmwareOp(rawValue: op) else { return .unknownOp }
        guard flags == 0 else { return .reservedFlags }
        switch op {
        case .nop:
            return nil
        case .fence, .timestamp:
            if let f = Self.checkTarget(arg0, heapSize: heapSize, ringEnd: ringEnd) { return f }
            let value: UInt64
            if op == .fence {
                value = arg1
            } else {
                value = max(clockNs, lastTimestamp &+ 1)
                lastTimestamp = value
            }
            pvz_store_release_u64(base + Int(arg0), value)
            wrote(Int(arg0), 8)
            return nil
        case .irq:
            guard arg0 <= UInt64(UInt32.max) else { return .irqCodeTooLarge }
            emit(GPUEvent(type: .firmware, code: UInt32(arg0), value: seq))
            return nil
        }
    }

    /// A FENCE/TIMESTAMP target: 8-byte aligned, all 8 bytes inside the heap,
    /// and outside the ring fields (first 0x40 bytes) and the command area.
    static func checkTarget(_ t: UInt64, heapSize: Int, ringEnd: Int) -> FirmwareFault? {
        guard t <= UInt64(heapSize), UInt64(heapSize) - t >= 8 else { return .targetOutsideHeap }
        guard t & 7 == 0 else { return .targetUnaligned }
        if t < UInt64(Ring.reservedHeaderBytes) { return .targetInRingArea }
        if t >= UInt64(Ring.headerSize), t < UInt64(ringEnd) { return .targetInRingArea }
        return nil
    }

    /// What a migration carries of the firmware (its own copies, not the heap's).
    public struct Snapshot: Equatable, Sendable, Codable {
        public var readOffset: UInt32
        public var completedSeq: UInt64
        public var ringSize: UInt32
        public var lastTimestamp: UInt64
    }

    public var snapshot: Snapshot {
        Snapshot(readOffset: readOffset, completedSeq: completedSeq, ringSize: ringSize, lastTimestamp: lastTimestamp)
    }

    /// A migrated firmware: a ring size that is not a power of two of at
    /// least one command, or a read offset outside it, is refused.
    public mutating func restore(_ m: Snapshot) -> Bool {
        if m.ringSize != 0 {
            guard m.ringSize >= UInt32(Ring.commandSize), m.ringSize & (m.ringSize - 1) == 0,
                  m.readOffset < m.ringSize, m.readOffset % UInt32(Ring.commandSize) == 0 else { return false }
        } else if m.readOffset != 0 {
            return false
        }
        readOffset = m.readOffset
        completedSeq = m.completedSeq
        ringSize = m.ringSize
        lastTimestamp = m.lastTimestamp
        return true
    }

    /// Forget the ring (unmap, offline, device reset).
    public mutating func reset() {
        readOffset = 0
        completedSeq = 0
        ringSize = 0
    }
}
