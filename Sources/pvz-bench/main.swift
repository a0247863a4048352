// The daemon's figures, each from one run of a release build:
//   hot     the eventfd ping-pong floor and one guest's kick → call round trip
//   multi   one daemon, N guests, N front-end threads; N eventfd pairs as the floor
//   kick    firmware kicks: doorbell → chain returned, and commands/s in batches
//   rss     resident memory of the daemon binary with 1 and 7 guests
// Usage: pvz-bench [hot|multi|kick|rss|all] [iterations]
import Foundation
import PVZDaemon
#if canImport(Glibc)
import Glibc
#endif

let args = Array(CommandLine.arguments.dropFirst())
let mode = args.first.flatMap { Int($0) == nil ? $0 : nil } ?? "all"
let iterations = args.compactMap { Int($0) }.first ?? 20000
let warmup = 1000
let environment = ProcessInfo.processInfo.environment
func usageError(_ message: String) -> Never {
    FileHandle.standardError.write("pvz-bench: \(message)\n".data(using: .utf8)!)
    exit(2)
}
/// PVZ_BENCH_SECONDS (0.5 to 60) and PVZ_BENCH_GUESTS ("1 7 15"; each 1 to 15,
/// the guest OSIDs) change the multi mode's window and guest counts.
let seconds: Double = environment["PVZ_BENCH_SECONDS"].map { raw in
    guard let v = Double(raw), (0.5...60).contains(v) else { usageError("PVZ_BENCH_SECONDS '\(raw)': a number of seconds from 0.5 to 60") }
    return v
} ?? 3.0
let guestCounts: [Int] = environment["PVZ_BENCH_GUESTS"].map { raw in
    let words = raw.split(separator: " ")
    let counts = words.compactMap { Int($0) }.filter { (1...15).contains($0) }
    guard !words.isEmpty, counts.count == words.count else { usageError("PVZ_BENCH_GUESTS '\(raw)': guest counts from 1 to 15, separated by spaces") }
    return counts
} ?? [1, 7, 15]
let binDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path

func hot() throws -> (Stats, Stats) {
    let floor = pingPong(iterations: iterations, warmup: warmup)
    let (call, allocs) = try kickToCall(iterations: iterations, warmup: warmup)
    print("== one guest (\(iterations) round trips each, \(warmup) warm-up)")
    print(floor.line("eventfd ping-pong (floor)"))
    print(call.line("kick -> call (GET_HEAP_ORIGIN)"))
    print(String(format: "allocations per kick->call round trip (whole process, both sides): %.3f", allocs))
    print(String(format: "ratio kick->call / floor: p50 %.2fx  p99 %.2fx", call.p50 / floor.p50, call.p99 / floor.p99))
    try onOneCPU { cpu in
        let floor1 = pingPong(iterations: iterations, warmup: warmup)
        let served1 = try pingPongAsServed(iterations: iterations, warmup: warmup)
        let (call1, _) = try kickToCall(iterations: iterations, warmup: warmup)
        print("-- same core: every thread of both on CPU \(cpu)")
        print(floor1.line("eventfd ping-pong (floor)"))
        print(served1.line("ping-pong, epoll_wait/poll as served"))
        print(call1.line("kick -> call (GET_HEAP_ORIGIN)"))
        print(String(format: "ratio kick->call / floor, same core: p50 %.2fx  p99 %.2fx", call1.p50 / floor1.p50, call1.p99 / floor1.p99))
        print(String(format: "the wait primitives: %.2f us of the p50; the daemon's own work: %.2f us", served1.p50 - floor1.p50, call1.p50 - served1.p50))
    }
    return (floor, call)
}

func multi() throws {
    print("== many guests on one daemon (\(seconds) s per figure; floor: N eventfd pairs, 2N threads)")
    print("guests  aggregate calls/s   floor calls/s   ratio   fairness (slowest/fastest): daemon, floor")
    for n in guestCounts {
        let floor = eventfdPairs(n, seconds: seconds)
        let t = try multiGuest(n, seconds: seconds)
        print(String(format: "%6d  %17.0f   %13.0f   %5.2fx   %.2f, %.2f", n, t.total, floor.total, t.total / floor.total, t.fairness, floor.fairness))
    }
}

func kick(hypercall: Stats?) throws {
    let n = max(iterations / 4, 2000)
    let (one, allocs) = try firmwareKicks(iterations: n, warmup: warmup / 4, commandsPerKick: 1)
    let (batch, _) = try firmwareKicks(iterations: n / 4, warmup: warmup / 4, commandsPerKick: 64)
    print("== firmware kicks (\(n) kicks of 1 FENCE; \(n / 4) kicks of 64 commands)")
    print(one.line("kick (1 FENCE) -> chain returned"))
    print(batch.line("kick (64 commands) -> returned"))
    print(String(format: "commands/s in 64-command kicks: %.0f", 64 * batch.perSecond))
    print(String(format: "allocations per kick (whole process): %.3f", allocs))
    if let h = hypercall {
        print(String(format: "ratio kick / hypercall round trip: p50 %.2fx", one.p50 / h.p50))
    }
    try onOneCPU { cpu in
        let (kick1, _) = try firmwareKicks(iterations: n, warmup: warmup / 4, commandsPerKick: 1)
        let (call1, _) = try kickToCall(iterations: n, warmup: warmup / 4)
        print("-- same core: every thread of both on CPU \(cpu)")
        print(kick1.line("kick (1 FENCE) -> chain returned"))
        print(String(format: "ratio kick / hypercall round trip, same core: p50 %.2fx", kick1.p50 / call1.p50))
    }
}

func rss() throws {
    let bin = binDir + "/vhost-user-pvz"
    guard FileManager.default.isExecutableFile(atPath: bin) else { print("rss: \(bin) not built"); return }
    // Two daemons (1 guest; 7 guests) as a user runs them, and the 7-guest one
    // measured with 1 then 7 connected: the per-guest figure without the noise
    // of two processes faulting in different code pages.
    let one = try daemonFootprints(guests: 1, steps: [1], binary: bin)[0]
    let steps = try daemonFootprints(guests: 7, steps: [1, 7], binary: bin)
    let seven = steps[1]
    print("== daemon resident memory (\(bin), guests connected, 100 calls each)")
    print(String(format: "1 guest: %.1f MiB   7 guests: %.1f MiB   per extra guest: %.0f KiB (two daemons), %.0f KiB (one daemon, 1 -> 7 connected)",
                 Double(one.rss) / 1024, Double(seven.rss) / 1024, Double(seven.rss - one.rss) / 6, Double(seven.rss - steps[0].rss) / 6))
    for (n, f) in [(1, one), (7, seven)] {
        print(String(format: "%d guest%@: anon %.1f MiB, file %.1f MiB, %d threads, %d fds open (worst case FileLimit.need: %d)",
                     n, n == 1 ? "" : "s", Double(f.anon) / 1024, Double(f.file) / 1024, f.threads, f.fds, FileLimit.need(guests: n)))
    }
    print("shared libraries mapped: \(seven.libraries.joined(separator: " "))")
}

switch mode {
case "hot": _ = try hot()
case "multi": try multi()
case "kick": try kick(hypercall: nil)
case "rss": try rss()
case "all":
    let (_, call) = try hot()
    try kick(hypercall: call)
    try multi()
    try rss()
default:
    FileHandle.standardError.write("usage: pvz-bench [hot|multi|kick|rss|all] [iterations]\n".data(using: .utf8)!)
    exit(2)
}
