import Testing
import Foundation
import CPVZShim
import Logging
import PVZContract
import PVZDaemon
import PVZServer
import SafeSockets
import VMManager
import VhostUser
#if canImport(Glibc)
import Glibc
#endif

func quietLogger() -> Logger {
    var l = Logger(label: "t")
    l.logLevel = .critical
    return l
}

func guestConfig(_ osid: UInt32, path: String? = nil, fdName: String? = nil, fd: Int32? = nil) -> GuestConfig {
    var p = GuestPolicy()
    p.irq = 100 + osid
    return GuestConfig(socketPath: path, listenFD: fd, fdName: fdName,
                       spec: GuestSpec(osid: OSID(osid), carveout: IPARange(start: IPA(0x1000_0000), size: 64 << 20)!, policy: p),
                       settings: GuestSettings())
}

@Suite("daemon sockets: a second daemon, status, socket activation (issue 13)")
struct DaemonSocketTests {
    @Test func aSecondDaemonLeavesTheFirstAlone() throws {
        let d = TempDir()
        let first = try Daemon(config: DaemonConfig(guests: [guestConfig(1, path: d.file("vm1.sock"))], controlSocket: d.file("c1.sock")),
                               logger: quietLogger())
        try first.start()
        defer { first.stop() }
        let before = try #require(first.guests[0].vhostServer.socketFile)
        // Same guest socket: refused, naming this process.
        #expect {
            _ = try Daemon(config: DaemonConfig(guests: [guestConfig(1, path: d.file("vm1.sock"))], controlSocket: nil), logger: quietLogger())
        } throws: { "\($0)".contains("process \(getpid())") && "\($0)".contains("still listens") }
        // A new guest socket but the first's control socket: refused, and its
        // own guest socket (already bound) is removed again.
        #expect(throws: ConfigError.self) {
            _ = try Daemon(config: DaemonConfig(guests: [guestConfig(2, path: d.file("vm2.sock"))], controlSocket: d.file("c1.sock")),
                           logger: quietLogger())
        }
        #expect(access(d.file("vm2.sock"), F_OK) != 0)
        // The first daemon's sockets are untouched and answer.
        #expect(before.isInPlace)
        let status = try ControlClient(path: d.file("c1.sock")).send(.status)
        #expect(status.status?.guests.first?.listening == true)
    }

    @Test func statusReportsTheRealListeningState() throws {
        let d = TempDir()
        let daemon = try Daemon(config: DaemonConfig(guests: [guestConfig(1, path: d.file("vm1.sock"))], controlSocket: d.file("c.sock")),
                                logger: quietLogger())
        try daemon.start()
        defer { daemon.stop() }
        let client = ControlClient(path: d.file("c.sock"))
        #expect(try client.send(.guests).guests?.first?.listening == true)
        #expect(try client.send(.prepare(osid: OSID(1), domain: "vm")).ok)
        unlink(d.file("vm1.sock"))  // QEMU can no longer find the daemon
        #expect(try client.send(.guests).guests?.first?.listening == false)
        let r = try client.send(.prepare(osid: OSID(1), domain: "vm"))
        #expect(!r.ok && r.code == ControlErrorCode.notReady)
        #expect(r.error?.contains("not listening") == true)
    }

    @Test func activationVariablesAreParsedAsSystemdDefinesThem() throws {
        let pid = getpid()
        #expect(try SystemdActivation.parse(environment: [:], pid: pid, check: false).isEmpty)
        // Meant for another process: not ours.
        #expect(try SystemdActivation.parse(environment: ["LISTEN_PID": "\(pid + 1)", "LISTEN_FDS": "2"], pid: pid, check: false).isEmpty)
        let two = try SystemdActivation.parse(environment: ["LISTEN_PID": "\(pid)", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "control:vm1"], pid: pid, check: false)
        #expect(two.map(\.fd) == [3, 4])
        #expect(two.map(\.name) == ["control", "vm1"])
        #expect(try SystemdActivation.parse(environment: ["LISTEN_PID": "\(pid)", "LISTEN_FDS": "1"], pid: pid, check: false).map(\.name) == ["unknown"])
        #expect(throws: SocketSetupError.self) { try SystemdActivation.parse(environment: ["LISTEN_PID": "\(pid)", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a"], pid: pid, check: false) }
        #expect(throws: SocketSetupError.self) { try SystemdActivation.parse(environment: ["LISTEN_PID": "\(pid)", "LISTEN_FDS": "-1"], pid: pid, check: false) }
        #expect(throws: SocketSetupError.self) { try SystemdActivation.parse(environment: ["LISTEN_PID": "\(pid)", "LISTEN_FDS": "100000"], pid: pid, check: false) }
        #expect(throws: SocketSetupError.self) { try SystemdActivation.parse(environment: ["LISTEN_FDS": "1"], pid: pid, check: false) }
        #expect(throws: SocketSetupError.self) { try SystemdActivation.parse(environment: ["LISTEN_PID": "abc", "LISTEN_FDS": "1"], pid: pid, check: false) }
    }

    /// Sockets as systemd would hand them over (bound elsewhere), matched to guests.
    @Test func inheritedSocketsAreMatchedByNameOrPath() throws {
        let d = TempDir()
        let vm1 = pvz_unix_listen(d.file("vm1.sock"), 1)
        let vm2 = pvz_unix_listen(d.file("vm2.sock"), 1)
        let ctl = pvz_unix_listen(d.file("control.sock"), 1)
        let inherited = [InheritedSocket(fd: ctl, name: "control", path: d.file("control.sock")),
                         InheritedSocket(fd: vm1, name: "vm1", path: d.file("vm1.sock")),
                         InheritedSocket(fd: vm2, name: "other", path: d.file("vm2.sock"))]
        let config = DaemonConfig(guests: [guestConfig(1, fdName: "vm1"), guestConfig(2, path: d.file("vm2.sock"))], controlSocket: nil)
        let daemon = try Daemon(config: config, logger: quietLogger(), inherited: inherited)
        try daemon.start()
        let status = try ControlClient(path: d.file("control.sock")).send(.guests)
        #expect(status.guests?.map(\.socketPath) == [d.file("vm1.sock"), d.file("vm2.sock")])
        #expect(status.guests?.map(\.listening) == [true, true])
        daemon.stop()
        usleep(200_000)
        // Handed-over sockets belong to systemd: their files stay.
        #expect(fileMode(d.file("vm1.sock"))?.kind == S_IFSOCK)
        #expect(fileMode(d.file("control.sock"))?.kind == S_IFSOCK)
    }

    @Test func aSpareOrMissingInheritedSocketIsAnError() throws {
        let d = TempDir()
        let a = pvz_unix_listen(d.file("a.sock"), 1)
        let b = pvz_unix_listen(d.file("b.sock"), 1)
        defer { close(a); close(b) }
        let two = [InheritedSocket(fd: a, name: "vm1", path: d.file("a.sock")), InheritedSocket(fd: b, name: "vm9", path: d.file("b.sock"))]
        #expect {
            _ = try Daemon(config: DaemonConfig(guests: [guestConfig(1, fdName: "vm1")], controlSocket: nil), logger: quietLogger(), inherited: two)
        } throws: { "\($0)".contains("fd \(b) 'vm9'") && "\($0)".contains("matches no guest") }
        #expect {
            _ = try Daemon(config: DaemonConfig(guests: [guestConfig(1, fdName: "vm3")], controlSocket: nil), logger: quietLogger(), inherited: two)
        } throws: { "\($0)".contains("fd_name 'vm3': no socket-activated descriptor of that name (LISTEN_FDNAMES: vm1:vm9)") }
        // One guest without a socket takes the one socket handed over.
        let one = [InheritedSocket(fd: a, name: "unknown", path: d.file("a.sock"))]
        let daemon = try Daemon(config: DaemonConfig(guests: [guestConfig(1)], controlSocket: nil), logger: quietLogger(), inherited: one)
        #expect(daemon.guests[0].vhostServer.listenFD == a)
    }
}
