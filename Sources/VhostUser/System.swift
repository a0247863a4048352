import CPVZShim
#if canImport(Glibc)
import Glibc
#endif

/// A syscall failure with the call's name and errno, for log lines that say what broke.
public struct SystemError: Error, CustomStringConvertible, Equatable {
    public var call: String
    public var errno: Int32
    public init(_ call: String, _ errno: Int32 = Glibc.errno) { self.call = call; self.errno = errno }
    public var description: String { "\(call): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// An eventfd used as a doorbell between threads (and, via vhost-user, with the guest).
public struct EventFD: Sendable {
    public let fd: Int32
    public init(nonBlocking: Bool = true) throws(SystemError) {
        let fd = eventfd(0, Int32(EFD_CLOEXEC) | (nonBlocking ? Int32(EFD_NONBLOCK) : 0))
        if fd < 0 { throw SystemError("eventfd") }
        self.fd = fd
    }
    @inline(__always) public func signal() { EventFD.signal(fd) }
    @inline(__always) public func drain() { EventFD.drain(fd) }
    @inline(__always) public static func signal(_ fd: Int32) {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }
    @inline(__always) public static func drain(_ fd: Int32) {
        var v: UInt64 = 0
        _ = read(fd, &v, 8)
    }
    public func close() { _ = Glibc.close(fd) }
}

/// epoll with a caller-chosen 64-bit tag per descriptor; level-triggered.
public final class Epoll {
    public let fd: Int32
    private let events: UnsafeMutablePointer<epoll_event>
    private let capacity = 32

    public init() throws(SystemError) {
        fd = epoll_create1(Int32(EPOLL_CLOEXEC))
        if fd < 0 { throw SystemError("epoll_create1") }
        events = .allocate(capacity: capacity)
    }
    deinit {
        events.deallocate()
        Glibc.close(fd)
    }

    public func add(_ watched: Int32, tag: UInt64) throws(SystemError) {
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue
        ev.data.u64 = tag
        if epoll_ctl(fd, EPOLL_CTL_ADD, watched, &ev) != 0 { throw SystemError("epoll_ctl(ADD)") }
    }

    public func remove(_ watched: Int32) {
        _ = epoll_ctl(fd, EPOLL_CTL_DEL, watched, nil)
    }

    /// Waits and calls `body(tag)` for each ready descriptor. No allocation.
    @inline(__always)
    public func wait(timeoutMs: Int32 = -1, _ body: (UInt64) -> Void) {
        let n = epoll_wait(fd, events, Int32(capacity), timeoutMs)
        if n <= 0 { return }
        for i in 0..<Int(n) { body(events[i].data.u64) }
    }
}

/// Starts a named OS thread (one per guest, one for the firmware, ...). Threads,
/// not tasks: the kick → call path must not hop through an executor.
@discardableResult
public func startThread(name: String, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box { let body: @Sendable () -> Void; let name: String; init(_ b: @escaping @Sendable () -> Void, _ n: String) { body = b; name = n } }
    let box = Unmanaged.passRetained(Box(body, name)).toOpaque()
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
        let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
        pvz_set_thread_name(b.name)
        b.body()
        return nil
    }, box)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    pthread_detach(tid)
    return tid
}

/// Sets O_NONBLOCK on a descriptor that came from the front-end.
public func setNonBlocking(_ fd: Int32) {
    let flags = fcntl(fd, F_GETFL)
    if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
}

@inline(__always) func closeIfOpen(_ fd: inout Int32) {
    if fd >= 0 { Glibc.close(fd); fd = -1 }
}
