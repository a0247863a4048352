import CSeccomp
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's seccomp allow-list. Built from what the daemon was seen to
/// call under strace across the whole test suite (guests, device tree,
/// libvirt, restarts with a state file): see docs/deployment.md for how to
/// redo that. Everything else is refused: with `kill` the process dies with
/// SIGSYS, so code running inside the daemon can never exec, fork, ptrace,
/// open network sockets, mount, load modules or change its identity.
public enum SeccompFilter {
    /// Allowed with any arguments.
    public static let allowed: [String] = [
        // memory: the heap, guest RAM and heap mappings, the SIGBUS recovery
        // (mmap MAP_FIXED over a truncated region)
        "brk", "mmap", "munmap", "mremap", "mprotect", "madvise",
        // threads: the guest threads, the firmware thread, the control and libvirt threads
        "set_robust_list", "rseq", "futex", "exit", "exit_group", "sched_yield", "sched_getaffinity",
        "gettid", "getpid", "getppid", "membarrier",
        // signals: sigwait for SIGTERM/SIGINT, the SIGBUS handler, abort()
        "rt_sigprocmask", "rt_sigaction", "rt_sigreturn", "rt_sigtimedwait", "sigaltstack", "tgkill",
        "restart_syscall",
        // time
        "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
        // descriptors and files: the state file (write, fsync, rename), /proc reads
        "read", "write", "readv", "writev", "pread64", "pwrite64", "close", "dup", "dup2", "dup3", "fcntl",
        "lseek", "fstat", "newfstatat", "statx", "stat", "lstat", "openat", "unlink", "unlinkat", "rename",
        "renameat", "renameat2", "fsync", "fdatasync", "ftruncate", "fchmod", "getdents64", "readlink",
        "readlinkat", "access", "faccessat", "faccessat2", "getcwd", "umask",
        // event loops: epoll per guest, eventfds for kicks/calls, poll in libvirt's loop
        "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "eventfd2", "poll", "ppoll", "pipe2",
        // Unix sockets: vhost-user (SCM_RIGHTS), the control socket, libvirt's client
        "connect", "accept", "accept4", "recvmsg", "sendmsg", "recvfrom", "sendto", "getsockopt",
        "setsockopt", "shutdown", "getsockname", "getpeername", "socketpair",
        // memfd for host heaps
        "memfd_create",
        // identity reads (logging, SO_PEERCRED checks), limits
        "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "uname",
        "getrandom", "prlimit64", "getrlimit", "sysinfo", "ioctl", "prctl",
    ]

    static let cloneThread: UInt64 = 0x0001_0000  // CLONE_THREAD

    /// Loads the filter into every thread of the process (TSYNC).
    public static func install(_ mode: SeccompMode) throws(SandboxError) {
        guard mode != .off else { return }
        // KILL_PROCESS, not KILL_THREAD: a half-dead daemon would hang guests.
        let defaultAction: UInt32 = mode == .kill ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_LOG
        guard let ctx = seccomp_init(defaultAction) else { throw SandboxError("seccomp_init failed") }
        defer { seccomp_release(ctx) }
        try check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1), "seccomp_attr_set(TSYNC)")
        // The kernel logs kills and (mode log) every call off the list to
        // audit/dmesg by itself; the errno answers below (clone3, socket
        // families) are expected and stay out of the log.
        for name in allowed {
            let nr = seccomp_syscall_resolve_name(name)
            // A name this architecture does not have (e.g. "time" elsewhere) is skipped.
            guard nr != __NR_SCMP_ERROR else { continue }
            try check(seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 0, nil), "allow \(name)")
        }
        // Threads only: clone with CLONE_THREAD. fork and vfork-like clones fall to the default.
        var thread = scmp_arg_cmp(arg: 0, op: SCMP_CMP_MASKED_EQ, datum_a: cloneThread, datum_b: cloneThread)
        try check(seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, seccomp_syscall_resolve_name("clone"), 1, &thread), "allow clone(CLONE_THREAD)")
        // clone3 passes its flags in memory a filter cannot read: answer ENOSYS
        // so glibc falls back to clone, which is checked above.
        try check(seccomp_rule_add_array(ctx, errno(ENOSYS), seccomp_syscall_resolve_name("clone3"), 0, nil), "clone3 -> ENOSYS")
        // Unix sockets only; another family gets an error, not a kill (a
        // libvirt URI with a network transport fails cleanly).
        var unix = scmp_arg_cmp(arg: 0, op: SCMP_CMP_EQ, datum_a: UInt64(AF_UNIX), datum_b: 0)
        try check(seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, seccomp_syscall_resolve_name("socket"), 1, &unix), "allow socket(AF_UNIX)")
        var notUnix = scmp_arg_cmp(arg: 0, op: SCMP_CMP_NE, datum_a: UInt64(AF_UNIX), datum_b: 0)
        try check(seccomp_rule_add_array(ctx, errno(EAFNOSUPPORT), seccomp_syscall_resolve_name("socket"), 1, &notUnix), "socket(other) -> EAFNOSUPPORT")
        try check(seccomp_load(ctx), "seccomp_load")
    }

    static func errno(_ e: Int32) -> UInt32 { 0x0005_0000 | (UInt32(e) & 0xFFFF) }  // SCMP_ACT_ERRNO(e)

    static func check(_ rc: Int32, _ what: String) throws(SandboxError) {
        guard rc == 0 else { throw SandboxError("seccomp: \(what) failed: \(String(cString: strerror(-rc))) (\(rc))") }
    }
}
