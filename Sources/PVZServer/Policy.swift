import PVZContract
// Per-guest configuration: the host's sConfigFuncTab answers (heap origins,
// heap type, sizes) and the guest's carve-out. Decided by the VM manager's
// configuration, never by the guest.

/// The host's own layout choices (the contract's numbers are PVZContract's).
public enum PVZLayout {
    public static let pageSize: UInt64 = 0x1000
    public static let defaultGpuHeapSize: UInt64 = 16 << 20
    /// Each OSID owns a 2^36-byte window of GPU PA space: the lower half maps
    /// its carve-out, the upper half maps guest-origin heaps.
    public static let paWindowShift: UInt64 = 36
    public static let paGuestHalf: UInt64 = 1 << 35
    /// Largest carve-out or guest-origin heap that fits its half-window.
    public static let maxRegionSize: UInt64 = 1 << 35
}

public struct GuestPolicy: Equatable, Sendable {
    /// FW_LOCAL origin: GUEST means the guest maps its own RAM (MAP_DEV_PHYS_HEAP).
    public var fwHeapOrigin: HeapOrigin = .guest
    /// GPU_LOCAL origin.
    public var gpuHeapOrigin: HeapOrigin = .host
    public var heapType: PhysHeapType = .uma
    /// VIRTIO_PVZ_F_HOST_HEAPS: CREATE_DEV_PHYS_HEAPS is served.
    public var hostHeapsAllowed: Bool = true
    public var fwHeapSize: UInt64 = VirtioPVZ.defaultFirmwareHeapSize
    public var gpuHeapSize: UInt64 = PVZLayout.defaultGpuHeapSize
    /// Interrupt number written into the guest's device tree and CREATE_DEV_CONFIG.
    public var irq: UInt32 = 0
    public init() {}
    public init(fwHeapOrigin: HeapOrigin = .guest, gpuHeapOrigin: HeapOrigin = .host,
                heapType: PhysHeapType = .uma, hostHeapsAllowed: Bool = true,
                fwHeapSize: UInt64 = VirtioPVZ.defaultFirmwareHeapSize,
                gpuHeapSize: UInt64 = PVZLayout.defaultGpuHeapSize, irq: UInt32 = 0) {
        self.fwHeapOrigin = fwHeapOrigin; self.gpuHeapOrigin = gpuHeapOrigin
        self.heapType = heapType; self.hostHeapsAllowed = hostHeapsAllowed
        self.fwHeapSize = fwHeapSize; self.gpuHeapSize = gpuHeapSize; self.irq = irq
    }

    /// Origin of a heap under this policy. Only FW_LOCAL and GPU_LOCAL are
    /// backed here: CPU_LOCAL and EXTERNAL are always the guest's own OS
    /// memory (GUEST, UMA 0/0), FW_GUEST follows FW_LOCAL.
    public func origin(of heap: PhysHeap) -> HeapOrigin {
        switch heap {
        case .fwLocal, .fwGuest: return fwHeapOrigin
        case .gpuLocal: return gpuHeapOrigin
        case .cpuLocal, .external: return .guest
        }
    }

    /// Bytes of carve-out the host-origin heaps of this policy take.
    public var hostHeapBytes: UInt64 {
        guard hostHeapsAllowed else { return 0 }
        return (fwHeapOrigin == .host ? fwHeapSize : 0) + (gpuHeapOrigin == .host ? gpuHeapSize : 0)
    }
}

public struct GuestSpec: Equatable, Sendable {
    public var osid: OSID
    public var carveout: IPARange
    public var policy: GuestPolicy
    public init(osid: OSID, carveout: IPARange, policy: GuestPolicy = GuestPolicy()) {
        self.osid = osid; self.carveout = carveout; self.policy = policy
    }
}

