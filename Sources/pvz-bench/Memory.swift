import Foundation
import PVZDaemon
import TestFrontEnd
#if canImport(Glibc)
import Glibc
#endif

/// What the real daemon binary holds while serving connected guests (each
/// made 100 calls): /proc/PID/status (KiB), its open fds, and the shared
/// libraries it maps.
struct DaemonFootprint {
    var rss = 0, anon = 0, file = 0, fds = 0, threads = 0
    var libraries: [String] = []
}

/// Starts the daemon with `n` configured guests, then connects them in
/// `steps` (cumulative counts: [1, 7] connects one, measures, connects the
/// other six, measures). The same process across steps: its code pages are
/// already in, so the difference is what the connected guests cost.
func daemonFootprints(guests n: Int, steps: [Int], binary: String) throws -> [DaemonFootprint] {
    let dir = "/tmp/pvz-bench-rss-\(getpid())-\(n)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let guests = (1...n).map {
        "{\"socket_path\": \"\(dir)/g\($0).sock\", \"osid\": \($0), \"carveout\": \"0x8000000:64M\", \"online_on_connect\": true}"
    }.joined(separator: ",\n")
    let config = "{\"max_osids\": \(max(8, n + 1)), \"guests\": [\(guests)]}"
    try config.write(toFile: "\(dir)/config.json", atomically: true, encoding: .utf8)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = ["--config", "\(dir)/config.json", "--log-level", "error"]
    try p.run()
    defer { p.terminate(); p.waitUntilExit() }
    var callers: [Caller] = []
    var out: [DaemonFootprint] = []
    for k in steps {
        while callers.count < k {
            let c = try Caller(socket: "\(dir)/g\(callers.count + 1).sock")
            for _ in 0..<100 { c.call() }
            callers.append(c)
        }
        usleep(200_000)
        out.append(try footprint(pid: p.processIdentifier))
    }
    withExtendedLifetime(callers) {}
    return out
}

func footprint(pid: Int32) throws -> DaemonFootprint {
    let status = try readProcFile("/proc/\(pid)/status")
    func field(_ name: String) throws -> Int {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }),
              let v = Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") else {
            throw TestFrontEnd.Failure.io("no \(name) in /proc/\(pid)/status")
        }
        return v
    }
    var f = DaemonFootprint()
    f.rss = try field("VmRSS")
    f.anon = try field("RssAnon")
    f.file = try field("RssFile")
    f.threads = try field("Threads")
    f.fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
    let maps = try readProcFile("/proc/\(pid)/maps")
    f.libraries = Set(maps.split(separator: "\n").compactMap { line -> String? in
        guard let path = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(5).first,
              path.hasPrefix("/"), path.contains(".so") else { return nil }
        return String(path.split(separator: "/").last!)
    }).sorted()
    return f
}

/// A /proc file whole: they report size 0, so read until EOF.
func readProcFile(_ path: String) throws -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw TestFrontEnd.Failure.io("open \(path): errno \(errno)") }
    defer { close(fd) }
    var out = [UInt8](), buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw TestFrontEnd.Failure.io("read \(path): errno \(errno)") }
        if n == 0 { break }
        out += buf[..<n]
    }
    return String(decoding: out, as: UTF8.self)
}
