import CSandbox
#if canImport(Glibc)
import Glibc
#endif

/// Enters the daemon's sandbox: after every socket is bound and before any
/// thread starts (capabilities are per thread; new threads inherit the
/// state of the one that starts them).
public enum Sandbox {
    /// What the process looks like inside, for the start-up log line and tests.
    public struct State: Sendable, Equatable, CustomStringConvertible {
        public var uid: uid_t
        public var gid: gid_t
        public var noNewPrivs: Bool
        public var effectiveCapabilities: UInt64
        public var seccomp: SeccompMode
        public var description: String {
            "uid \(uid) gid \(gid), no_new_privs \(noNewPrivs ? "on" : "off"), capabilities 0x\(String(effectiveCapabilities, radix: 16)), seccomp \(seccomp.rawValue)"
        }
    }

    public static func enter(_ settings: SandboxSettings) throws(SandboxError) -> State {
        let threads = pvz_thread_count()
        guard threads == 1 else {
            throw SandboxError("the sandbox must be entered before any thread starts (\(threads) threads running)")
        }
        if geteuid() == 0 {
            guard pvz_drop_bounding_capabilities() == 0 else { throw SandboxError("dropping the capability bounding set: \(errnoText())") }
            if let u = settings.user {
                var step: UnsafePointer<CChar>? = nil
                guard pvz_switch_user(u.uid, u.gid, u.groups, Int32(u.groups.count), &step) == 0 else {
                    throw SandboxError("switching to user \(u.name) (uid \(u.uid) gid \(u.gid)): \(step.map { String(cString: $0) } ?? "?"): \(errnoText())")
                }
            }
            guard pvz_clear_capabilities() == 0 else { throw SandboxError("clearing capabilities: \(errnoText())") }
        } else if let u = settings.user, u.uid != geteuid() || u.gid != getegid() {
            throw SandboxError("--user \(u.name): switching users needs root (running as uid \(geteuid()))")
        }
        guard pvz_set_no_new_privs() == 0 else { throw SandboxError("prctl(PR_SET_NO_NEW_PRIVS): \(errnoText())") }
        // Read before the filter: capget is not on the allow-list.
        let state = State(uid: geteuid(), gid: getegid(), noNewPrivs: pvz_get_no_new_privs() == 1,
                          effectiveCapabilities: UInt64(pvz_effective_capabilities()), seccomp: settings.seccomp)
        try SeccompFilter.install(settings.seccomp)
        return state
    }

    static func errnoText(_ e: Int32 = errno) -> String { "\(String(cString: strerror(e))) (errno \(e))" }
}
