import CPVZShim
import PVZContract
import PVZServer

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
            emit(GPUEvent(type: .firmware, code: GPUEvent.codeFirmwareFault, value: UInt64(f.rawValue) << 32 | (detail & 0xFFFF_FFFF)))
            return r
        }
        guard let base = heap.baseAddress, heap.count >= FirmwareRing.headerSize + FirmwareRing.commandSize else {
            return failKick(.heapTooSmall, UInt64(heap.count))
        }
        guard UInt(bitPattern: base) & 7 == 0 else { return failKick(.heapMisaligned, UInt64(UInt(bitPattern: base) & 7)) }
        let magic = pvz_load_acquire_u32(base + FirmwareRing.magicOffset)
        guard magic == FirmwareRing.magic else { return failKick(.badMagic, UInt64(magic)) }
        let size = pvz_load_acquire_u32(base + FirmwareRing.sizeOffset)
        guard size >= UInt32(FirmwareRing.commandSize), size & (size - 1) == 0 else {
            return failKick(.ringSizeNotPowerOfTwo, UInt64(size))
        }
        guard Int(size) <= heap.count - FirmwareRing.headerSize else { return failKick(.ringTooLarge, UInt64(size)) }
        guard writeOffset < size else { return failKick(.writeOffsetOutOfRing, UInt64(writeOffset)) }
        guard writeOffset % UInt32(FirmwareRing.commandSize) == 0 else { return failKick(.writeOffsetUnaligned, UInt64(writeOffset)) }
        if size != ringSize {
            if ringSize == 0 {
                // First kick since attach: resume from the firmware's own fields in
                // the heap (they survive a daemon restart or a reconnect; a fresh
                // ring has them at 0).
                let persisted = pvz_load_acquire_u32(base + FirmwareRing.readOffsetField)
                readOffset = persisted < size && persisted % UInt32(FirmwareRing.commandSize) == 0 ? persisted : 0
                completedSeq = pvz_load_acquire_u64(base + FirmwareRing.completedSeqField)
            } else {
                // The guest re-initialised the ring with another size: start at its beginning.
                readOffset = 0
            }
            ringSize = size
        }

        let ringEnd = FirmwareRing.headerSize + Int(size)
        var off = readOffset
        while off != writeOffset {
            if r.commandsRun + r.faults > 0, deadline() {
                r.preempted = true
                break
            }
            let cmd = base + FirmwareRing.headerSize + Int(off)
            let op = pvz_load_acquire_u32(cmd)
            let flags = pvz_load_acquire_u32(cmd + 4)
            let seq = pvz_load_acquire_u64(cmd + 8)
            let arg0 = pvz_load_acquire_u64(cmd + 16)
            let arg1 = pvz_load_acquire_u64(cmd + 24)
            if let fault = execute(op: op, flags: flags, seq: seq, arg0: arg0, arg1: arg1, base: base,
                                   heapSize: heap.count, ringEnd: ringEnd, clockNs: clockNs, wrote: wrote, emit: emit) {
                r.faults += 1
                emit(GPUEvent(type: .firmware, code: GPUEvent.codeFirmwareFault, value: UInt64(fault.rawValue) << 32 | UInt64(off)))
            } else {
                r.commandsRun += 1
                if op == FirmwareOp.irq.rawValue { r.irqsRaised += 1 }
            }
            // A failed command still completes: the ring moves past it.
            completedSeq = seq
            off = (off + UInt32(FirmwareRing.commandSize)) & (size - 1)
        }
        readOffset = off
        pvz_store_release_u32(base + FirmwareRing.readOffsetField, readOffset)
        pvz_store_release_u64(base + FirmwareRing.completedSeqField, completedSeq)
        wrote(FirmwareRing.readOffsetField, FirmwareRing.completedSeqField + 8 - FirmwareRing.readOffsetField)
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
        if t < UInt64(FirmwareRing.reservedHeaderBytes) { return .targetInRingArea }
        if t >= UInt64(FirmwareRing.headerSize), t < UInt64(ringEnd) { return .targetInRingArea }
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
            guard m.ringSize >= UInt32(FirmwareRing.commandSize), m.ringSize & (m.ringSize - 1) == 0,
                  m.readOffset < m.ringSize, m.readOffset % UInt32(FirmwareRing.commandSize) == 0 else { return false }
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
