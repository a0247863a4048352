#if canImport(Glibc)
import Glibc
#endif

/// What a syscall outside the allow-list does (--seccomp).
public enum SeccompMode: String, CaseIterable, Sendable, Equatable {
    /// The whole process is killed with SIGSYS (the default).
    case kill
    /// The call is allowed and logged by the kernel's audit (finding a missing entry).
    case log
    /// No filter.
    case off
}

/// A user to run as after binding, resolved once at start-up (NSS lookups
/// are not possible inside the sandbox).
public struct SandboxUser: Sendable, Equatable {
    public var name: String
    public var uid: uid_t
    public var gid: gid_t
    public var groups: [gid_t]

    public init(name: String, uid: uid_t, gid: gid_t, groups: [gid_t]) {
        self.name = name; self.uid = uid; self.gid = gid; self.groups = groups
    }

    /// The user by name or number, with `gid` as primary group and the
    /// user's supplementary groups from /etc/group.
    public static func resolving(name: String, uid: uid_t, gid: gid_t) -> SandboxUser {
        var groups = supplementaryGroups(name: name, gid: gid)
        if !groups.contains(gid) { groups.insert(gid, at: 0) }
        return SandboxUser(name: name, uid: uid, gid: gid, groups: groups)
    }

    public static func lookupUser(_ text: String) -> (name: String, uid: uid_t, gid: gid_t)? {
        if let p = getpwnam(text) { return (String(cString: p.pointee.pw_name), p.pointee.pw_uid, p.pointee.pw_gid) }
        if let n = UInt32(text), n != UInt32.max {
            if let p = getpwuid(n) { return (String(cString: p.pointee.pw_name), p.pointee.pw_uid, p.pointee.pw_gid) }
            // A bare uid without a passwd entry: its own group of the same number.
            return (text, n, n)
        }
        return nil
    }

    public static func lookupGroup(_ text: String) -> gid_t? {
        if let g = getgrnam(text) { return g.pointee.gr_gid }
        if let n = UInt32(text), n != UInt32.max { return n }
        return nil
    }

    static func supplementaryGroups(name: String, gid: gid_t) -> [gid_t] {
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            guard getgrouplist(name, gid, &groups, &count) >= 0 else { return [gid] }
        }
        return Array(groups.prefix(Int(count)))
    }
}

/// The sandbox the daemon enters once every socket is bound.
public struct SandboxSettings: Sendable, Equatable {
    /// Switch to this user (and its groups) when running as root; nil keeps the uid.
    public var user: SandboxUser?
    public var seccomp: SeccompMode
    public init(user: SandboxUser? = nil, seccomp: SeccompMode = .kill) {
        self.user = user; self.seccomp = seccomp
    }
}

public struct SandboxError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
