import Testing
import Foundation
import CSandbox
import CPVZShim
import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` in a forked child, which has one thread (the test runner's
/// other threads make calls of their own that are no business of the filter),
/// and says how it ended: its exit status, or 128 + the signal that killed it.
func inChild(_ body: () -> Void) -> Int32 {
    _ = SeccompFilter.allowed.count  // initialized before the fork
    let pid = fork()
    if pid == 0 {
        body()
        _exit(0)
    }
    var st: Int32 = 0
    while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
    return (st & 0x7f) != 0 ? 128 + (st & 0x7f) : (st >> 8) & 0xff
}

func install(_ mode: SeccompMode) {
    do { try SeccompFilter.install(mode) } catch { let m = "install: \(error)\n"; _ = write(2, m, m.utf8.count); _exit(99) }
}

let killedBySIGSYS = 128 + SIGSYS

/// The seccomp filter the daemon loads (SeccompFilter.install): a forbidden
/// call kills the process with SIGSYS under `kill`, the same call passes under
/// `log` and `off`, and what the daemon does still works.
@Suite("sandbox (issue 13)")
struct SandboxTests {
    @Test func forkIsKilledUnderKill() {
        #expect(inChild {
            install(.kill)
            if fork() == 0 { _exit(0) }
        } == killedBySIGSYS)
    }

    @Test func execveIsKilledUnderKill() {
        #expect(inChild {
            install(.kill)
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
            execv("/bin/true", argv)
        } == killedBySIGSYS)
    }

    @Test func mountPtraceAndSetuidAreKilledUnderKill() {
        #expect(inChild { install(.kill); _ = mount("none", "/mnt", "tmpfs", 0, nil) } == killedBySIGSYS)
        #expect(inChild { install(.kill); _ = setuid(0) } == killedBySIGSYS)
        #expect(inChild { install(.kill); _ = kill(1, 0) } == killedBySIGSYS)
        #expect(inChild { install(.kill); _ = chroot("/") } == killedBySIGSYS)
    }

    @Test func theSameCallPassesUnderLogAndOff() {
        for mode in [SeccompMode.log, .off] {
            #expect(inChild {
                install(mode)
                let pid = fork()
                if pid == 0 { _exit(7) }
                var st: Int32 = 0
                waitpid(pid, &st, 0)
                _exit((st >> 8) & 0xff)
            } == 7, "\(mode)")
        }
    }

    @Test func whatTheDaemonDoesStillWorks() {
        #expect(inChild {
            install(.kill)
            // A thread, an eventfd, Unix sockets, memfd + mmap, a file written, fsynced, renamed.
            var t = pthread_t()
            guard pthread_create(&t, nil, { _ in nil }, nil) == 0 else { _exit(10) }
            pthread_join(t, nil)
            guard eventfd(0, 0) >= 0 else { _exit(11) }
            guard socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0) >= 0 else { _exit(12) }
            let m = pvz_memfd_create("t", 0)
            guard m >= 0, ftruncate(m, 4096) == 0, mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0) != MAP_FAILED else { _exit(13) }
            let a = "/tmp/pvz-sbx-\(getpid())-a", b = "/tmp/pvz-sbx-\(getpid())-b"
            let f = open(a, O_CREAT | O_WRONLY, 0o600)
            guard f >= 0, write(f, "x", 1) == 1, fchmod(f, 0o600) == 0, fsync(f) == 0 else { _exit(14) }
            close(f)
            guard rename(a, b) == 0, unlink(b) == 0 else { _exit(15) }
            pvz_set_thread_name("pvz-test")
            usleep(1000)
        } == 0)
    }

    @Test func otherSocketFamiliesAndPrctlsGetAnErrorNotAKill() {
        #expect(inChild {
            install(.kill)
            _exit(socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) < 0 ? errno : 0)
        } == EAFNOSUPPORT)
        #expect(inChild {
            install(.kill)
            _exit(pvz_get_no_new_privs() < 0 ? errno : 0)  // prctl(PR_GET_NO_NEW_PRIVS)
        } == EPERM)
    }
}
