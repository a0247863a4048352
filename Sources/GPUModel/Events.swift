import PVZContract

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
