import Foundation
import TestFrontEnd
#if canImport(Glibc)
import Glibc
#endif

/// Resident memory of the real daemon binary serving `guests` connected
/// guests (each made one call), from /proc/PID/status (KiB).
func daemonRSS(guests n: Int, binary: String) throws -> Int {
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
    let callers = try (1...n).map { try Caller(socket: "\(dir)/g\($0).sock") }
    for c in callers { for _ in 0..<100 { c.call() } }
    usleep(200_000)
    let status = try String(contentsOfFile: "/proc/\(p.processIdentifier)/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
        throw TestFrontEnd.Failure.io("no VmRSS for pid \(p.processIdentifier)")
    }
    withExtendedLifetime(callers) {}
    return kb
}
