// Hypercall wire structs (spec 5). Little-endian, explicit offsets, no
// padding guessed by the compiler, no allocation: the device hands the server
// its own copy of the guest's bytes, so decode reads each field once at a
// fixed place. decode returns nil when the buffer is too short; encode
// returns false (and writes nothing) when the destination is too short.
// Fields that hold guest addresses are typed IPA (the spec's `regs_pbase`,
// `fw_paddr`, `gpu_paddr`, `paddr`, `addr` all name IPAs of the guest).

/// Request header: function, func_id, dev_id, request_id (4 bytes each).
public struct HypercallRequestHeader: Equatable, Sendable {
    public static let size = 16
    public enum Offset { public static let function = 0, funcID = 4, devID = 8, requestID = 12 }
    /// Raw function number: kept raw so an unknown one can still be echoed.
    public var function: UInt32
    public var funcID: UInt32
    public var devID: UInt32
    public var requestID: UInt32
    public init(function: UInt32, funcID: UInt32 = 0, devID: UInt32 = 0, requestID: UInt32 = 0) {
        self.function = function; self.funcID = funcID; self.devID = devID; self.requestID = requestID
    }
    public init(_ function: PVZFunction, funcID: UInt32 = 0, devID: UInt32 = 0, requestID: UInt32 = 0) {
        self.init(function: function.rawValue, funcID: funcID, devID: devID, requestID: requestID)
    }
    public static func decode(from b: UnsafeRawBufferPointer) -> HypercallRequestHeader? {
        guard b.count >= size else { return nil }
        return .init(function: b.loadLE32(Offset.function), funcID: b.loadLE32(Offset.funcID),
                     devID: b.loadLE32(Offset.devID), requestID: b.loadLE32(Offset.requestID))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE32(Offset.function, function); b.storeLE32(Offset.funcID, funcID)
        b.storeLE32(Offset.devID, devID); b.storeLE32(Offset.requestID, requestID)
        return true
    }
}

/// Response header: status, function (echoed), request_id (echoed), reserved 0.
public struct HypercallResponseHeader: Equatable, Sendable {
    public static let size = 16
    public enum Offset { public static let status = 0, function = 4, requestID = 8, reserved = 12 }
    public var status: UInt32
    public var function: UInt32
    public var requestID: UInt32
    public var reserved: UInt32
    public init(status: UInt32, function: UInt32, requestID: UInt32, reserved: UInt32 = 0) {
        self.status = status; self.function = function; self.requestID = requestID; self.reserved = reserved
    }
    public static func decode(from b: UnsafeRawBufferPointer) -> HypercallResponseHeader? {
        guard b.count >= size else { return nil }
        return .init(status: b.loadLE32(Offset.status), function: b.loadLE32(Offset.function),
                     requestID: b.loadLE32(Offset.requestID), reserved: b.loadLE32(Offset.reserved))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE32(Offset.status, status); b.storeLE32(Offset.function, function)
        b.storeLE32(Offset.requestID, requestID); b.storeLE32(Offset.reserved, reserved)
        return true
    }
}

// MARK: inputs (offsets relative to the end of the request header)

/// MAP_DEV_PHYS_HEAP input: size u64 @0, paddr u64 @8 (an IPA of the guest).
public struct MapDevPhysHeapInput: Equatable, Sendable {
    public static let size = 16
    public enum Offset { public static let size = 0, ipa = 8 }
    public var size: UInt64
    public var ipa: IPA
    public init(size: UInt64, ipa: IPA) { self.size = size; self.ipa = ipa }
    public static func decode(from b: UnsafeRawBufferPointer) -> MapDevPhysHeapInput? {
        guard b.count >= Self.size else { return nil }
        return .init(size: b.loadLE64(Offset.size), ipa: IPA(b.loadLE64(Offset.ipa)))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE64(Offset.size, size); b.storeLE64(Offset.ipa, ipa.rawValue)
        return true
    }
}

/// GET_DEV_PHYS_HEAP_ORIGIN / GET_DEV_PHYS_HEAP_ADDR_SIZE input: heap u32 @0.
public struct HeapQueryInput: Equatable, Sendable {
    public static let size = 4
    /// Raw PVRSRV_DEVICE_PHYS_HEAP value: validated by the server, not here.
    public var heap: UInt32
    public init(heap: UInt32) { self.heap = heap }
    public init(_ heap: PhysHeap) { self.heap = heap.rawValue }
    public static func decode(from b: UnsafeRawBufferPointer) -> HeapQueryInput? {
        guard b.count >= size else { return nil }
        return .init(heap: b.loadLE32(0))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE32(0, heap)
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
        return .init(offset: b.loadLE32(0))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE32(0, offset)
        return true
    }
}

/// WRITE_REG input: offset u32 @0, value u32 @4.
public struct WriteRegInput: Equatable, Sendable {
    public static let size = 8
    public enum Offset { public static let offset = 0, value = 4 }
    public var offset: UInt32
    public var value: UInt32
    public init(offset: UInt32, value: UInt32) { self.offset = offset; self.value = value }
    public static func decode(from b: UnsafeRawBufferPointer) -> WriteRegInput? {
        guard b.count >= size else { return nil }
        return .init(offset: b.loadLE32(Offset.offset), value: b.loadLE32(Offset.value))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE32(Offset.offset, offset); b.storeLE32(Offset.value, value)
        return true
    }
}

