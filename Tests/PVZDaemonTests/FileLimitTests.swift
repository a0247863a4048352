import Testing
import Foundation
import PVZDaemon
import TestFrontEnd

/// The daemon binary raises its own RLIMIT_NOFILE to what its guests can need
/// (FileLimit), says so when the hard limit is too low, and keeps libvirt,
/// Foundation and ICU out of its address space (docs/benchmarks.md, memory).
@Suite("file descriptor limit and mapped libraries of the daemon binary", .serialized)
struct FileLimitTests {
    /// The daemon started through `sh -c "ulimit ...; exec daemon"`, one guest.
    final class LimitedDaemon {
        let process = Process()
        let dir: String
        let log: String
        init(ulimit: String, extra: [String] = []) throws {
            let exe = try #require(ExactlyOnceTests.DaemonProcess.binary(), "the vhost-user-pvz binary must be built next to the tests")
            dir = try ExactlyOnceTests.makeDir()
            log = "\(dir)/daemon.log"
            let args = ["--socket-path", "\(dir)/g1.sock", "--osid", "1", "--carveout", "0x08000000:64M",
                        "--online-on-connect", "--log-level", "debug"] + extra
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "\(ulimit) && exec \"$0\" \"$@\" 2>\"\(log)\"", exe] + args
            try process.run()
        }
        /// The limit is set before the first socket: once it listens, /proc shows it.
        func waitListening() throws {
            for _ in 0..<500 where !FileManager.default.fileExists(atPath: "\(dir)/g1.sock") { usleep(10_000) }
            try #require(FileManager.default.fileExists(atPath: "\(dir)/g1.sock"), "the daemon never listened: \(logText)")
        }
        /// (soft, hard) of "Max open files" in /proc/PID/limits.
        func openFilesLimit() throws -> (soft: UInt64, hard: UInt64) {
            let text = try String(contentsOfFile: "/proc/\(process.processIdentifier)/limits", encoding: .utf8)
            let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("Max open files") })
            let f = line.dropFirst("Max open files".count).split(separator: " ")
            return (try #require(UInt64(f[0])), try #require(UInt64(f[1])))
        }
        var openFDs: Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(process.processIdentifier)/fd").count) ?? -1 }
        var maps: String { (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/maps", encoding: .utf8)) ?? "" }
        var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        deinit {
            if process.isRunning { process.terminate(); process.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @Test func theNeedGrowsByOneGuestsWorstCasePerGuest() {
        #expect(FileLimit.need(guests: 7) - FileLimit.need(guests: 6) == FileLimit.perGuest)
        // 3 vrings × kick/call/err alone are 9; the 15 guests of maxOSIDsLimit 16 stay under a typical 1024.
        #expect(FileLimit.perGuest >= 9 + 8)
        #expect(FileLimit.need(guests: 15) < 1024)
        #expect(FileLimit.need(guests: 1, controlClients: 100) - FileLimit.need(guests: 1, controlClients: 32) == 68)
    }

    /// Under `ulimit -Sn 40` the daemon raises the soft limit to its need for one guest; the hard one stays.
    @Test func aLowSoftLimitIsRaisedToTheNeed() throws {
        let d = try LimitedDaemon(ulimit: "ulimit -Sn 40")
        try d.waitListening()
        let (soft, hard) = try d.openFilesLimit()
        #expect(soft == UInt64(FileLimit.need(guests: 1)), "log: \(d.logText)")
        #expect(hard > 40)
        #expect(d.logText.contains("raised the soft RLIMIT_NOFILE from 40 to \(FileLimit.need(guests: 1))"))
    }

    /// A soft limit above the need is left alone (never lowered).
    @Test func aHighSoftLimitIsLeftAlone() throws {
        let d = try LimitedDaemon(ulimit: "ulimit -Sn 1000")
        try d.waitListening()
        #expect(try d.openFilesLimit().soft == 1000)
        #expect(!d.logText.contains("raised"))
    }

    /// A hard limit under the need: the soft one goes up to it, and the error names need and limit.
    @Test func aHardLimitUnderTheNeedIsAnErrorNamingBoth() throws {
        let need = FileLimit.need(guests: 1)
        let d = try LimitedDaemon(ulimit: "ulimit -Sn 30 && ulimit -Hn \(need - 10)")
        try d.waitListening()
        let (soft, hard) = try d.openFilesLimit()
        #expect(soft == UInt64(need - 10) && hard == UInt64(need - 10))
        #expect(d.logText.contains("1 guests need up to \(need)"), "log: \(d.logText)")
        #expect(d.logText.contains("the hard RLIMIT_NOFILE is \(need - 10)"))
        #expect(d.logText.contains("error"))
    }

    /// A connected guest with an inflight region holds no more than the worst case counted for it.
    @Test func aConnectedGuestStaysWithinItsCount() throws {
        let d = try LimitedDaemon(ulimit: "true")
        try d.waitListening()
        usleep(100_000)
        let idle = d.openFDs
        let fe = try TestFrontEnd(path: "\(d.dir)/g1.sock")
        try fe.start(inflight: true)
        usleep(100_000)
        let busy = d.openFDs
        #expect(busy > idle, "the connection and its eventfds must show in /proc/PID/fd")
        #expect(busy <= FileLimit.need(guests: 1))
        // The listener, the server's epoll and its wake-up eventfd were there before the guest connected.
        #expect(busy - idle <= FileLimit.perGuest - 3, "idle \(idle), connected \(busy)")
        withExtendedLifetime(fe) {}
    }

    /// libvirt is opened only with a listener; Foundation (libFoundation, its ICU) never.
    @Test func noLibvirtFoundationOrICUMappedWithoutAListener() throws {
        let d = try LimitedDaemon(ulimit: "true")
        try d.waitListening()
        let maps = d.maps
        #expect(maps.contains("vhost-user-pvz"), "no maps read")
        for lib in ["libvirt.so", "libFoundation.so", "libFoundationInternationalization", "lib_FoundationICU", "libicuuc", "libgnutls"] {
            #expect(!maps.contains(lib), "\(lib) is mapped into the daemon")
        }
    }

    /// A libvirt URI of a file-based driver (`test:///default` reads its
    /// directories and file systems in the client): the sandboxed daemon
    /// connects and lives; an admin's URI must never get it killed by seccomp.
    @Test func aFileBasedLibvirtDriverLivesInTheSandbox() throws {
        let d = try LimitedDaemon(ulimit: "true", extra: ["--libvirt-uri", "test:///default", "--seccomp", "kill"])
        try d.waitListening()
        for _ in 0..<300 where !d.logText.contains("libvirt connected") && d.process.isRunning { usleep(10_000) }
        usleep(300_000)
        #expect(d.process.isRunning, "the daemon died (status \(d.process.isRunning ? 0 : d.process.terminationStatus)): \(d.logText)")
        #expect(d.logText.contains("libvirt connected"), "log: \(d.logText)")
    }
}
