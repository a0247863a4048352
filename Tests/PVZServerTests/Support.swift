import Synchronization
import PVZContract
@testable import PVZServer

/// Guest RAM as a list of IPA ranges (what the glue derives from the
/// vhost-user memory table).
struct RAMRanges: GuestRAM {
    var ranges: [IPARange]
    func contains(_ r: IPARange) -> Bool { ranges.contains { $0.contains(r) } }
}

/// A register file that remembers writes; offset 0x4 is read-only.
final class TestRegisters: RegisterFile, @unchecked Sendable {
    var values: [UInt32: UInt32] = [0: 0xC0DE]
    var completed: [(PVZFunction?, PVZStatus)] = []
    func read(offset: UInt32) -> Result<UInt32, PVZStatus> { .success(values[offset] ?? 0) }
    func write(offset: UInt32, value: UInt32) -> PVZStatus {
        if offset == 4 { return .invalidParams }
        values[offset] = value
        return .ok
    }
    func hypercallCompleted(function: PVZFunction?, status: PVZStatus) { completed.append((function, status)) }
}

let MiB: UInt64 = 1 << 20
/// Guest RAM: 0..<1 GiB; carve-out at 512 MiB, 64 MiB.
let guestRAM = RAMRanges(ranges: [IPARange(start: IPA(0), size: 1 << 30)!])
func carve(_ start: UInt64 = 512 * MiB, _ size: UInt64 = 64 * MiB) -> IPARange { IPARange(start: IPA(start), size: size)! }

func makeServer(_ policy: GuestPolicy = GuestPolicy(), osids: [UInt32] = [1], pool: UInt64? = nil,
                online: Bool = true) throws -> PVZHostServer {
    let s = try PVZHostServer(guests: osids.map { GuestSpec(osid: OSID($0), carveout: carve(), policy: policy) },
                              hostPoolSize: pool)
    if online { for o in osids { try s.onVmOnline(osid: OSID(o), priority: 1) } }
    return s
}

/// Bytes of a request: header + input.
func request(_ f: UInt32, devID: UInt32 = 0, requestID: UInt32 = 0x1234, input: [UInt8] = []) -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 16)
    b.withUnsafeMutableBytes { _ = HypercallRequestHeader(function: f, funcID: 7, devID: devID, requestID: requestID).encode(into: $0) }
    return b + input
}

func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }

struct Reply {
    var outcome: CallOutcome
    var bytes: [UInt8]
    var header: HypercallResponseHeader? { bytes.withUnsafeBytes { HypercallResponseHeader.decode(from: $0) } }
    var output: [UInt8] { Array(bytes[16...]) }
    var status: PVZStatus { outcome.status }
}

func call(_ s: PVZHostServer, osid: UInt32 = 1, _ req: [UInt8], responseSize: Int = 64,
          ram: RAMRanges = guestRAM, regs: TestRegisters = TestRegisters()) -> Reply {
    var resp = [UInt8](repeating: 0xAA, count: responseSize)
    let out = req.withUnsafeBytes { rq in
        resp.withUnsafeMutableBytes { rs in
            s.handleCall(osid: OSID(osid), request: rq, response: rs, ram: ram, registers: regs)
        }
    }
    return Reply(outcome: out, bytes: resp)
}

func call(_ s: PVZHostServer, osid: UInt32 = 1, _ f: PVZFunction, input: [UInt8] = [], devID: UInt32 = 0,
          ram: RAMRanges = guestRAM, regs: TestRegisters = TestRegisters()) -> Reply {
    call(s, osid: osid, request(f.rawValue, devID: devID, input: input), ram: ram, regs: regs)
}

func mapInput(size: UInt64, paddr: UInt64) -> [UInt8] { u64(size) + u64(paddr) }
