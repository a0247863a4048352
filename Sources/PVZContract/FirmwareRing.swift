// The firmware heap's command ring and the kickq doorbell (spec 7).

/// Layout of the kernel command ring at the start of a firmware heap.
public enum FirmwareRing {
    public static let magic: UInt32 = 0x474E_4952   // "RING"
    public static let magicOffset = 0x000
    public static let sizeOffset = 0x004
    public static let writeOffsetField = 0x008
    public static let readOffsetField = 0x00C
    public static let completedSeqField = 0x010
    /// The header page; commands start after it.
    public static let headerSize = 0x1000
    public static let commandSize = 32
    /// A command: op u32 @0, flags u32 @4, seq u64 @8, arg0 u64 @16, arg1 u64 @24.
    public enum CommandOffset { public static let op = 0, flags = 4, seq = 8, arg0 = 16, arg1 = 24 }
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
    /// The OSID already had its bound of kicks queued: this one
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

/// The kickq buffer (spec 7): write_offset u32 @0, flags u32 @4 (reserved, 0).
public struct KickRequest: Equatable, Sendable {
    public static let size = 8
    public enum Offset { public static let writeOffset = 0, flags = 4 }
    public var writeOffset: UInt32
    public var flags: UInt32
    public init(writeOffset: UInt32, flags: UInt32 = 0) { self.writeOffset = writeOffset; self.flags = flags }
    /// nil unless exactly 8 bytes.
    public static func decode(from b: UnsafeRawBufferPointer) -> KickRequest? {
        guard b.count == size else { return nil }
        return KickRequest(writeOffset: b.loadLE32(Offset.writeOffset), flags: b.loadLE32(Offset.flags))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE32(Offset.writeOffset, writeOffset)
        b.storeLE32(Offset.flags, flags)
        return true
    }
}
