/// One eventq element (spec 6): 16 bytes on the wire, the guest's interrupt.
public struct GPUEvent: Equatable, Sendable {
    public enum Kind: UInt32, Sendable {
        case firmware = 1
        case vmManager = 2
        /// The IRQ_STATUS / IRQ_ENABLE bit of this kind.
        public var irqBit: UInt32 { self == .firmware ? PVZRegister.irqFirmware : PVZRegister.irqVMManager }
    }
    public static let size = 16
    public enum Offset { public static let type = 0, code = 4, value = 8 }
    /// Firmware fault: a bad command or a bad ring (spec 7).
    public static let codeFirmwareFault: UInt32 = 0xE000_0001
    /// Firmware: a kick was served; value = completed_seq.
    public static let codeKickDone: UInt32 = 0
    /// VM manager: the OSID went offline / a parameter changed.
    public static let codeVmOffline: UInt32 = 1
    public static let codeVmmConfigure: UInt32 = 2

    public var type: Kind
    public var code: UInt32
    public var value: UInt64
    public init(type: Kind, code: UInt32, value: UInt64) { self.type = type; self.code = code; self.value = value }

    /// type u32 @0, code u32 @4, value u64 @8, little-endian.
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE32(Offset.type, type.rawValue)
        b.storeLE32(Offset.code, code)
        b.storeLE64(Offset.value, value)
        return true
    }

    public static func decode(from b: UnsafeRawBufferPointer) -> GPUEvent? {
        guard b.count >= size, let kind = Kind(rawValue: b.loadLE32(Offset.type)) else { return nil }
        return GPUEvent(type: kind, code: b.loadLE32(Offset.code), value: b.loadLE64(Offset.value))
    }
}

