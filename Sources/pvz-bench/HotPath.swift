import CMallocCounter
import CPVZShim
import Foundation
import Logging
import PVZDaemon
import PVZServer
import Platform
import TestFrontEnd
#if canImport(Glibc)
import Glibc
#endif

/// Two threads bouncing one eventfd write each way: the least a kick → call
/// round trip between two threads can cost on this machine.
func pingPong(iterations: Int, warmup: Int) -> Stats {
    let a = eventfd(0, Int32(EFD_CLOEXEC)), b = eventfd(0, Int32(EFD_CLOEXEC))
    let total = iterations + warmup
    let pong = benchThread { for _ in 0..<total { blockingRead(a); EventFD.signal(b) } }
    var samples: [UInt64] = []
    samples.reserveCapacity(iterations)
    for i in 0..<total {
        let t0 = nowNs()
        EventFD.signal(a)
        blockingRead(b)
        if i >= warmup { samples.append(nowNs() - t0) }
    }
    pong.join()
    close(a); close(b)
    return Stats(samples)
}

/// An in-process daemon with `count` guests (OSIDs 1...count), online on connect.
func benchDaemon(guests count: Int, dir: String) throws -> Daemon {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    let guests = (1...count).map { i in
        GuestConfig(socketPath: "\(dir)/g\(i).sock",
                    spec: GuestSpec(osid: OSID(UInt32(i)), carveout: IPARange(start: IPA(0x0800_0000), size: 0x0400_0000)!),
                    settings: GuestSettings(onlineOnConnect: true))
    }
    let daemon = try Daemon(config: DaemonConfig(guests: guests, controlSocket: nil, maxOSIDs: UInt32(max(8, count + 1))),
                            logger: logger)
    try daemon.start()
    return daemon
}

/// A guest driver that makes one trivial call at a time on hypercallq.
struct Caller {
    let fe: TestFrontEnd
    let q: DriverQueue
    let req: UInt64, resp: UInt64
    init(socket: String) throws {
        fe = try TestFrontEnd(path: socket)
        try fe.start()
        q = fe.queues[0]
        req = fe.alloc(64)
        resp = fe.alloc(64)
        // GET_DEV_PHYS_HEAP_ORIGIN(FW_LOCAL): a trivial call with an answer.
        var r = [UInt8](repeating: 0, count: 20)
        r[0] = 7; r[16] = 2
        fe.write(req, r)
    }
    @inline(__always) func call() {
        q.addPair(request: req, 20, response: resp, 24)
        let len = q.blockUsed()
        if len != 20 || fe.load(resp, as: UInt32.self) != 0 { fatalError("call failed: len \(len)") }
    }
}

/// Kick → call round trip of one guest, and the allocations it makes.
func kickToCall(iterations: Int, warmup: Int) throws -> (Stats, Double) {
    let dir = "/tmp/pvz-bench-\(getpid())"
    let daemon = try benchDaemon(guests: 1, dir: dir)
    defer { daemon.stop(); try? FileManager.default.removeItem(atPath: dir) }
    let c = try Caller(socket: "\(dir)/g1.sock")
    var samples = [UInt64](repeating: 0, count: iterations)
    var mallocs: UInt64 = 0
    for i in 0..<(iterations + warmup) {
        if i == warmup { mallocs = pvz_malloc_count() }
        let t0 = nowNs()
        c.call()
        if i >= warmup { samples[i - warmup] = nowNs() - t0 }
    }
    mallocs = pvz_malloc_count() - mallocs
    return (Stats(samples), Double(mallocs) / Double(iterations))
}
