// Benchmarks the hot path: the eventfd ping-pong floor between two threads,
// and the daemon's kick → call round trip for a trivial hypercall, through a
// real socket, memfd guest RAM and eventfds (TestFrontEnd plays QEMU + guest).
import Foundation
import Logging
import PVZDaemon
import PVZServer
import TestFrontEnd
import VhostUser
import CPVZShim
import CMallocCounter
#if canImport(Glibc)
import Glibc
#endif

@inline(__always) func nowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

struct Stats {
    var p50: Double, p99: Double, mean: Double, perSecond: Double
    init(_ samples: [UInt64]) {
        let s = samples.sorted()
        p50 = Double(s[s.count / 2]) / 1000
        p99 = Double(s[min(s.count - 1, s.count * 99 / 100)]) / 1000
        let total = s.reduce(0, +)
        mean = Double(total) / Double(s.count) / 1000
        perSecond = Double(s.count) / (Double(total) / 1e9)
    }
    func line(_ name: String) -> String {
        String(format: "%-34@ p50 %8.2f us   p99 %8.2f us   mean %8.2f us   %9.0f /s", name as NSString, p50, p99, mean, perSecond)
    }
}

let iterations = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 20000
let warmup = 1000

func blockingRead(_ fd: Int32) {
    var v: UInt64 = 0
    while read(fd, &v, 8) != 8 {}
}

func pingPong() -> Stats {
    let a = eventfd(0, Int32(EFD_CLOEXEC)), b = eventfd(0, Int32(EFD_CLOEXEC))
    let total = iterations + warmup
    startThread(name: "bench-pong") {
        for _ in 0..<total { blockingRead(a); EventFD.signal(b) }
    }
    var samples: [UInt64] = []
    samples.reserveCapacity(iterations)
    for i in 0..<total {
        let t0 = nowNs()
        EventFD.signal(a)
        blockingRead(b)
        if i >= warmup { samples.append(nowNs() - t0) }
    }
    close(a); close(b)
    return Stats(samples)
}

func kickToCall() throws -> Stats {
    let dir = "/tmp/pvz-bench-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    let guest = GuestConfig(socketPath: "\(dir)/g1.sock",
                            spec: GuestSpec(osid: OSID(1), carveout: IPARange(start: IPA(0x0800_0000), size: 0x0400_0000)!),
                            settings: GuestSettings(onlineOnConnect: true))
    let daemon = try Daemon(config: DaemonConfig(guests: [guest], controlSocket: nil), logger: logger)
    try daemon.start()
    defer { daemon.stop() }
    let fe = try TestFrontEnd(path: "\(dir)/g1.sock")
    try fe.start()
    let q = fe.queues[0]
    let req = fe.alloc(64), resp = fe.alloc(64)
    // GET_DEV_PHYS_HEAP_ORIGIN(FW_LOCAL): a trivial call with an answer.
    var r = [UInt8](repeating: 0, count: 20)
    r[0] = 7; r[16] = 2
    fe.write(req, r)
    var samples = [UInt64](repeating: 0, count: iterations)
    var mallocs: UInt64 = 0
    for i in 0..<(iterations + warmup) {
        if i == warmup { mallocs = pvz_malloc_count() }
        let t0 = nowNs()
        q.addPair(request: req, 20, response: resp, 24)
        let len = q.blockUsed()
        let t1 = nowNs()
        if len != 20 || fe.load(resp, as: UInt32.self) != 0 { fatalError("call failed: len \(len)") }
        if i >= warmup { samples[i - warmup] = t1 - t0 }
    }
    mallocs = pvz_malloc_count() - mallocs
    mallocsPerCall = Double(mallocs) / Double(iterations)
    return Stats(samples)
}

nonisolated(unsafe) var mallocsPerCall = 0.0
let floor = pingPong()
let call = try kickToCall()
print("vhost-user-pvz hot-path benchmark (\(iterations) round trips each, \(warmup) warm-up)")
print(floor.line("eventfd ping-pong (floor)"))
print(call.line("kick -> call (GET_HEAP_ORIGIN)"))
print(String(format: "allocations per kick->call round trip (whole process, both sides): %.3f", mallocsPerCall))
print(String(format: "ratio kick->call / floor: p50 %.2fx  p99 %.2fx", call.p50 / floor.p50, call.p99 / floor.p99))
