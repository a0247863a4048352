#if canImport(Glibc)
import Glibc
#endif

/// An open file descriptor this value owns: it is closed when the value goes
/// away, exactly once. Noncopyable, so ownership moves (`consume`) instead of
/// being shared by accident; `rawValue` lends the number to a syscall without
/// giving it up. (swift-system's `FileDescriptor` is a copyable number that
/// never closes itself; the daemon wants the ownership in the type.)
public struct FileDescriptor: ~Copyable, Sendable {
    public let rawValue: Int32

    /// Takes ownership of `rawValue` (which must be open, or -1 for none).
    public init(taking rawValue: Int32) { self.rawValue = rawValue }

    deinit { if rawValue >= 0 { _ = Glibc.close(rawValue) } }

    /// Gives ownership up: the caller now closes the number.
    public consuming func release() -> Int32 {
        let r = rawValue
        discard self
        return r
    }

    /// Sets O_NONBLOCK (descriptors from a peer must never block a thread).
    public func setNonBlocking() { Platform.setNonBlocking(rawValue) }
}

/// Sets O_NONBLOCK on a descriptor this code does not own.
public func setNonBlocking(_ fd: Int32) {
    let flags = fcntl(fd, F_GETFL)
    if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
}
