import CPVZShim
#if canImport(Glibc)
import Glibc
#endif

/// epoll with a caller-chosen 64-bit tag per descriptor; level-triggered.
/// Used by one thread (the one that waits).
public final class Epoll {
    public let descriptor: FileDescriptor
    private let events: UnsafeMutablePointer<epoll_event>
    private let capacity = 32

    public init() throws(SystemError) {
        let fd = epoll_create1(Int32(EPOLL_CLOEXEC))
        if fd < 0 { throw SystemError("epoll_create1") }
        descriptor = FileDescriptor(taking: fd)
        events = .allocate(capacity: capacity)
    }

    deinit { events.deallocate() }

    public func add(_ watched: Int32, tag: UInt64) throws(SystemError) {
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue
        ev.data.u64 = tag
        if epoll_ctl(descriptor.rawValue, EPOLL_CTL_ADD, watched, &ev) != 0 {
            throw SystemError("epoll_ctl(ADD)", context: "fd \(watched)")
        }
    }

    public func remove(_ watched: Int32) {
        _ = epoll_ctl(descriptor.rawValue, EPOLL_CTL_DEL, watched, nil)
    }

    /// Waits and calls `body(tag)` for each ready descriptor. No allocation.
    @inline(__always)
    public func wait(timeoutMs: Int32 = -1, _ body: (UInt64) -> Void) {
        let n = epoll_wait(descriptor.rawValue, events, Int32(capacity), timeoutMs)
        if n <= 0 { return }
        for i in 0..<Int(n) { body(events[i].data.u64) }
    }
}
