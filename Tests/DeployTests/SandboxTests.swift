import Testing
import Foundation
import CSandbox
import CPVZShim
import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// The seccomp filter the daemon loads (SeccompFilter.install), proven in a
/// child process: a forbidden call kills it with SIGSYS under `kill`, the
/// same call passes under `log` and `off`, and what the daemon needs works.
@Suite("sandbox (issue 13)")
struct SandboxTests {
    @Test func forkIsKilledUnderKill() async {
        await #expect(processExitsWith: .signal(SIGSYS)) {
            try SeccompFilter.install(.kill)
            _ = fork()
            exit(0)
        }
    }

    @Test func execveIsKilledUnderKill() async {
        await #expect(processExitsWith: .signal(SIGSYS)) {
            try SeccompFilter.install(.kill)
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
            execv("/bin/true", argv)
            exit(0)
        }
    }

    @Test func ptraceAndMountAreKilledUnderKill() async {
        await #expect(processExitsWith: .signal(SIGSYS)) {
            try SeccompFilter.install(.kill)
            _ = mount("none", "/mnt", "tmpfs", 0, nil)
            exit(0)
        }
    }

    @Test func theSameCallPassesUnderLogAndOff() async {
        await #expect(processExitsWith: .exitCode(7)) {
            try SeccompFilter.install(.log)
            let pid = fork()
            if pid == 0 { _exit(7) }
            var st: Int32 = 0
            waitpid(pid, &st, 0)
            exit((st >> 8) & 0xff)
        }
        await #expect(processExitsWith: .exitCode(7)) {
            try SeccompFilter.install(.off)
            let pid = fork()
            if pid == 0 { _exit(7) }
            var st: Int32 = 0
            waitpid(pid, &st, 0)
            exit((st >> 8) & 0xff)
        }
    }

    @Test func whatTheDaemonNeedsStillWorks() async {
        await #expect(processExitsWith: .success) {
            try SeccompFilter.install(.kill)
            // A thread, an eventfd, a Unix socket pair, memfd + mmap, a file renamed and fsynced.
            var t = pthread_t()
            guard pthread_create(&t, nil, { _ in nil }, nil) == 0 else { exit(10) }
            pthread_join(t, nil)
            guard eventfd(0, 0) >= 0 else { exit(11) }
            guard socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0) >= 0 else { exit(12) }
            let dir = "/tmp"
            let f = open("\(dir)/pvz-sbx-\(getpid())-a", O_CREAT | O_WRONLY, 0o600)
            guard f >= 0, write(f, "x", 1) == 1, fsync(f) == 0 else { exit(13) }
            close(f)
            guard rename("\(dir)/pvz-sbx-\(getpid())-a", "\(dir)/pvz-sbx-\(getpid())-b") == 0 else { exit(14) }
            unlink("\(dir)/pvz-sbx-\(getpid())-b")
            exit(0)
        }
    }

    @Test func otherSocketFamiliesGetAnErrorNotAKill() async {
        await #expect(processExitsWith: .exitCode(Int32(EAFNOSUPPORT))) {
            try SeccompFilter.install(.kill)
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            exit(s < 0 ? errno : 0)
        }
    }
}