/// Why a server configuration was refused. Each case carries the value and the limit.
public enum PVZConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    case maxOSIDsOutOfRange(UInt32, limit: UInt32)
    case osidOutOfRange(OSID, maxOSIDs: UInt32)
    case duplicateOSID(OSID)
    case carveoutUnaligned(OSID, IPARange, alignment: UInt64)
    case carveoutTooSmall(OSID, size: UInt64, needed: UInt64)
    case carveoutTooLarge(OSID, size: UInt64, limit: UInt64)
    case heapSizeInvalid(OSID, PhysHeap, size: UInt64, reason: String)
    case lmaNeedsHostGPUHeap(OSID)

    public var description: String {
        switch self {
        case let .maxOSIDsOutOfRange(v, limit):
            return "maxOSIDs \(v) out of range: must be 2...\(limit)"
        case let .osidOutOfRange(o, max):
            return "\(o) out of range: guests use 1..<\(max) (0 is the host)"
        case let .duplicateOSID(o):
            return "\(o) configured twice: OSIDs must be unique"
        case let .carveoutUnaligned(o, r, a):
            return "\(o) carve-out \(r) is not aligned: start and size must be multiples of 0x\(String(a, radix: 16))"
        case let .carveoutTooSmall(o, size, needed):
            return "\(o) carve-out size 0x\(String(size, radix: 16)) too small: needs 0x\(String(needed, radix: 16)) (64 KiB register bank + host-origin heaps)"
        case let .carveoutTooLarge(o, size, limit):
            return "\(o) carve-out size 0x\(String(size, radix: 16)) exceeds its PA window of 0x\(String(limit, radix: 16))"
        case let .heapSizeInvalid(o, h, size, reason):
            return "\(o) \(h) heap size 0x\(String(size, radix: 16)) invalid: \(reason)"
        case let .lmaNeedsHostGPUHeap(o):
            return "\(o) heap type LMA needs GPU_LOCAL origin HOST (local memory is allocated by the host)"
        }
    }
}

/// Why a VM-manager call (sVmmFuncTab) was refused.
public enum PVZError: Error, Equatable, Sendable, CustomStringConvertible {
    /// OnVmOnline of an online OSID (PVRSRV_ERROR_PVZ_OSID_IS_ONLINE).
    case osidIsOnline(OSID)
    /// OnVmOffline of an offline OSID (PVRSRV_ERROR_PVZ_OSID_IS_OFFLINE).
    case osidIsOffline(OSID)
    /// The OSID is not a configured guest.
    case invalidOSID(OSID, maxOSIDs: UInt32)
    case unknownConfParam(UInt32, validRange: ClosedRange<UInt32>)
    /// PRIO_OSIDn for an n at or above maxOSIDs.
    case priorityOSIDOutOfRange(OSID, maxOSIDs: UInt32)
    /// OnVmOffline: the firmware did not go idle in time; nothing was freed.
    case firmwareNotIdle(OSID)
    /// A VMMConfigure parameter name no ABI knows.
    case unknownConfParamName(String, abi: DDKABI)
    /// A parameter that exists, but not in the ABI this host speaks.
    case confParamNotInABI(String, abi: DDKABI)
    /// A value the DDK refuses for that parameter.
    case confParamValue(String, UInt32, reason: String)
    /// OnVmOnline with a priority under an ABI whose OnVmOnline takes none.
    case onlinePriorityNotInABI(OSID, abi: DDKABI)

    public var description: String {
        switch self {
        case let .osidIsOnline(o):
            return "PVZ_OSID_IS_ONLINE: \(o) is already online (OnVmOffline it first)"
        case let .osidIsOffline(o):
            return "PVZ_OSID_IS_OFFLINE: \(o) is not online"
        case let .invalidOSID(o, max):
            return "INVALID_OSID: \(o) is not a configured guest (guests are 1..<\(max), each from the configuration)"
        case let .unknownConfParam(v, r):
            return "unknown VMM_CONF_PARAM \(v): valid values are \(r.lowerBound)...\(r.upperBound) (PRIO_OSID0..7, ISOL_THRES, HCS_DEADLINE)"
        case let .priorityOSIDOutOfRange(o, max):
            return "priority for \(o) refused: this server has OSIDs 0..<\(max)"
        case let .firmwareNotIdle(o):
            return "\(o) firmware did not go idle before the timeout: heaps kept, VM still online"
        case let .unknownConfParamName(n, abi):
            return "unknown VMMConfigure parameter \"\(n)\": \(abi) has \(abi.parameterNames.joined(separator: ", "))"
        case let .confParamNotInABI(n, abi):
            return "\(n) is not a VMMConfigure parameter of \(abi) (it has \(abi.parameterNames.joined(separator: ", ")))"
        case let .confParamValue(n, v, reason):
            return "\(n) = \(v) refused: \(reason)"
        case let .onlinePriorityNotInABI(o, abi):
            return "OnVmOnline(\(o)) takes no priority in \(abi): set VMM_CONF_PRIO_\(abi == .v23 ? "DRV" : "OSID")\(o.rawValue) with configure instead"
        }
    }
}
