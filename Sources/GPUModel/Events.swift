import PVZServer

/// One eventq element (spec 6): 16 bytes on the wire.
public struct GPUEvent: Equatable, Sendable {
    public enum Kind: UInt32, Sendable {
        case firmware = 1
        case vmManager = 2
        /// The IRQ_STATUS / IRQ_ENABLE bit of this kind.
        public var irqBit: UInt32 { self == .firmware ? 1 : 2 }
    }
    public static let size = 16
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
        b.storeBytes(of: type.rawValue.littleEndian, toByteOffset: 0, as: UInt32.self)
        b.storeBytes(of: code.littleEndian, toByteOffset: 4, as: UInt32.self)
        b.storeBytes(of: value.littleEndian, toByteOffset: 8, as: UInt64.self)
        return true
    }

    public static func decode(from b: UnsafeRawBufferPointer) -> GPUEvent? {
        guard b.count >= size,
              let kind = Kind(rawValue: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
        else { return nil }
        return GPUEvent(type: kind, code: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                        value: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }
}

/// Events waiting for an eventq buffer, bounded: when full the oldest is
/// dropped and counted (a guest that never posts buffers cannot make the
/// daemon grow). Storage is allocated once.
public struct EventBacklog: Sendable {
    public let capacity: Int
    private var storage: [GPUEvent]
    private var head = 0
    public private(set) var count = 0
    public private(set) var dropped: UInt64 = 0

    public init(capacity: Int = 64) {
        precondition(capacity > 0, "event backlog capacity must be at least 1")
        self.capacity = capacity
        storage = Array(repeating: GPUEvent(type: .firmware, code: 0, value: 0), count: capacity)
    }

    public var isEmpty: Bool { count == 0 }

    public mutating func push(_ e: GPUEvent) {
        if count == capacity {
            head = (head + 1) % capacity
            count -= 1
            dropped &+= 1
        }
        storage[(head + count) % capacity] = e
        count += 1
    }

    public mutating func pop() -> GPUEvent? {
        guard count > 0 else { return nil }
        let e = storage[head]
        head = (head + 1) % capacity
        count -= 1
        return e
    }

    public func peek() -> GPUEvent? { count > 0 ? storage[head] : nil }

    public mutating func removeAll() { head = 0; count = 0 }

    /// The drop count carried over from a migrated source.
    public mutating func setDropped(_ n: UInt64) { dropped = n }
}
