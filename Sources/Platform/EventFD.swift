import CPVZShim
#if canImport(Glibc)
import Glibc
#endif

/// An eventfd used as a doorbell between threads (and, through vhost-user,
/// with the guest). Owns its descriptor.
public struct EventFD: ~Copyable, Sendable {
    public let descriptor: FileDescriptor
    /// `descriptor.rawValue`, stored so an optional EventFD lends it without a move.
    public let fd: Int32

    public init(nonBlocking: Bool = true) throws(SystemError) {
        let fd = eventfd(0, Int32(EFD_CLOEXEC) | (nonBlocking ? Int32(EFD_NONBLOCK) : 0))
        if fd < 0 { throw SystemError("eventfd") }
        descriptor = FileDescriptor(taking: fd)
        self.fd = fd
    }

    @inline(__always) public func signal() { EventFD.signal(fd) }
    @inline(__always) public func drain() { EventFD.drain(fd) }

    /// Rings any eventfd (a guest's call fd, say). No allocation, no lock.
    @inline(__always) public static func signal(_ fd: Int32) {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    @inline(__always) public static func drain(_ fd: Int32) {
        var v: UInt64 = 0
        _ = read(fd, &v, 8)
    }

    /// Blocks until the (blocking) eventfd is rung; retries EINTR.
    public func wait() {
        var v: UInt64 = 0
        while read(fd, &v, 8) != 8 && errno == EINTR {}
    }
}
