// Hypercall wire structs (spec section 5). Little-endian, explicit offsets, no
// padding guessed by the compiler, no allocation: the glue hands us its own
// copy of the guest's bytes, so decode reads each field once at a fixed place.
// decode returns nil when the buffer is too short; encode returns false (and
// writes nothing) when the destination is too short.

@inline(__always)
func le32(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
    UInt32(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt32.self))
}
@inline(__always)
func le64(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt64 {
    UInt64(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt64.self))
}
@inline(__always)
func put32(_ b: UnsafeMutableRawBufferPointer, _ at: Int, _ v: UInt32) {
    b.storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt32.self)
}
@inline(__always)
func put64(_ b: UnsafeMutableRawBufferPointer, _ at: Int, _ v: UInt64) {
    b.storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt64.self)
}

/// Request header: function, func_id, dev_id, request_id (4 bytes each).
public struct HypercallRequestHeader: Equatable, Sendable {
    public static let size = 16
    /// Raw function number: kept raw so an unknown one can still be echoed.
    public var function: UInt32
    public var funcID: UInt32
    public var devID: UInt32
    public var requestID: UInt32
    public init(function: UInt32, funcID: UInt32 = 0, devID: UInt32 = 0, requestID: UInt32 = 0) {
        self.function = function; self.funcID = funcID; self.devID = devID; self.requestID = requestID
    }
    public static func decode(from b: UnsafeRawBufferPointer) -> HypercallRequestHeader? {
        guard b.count >= size else { return nil }
        return .init(function: le32(b, 0), funcID: le32(b, 4), devID: le32(b, 8), requestID: le32(b, 12))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        put32(b, 0, function); put32(b, 4, funcID); put32(b, 8, devID); put32(b, 12, requestID)
        return true
    }
}

/// Response header: status, function (echoed), request_id (echoed), reserved 0.
public struct HypercallResponseHeader: Equatable, Sendable {
    public static let size = 16
    public var status: UInt32
    public var function: UInt32
    public var requestID: UInt32
    public var reserved: UInt32
    public init(status: UInt32, function: UInt32, requestID: UInt32, reserved: UInt32 = 0) {
        self.status = status; self.function = function; self.requestID = requestID; self.reserved = reserved
    }
    public static func decode(from b: UnsafeRawBufferPointer) -> HypercallResponseHeader? {
        guard b.count >= size else { return nil }
        return .init(status: le32(b, 0), function: le32(b, 4), requestID: le32(b, 8), reserved: le32(b, 12))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        put32(b, 0, status); put32(b, 4, function); put32(b, 8, requestID); put32(b, 12, reserved)
        return true
    }
}

// MARK: inputs (offsets relative to the end of the request header)

/// MAP_DEV_PHYS_HEAP input: size u64 @0, paddr u64 @8 (an IPA of the guest).
public struct MapDevPhysHeapInput: Equatable, Sendable {
    public static let size = 16
    public var size: UInt64
    public var paddr: UInt64
    public init(size: UInt64, paddr: UInt64) { self.size = size; self.paddr = paddr }
    public static func decode(from b: UnsafeRawBufferPointer) -> MapDevPhysHeapInput? {
        guard b.count >= Self.size else { return nil }
        return .init(size: le64(b, 0), paddr: le64(b, 8))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        put64(b, 0, size); put64(b, 8, paddr)
        return true
    }
}

/// GET_DEV_PHYS_HEAP_ORIGIN / GET_DEV_PHYS_HEAP_ADDR_SIZE input: heap u32 @0.
public struct HeapQueryInput: Equatable, Sendable {
    public static let size = 4
    /// Raw PVRSRV_DEVICE_PHYS_HEAP value: validated by the server, not here.
    public var heap: UInt32
    public init(heap: UInt32) { self.heap = heap }
    public static func decode(from b: UnsafeRawBufferPointer) -> HeapQueryInput? {
        guard b.count >= size else { return nil }
        return .init(heap: le32(b, 0))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        put32(b, 0, heap)
        return true
    }
}

/// READ_REG input: offset u32 @0.
public struct ReadRegInput: Equatable, Sendable {
    public static let size = 4
    public var offset: UInt32
    public init(offset: UInt32) { self.offset = offset }
    public static func decode(from b: UnsafeRawBufferPointer) -> ReadRegInput? {
        guard b.count >= size else { return nil }
        return .init(offset: le32(b, 0))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        put32(b, 0, offset)
        return true
    }
}

