import Testing
import PVZContract
@testable import PVZServer

@Suite struct ConcurrencyTests {
    @Test func offlineRacingCallsLeavesNoHeaps() async throws {
        // Calls that change the ledger race OnVmOnline/OnVmOffline: an offline
        // VM must never be left holding heaps or pool bytes.
        let s = try makeServer(GuestPolicy(fwHeapOrigin: .host), online: false)
        await withTaskGroup(of: Void.self) { g in
            g.addTask {
                for _ in 0..<2000 {
                    _ = call(s, .createDevPhysHeaps)
                    _ = call(s, .createDevConfig)
                    _ = call(s, .destroyDevPhysHeaps)
                }
            }
            g.addTask {
                for _ in 0..<500 {
                    try? s.onVmOnline(osid: OSID(1), priority: 0)
                    _ = try? s.onVmOffline(osid: OSID(1))
                }
            }
        }
        let g = s.snapshot(osid: OSID(1))!
        #expect(!g.online)
        #expect(g.heaps.isEmpty && !g.devConfigCreated)
        #expect(s.hostPoolUsed == 0)
    }

    @Test func callCostFigure() throws {
        // A figure for the report and a loose bound that catches a pathological
        // slowdown (debug build, shared 2-core machine).
        let s = try makeServer()
        let req = request(PVZFunction.getDevPhysHeapAddrSize.rawValue, input: u32(2))
        var resp = [UInt8](repeating: 0, count: 64)
        let regs = NoRegisters()
        let n = 20_000
        let t0 = ContinuousClock.now
        req.withUnsafeBytes { rq in
            resp.withUnsafeMutableBytes { rs in
                for _ in 0..<n { _ = s.handleCall(osid: OSID(1), request: rq, response: rs, ram: guestRAM, registers: regs) }
            }
        }
        let per = (ContinuousClock.now - t0) / n
        print("handleCall GET_DEV_PHYS_HEAP_ADDR_SIZE: \(per) per call (debug build)")
        #expect(per < .microseconds(200))
        #expect(s.snapshot(osid: OSID(1))!.calls(.getDevPhysHeapAddrSize) == UInt64(n))
    }
}
