import CPVZShim
import Foundation
import Glibc
import Platform
import PVZContract
import PVZServer
import Testing
@testable import VMManager

func pvzConnect(_ path: String) -> Int32 { pvz_unix_connect(path) }

final class ServerFixture: @unchecked Sendable {
    let dir = makeTempDir()
    let path: String
    let vmm: TestVMManager
    let server: ControlServer

    init(options: ControlServer.Options = ControlServer.Options(), vmm: TestVMManager = TestVMManager()) throws {
        path = dir + "/sub/control.sock"
        self.vmm = vmm
        server = ControlServer(path: path, handler: vmm, options: options)
        try server.start()
    }
    var client: ControlClient { ControlClient(path: path, timeoutSeconds: 5) }
    deinit { server.stop(); removeTree(dir) }
}

@Suite struct ServerTests {
    @Test func roundTripsThroughARealSocket() throws {
        let f = try ServerFixture()
        var st = stat()
        #expect(stat(f.path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        let on = try f.client.send(.online(osid: OSID(1), priority: 5))
        #expect(on.ok && on.guest?.priority == 5 && on.guest?.online == true)
        let again = try f.client.send(.online(osid: OSID(1), priority: 5))
        #expect(!again.ok && again.code == ControlErrorCode.osidIsOnline)
        let heaps = try f.client.send(.heaps(osid: OSID(1)))
        #expect(heaps.heaps?.count == 1)
        let status = try f.client.send(.status)
        #expect(status.status?.guests.first { $0.osid == 1 }?.online == true)
        let dt = try f.client.send(.dt(osid: OSID(2)))
        #expect(dt.dtboBytes == [0xD0, 0x0D, 0xFE, 0xED, 2])
        let bad = try f.client.send(.offline(osid: OSID(6)))
        #expect(!bad.ok && bad.code == ControlErrorCode.invalidOSID)
        let conf = try f.client.send(.configure(param: .name("VMM_CONF_HCS_DEADLINE"), value: 77))
        #expect(conf.parameter?.name == "VMM_CONF_HCS_DEADLINE")
        #expect(f.vmm.params.withLock { $0["VMM_CONF_HCS_DEADLINE"] } == 77)
    }

