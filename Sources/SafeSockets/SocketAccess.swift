import CSafeSockets
#if canImport(Glibc)
import Glibc
#endif

/// A socket set-up or check that failed, said the way an admin can act on it.
public struct SocketSetupError: Error, CustomStringConvertible, Equatable {
    public var message: String
    /// The errno behind it, when a system call failed or one fits (EEXIST, EADDRINUSE).
    public var errno: Int32
    public init(_ message: String, errno: Int32 = EINVAL) { self.message = message; self.errno = errno }
    public var description: String { message }
}

func errnoText(_ e: Int32 = errno) -> String { "\(String(cString: strerror(e))) (errno \(e))" }

/// The other end of a connected Unix socket, from the kernel (SO_PEERCRED,
/// SO_PEERGROUPS), never from anything the peer sends.
public struct SocketPeer: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    /// Supplementary groups.
    public var groups: [UInt32]
    public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32] = []) {
        self.pid = pid; self.uid = uid; self.gid = gid; self.groups = groups
    }

    public static func of(_ fd: Int32) -> SocketPeer? {
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        guard pvz_peer_credentials(fd, &pid, &uid, &gid) == 0 else { return nil }
        var groups = [gid_t](repeating: 0, count: 64)
        var n = pvz_peer_groups(fd, &groups, Int32(groups.count))
        if n > Int32(groups.count) {
            groups = [gid_t](repeating: 0, count: Int(n))
            n = pvz_peer_groups(fd, &groups, Int32(groups.count))
        }
        let supplementary = n > 0 ? Array(groups.prefix(Int(min(n, Int32(groups.count))))) : []
        return SocketPeer(pid: pid, uid: uid, gid: gid, groups: supplementary)
    }

    public var description: String { "pid \(pid) uid \(uid) gid \(gid)" }
}

/// Who may use a socket. The file's mode and group are the first fence; the
/// peer-credential check at accept is the rule (a socket handed over by fd,
/// or a directory with loose permissions, bypasses the file mode).
public struct SocketAccess: Sendable, Equatable {
    /// Mode of the socket file: owner read/write, optionally the group; never others.
    public var mode: mode_t
    /// Group of the socket file; its members may connect.
    public var group: gid_t?
    /// Owner of the socket file when not the binding process (the --user the
    /// daemon drops to after binding as root).
    public var owner: uid_t?
    /// More users and groups that may connect (root and the daemon's own uid always may).
    public var allowedUIDs: [uid_t]
    public var allowedGIDs: [gid_t]

    public init(mode: mode_t? = nil, group: gid_t? = nil, owner: uid_t? = nil, allowedUIDs: [uid_t] = [], allowedGIDs: [gid_t] = []) {
        self.mode = mode ?? (group == nil ? 0o600 : 0o660)
        self.group = group
        self.owner = owner
        self.allowedUIDs = allowedUIDs
        self.allowedGIDs = allowedGIDs
    }

    /// Refuses a mode that lets others in or is not a plain permission mode.
    public static func checkMode(_ mode: mode_t) throws(SocketSetupError) {
        guard mode & ~mode_t(0o777) == 0 else {
            throw SocketSetupError("socket mode 0\(String(mode, radix: 8)) is not a permission mode (0...0777)")
        }
        guard mode & 0o007 == 0 else {
            throw SocketSetupError("socket mode 0\(String(mode, radix: 8)) gives others access; use 0600 or a group mode like 0660 with --socket-group")
        }
        guard mode & 0o600 == 0o600 else {
            throw SocketSetupError("socket mode 0\(String(mode, radix: 8)) leaves the owner without read/write; use 0600 or 0660")
        }
    }

    public func admits(_ peer: SocketPeer, daemonUID: uid_t = geteuid()) -> Bool {
        if peer.uid == 0 || peer.uid == daemonUID || allowedUIDs.contains(peer.uid) { return true }
        let groups = [peer.gid] + peer.groups
        if let group, groups.contains(group) { return true }
        return groups.contains { allowedGIDs.contains($0) }
    }

    /// What `admits` lets in, for the refusal message.
    public func describe(daemonUID: uid_t = geteuid()) -> String {
        var parts = ["uid 0", "the daemon's uid \(daemonUID)"]
        if !allowedUIDs.isEmpty { parts.append("uids \(allowedUIDs.map(String.init).joined(separator: ","))") }
        if let group { parts.append("group \(group)") }
        if !allowedGIDs.isEmpty { parts.append("gids \(allowedGIDs.map(String.init).joined(separator: ","))") }
        return parts.joined(separator: ", ")
    }
}
