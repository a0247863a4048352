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
    /// Allowed with any arguments. Seen: in the survey of the whole suite.
    /// Kept unseen, each for a path the suite does not hit: noted.
    public static let allowed: [String] = [
        // memory: the heap, guest RAM and heap mappings. brk and mremap: malloc
        // growing the main arena or a large block (unseen).
        "mmap", "munmap", "mprotect", "madvise", "brk", "mremap",
        // threads: the guest threads, the firmware thread, the control and
        // libvirt threads (clone is below: threads only)
        "set_robust_list", "rseq", "futex", "exit", "exit_group", "gettid", "getpid",
        // signals: sigwait for SIGTERM/SIGINT; rt_sigreturn and sigaltstack for
        // the SIGBUS guard's handler (unseen: the suite's guests never shrink
        // their memory under the daemon); restart_syscall after a signal (unseen)
        "rt_sigprocmask", "rt_sigaction", "rt_sigtimedwait", "rt_sigreturn", "sigaltstack", "restart_syscall",
        // time: clock_gettime and gettimeofday are vDSO calls unless the clock
        // source has no vDSO support (unseen here)
        "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday",
        // descriptors and files: the state file (written, fchmod 0600, fsync,
        // renamed; its directory fsynced), libvirt's client reading its config
        "read", "write", "close", "fcntl", "lseek", "newfstatat", "openat", "access", "unlink", "rename",
        "fsync", "fchmod", "ftruncate",
        // libvirt's client listing a directory: its file-based drivers
        // (test:///default) do at connect; an admin's URI must not kill the daemon
        "getdents64",
        // event loops: epoll per guest, eventfds for kicks and calls, poll for
        // the message deadline and libvirt's event loop
        "epoll_create1", "epoll_ctl", "epoll_wait", "eventfd2", "poll",
        // Unix sockets: vhost-user (recvmsg/sendmsg with SCM_RIGHTS), the
        // control socket, libvirt's client (socket itself is below: AF_UNIX only)
        "accept", "accept4", "connect", "recvmsg", "sendmsg", "recvfrom", "sendto", "getsockopt",
        "setsockopt", "shutdown", "getsockname",
        // the inflight area a back-end creates for QEMU (GET_INFLIGHT_FD)
        "memfd_create",
        // identity and host reads: SO_PEERCRED checks, logging, libvirt's client
        "getuid", "geteuid", "getgid", "getegid", "uname", "getrandom",
    ]

    static let prSetName: UInt64 = 15, prGetName: UInt64 = 16
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
        // Thread names (pthread_setname_np); any other prctl answers EPERM.
        for op in [prSetName, prGetName] {
            var name = scmp_arg_cmp(arg: 0, op: SCMP_CMP_EQ, datum_a: op, datum_b: 0)
            try check(seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, seccomp_syscall_resolve_name("prctl"), 1, &name), "allow prctl(\(op))")
        }
        // (One comparison per argument and rule: below 15 and above 16.)
        var below = scmp_arg_cmp(arg: 0, op: SCMP_CMP_LT, datum_a: prSetName, datum_b: 0)
        try check(seccomp_rule_add_array(ctx, errno(EPERM), seccomp_syscall_resolve_name("prctl"), 1, &below), "prctl(other) -> EPERM")
        var above = scmp_arg_cmp(arg: 0, op: SCMP_CMP_GT, datum_a: prGetName, datum_b: 0)
        try check(seccomp_rule_add_array(ctx, errno(EPERM), seccomp_syscall_resolve_name("prctl"), 1, &above), "prctl(other) -> EPERM")
        // Signals to this process only (abort, pthread_kill): never to another.
        var own = scmp_arg_cmp(arg: 0, op: SCMP_CMP_EQ, datum_a: UInt64(getpid()), datum_b: 0)
        try check(seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, seccomp_syscall_resolve_name("tgkill"), 1, &own), "allow tgkill(own pid)")
        try check(seccomp_load(ctx), "seccomp_load")
    }

    static func errno(_ e: Int32) -> UInt32 { 0x0005_0000 | (UInt32(e) & 0xFFFF) }  // SCMP_ACT_ERRNO(e)

    static func check(_ rc: Int32, _ what: String) throws(SandboxError) {
        guard rc == 0 else { throw SandboxError("seccomp: \(what) failed: \(String(cString: strerror(-rc))) (\(rc))") }
    }
}
