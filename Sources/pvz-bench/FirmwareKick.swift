import CMallocCounter
import Foundation
import PVZDaemon
import TestFrontEnd
#if canImport(Glibc)
import Glibc
#endif

/// A guest with its firmware heap mapped and a 4 KiB command ring: kicks it
/// the way the guest driver does (commands, then an 8-byte doorbell on kickq)
/// and waits for the doorbell's chain to come back.
struct Kicker {
    static let fwHeap: UInt64 = 0x0100_0000
    static let ringSize: UInt32 = 4096
    let fe: TestFrontEnd
    let kickq: DriverQueue
    let doorbell: UInt64
    var slot: UInt32 = 0
    var seq: UInt64 = 0

    init(socket: String) throws {
        let fe = try TestFrontEnd(path: socket)
        try fe.start()
        self.fe = fe
        let hq = fe.queues[0]
        let req = fe.alloc(64), resp = fe.alloc(64)
        func call(_ bytes: [UInt8]) -> UInt32 {
            fe.write(req, bytes)
            hq.addPair(request: req, UInt32(bytes.count), response: resp, 64)
            _ = hq.blockUsed()
            return fe.load(resp, as: UInt32.self)
        }
        func le(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        func le(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        // CREATE_DEV_CONFIG, MAP_DEV_PHYS_HEAP(32 MiB at fwHeap)
        guard call(le(UInt32(1)) + le(UInt32(0)) + le(UInt32(0)) + le(UInt32(1))) == 0,
              call(le(UInt32(5)) + le(UInt32(0)) + le(UInt32(0)) + le(UInt32(2)) + le(UInt64(32 << 20)) + le(Self.fwHeap)) == 0
        else { throw TestFrontEnd.Failure.badReply("firmware heap set-up refused") }
        fe.store(Self.fwHeap + 0x4, Self.ringSize)
        fe.store(Self.fwHeap + 0x8, UInt32(0))
        fe.store(Self.fwHeap + 0x0, UInt32(0x474E_4952))
        kickq = fe.queues[2]
        doorbell = fe.alloc(8)
    }

    /// Writes `commands` commands (the last a FENCE, the rest NOPs) and kicks once.
    @inline(__always) mutating func kick(commands: Int) {
        for k in 0..<commands {
            let c = Self.fwHeap + 0x1000 + UInt64(slot) * 32
            seq &+= 1
            let fence = k == commands - 1
            fe.store(c, UInt32(fence ? 1 : 0)); fe.store(c + 4, UInt32(0)); fe.store(c + 8, seq)
            fe.store(c + 16, UInt64(0x2000)); fe.store(c + 24, seq)
            slot = (slot + 1) % (Self.ringSize / 32)
        }
        fe.store(doorbell, slot * 32); fe.store(doorbell + 4, UInt32(0))
        kickq.add1(doorbell, 8)
        _ = kickq.blockUsed()
    }
}

func firmwareKicks(iterations: Int, warmup: Int, commandsPerKick: Int) throws -> (Stats, Double) {
    let dir = "/tmp/pvz-bench-kick-\(getpid())"
    let daemon = try benchDaemon(guests: 1, dir: dir)
    defer { daemon.stop(); try? FileManager.default.removeItem(atPath: dir) }
    var k = try Kicker(socket: "\(dir)/g1.sock")
    var samples = [UInt64](repeating: 0, count: iterations)
    var mallocs: UInt64 = 0
    for i in 0..<(iterations + warmup) {
        if i == warmup { mallocs = pvz_malloc_count() }
        let t0 = nowNs()
        k.kick(commands: commandsPerKick)
        if i >= warmup { samples[i - warmup] = nowNs() - t0 }
    }
    mallocs = pvz_malloc_count() - mallocs
    guard k.fe.load(Kicker.fwHeap + 0x2000, as: UInt64.self) == k.seq else { fatalError("the last FENCE did not land") }
    return (Stats(samples), Double(mallocs) / Double(iterations))
}
