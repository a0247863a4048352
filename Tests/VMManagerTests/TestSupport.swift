import Foundation
import Glibc
import PVZContract
import PVZServer
import Synchronization
@testable import VMManager

/// A value the tests share with closures and threads: a Mutex (noncopyable,
/// so it cannot be captured itself) in a class.
final class Locked<Value>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: sending Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout sending Value) throws -> sending R) rethrows -> sending R {
        try mutex.withLock(body)
    }
}

/// A small in-memory VM manager behind the control socket, with the DDK's
/// rules for online/offline, so server and applier tests have real answers.
final class TestVMManager: ControlHandler, @unchecked Sendable {
    struct Guest { var online = false; var priority: UInt32 = 0; var domain: String? }
    let guests = Locked([UInt32: Guest]())
    let params = Locked([String: UInt32]())
    let calls = Locked([String]())
    let defaultPriority: UInt32
    let delay: Double

    init(osids: [UInt32] = [1, 2, 3], defaultPriority: UInt32 = 1, delay: Double = 0) {
        self.defaultPriority = defaultPriority
        self.delay = delay
        guests.withLock { g in for o in osids { g[o] = Guest() } }
    }

    func status(_ osid: UInt32, _ g: Guest) -> GuestStatus {
        GuestStatus(osid: osid, domain: g.domain, socketPath: "/tmp/pvz-\(osid).sock", listening: true, connected: false,
                    online: g.online, priority: g.priority,
                    heaps: g.online ? [HeapStatus(osid: osid, heapId: 0, heapName: "GPU_LOCAL", origin: "HOST",
                                                  ipa: 0x1001_0000, pa: UInt64(osid) << 32, size: 0x10_0000)] : [])
    }

    func handle(_ request: ControlRequest, peer: PeerCredentials) -> ControlResponse {
        calls.withLock { $0.append(request.command) }
        if delay > 0 { usleep(UInt32(delay * 1_000_000)) }
        return guests.withLock { gs -> ControlResponse in
            func lookup(_ o: OSID) -> Guest? { gs[o.rawValue] }
            let invalid = { (o: OSID) in ControlResponse.failure(ControlErrorCode.invalidOSID, "\(o) is not a configured guest") }
            switch request {
            case .status:
                return .success(status: DaemonStatus(version: "test", pid: getpid(), uptimeSeconds: 0, controlSocket: "-",
                    maxOsids: 8, guests: gs.keys.sorted().map { status($0, gs[$0]!) }))
            case .guests:
                return .success(guests: gs.keys.sorted().map { status($0, gs[$0]!) })
            case .heaps(let o):
                let sel = o.map { [$0.rawValue] } ?? gs.keys.sorted()
                return .success(heaps: sel.flatMap { gs[$0].map { status(0, $0).heaps } ?? [] })
            case .online(let o, let p):
                guard var g = lookup(o) else { return invalid(o) }
                if g.online { return .failure(ControlErrorCode.osidIsOnline, "\(o) is already online") }
                g.online = true
                g.priority = p ?? defaultPriority
                gs[o.rawValue] = g
                return .success(guest: status(o.rawValue, g))
            case .offline(let o):
                guard var g = lookup(o) else { return invalid(o) }
                if !g.online { return .failure(ControlErrorCode.osidIsOffline, "\(o) is already offline") }
                g.online = false
                gs[o.rawValue] = g
                return .success(guest: status(o.rawValue, g))
            case .configure(let p, let v):
                params.withLock { $0[p.description] = v }
                return .success(parameter: ConfParamStatus(param: 0, name: p.description, value: v))
            case .dt(let o):
                guard lookup(o) != nil else { return invalid(o) }
                return .success(dtbo: [0xD0, 0x0D, 0xFE, 0xED, UInt8(o.rawValue)])
            case .prepare(let o, let d):
                guard var g = lookup(o) else { return invalid(o) }
                g.domain = d
                gs[o.rawValue] = g
                return .success(guest: status(o.rawValue, g))
            case .metrics:
                return .success(metrics: DaemonMetrics(uptimeSeconds: 1, hostHeapBytes: 0, invalidOsidCalls: 0,
                    guests: gs.keys.sorted().map { o in
                        GuestMetrics(osid: o, domain: gs[o]!.domain, listening: true, connected: false, online: gs[o]!.online,
                                     needsReset: false, callsByFunction: [], callsByStatus: [], kicks: 0, commands: 0, faults: 0,
                                     events: 0, eventsDropped: 0, heapBytes: gs[o]!.online ? 0x10_0000 : 0, disconnects: 0)
                    }))
            }
        }
    }
}

/// A fresh directory under /tmp, world-searchable so a client of another
/// uid can reach a socket inside it.
func makeTempDir() -> String {
    var template = Array("/tmp/pvz-vmm-test-XXXXXX".utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    precondition(p != nil, "mkdtemp failed")
    let path = String(cString: p!)
    chmod(path, 0o755)
    return path
}

func removeTree(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

/// Runs a program; returns exit status and stdout.
func run(_ argv: [String], stdin: String? = nil) throws -> (Int32, String, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: argv[0])
    p.arguments = Array(argv.dropFirst())
    let out = Pipe(), err = Pipe(), inp = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = inp
    try p.run()
    if let stdin { inp.fileHandleForWriting.write(Data(stdin.utf8)) }
    try inp.fileHandleForWriting.close()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// A raw client: writes bytes, reads everything until EOF or timeout.
func rawExchange(_ path: String, _ bytes: [UInt8], readTimeout: Double = 5) -> [UInt8] {
    let fd = pvzConnect(path)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    setSocketTimeouts(fd, seconds: readTimeout)
    _ = sendAll(fd, bytes)
    shutdown(fd, Int32(SHUT_WR))
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        if n <= 0 { break }
        out += buf[..<n]
    }
    return out
}

func lines(_ bytes: [UInt8]) -> [String] {
    String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
}
