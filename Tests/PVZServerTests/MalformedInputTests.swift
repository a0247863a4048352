import Testing
import PVZContract
@testable import PVZServer

/// Hostile and broken requests: each must be refused with the right status,
/// change nothing, and never write past the response buffer.
@Suite struct MalformedInputTests {
    let fw32: UInt64 = 32 << 20

    @Test func emptyRequest() throws {
        let r = call(try makeServer(), [])
        #expect(r.status == .malformedRequest && r.outcome.bytesWritten == 16)
        #expect(r.header == HypercallResponseHeader(status: 8, function: 0, requestID: 0))
    }

    @Test func shortHeader() throws {
        let r = call(try makeServer(), Array(request(1).prefix(15)))
        #expect(r.status == .malformedRequest && r.outcome.function == nil)
    }

    @Test func shortInput() throws {
        let s = try makeServer()
        #expect(call(s, .mapDevPhysHeap, input: Array(mapInput(size: fw32, paddr: 0x1000).prefix(15))).status == .malformedRequest)
        #expect(call(s, .writeReg, input: u32(0x10)).status == .malformedRequest)
        #expect(call(s, .readReg).status == .malformedRequest)
        #expect(call(s, .getDevPhysHeapOrigin, input: [2, 0]).status == .malformedRequest)
    }

    @Test func oversizedRequest() throws {
        let s = try makeServer()
        let r = call(s, .createDevConfig, input: [0])
        #expect(r.status == .malformedRequest)
        #expect(call(s, .readReg, input: u32(0) + u32(0)).status == .malformedRequest)
        #expect(s.configView(osid: OSID(1))!.devConfigCreated == false)
    }

    @Test func unknownFunction() throws {
        let s = try makeServer()
        for f: UInt32 in [0, 11, 0x8000_0001, .max] {
            let r = call(s, request(f, requestID: 77))
            #expect(r.status == .malformedRequest)
            #expect(r.header == HypercallResponseHeader(status: 8, function: f, requestID: 77))
            #expect(r.outcome.function == nil && r.outcome.rawFunction == f)
        }
    }

    @Test func responseBufferTooSmall() throws {
        let s = try makeServer()
        let r = call(s, request(1), responseSize: 15)
        #expect(r.outcome.bytesWritten == 0)
        #expect(r.bytes == [UInt8](repeating: 0xAA, count: 15))
        // Not performed: the guest could not have learnt the result.
        #expect(s.configView(osid: OSID(1))!.devConfigCreated == false)
        // Room for the header but not the output: header only, not performed.
        let h = call(s, request(1), responseSize: 31)
        #expect(h.status == .malformedRequest && h.outcome.bytesWritten == 16)
        #expect(h.bytes[16...].allSatisfy { $0 == 0xAA })
        #expect(s.configView(osid: OSID(1))!.devConfigCreated == false)
    }

    @Test func badDevID() throws {
        let s = try makeServer()
        #expect(call(s, .createDevConfig, devID: 1).status == .invalidParams)
        #expect(call(s, .readReg, input: u32(0), devID: 0xFFFF_FFFF).status == .invalidParams)
        #expect(s.configView(osid: OSID(1))!.devConfigCreated == false)
    }

    @Test func mapUnaligned() throws {
        #expect(call(try makeServer(), .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0x1000_0800)).status == .invalidParams)
    }

    @Test func mapZeroAddress() throws {
        #expect(call(try makeServer(), .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0)).status == .invalidParams)
    }

    @Test func mapWrongSize() throws {
        let s = try makeServer()
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32 - 0x1000, paddr: 0x1000_0000)).status == .invalidParams)
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: 0, paddr: 0x1000_0000)).status == .invalidParams)
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: .max, paddr: 0x1000_0000)).status == .invalidParams)
    }

    @Test func mapWrapping() throws {
        let r = call(try makeServer(), .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0xFFFF_FFFF_FFFF_F000))
        #expect(r.status == .addressOutOfRange)
    }

    @Test func mapOutsideRAM() throws {
        let s = try makeServer()
        // Straddles the end of RAM (1 GiB).
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: (1 << 30) - 0x10_0000)).status == .addressOutOfRange)
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 1 << 40)).status == .addressOutOfRange)
        #expect(s.configView(osid: OSID(1))!.fwHeap == nil)
    }

    @Test func mapOverlappingCarveout() throws {
        let s = try makeServer()
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 512 * MiB)).status == .addressOutOfRange)
        // Ends one page into the carve-out.
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 512 * MiB - fw32 + 0x1000)).status == .addressOutOfRange)
        // Ends exactly where it starts: fine.
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 512 * MiB - fw32)).status == .ok)
    }

    @Test func registerOffsets() throws {
        let s = try makeServer()
        for off: UInt32 in [1, 2, 3, 0x10000, 0x10004, 0xFFFF_FFFC] {
            #expect(call(s, .readReg, input: u32(off)).status == .invalidParams)
            #expect(call(s, .writeReg, input: u32(off) + u32(1)).status == .invalidParams)
        }
    }

    @Test func offlineVM() throws {
        let s = try makeServer(online: false)
        for f in PVZFunction.allCases {
            var input = [UInt8](repeating: 0, count: f.inputSize)
            if f == .mapDevPhysHeap { input = mapInput(size: fw32, paddr: 0x1000_0000) }
            #expect(call(s, f, input: input).status == .vmOffline)
        }
        // Even a malformed function is answered VM_OFFLINE first.
        #expect(call(s, request(42)).status == .vmOffline)
        #expect(s.snapshot(osid: OSID(1))!.calls(.vmOffline) == 11)
    }

    @Test func unknownOSID() throws {
        let s = try makeServer()
        for o: UInt32 in [0, 2, 7, 8, 1000] {
            #expect(call(s, osid: o, .createDevConfig).status == .invalidOSID)
        }
        #expect(s.invalidOSIDCalls == 5)
    }

    @Test func fuzzNeverCrashesOrOverwrites() throws {
        // Random bytes of random lengths: must answer, stay in bounds, leave
        // the ledger self-consistent.
        let s = try makeServer(GuestPolicy(fwHeapOrigin: .host))
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let n = Int.random(in: 0...48, using: &rng)
            var req = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if n >= 12, Bool.random(using: &rng) { req.replaceSubrange(0..<4, with: u32(UInt32.random(in: 0...11))); req.replaceSubrange(8..<12, with: u32(0)) }
            let size = Int.random(in: 0...64, using: &rng)
            let r = call(s, req, responseSize: size)
            #expect(r.outcome.bytesWritten <= size)
            #expect(r.bytes[r.outcome.bytesWritten...].allSatisfy { $0 == 0xAA })
        }
        #expect(s.hostPoolUsed == 0 || s.hostPoolUsed == 32 * MiB + 16 * MiB)
    }
}