/// WRITE_REG input: offset u32 @0, value u32 @4.
public struct WriteRegInput: Equatable, Sendable {
    public static let size = 8
    public var offset: UInt32
    public var value: UInt32
    public init(offset: UInt32, value: UInt32) { self.offset = offset; self.value = value }
    public static func decode(from b: UnsafeRawBufferPointer) -> WriteRegInput? {
        guard b.count >= size else { return nil }
        return .init(offset: le32(b, 0), value: le32(b, 4))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        put32(b, 0, offset); put32(b, 4, value)
        return true
    }
}

// MARK: outputs (offsets relative to the end of the response header)

/// CREATE_DEV_CONFIG output: irq u32 @0, regs_size u32 @4, regs_pbase u64 @8.
public struct CreateDevConfigOutput: Equatable, Sendable {
    public static let size = 16
    public var irq: UInt32
    public var regsSize: UInt32
    public var regsPBase: UInt64
    public init(irq: UInt32, regsSize: UInt32, regsPBase: UInt64) {
        self.irq = irq; self.regsSize = regsSize; self.regsPBase = regsPBase
    }
    public static func decode(from b: UnsafeRawBufferPointer) -> CreateDevConfigOutput? {
        guard b.count >= size else { return nil }
        return .init(irq: le32(b, 0), regsSize: le32(b, 4), regsPBase: le64(b, 8))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        put32(b, 0, irq); put32(b, 4, regsSize); put64(b, 8, regsPBase)
        return true
    }
}

/// CREATE_DEV_PHYS_HEAPS output: type u32 @0, pad u32 @4, fw_size u64 @8,
/// fw_paddr u64 @16, gpu_size u64 @24, gpu_paddr u64 @32.
public struct CreateDevPhysHeapsOutput: Equatable, Sendable {
    public static let size = 40
    public var type: UInt32
    public var fwSize: UInt64
    public var fwPAddr: UInt64
    public var gpuSize: UInt64
    public var gpuPAddr: UInt64
    public init(type: UInt32, fwSize: UInt64, fwPAddr: UInt64, gpuSize: UInt64, gpuPAddr: UInt64) {
        self.type = type; self.fwSize = fwSize; self.fwPAddr = fwPAddr; self.gpuSize = gpuSize; self.gpuPAddr = gpuPAddr
    }
    /// The pad word is ignored on decode (always written as 0).
    public static func decode(from b: UnsafeRawBufferPointer) -> CreateDevPhysHeapsOutput? {
        guard b.count >= size else { return nil }
        return .init(type: le32(b, 0), fwSize: le64(b, 8), fwPAddr: le64(b, 16), gpuSize: le64(b, 24), gpuPAddr: le64(b, 32))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        put32(b, 0, type); put32(b, 4, 0)
        put64(b, 8, fwSize); put64(b, 16, fwPAddr); put64(b, 24, gpuSize); put64(b, 32, gpuPAddr)
        return true
    }
}

/// GET_DEV_PHYS_HEAP_ORIGIN output: origin u32 @0.
public struct HeapOriginOutput: Equatable, Sendable {
    public static let size = 4
    public var origin: UInt32
    public init(origin: UInt32) { self.origin = origin }
    public static func decode(from b: UnsafeRawBufferPointer) -> HeapOriginOutput? {
        guard b.count >= size else { return nil }
        return .init(origin: le32(b, 0))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        put32(b, 0, origin)
        return true
    }
}

/// GET_DEV_PHYS_HEAP_ADDR_SIZE output: size u64 @0, addr u64 @8.
public struct HeapAddrSizeOutput: Equatable, Sendable {
    public static let size = 16
    public var size: UInt64
    public var addr: UInt64
    public init(size: UInt64, addr: UInt64) { self.size = size; self.addr = addr }
    public static func decode(from b: UnsafeRawBufferPointer) -> HeapAddrSizeOutput? {
        guard b.count >= Self.size else { return nil }
        return .init(size: le64(b, 0), addr: le64(b, 8))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        put64(b, 0, size); put64(b, 8, addr)
        return true
    }
}

/// READ_REG output: value u32 @0.
public struct ReadRegOutput: Equatable, Sendable {
    public static let size = 4
    public var value: UInt32
    public init(value: UInt32) { self.value = value }
    public static func decode(from b: UnsafeRawBufferPointer) -> ReadRegOutput? {
        guard b.count >= size else { return nil }
        return .init(value: le32(b, 0))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        put32(b, 0, value)
        return true
    }
}
