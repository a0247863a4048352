import CMallocCounter
import Foundation
import PVZContract
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
    /// The FENCE target: the heap's second page, past the ring fields.
    static let fenceTarget: UInt64 = 0x2000
    let fe: TestFrontEnd
    let kickq: DriverQueue
    let doorbell: UInt64
    var slot: UInt32 = 0
    var seq: UInt64 = 0

    init(socket: String) throws {
        let fe = try TestFrontEnd(path: socket)
        try fe.start()
        self.fe = fe
        let hq = fe.queues[PVZQueue.hypercallq.rawValue]
        let req = fe.alloc(64), resp = fe.alloc(64)
        func call(_ bytes: [UInt8]) -> UInt32 {
            fe.write(req, bytes)
            hq.addPair(request: req, UInt32(bytes.count), response: resp, 64)
            _ = hq.blockUsed()
            return fe.load(resp + UInt64(HypercallResponseHeader.Offset.status), as: UInt32.self)
        }
        let ok = PVZStatus.ok.rawValue
        guard call(HypercallRequestHeader(.createDevConfig, requestID: 1).request()) == ok,
              call(HypercallRequestHeader(.mapDevPhysHeap, requestID: 2)
                  .request(MapDevPhysHeapInput(size: VirtioPVZ.defaultFirmwareHeapSize, ipa: IPA(Self.fwHeap)))) == ok
        else { throw TestFrontEnd.Failure.badReply("firmware heap set-up refused") }
        fe.store(Self.fwHeap + UInt64(FirmwareRing.sizeOffset), Self.ringSize)
        fe.store(Self.fwHeap + UInt64(FirmwareRing.writeOffsetField), UInt32(0))
        fe.store(Self.fwHeap + UInt64(FirmwareRing.magicOffset), FirmwareRing.magic)
        kickq = fe.queues[PVZQueue.kickq.rawValue]
        doorbell = fe.alloc(UInt64(KickRequest.size))
    }

    /// Writes `commands` commands (the last a FENCE, the rest NOPs) and kicks once.
    @inline(__always) mutating func kick(commands: Int) {
        typealias At = FirmwareRing.CommandOffset
        let size = UInt32(FirmwareRing.commandSize)
        for k in 0..<commands {
            let c = Self.fwHeap + UInt64(FirmwareRing.headerSize) + UInt64(slot * size)
            seq &+= 1
            let op: FirmwareOp = k == commands - 1 ? .fence : .nop
            fe.store(c + UInt64(At.op), op.rawValue); fe.store(c + UInt64(At.flags), UInt32(0)); fe.store(c + UInt64(At.seq), seq)
            fe.store(c + UInt64(At.arg0), Self.fenceTarget); fe.store(c + UInt64(At.arg1), seq)
            slot = (slot + 1) % (Self.ringSize / size)
        }
        KickRequest(writeOffset: slot * size).encode(into: UnsafeMutableRawBufferPointer(start: fe.host(doorbell), count: KickRequest.size))
        kickq.add1(doorbell, UInt32(KickRequest.size))
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
    guard k.fe.load(Kicker.fwHeap + Kicker.fenceTarget, as: UInt64.self) == k.seq else { fatalError("the last FENCE did not land") }
    return (Stats(samples), Double(mallocs) / Double(iterations))
}
