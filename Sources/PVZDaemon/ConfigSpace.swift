import PVZServer
import VhostUser

/// The 64-byte virtio-pvz config space (virtio-pvz.md section 4). Read-only
/// to the guest; rebuilt from the server's state on every GET_CONFIG.
public struct PVZConfigSpace: Equatable, Sendable {
    public static let size = 64
    public static let magic: UInt32 = 0x315A_5650  // "PVZ1"
    public static let version: UInt32 = 1

    public struct Status: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let online = Status(rawValue: 1 << 0)
        public static let firmwareRunning = Status(rawValue: 1 << 1)
        public static let firmwareHeapMapped = Status(rawValue: 1 << 2)
        public static let devConfigCreated = Status(rawValue: 1 << 3)
    }

    public var osid: UInt32
    public var status: Status
    public var bvnc: UInt64
    public var irq: UInt32
    public var priority: UInt32
    public var regsIPA: UInt64
    public var regsSize: UInt32
    public var maxOSIDs: UInt32
    public var fwHeapIPA: UInt64
    public var fwHeapSize: UInt64

    public init(osid: UInt32, status: Status, bvnc: UInt64, irq: UInt32, priority: UInt32, regsIPA: UInt64,
                regsSize: UInt32, maxOSIDs: UInt32, fwHeapIPA: UInt64, fwHeapSize: UInt64) {
        self.osid = osid; self.status = status; self.bvnc = bvnc; self.irq = irq; self.priority = priority
        self.regsIPA = regsIPA; self.regsSize = regsSize; self.maxOSIDs = maxOSIDs
        self.fwHeapIPA = fwHeapIPA; self.fwHeapSize = fwHeapSize
    }

    public func encode(into b: UnsafeMutableRawBufferPointer) {
        precondition(b.count >= Self.size)
        b.putLE32(0x00, Self.magic)
        b.putLE32(0x04, Self.version)
        b.putLE32(0x08, osid)
        b.putLE32(0x0C, status.rawValue)
        b.putLE64(0x10, bvnc)
        b.putLE32(0x18, irq)
        b.putLE32(0x1C, priority)
        b.putLE64(0x20, regsIPA)
        b.putLE32(0x28, regsSize)
        b.putLE32(0x2C, maxOSIDs)
        b.putLE64(0x30, fwHeapIPA)
        b.putLE64(0x38, fwHeapSize)
    }

    public static func decode(_ b: UnsafeRawBufferPointer) -> PVZConfigSpace? {
        guard b.count >= size, b.le32(0) == magic, b.le32(4) == version else { return nil }
        return PVZConfigSpace(osid: b.le32(8), status: Status(rawValue: b.le32(0x0C)), bvnc: b.le64(0x10),
                              irq: b.le32(0x18), priority: b.le32(0x1C), regsIPA: b.le64(0x20),
                              regsSize: b.le32(0x28), maxOSIDs: b.le32(0x2C), fwHeapIPA: b.le64(0x30),
                              fwHeapSize: b.le64(0x38))
    }
}

/// Device feature bits of virtio-pvz (section 2).
public enum PVZFeature {
    public static let hostHeaps: UInt64 = 1 << 0
    public static let firmware: UInt64 = 1 << 1
}

/// The virtio device ID (provisional).
public enum PVZIdentity {
    public static let defaultVirtioID: UInt32 = 55
    public static let queueNames = ["hypercallq", "eventq", "kickq"]
    public static let hypercallq = 0, eventq = 1, kickq = 2
    /// Emulated core B.V.N.C (a Rogue-class 4.40.2.51 by default).
    public static let defaultBVNC: UInt64 = 4 << 48 | 40 << 32 | 2 << 16 | 51
}
