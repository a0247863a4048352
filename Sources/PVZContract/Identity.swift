// The device contract's identity (/work/shared/spec/virtio-pvz.md sections 1–3):
// one definition of every number the daemon, pvzctl, the bench, the device
// tree and the guest's C headers must agree on. Tests/PVZContractTests checks
// the guest's virtio_pvz_uapi.h and pvz_regs.h against this module.

/// virtio-pvz as a virtio device.
public enum VirtioPVZ {
    /// The provisional virtio device ID (not OASIS-assigned): QEMU's
    /// `virtio-id` property and the guest's VIRTIO_ID_PVZ default to it.
    public static let defaultDeviceID: UInt32 = 55
    /// Contract version (config space `version`).
    public static let version: UInt32 = 1
    /// Queue size the front-end uses unless told otherwise.
    public static let defaultQueueSize: UInt16 = 64
    /// Largest queue the daemon accepts.
    public static let maxQueueSize: UInt16 = 1024
    /// OSIDs a daemon serves by default, the host's 0 included (the DDK's RGX_NUM_OS_SUPPORTED).
    public static let defaultMaxOSIDs: UInt32 = 8
    /// Most OSIDs a daemon can be configured for (`--max-osids`), host included:
    /// guest OSIDs are 1..<maxOSIDs everywhere (daemon, device tree, pvzctl).
    public static let maxOSIDsLimit: UInt32 = 16
    /// Emulated core B.V.N.C: Rogue 36.52.104.182, a GE8300-class core.
    public static let defaultBVNC: UInt64 = 36 << 48 | 52 << 32 | 104 << 16 | 182
    /// Default firmware heap size (the DDK's RGX_FIRMWARE_RAW_HEAP_SIZE).
    public static let defaultFirmwareHeapSize: UInt64 = 32 << 20
}

/// The three virtqueues, by index (spec 1).
public enum PVZQueue: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// Guest → host PVZ calls (spec 5).
    case hypercallq = 0
    /// Host → guest events: the GPU's interrupt line (spec 6).
    case eventq = 1
    /// Firmware doorbells (spec 7).
    case kickq = 2

    public var description: String {
        switch self {
        case .hypercallq: return "hypercallq"
        case .eventq: return "eventq"
        case .kickq: return "kickq"
        }
    }
}

/// Device feature bits (spec 2).
public enum PVZFeature {
    /// VIRTIO_PVZ_F_HOST_HEAPS: CREATE_DEV_PHYS_HEAPS is served.
    public static let hostHeaps: UInt64 = 1 << 0
    /// VIRTIO_PVZ_F_FIRMWARE: the emulated firmware runs the command ring.
    public static let firmware: UInt64 = 1 << 1
}