    @Test func garbageLinesGetErrorsAndTheConnectionSurvives() throws {
        let f = try ServerFixture()
        var input: [UInt8] = Array("hello\n{\"cmd\":\"nope\"}\n\n[]\n".utf8)
        input += [0xFF, 0x00, 0x80, 0x0A]
        input += Array("{\"cmd\":\"online\",\"osid\":\"x\"}\r\n{\"cmd\":\"guests\"}\n".utf8)
        let out = lines(rawExchange(f.path, input))
        #expect(out.count == 7)
        let codes = out.map { (try? ControlCodec.decodeResponse(Array($0.utf8)))?.code ?? "unreadable" }
        #expect(codes == [ControlErrorCode.badJSON, ControlErrorCode.unknownCommand, ControlErrorCode.badJSON,
                          ControlErrorCode.badJSON, ControlErrorCode.badJSON, ControlErrorCode.badRequest, "unreadable"])
        #expect(out.last?.hasPrefix("{") == true && (try? ControlCodec.decodeResponse(Array(out.last!.utf8)))?.ok == true
                || codes.last == "unreadable")
        // The last line is a good request: its response is ok.
        let last = try ControlCodec.decodeResponse(Array(out[6].utf8))
        #expect(last.ok && last.guests?.count == 3)
        // Nothing the garbage said reached the handler.
        #expect(f.vmm.calls.withLock { $0 } == ["guests"])
    }

    @Test func oversizedLineIsRefusedWithTheLimitAndClosed() throws {
        var o = ControlServer.Options()
        o.maxLineBytes = 1024
        let f = try ServerFixture(options: o)
        let big = Array(("{\"cmd\":\"status\",\"pad\":\"" + String(repeating: "x", count: 5000) + "\"}\n{\"cmd\":\"status\"}\n").utf8)
        let out = lines(rawExchange(f.path, big))
        #expect(out.count == 1)
        let r = try ControlCodec.decodeResponse(Array(out[0].utf8))
        #expect(r.code == ControlErrorCode.lineTooLong)
        #expect(r.error?.contains("limit 1024") == true)
        // A line exactly at the limit is read.
        let exact = "{\"cmd\":\"status\"}" + String(repeating: " ", count: 1024 - 16)
        #expect(exact.utf8.count == 1024)
        let ok = lines(rawExchange(f.path, Array((exact + "\n").utf8)))
        #expect((try? ControlCodec.decodeResponse(Array(ok.first?.utf8 ?? "".utf8)))?.ok == true)
        // The server still serves.
        #expect(try f.client.send(.guests).ok)
    }

    @Test func defaultLimitIs64KiB() throws {
        let f = try ServerFixture()
        let big = Array((String(repeating: "x", count: 70_000) + "\n").utf8)
        let r = try ControlCodec.decodeResponse(Array(lines(rawExchange(f.path, big))[0].utf8))
        #expect(r.error?.contains("limit 65536") == true)
    }

    @Test(.enabled(if: getuid() == 0, "needs root to run a client as nobody"))
    func aPeerWithAnotherUIDIsRefused() throws {
        var o = ControlServer.Options()
        // Group root may open the file (the test runs as root); the peer is
        // uid 65534 in group 0, so the SO_PEERCRED check is what refuses.
        // (World modes are refused by SafeListener.)
        o.mode = 0o660
        let f = try ServerFixture(options: o)
        let script = """
        import socket, sys
        s = socket.socket(socket.AF_UNIX)
        s.connect(sys.argv[1])
        s.sendall(b'{"cmd":"online","osid":1}\\n')
        sys.stdout.write(s.makefile().readline())
        """
        let (rc, out, err) = try run(["/usr/bin/setpriv", "--reuid=65534", "--regid=0", "--clear-groups",
                                      "/usr/bin/python3", "-c", script, f.path])
        #expect(rc == 0, "\(err)")
        let r = try ControlCodec.decodeResponse(Array(out.utf8))
        #expect(!r.ok && r.code == ControlErrorCode.permissionDenied)
        #expect(r.error?.contains("uid 65534") == true)
        #expect(f.vmm.calls.withLock { $0 }.isEmpty)
        #expect(ControlServer.isAllowed(PeerCredentials(pid: 1, uid: 0, gid: 0), daemonUID: 1000))
        #expect(ControlServer.isAllowed(PeerCredentials(pid: 1, uid: 1000, gid: 0), daemonUID: 1000))
        #expect(!ControlServer.isAllowed(PeerCredentials(pid: 1, uid: 1001, gid: 0), daemonUID: 1000))
    }

    @Test func manyClientsAtOnce() throws {
        let f = try ServerFixture(vmm: TestVMManager(delay: 0.002))
        let clients = 16, each = 10
        let failures = Locked(0)
        let threads = try (0..<clients).map { i in
            try OSThread(name: "t\(i)") {
                for _ in 0..<each {
                    let r = try? f.client.send(.guests)
                    if r?.ok != true { failures.withLock { $0 += 1 } }
                }
            }
        }
        threads.forEach { $0.join() }
        #expect(failures.withLock { $0 } == 0)
        #expect(f.vmm.calls.withLock { $0.count } == clients * each)
    }

    @Test func clientsBeyondTheLimitAreToldSo() throws {
        var o = ControlServer.Options()
        o.maxClients = 2
        let f = try ServerFixture(options: o)
        // Two idle connections hold both slots.
        let a = pvzConnect(f.path), b = pvzConnect(f.path)
        defer { close(a); close(b) }
        usleep(100_000)
        let r = try f.client.send(.status)
        #expect(r.code == ControlErrorCode.tooManyClients)
        #expect(r.error?.contains("limit 2") == true)
    }

    @Test func idleClientsAreDisconnected() throws {
        var o = ControlServer.Options()
        o.idleTimeoutSeconds = 0.2
        let f = try ServerFixture(options: o)
        let fd = pvzConnect(f.path)
        defer { close(fd) }
        setSocketTimeouts(fd, seconds: 3)
        var reader = LineReader(fd: fd, limit: 4096)
        guard case .line(let l) = reader.next() else { Issue.record("no idle notice"); return }
        #expect(try ControlCodec.decodeResponse(l).code == ControlErrorCode.idleTimeout)
        #expect(reader.next() == .eof)
    }

    @Test func staleSocketIsReplacedButALiveOneOrAFileIsNot() throws {
        let f = try ServerFixture()
        // A second daemon on a live socket is refused.
        let second = ControlServer(path: f.path, handler: f.vmm)
        #expect(throws: SystemError.self) { try second.start() }
        #expect(try f.client.send(.status).ok)
        // A regular file at the path is left alone.
        let file = f.dir + "/plain"
        _ = FileManager.default.createFile(atPath: file, contents: Data("keep".utf8))
        #expect(throws: SystemError.self) { try ControlServer(path: file, handler: f.vmm).start() }
        #expect(FileManager.default.contents(atPath: file) == Data("keep".utf8))
        // A stale socket (no listener) is replaced.
        let stalePath = f.dir + "/stale.sock"
        let fd = pvz_unix_listen(stalePath, 1)
        close(fd)
        let s = ControlServer(path: stalePath, handler: f.vmm)
        try s.start()
        #expect(try ControlClient(path: stalePath).send(.status).ok)
        s.stop()
        #expect(access(stalePath, F_OK) != 0)
    }

    @Test func tooLongSocketPathIsAClearError() {
        let s = ControlServer(path: "/tmp/" + String(repeating: "p", count: 120), handler: TestVMManager())
        #expect {
            try s.start()
        } throws: { e in
            "\(e)".contains("1...107 bytes")
        }
    }

    @Test func clientReportsUnreachableAndTimeout() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        #expect(throws: ControlClientError.self) { try ControlClient(path: dir + "/none.sock").send(.status) }
        do {
            _ = try ControlClient(path: dir + "/none.sock").send(.status)
        } catch {
            guard case .unreachable = error else { Issue.record("expected unreachable, got \(error)"); return }
            #expect("\(error)".contains("No such file"))
        }
        // A listener that never accepts: connect succeeds (backlog), no answer comes.
        let path = dir + "/mute.sock"
        let fd = pvz_unix_listen(path, 4)
        defer { close(fd) }
        let start = Date()
        do {
            _ = try ControlClient(path: path, timeoutSeconds: 0.3).send(.status)
            Issue.record("answer from a mute socket")
        } catch {
            guard case .timedOut = error else { Issue.record("expected timeout, got \(error)"); return }
        }
        #expect(Date().timeIntervalSince(start) < 2)
    }

    @Test func stopDisconnectsClientsAndRemovesTheSocket() throws {
        let f = try ServerFixture()
        let fd = pvzConnect(f.path)
        defer { close(fd) }
        usleep(50_000)
        f.server.stop()
        var reader = LineReader(fd: fd, limit: 100)
        #expect(reader.next() == .eof)
        #expect(access(f.path, F_OK) != 0)
    }
}
