import CMallocCounter
import Foundation
import Platform
#if canImport(Glibc)
import Glibc
#endif

@inline(__always) func nowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Latency figures from round-trip samples (ns).
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
        String(format: "%-38@ p50 %8.2f us   p99 %8.2f us   mean %8.2f us   %9.0f /s", name as NSString, p50, p99, mean, perSecond)
    }
}

func blockingRead(_ fd: Int32) {
    var v: UInt64 = 0
    while read(fd, &v, 8) != 8 {}
}

/// A bench thread (the daemon's thread type). The bench's closures hold
/// front-ends and raw buffers that one thread at a time uses.
func benchThread(_ body: @escaping () -> Void) -> OSThread {
    nonisolated(unsafe) let body = body
    do { return try OSThread(name: "pvz-bench") { body() } } catch { fatalError("bench: \(error)") }
}

/// Runs `body` with the calling thread, and so every thread it starts (the
/// daemon's included: each measurement starts its own), on one CPU, then puts
/// the thread's CPU mask back. Where the scheduler puts two ping-ponging
/// threads decides the floor (≈ 5.5 µs on one core; 15–19 µs across cores on a
/// busy machine, 60 µs and more when the other core sleeps): on one core both
/// sides of a ratio have the same placement.
func onOneCPU<T>(_ body: (Int32) throws -> T) rethrows -> T {
    var saved = pvz_cpu_mask()
    let cpu = pvz_bench_pin_first_cpu(&saved)
    defer { if cpu >= 0 { _ = pvz_bench_unpin(&saved) } }
    return try body(cpu)
}
