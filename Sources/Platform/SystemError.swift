#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: its name, errno, and optionally what it was done to.
/// The one errno error of the daemon (swift-system's `Errno` with the call
/// named, so a log line says what broke).
public struct SystemError: Error, CustomStringConvertible, Equatable, Sendable {
    public var call: String
    public var errno: Int32
    /// What the call was done to ("/run/x.sock", "fd 5"), when that helps.
    public var context: String?

    /// `errno` defaults to the calling thread's current one: build the error
    /// right after the failed call.
    public init(_ call: String, errno: Int32 = Glibc.errno, context: String? = nil) {
        self.call = call
        self.errno = errno
        self.context = context
    }

    public var description: String {
        let what = "\(String(cString: strerror(errno))) (errno \(errno))"
        return context.map { "\(call) \($0): \(what)" } ?? "\(call): \(what)"
    }
}
