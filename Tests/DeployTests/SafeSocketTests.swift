import Platform
import Testing
import Foundation
import CPVZShim
import Logging
import SafeSockets
import VhostUser
#if canImport(Glibc)
import Glibc
#endif

/// A vhost-user device that does nothing: these tests are about the socket.
final class IdleDevice: VhostUserDevice, @unchecked Sendable {
    let queueCount = 1
    let maxQueueSize: UInt16 = 256
    let deviceFeatures: UInt64 = 1 << 32
    let configSize = 0
    func readConfig(into buffer: UnsafeMutableRawBufferPointer) {}
    func queueKicked(_ index: Int, _ ctx: BackendContext) {}
}

@Suite("safe sockets (issue 13)")
struct SafeSocketTests {
    @Test func aRegularFileIsNeverReplaced() throws {
        let d = TempDir()
        let p = d.file("vm1.sock")
        try Data("precious".utf8).write(to: URL(fileURLWithPath: p))
        #expect {
            _ = try SafeListener.bind(path: p, access: SocketAccess())
        } throws: { e in
            "\(e)".contains("\(p) exists and is a regular file, not a socket")
        }
        #expect(FileManager.default.contents(atPath: p) == Data("precious".utf8))
    }

    @Test func aLiveListenerIsNotTakenOverAndIsNamed() throws {
        let d = TempDir()
        let p = d.file("vm1.sock")
        let first = try SafeListener.bind(path: p, access: SocketAccess())
        defer { close(first.fd) }
        #expect {
            _ = try SafeListener.bind(path: p, access: SocketAccess())
        } throws: { e in
            "\(e)".contains("process \(getpid())") && "\(e)".contains("still listens")
        }
        // The first listener still owns the path: a client reaches it.
        #expect(first.identity.isInPlace)
        let c = pvz_unix_connect(p)
        #expect(c >= 0)
        close(c)
    }

    @Test func aStaleSocketIsReplaced() throws {
        let d = TempDir()
        let p = d.file("vm1.sock")
        let old = try SafeListener.bind(path: p, access: SocketAccess())
        close(old.fd)  // nobody listens any more: a crashed daemon's leftover
        let new = try SafeListener.bind(path: p, access: SocketAccess())
        defer { close(new.fd) }
        #expect(new.identity != old.identity)
        #expect(new.identity.isInPlace)
        // No temporary names are left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: d.path) == ["vm1.sock"])
    }

    @Test func modeAndGroupAreSetAndWorldModesRefused() throws {
        let d = TempDir()
        let p = d.file("g.sock")
        let b = try SafeListener.bind(path: p, access: SocketAccess(mode: 0o660, group: 65534))
        defer { close(b.fd) }
        let m = try #require(fileMode(p))
        #expect(m.kind == S_IFSOCK)
        #expect(m.mode == 0o660)
        #expect(m.gid == 65534)
        let plain = try SafeListener.bind(path: d.file("p.sock"), access: SocketAccess())
        defer { close(plain.fd) }
        #expect(fileMode(d.file("p.sock"))?.mode == 0o600)
        for bad: mode_t in [0o666, 0o606, 0o662, 0o060, 0o1660] {
            #expect(throws: SocketSetupError.self) { try SocketAccess.checkMode(bad) }
        }
        #expect(throws: SocketSetupError.self) { _ = try SafeListener.bind(path: d.file("w.sock"), access: SocketAccess(mode: 0o666)) }
        #expect(access(d.file("w.sock"), F_OK) != 0)
    }

    @Test func aWorldWritableDirectoryWithoutStickyBitIsRefused() throws {
        let d = TempDir()
        chmod(d.path, 0o777)
        #expect {
            _ = try SafeListener.bind(path: d.file("x.sock"), access: SocketAccess())
        } throws: { e in "\(e)".contains("writable by everyone without the sticky bit") }
        chmod(d.path, 0o1777)
        let b = try SafeListener.bind(path: d.file("x.sock"), access: SocketAccess())
        close(b.fd)
    }

    @Test func missingDirectoriesAreCreated() throws {
        let d = TempDir()
        let p = d.file("a/b/vm.sock")
        let b = try SafeListener.bind(path: p, access: SocketAccess())
        defer { close(b.fd) }
        #expect(fileMode(d.file("a/b"))?.mode == 0o755)
        #expect(fileMode(p)?.kind == S_IFSOCK)
    }

    @Test func inheritedDescriptorsMustBeListeningUnixStreamSockets() throws {
        let d = TempDir()
        #expect { try SafeListener.checkListening(fd: 1, what: "--fd") } throws: { "\($0)".contains("standard output") }
        #expect { try SafeListener.checkListening(fd: 999, what: "--fd") } throws: { "\($0)".contains("not open") }
        let file = open(d.file("f"), O_CREAT | O_RDWR, 0o600)
        defer { close(file) }
        #expect { try SafeListener.checkListening(fd: file, what: "--fd") } throws: { "\($0)".contains("regular file, not a socket") }
        let unbound = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(unbound) }
        #expect { try SafeListener.checkListening(fd: unbound, what: "--fd") } throws: { "\($0)".contains("not listening") }
        let dgram = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(dgram) }
        #expect { try SafeListener.checkListening(fd: dgram, what: "--fd") } throws: { "\($0)".contains("not a stream socket") }
        let inet = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(inet) }
        #expect { try SafeListener.checkListening(fd: inet, what: "--fd") } throws: { "\($0)".contains("not a Unix-domain socket") }
        let good = pvz_unix_listen(d.file("ok.sock"), 1)
        defer { close(good) }
        try SafeListener.checkListening(fd: good, what: "--fd")
        #expect(SafeListener.boundPath(good) == d.file("ok.sock"))
    }

    @Test func serverRemovesOnlyItsOwnSocketFile() throws {
        let d = TempDir()
        let p = d.file("vm.sock")
        var logger = Logger(label: "t"); logger.logLevel = .critical
        let s = try VhostUserServer(socketPath: p, device: IdleDevice(), logger: logger)
        _ = try OSThread(name: "t") { s.run() }
        #expect(s.isListening)
        // Someone replaces the file (a stale-socket cleanup gone wrong): QEMU
        // would not reach this server any more, and status must say so.
        unlink(p)
        let other = pvz_unix_listen(p, 1)
        defer { close(other) }
        #expect(!s.isListening)
        s.stop()
        usleep(200_000)
        // The other socket file is still there.
        #expect(fileMode(p)?.kind == S_IFSOCK)
    }

    @Test func peerCredentialsDecideWhoMayBeTheFrontEnd() throws {
        let d = TempDir()
        let p = d.file("vm.sock")
        let group: gid_t = 4242  // a group only the test's peers are in
        // The file lets group 4242 in; the server's rule does not.
        let b = try SafeListener.bind(path: p, access: SocketAccess(mode: 0o660, group: group))
        var logger = Logger(label: "t"); logger.logLevel = .critical
        let strict = try VhostUserServer(listenFD: b.fd, socketFile: b.identity, ownsSocketFile: true,
                                         access: SocketAccess(), device: IdleDevice(), logger: logger)
        _ = try OSThread(name: "t") { strict.run() }
        defer { strict.stop() }
        #expect(try !connectionKeptOpen(path: p, uid: 65534, gid: group))
        #expect(!strict.isConnected)
        // Root is always admitted.
        let c = pvz_unix_connect(p)
        usleep(100_000)
        #expect(strict.isConnected)
        close(c)

        let p2 = d.file("vm2.sock")
        let open = try VhostUserServer(socketPath: p2, access: SocketAccess(mode: 0o660, group: group), device: IdleDevice(), logger: logger)
        _ = try OSThread(name: "t") { open.run() }
        defer { open.stop() }
        // Primary group or supplementary group: both count.
        #expect(try connectionKeptOpen(path: p2, uid: 65534, gid: group))
        usleep(200_000)
        #expect(try connectionKeptOpen(path: p2, uid: 65534, gid: 65534, groups: [group]))
    }

    @Test func accessRules() {
        let a = SocketAccess(group: 10, allowedUIDs: [1000], allowedGIDs: [20])
        #expect(a.mode == 0o660)
        #expect(SocketAccess().mode == 0o600)
        #expect(a.admits(SocketPeer(pid: 1, uid: 0, gid: 0), daemonUID: 500))
        #expect(a.admits(SocketPeer(pid: 1, uid: 500, gid: 500), daemonUID: 500))
        #expect(a.admits(SocketPeer(pid: 1, uid: 1000, gid: 1000), daemonUID: 500))
        #expect(a.admits(SocketPeer(pid: 1, uid: 7, gid: 10), daemonUID: 500))
        #expect(a.admits(SocketPeer(pid: 1, uid: 7, gid: 7, groups: [20]), daemonUID: 500))
        #expect(!a.admits(SocketPeer(pid: 1, uid: 7, gid: 7, groups: [11]), daemonUID: 500))
    }
}
