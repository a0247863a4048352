import CMallocCounter
import CPVZShim
import Foundation
import Logging
import PVZContract
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

/// The ping-pong again, each side waiting the way its counterpart in the
/// kick → call measurement does: the pong (the daemon's guest thread) in
/// `epoll_wait` on its kick eventfd, then a read; the ping (the test
/// front-end) in `poll` on its call eventfd, then a read. No ring, no call:
/// what the wait primitives alone cost, so the rest of a round trip is the
/// daemon's own work.
func pingPongAsServed(iterations: Int, warmup: Int) throws -> Stats {
    let a = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK)), b = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
    defer { close(a); close(b) }
    let total = iterations + warmup
    let epoll = try Epoll()
    try epoll.add(a, tag: 0)
    let pong = benchThread {
        var served = 0
        while served < total {
            epoll.wait { _ in EventFD.drain(a); EventFD.signal(b); served += 1 }
        }
    }
    var samples: [UInt64] = []
    samples.reserveCapacity(iterations)
    for i in 0..<total {
        let t0 = nowNs()
        EventFD.signal(a)
        var pfd = pollfd(fd: b, events: Int16(POLLIN), revents: 0)
        while poll(&pfd, 1, 1000) != 1 {}
        EventFD.drain(b)
        if i >= warmup { samples.append(nowNs() - t0) }
    }
    pong.join()
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

/// A guest driver that makes one trivial call at a time on hypercallq:
/// GET_DEV_PHYS_HEAP_ORIGIN(FW_LOCAL), which has an answer and changes nothing.
struct Caller {
    static let request = HypercallRequestHeader(.getDevPhysHeapOrigin).request(HeapQueryInput(.fwLocal))
    static let answerSize = HypercallResponseHeader.size + HeapOriginOutput.size
    let fe: TestFrontEnd
    let q: DriverQueue
    let req: UInt64, resp: UInt64
    init(socket: String) throws {
        fe = try TestFrontEnd(path: socket)
        try fe.start()
        q = fe.queues[PVZQueue.hypercallq.rawValue]
        req = fe.alloc(64)
        resp = fe.alloc(64)
        fe.write(req, Self.request)
    }
    @inline(__always) func call() {
        q.addPair(request: req, UInt32(Self.request.count), response: resp, UInt32(Self.answerSize + 4))
        let len = q.blockUsed()
        let status = fe.load(resp + UInt64(HypercallResponseHeader.Offset.status), as: UInt32.self)
        if len != Self.answerSize || status != PVZStatus.ok.rawValue { fatalError("call failed: len \(len) status \(status)") }
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
