import Foundation
import PVZContract
import PVZDaemon
import Synchronization
import CPVZShim
import Platform
#if canImport(Glibc)
import Glibc
#endif

struct Throughput {
    var perThread: [Int]
    var seconds: Double
    var total: Double { Double(perThread.reduce(0, +)) / seconds }
    /// Slowest / fastest.
    var fairness: Double {
        guard let lo = perThread.min(), let hi = perThread.max(), hi > 0 else { return 0 }
        return Double(lo) / Double(hi)
    }
}

/// Runs `count` workers for `seconds`, each calling `step` in a loop; counts per worker.
func runFor(seconds: Double, workers count: Int, prepare: (Int) throws -> () -> Void) rethrows -> Throughput {
    let stop = Atomic<Bool>(false)
    let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: count)
    counts.initialize(repeating: 0)
    defer { counts.deallocate() }
    let steps = try (0..<count).map { try prepare($0) }
    let go = Atomic<Bool>(false)
    let threads = (0..<count).map { i in
        benchThread { [steps] in
            while !go.load(ordering: .acquiring) {}
            var n = 0
            while !stop.load(ordering: .relaxed) { steps[i](); n += 1 }
            counts[i] = n
        }
    }
    let t0 = nowNs()
    go.store(true, ordering: .releasing)
    usleep(UInt32(seconds * 1e6))
    stop.store(true, ordering: .relaxed)
    threads.forEach { $0.join() }
    let took = Double(nowNs() - t0) / 1e9
    return Throughput(perThread: Array(counts), seconds: took)
}

/// N eventfd pairs ping-ponging, 2N threads: the floor for N guests.
func eventfdPairs(_ n: Int, seconds: Double) -> Throughput {
    var pongs: [OSThread] = []
    var fds: [(Int32, Int32)] = []
    let quit = Atomic<Bool>(false)
    for _ in 0..<n {
        let a = eventfd(0, Int32(EFD_CLOEXEC)), b = eventfd(0, Int32(EFD_CLOEXEC))
        fds.append((a, b))
        pongs.append(benchThread {
            while true {
                blockingRead(a)
                if quit.load(ordering: .relaxed) { break }
                EventFD.signal(b)
            }
        })
    }
    let t = runFor(seconds: seconds, workers: n) { i in
        let (a, b) = fds[i]
        return { EventFD.signal(a); blockingRead(b) }
    }
    quit.store(true, ordering: .relaxed)
    for (a, _) in fds { EventFD.signal(a) }
    pongs.forEach { $0.join() }
    for (a, b) in fds { close(a); close(b) }
    return t
}

/// One daemon, N guests, N front-end threads calling as fast as they can.
func multiGuest(_ n: Int, seconds: Double) throws -> Throughput {
    let dir = "/tmp/pvz-bench-multi-\(getpid())"
    let daemon = try benchDaemon(guests: n, dir: dir)
    defer { daemon.stop(); try? FileManager.default.removeItem(atPath: dir) }
    let callers = try (1...n).map { try Caller(socket: "\(dir)/g\($0).sock") }
    for c in callers { for _ in 0..<200 { c.call() } }
    return runFor(seconds: seconds, workers: n) { i in
        let c = callers[i]
        return { c.call() }
    }
}
