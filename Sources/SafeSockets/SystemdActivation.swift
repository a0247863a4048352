#if canImport(Glibc)
import Glibc
#endif

/// A listening socket handed over by systemd (or systemd-socket-activate).
public struct InheritedSocket: Sendable, Equatable {
    public var fd: Int32
    /// FileDescriptorName= of its .socket unit ("unknown" when systemd gave none).
    public var name: String
    /// The path it is bound to, when it has one.
    public var path: String?
    public init(fd: Int32, name: String, path: String?) { self.fd = fd; self.name = name; self.path = path }
}

/// Socket activation as sd_listen_fds_with_names(3) defines it: descriptors
/// 3...3+LISTEN_FDS-1, meant for us only when LISTEN_PID is our pid, named by
/// the colon-separated LISTEN_FDNAMES.
public enum SystemdActivation {
    public static let firstFD: Int32 = 3
    /// More than this many inherited sockets is a mistake in the units.
    public static let maxFDs = 64

    /// Reads and checks the handed-over sockets, then removes the variables
    /// from the environment (nothing started later may take them for its own).
    public static func take(environment: [String: String], pid: Int32 = getpid()) throws(SocketSetupError) -> [InheritedSocket] {
        defer {
            unsetenv("LISTEN_PID"); unsetenv("LISTEN_FDS"); unsetenv("LISTEN_FDNAMES")
        }
        return try parse(environment: environment, pid: pid, check: true)
    }

    /// `take` without touching the environment or, with check false, the descriptors.
    public static func parse(environment: [String: String], pid: Int32, check: Bool) throws(SocketSetupError) -> [InheritedSocket] {
        guard let countText = environment["LISTEN_FDS"] else { return [] }
        guard let pidText = environment["LISTEN_PID"] else {
            throw SocketSetupError("LISTEN_FDS=\(countText) is set without LISTEN_PID: not a socket-activation environment")
        }
        guard let listenPID = Int32(pidText), listenPID > 0 else {
            throw SocketSetupError("LISTEN_PID=\"\(pidText)\" is not a process id")
        }
        // The sockets were meant for another process (e.g. our parent): not ours.
        guard listenPID == pid else { return [] }
        guard let count = Int(countText), count >= 0, count <= maxFDs else {
            throw SocketSetupError("LISTEN_FDS=\"\(countText)\" is not a count in 0...\(maxFDs)")
        }
        var names: [String]
        if let n = environment["LISTEN_FDNAMES"] {
            names = n.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard names.count == count else {
                throw SocketSetupError("LISTEN_FDNAMES has \(names.count) names for LISTEN_FDS=\(count) descriptors")
            }
        } else {
            names = Array(repeating: "unknown", count: count)
        }
        var out: [InheritedSocket] = []
        for i in 0..<count {
            let fd = firstFD + Int32(i)
            if check { try SafeListener.checkListening(fd: fd, what: "socket-activated fd \(fd) (\"\(names[i])\")") }
            out.append(InheritedSocket(fd: fd, name: names[i], path: check ? SafeListener.boundPath(fd) : nil))
        }
        return out
    }
}
