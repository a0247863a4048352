// Hypercall enumerations (spec 5). Values are the DDK's (PVZ_BRIDGE_*,
// PVRSRV_DEVICE_PHYS_HEAP, PHYS_HEAP_TYPE) so a DDK-based guest needs no translation.

/// The hypercall function number in the request header (spec section 5).
public enum PVZFunction: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case createDevConfig = 1
    case destroyDevConfig = 2
    case createDevPhysHeaps = 3
    case destroyDevPhysHeaps = 4
    case mapDevPhysHeap = 5
    case unmapDevPhysHeap = 6
    case getDevPhysHeapOrigin = 7
    case getDevPhysHeapAddrSize = 8
    case readReg = 9
    case writeReg = 10

    /// Bytes of input after the 16-byte request header.
    public var inputSize: Int {
        switch self {
        case .mapDevPhysHeap: return MapDevPhysHeapInput.size
        case .getDevPhysHeapOrigin, .getDevPhysHeapAddrSize: return HeapQueryInput.size
        case .readReg: return ReadRegInput.size
        case .writeReg: return WriteRegInput.size
        default: return 0
        }
    }

    /// Bytes of output after the 16-byte response header.
    public var outputSize: Int {
        switch self {
        case .createDevConfig: return CreateDevConfigOutput.size
        case .createDevPhysHeaps: return CreateDevPhysHeapsOutput.size
        case .getDevPhysHeapOrigin: return HeapOriginOutput.size
        case .getDevPhysHeapAddrSize: return HeapAddrSizeOutput.size
        case .readReg: return ReadRegOutput.size
        default: return 0
        }
    }

    public var name: String {
        switch self {
        case .createDevConfig: return "CREATE_DEV_CONFIG"
        case .destroyDevConfig: return "DESTROY_DEV_CONFIG"
        case .createDevPhysHeaps: return "CREATE_DEV_PHYS_HEAPS"
        case .destroyDevPhysHeaps: return "DESTROY_DEV_PHYS_HEAPS"
        case .mapDevPhysHeap: return "MAP_DEV_PHYS_HEAP"
        case .unmapDevPhysHeap: return "UNMAP_DEV_PHYS_HEAP"
        case .getDevPhysHeapOrigin: return "GET_DEV_PHYS_HEAP_ORIGIN"
        case .getDevPhysHeapAddrSize: return "GET_DEV_PHYS_HEAP_ADDR_SIZE"
        case .readReg: return "READ_REG"
        case .writeReg: return "WRITE_REG"
        }
    }
    public var description: String { name }
}

/// Response status (spec 5.1). Stable wire values.
public enum PVZStatus: UInt32, Sendable, CaseIterable, Error, CustomStringConvertible {
    case ok = 0
    case notImplemented = 1
    case invalidParams = 2
    case outOfMemory = 3
    case invalidOSID = 4
    case alreadyExists = 5
    case notFound = 6
    case addressOutOfRange = 7
    case malformedRequest = 8
    case vmOffline = 9
    case invalidPVZConfig = 10

    public var name: String {
        switch self {
        case .ok: return "OK"
        case .notImplemented: return "NOT_IMPLEMENTED"
        case .invalidParams: return "INVALID_PARAMS"
        case .outOfMemory: return "OUT_OF_MEMORY"
        case .invalidOSID: return "INVALID_OSID"
        case .alreadyExists: return "ALREADY_EXISTS"
        case .notFound: return "NOT_FOUND"
        case .addressOutOfRange: return "ADDRESS_OUT_OF_RANGE"
        case .malformedRequest: return "MALFORMED_REQUEST"
        case .vmOffline: return "VM_OFFLINE"
        case .invalidPVZConfig: return "INVALID_PVZ_CONFIG"
        }
    }

    /// The DDK's PVRSRV_ERROR name for this status (what a DDK guest's
    /// PVZ connection returns to its caller).
    public var pvrsrvError: String {
        switch self {
        case .ok: return "PVRSRV_OK"
        case .notImplemented: return "PVRSRV_ERROR_NOT_IMPLEMENTED"
        case .invalidParams: return "PVRSRV_ERROR_INVALID_PARAMS"
        case .outOfMemory: return "PVRSRV_ERROR_OUT_OF_MEMORY"
        case .invalidOSID: return "PVRSRV_ERROR_INVALID_OSID"
        case .alreadyExists: return "PVRSRV_ERROR_ALREADY_EXISTS"
        case .notFound: return "PVRSRV_ERROR_NOT_FOUND"
        case .addressOutOfRange: return "PVRSRV_ERROR_DEVICEMEM_ADDRESS_OUT_OF_RANGE"
        case .malformedRequest: return "PVRSRV_ERROR_INVALID_REQUEST"
        case .vmOffline: return "PVRSRV_ERROR_PVZ_OSID_IS_OFFLINE"
        case .invalidPVZConfig: return "PVRSRV_ERROR_INVALID_PVZ_CONFIG"
        }
    }

    /// Reverse mapping, for a guest-side or control-plane caller holding a
    /// PVRSRV_ERROR name. nil for names outside the contract.
    public init?(pvrsrvError name: String) {
        guard let s = PVZStatus.allCases.first(where: { $0.pvrsrvError == name }) else { return nil }
        self = s
    }

    public var description: String { name }
}

/// PVRSRV_DEVICE_PHYS_HEAP.
public enum PhysHeap: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case gpuLocal = 0
    case cpuLocal = 1
    case fwLocal = 2
    case fwGuest = 3
    case external = 4
    public var description: String {
        switch self {
        case .gpuLocal: return "GPU_LOCAL"
        case .cpuLocal: return "CPU_LOCAL"
        case .fwLocal: return "FW_LOCAL"
        case .fwGuest: return "FW_GUEST"
        case .external: return "EXTERNAL"
        }
    }
}

/// PVRSRV_DEVICE_PHYS_HEAP_ORIGIN: who allocates the memory behind a heap.
public enum HeapOrigin: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case host = 0
    case guest = 1
    public var description: String { self == .host ? "HOST" : "GUEST" }
}

/// PHYS_HEAP_TYPE.
public enum PhysHeapType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case uma = 1
    case lma = 2
    case dma = 3
    public var description: String {
        switch self {
        case .uma: return "UMA"
        case .lma: return "LMA"
        case .dma: return "DMA"
        }
    }
}