// MARK: outputs (offsets relative to the end of the response header)

/// CREATE_DEV_CONFIG output: irq u32 @0, regs_size u32 @4, regs_pbase u64 @8
/// (the register bank's IPA: the carve-out's start).
public struct CreateDevConfigOutput: Equatable, Sendable {
    public static let size = 16
    public enum Offset { public static let irq = 0, regsSize = 4, regsIPA = 8 }
    public var irq: UInt32
    public var regsSize: UInt32
    public var regsIPA: IPA
    public init(irq: UInt32, regsSize: UInt32, regsIPA: IPA) {
        self.irq = irq; self.regsSize = regsSize; self.regsIPA = regsIPA
    }
    public static func decode(from b: UnsafeRawBufferPointer) -> CreateDevConfigOutput? {
        guard b.count >= size else { return nil }
        return .init(irq: b.loadLE32(Offset.irq), regsSize: b.loadLE32(Offset.regsSize), regsIPA: IPA(b.loadLE64(Offset.regsIPA)))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE32(Offset.irq, irq); b.storeLE32(Offset.regsSize, regsSize); b.storeLE64(Offset.regsIPA, regsIPA.rawValue)
        return true
    }
}

/// CREATE_DEV_PHYS_HEAPS output: type u32 @0, pad u32 @4, fw_size u64 @8,
/// fw_paddr u64 @16, gpu_size u64 @24, gpu_paddr u64 @32 (both IPAs; 0 for
/// a heap that is not host-origin).
public struct CreateDevPhysHeapsOutput: Equatable, Sendable {
    public static let size = 40
    public enum Offset { public static let type = 0, pad = 4, fwSize = 8, fwIPA = 16, gpuSize = 24, gpuIPA = 32 }
    public var type: UInt32
    public var fwSize: UInt64
    public var fwIPA: IPA
    public var gpuSize: UInt64
    public var gpuIPA: IPA
    public init(type: UInt32, fwSize: UInt64, fwIPA: IPA, gpuSize: UInt64, gpuIPA: IPA) {
        self.type = type; self.fwSize = fwSize; self.fwIPA = fwIPA; self.gpuSize = gpuSize; self.gpuIPA = gpuIPA
    }
    /// The pad word is ignored on decode (always written as 0).
    public static func decode(from b: UnsafeRawBufferPointer) -> CreateDevPhysHeapsOutput? {
        guard b.count >= size else { return nil }
        return .init(type: b.loadLE32(Offset.type), fwSize: b.loadLE64(Offset.fwSize), fwIPA: IPA(b.loadLE64(Offset.fwIPA)),
                     gpuSize: b.loadLE64(Offset.gpuSize), gpuIPA: IPA(b.loadLE64(Offset.gpuIPA)))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE32(Offset.type, type); b.storeLE32(Offset.pad, 0)
        b.storeLE64(Offset.fwSize, fwSize); b.storeLE64(Offset.fwIPA, fwIPA.rawValue)
        b.storeLE64(Offset.gpuSize, gpuSize); b.storeLE64(Offset.gpuIPA, gpuIPA.rawValue)
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
        return .init(origin: b.loadLE32(0))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE32(0, origin)
        return true
    }
}

/// GET_DEV_PHYS_HEAP_ADDR_SIZE output: size u64 @0, addr u64 @8 (an IPA, or 0).
public struct HeapAddrSizeOutput: Equatable, Sendable {
    public static let size = 16
    public enum Offset { public static let size = 0, ipa = 8 }
    public var size: UInt64
    public var ipa: IPA
    public init(size: UInt64, ipa: IPA) { self.size = size; self.ipa = ipa }
    public static func decode(from b: UnsafeRawBufferPointer) -> HeapAddrSizeOutput? {
        guard b.count >= Self.size else { return nil }
        return .init(size: b.loadLE64(Offset.size), ipa: IPA(b.loadLE64(Offset.ipa)))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE64(Offset.size, size); b.storeLE64(Offset.ipa, ipa.rawValue)
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
        return .init(value: b.loadLE32(0))
    }
    @discardableResult
    public func encode(into b: UnsafeMutableRawBufferPointer) -> Bool {
        guard b.count >= Self.size else { return false }
        b.storeLE32(0, value)
        return true
    }
}

/// A function's input, as it follows the request header.
public protocol HypercallInput {
    static var size: Int { get }
    @discardableResult func encode(into b: UnsafeMutableRawBufferPointer) -> Bool
}
extension MapDevPhysHeapInput: HypercallInput {}
extension HeapQueryInput: HypercallInput {}
extension ReadRegInput: HypercallInput {}
extension WriteRegInput: HypercallInput {}

extension HypercallRequestHeader {
    /// The whole request (this header, then `input`) as the guest puts it on hypercallq.
    public func request(_ input: (some HypercallInput)? = MapDevPhysHeapInput?.none) -> [UInt8] {
        let inSize = input.map { type(of: $0).size } ?? 0
        var b = [UInt8](repeating: 0, count: Self.size + inSize)
        b.withUnsafeMutableBytes { p in
            encode(into: p)
            if let input { input.encode(into: UnsafeMutableRawBufferPointer(rebasing: p[Self.size...])) }
        }
        return b
    }
}
