/// The 64-byte virtio-pvz config space (spec 4). Read-only to the guest;
/// the daemon rebuilds it from its state on every GET_CONFIG.
public struct PVZConfigSpace: Equatable, Sendable {
    public static let size = 64
    public static let magic: UInt32 = 0x315A_5650  // "PVZ1"

    /// Byte offset of each field.
    public enum Offset {
        public static let magic = 0x00
        public static let version = 0x04
        public static let osid = 0x08
        public static let status = 0x0C
        public static let bvnc = 0x10
        public static let irq = 0x18
        public static let priority = 0x1C
        public static let regsIPA = 0x20
        public static let regsSize = 0x28
        public static let maxOSIDs = 0x2C
        public static let fwHeapIPA = 0x30
        public static let fwHeapSize = 0x38
    }

    /// `status` bits (also bits 0–3 of the FW_STATUS register).
    public struct Status: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let online = Status(rawValue: 1 << 0)
        public static let firmwareRunning = Status(rawValue: 1 << 1)
        public static let firmwareHeapMapped = Status(rawValue: 1 << 2)
        public static let devConfigCreated = Status(rawValue: 1 << 3)
        public static let known: Status = [.online, .firmwareRunning, .firmwareHeapMapped, .devConfigCreated]
    }

    public var osid: OSID
    public var status: Status
    public var bvnc: UInt64
    public var irq: UInt32
    public var priority: UInt32
    public var regsIPA: IPA
    public var regsSize: UInt32
    public var maxOSIDs: UInt32
    /// The mapped firmware heap; IPA 0 and size 0 when none.
    public var fwHeapIPA: IPA
    public var fwHeapSize: UInt64

    public init(osid: OSID, status: Status, bvnc: UInt64, irq: UInt32, priority: UInt32, regsIPA: IPA,
                regsSize: UInt32, maxOSIDs: UInt32, fwHeapIPA: IPA, fwHeapSize: UInt64) {
        self.osid = osid; self.status = status; self.bvnc = bvnc; self.irq = irq; self.priority = priority
        self.regsIPA = regsIPA; self.regsSize = regsSize; self.maxOSIDs = maxOSIDs
        self.fwHeapIPA = fwHeapIPA; self.fwHeapSize = fwHeapSize
    }

    /// Writes the 64 bytes; false (nothing written) when `b` is shorter.
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE32(Offset.magic, Self.magic)
        b.storeLE32(Offset.version, VirtioPVZ.version)
        b.storeLE32(Offset.osid, osid.rawValue)
        b.storeLE32(Offset.status, status.rawValue)
        b.storeLE64(Offset.bvnc, bvnc)
        b.storeLE32(Offset.irq, irq)
        b.storeLE32(Offset.priority, priority)
        b.storeLE64(Offset.regsIPA, regsIPA.rawValue)
        b.storeLE32(Offset.regsSize, regsSize)
        b.storeLE32(Offset.maxOSIDs, maxOSIDs)
        b.storeLE64(Offset.fwHeapIPA, fwHeapIPA.rawValue)
        b.storeLE64(Offset.fwHeapSize, fwHeapSize)
        return true
    }

    /// nil when shorter than 64 bytes or the magic or version is not this contract's.
    public static func decode(_ b: UnsafeRawBufferPointer) -> PVZConfigSpace? {
        guard b.count >= size, b.loadLE32(Offset.magic) == magic, b.loadLE32(Offset.version) == VirtioPVZ.version else { return nil }
        return PVZConfigSpace(osid: OSID(b.loadLE32(Offset.osid)), status: Status(rawValue: b.loadLE32(Offset.status)),
                              bvnc: b.loadLE64(Offset.bvnc), irq: b.loadLE32(Offset.irq), priority: b.loadLE32(Offset.priority),
                              regsIPA: IPA(b.loadLE64(Offset.regsIPA)), regsSize: b.loadLE32(Offset.regsSize),
                              maxOSIDs: b.loadLE32(Offset.maxOSIDs), fwHeapIPA: IPA(b.loadLE64(Offset.fwHeapIPA)),
                              fwHeapSize: b.loadLE64(Offset.fwHeapSize))
    }
}
