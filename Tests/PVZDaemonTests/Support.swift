import Foundation
import Logging
import PVZContract
import PVZDaemon
import PVZServer
import TestFrontEnd
import VhostUser
import Synchronization

/// A daemon in-process with real sockets, and a guest driver speaking
/// virtio-pvz through a TestFrontEnd.
final class Harness {
    let daemon: Daemon
    let dir: String

    init(guests: [(osid: UInt32, online: Bool, policy: GuestPolicy)] = [(1, true, GuestPolicy())], control: Bool = false,
         dir existing: String? = nil, stateFile: Bool = false, logger custom: Logger? = nil,
         carveout: IPARange? = nil, ddkABI: DDKABI = .default, maxOSIDs: UInt32 = VirtioPVZ.defaultMaxOSIDs) throws {
        dir = existing ?? "/tmp/pvz-h-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var gs: [GuestConfig] = []
        for g in guests {
            var p = g.policy
            p.irq = 100 + g.osid
            gs.append(GuestConfig(socketPath: "\(dir)/g\(g.osid).sock",
                                  spec: GuestSpec(osid: OSID(g.osid), carveout: carveout ?? Self.carveout(g.osid), policy: p),
                                  settings: GuestSettings(onlineOnConnect: g.online, priority: g.osid)))
        }
        var logger = custom ?? Logger(label: "test")
        if custom == nil { logger.logLevel = .critical }
        var config = DaemonConfig(guests: gs, controlSocket: control ? "\(dir)/control.sock" : nil, maxOSIDs: maxOSIDs,
                                  stateFile: stateFile ? "\(dir)/state.json" : nil)
        config.ddkABI = ddkABI
        daemon = try Daemon(config: config, logger: logger)
        try daemon.start()
    }

    var keepDir = false
    deinit {
        daemon.stop()
        if !keepDir { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// Test RAM is 256 MiB at GPA 0; each guest's carve-out is at 128 MiB + 32 MiB * osid... all inside RAM.
    static func carveout(_ osid: UInt32) -> IPARange { IPARange(start: IPA(0x0800_0000), size: 0x0400_0000)! }

    func socket(_ osid: UInt32) -> String { "\(dir)/g\(osid).sock" }

    func connect(_ osid: UInt32) throws -> Guest {
        let fe = try TestFrontEnd(path: socket(osid))
        try fe.start()
        return Guest(fe: fe)
    }
}

/// The guest side of the PVZ connection over hypercallq.
final class Guest {
    let fe: TestFrontEnd
    let req: UInt64, resp: UInt64
    var requestID: UInt32 = 0
    /// Buffers this guest posted on eventq, in order (what `nextEvent` reads).
    var eventBuffers: [UInt64] = []
    init(fe: TestFrontEnd) {
        self.fe = fe
        req = fe.alloc(256)
        resp = fe.alloc(256)
    }
    var hypercallq: DriverQueue { fe.queues[0] }

    struct Reply { var status: PVZStatus?; var rawStatus: UInt32; var function: UInt32; var requestID: UInt32; var len: UInt32; var output: [UInt8] }

    /// Sends a raw request (bytes as given) and returns what came back.
    func raw(_ bytes: [UInt8], responseLength: UInt32 = 64) -> Reply? {
        fe.write(req, bytes)
        fe.write(resp, [UInt8](repeating: 0xEE, count: Int(responseLength)))
        var chain: [(UInt64, UInt32, Bool)] = []
        if !bytes.isEmpty { chain.append((req, UInt32(bytes.count), false)) }
        if responseLength > 0 { chain.append((resp, responseLength, true)) }
        hypercallq.add(chain)
        guard let (_, len) = hypercallq.waitUsed() else { return nil }
        let out = fe.read(resp, Int(responseLength))
        func le32(_ o: Int) -> UInt32 { out.count >= o + 4 ? UInt32(out[o]) | UInt32(out[o+1]) << 8 | UInt32(out[o+2]) << 16 | UInt32(out[o+3]) << 24 : 0 }
        return Reply(status: PVZStatus(rawValue: le32(0)), rawStatus: le32(0), function: le32(4), requestID: le32(8), len: len,
                     output: len > 16 ? Array(out[16..<Int(len)]) : [])
    }

    static func header(_ function: UInt32, devID: UInt32 = 0, requestID: UInt32) -> [UInt8] {
        [function, 0, devID, requestID].flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } }
    }
    static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    func call(_ f: PVZFunction, _ input: [UInt8] = [], devID: UInt32 = 0) -> Reply? {
        requestID &+= 1
        return raw(Self.header(f.rawValue, devID: devID, requestID: requestID) + input)
    }
}

extension Array where Element == UInt8 {
    func le32(_ o: Int) -> UInt32 { UInt32(self[o]) | UInt32(self[o+1]) << 8 | UInt32(self[o+2]) << 16 | UInt32(self[o+3]) << 24 }
    func le64(_ o: Int) -> UInt64 { UInt64(le32(o)) | UInt64(le32(o + 4)) << 32 }
}

/// Counts the log lines a daemon writes, by level (for log-flood tests).
final class CountingLogHandler: LogHandler, @unchecked Sendable {
    let lines = Mutex<[(Logger.Level, String)]>([])
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        lines.withLock { $0.append((level, message.description)) }
    }
    func count(atLeast level: Logger.Level) -> Int { lines.withLock { $0.filter { $0.0 >= level }.count } }
    var logger: Logger { Logger(label: "counted") { _ in self } }
}
