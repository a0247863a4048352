import PVZContract
import GPUModel
import PVZServer

/// Guest RAM as fixed ranges (what the glue derives from the memory table).
struct FuzzRAM: GuestRAM {
    let ranges: [IPARange]
    func contains(_ r: IPARange) -> Bool { ranges.contains { $0.contains(r) } }
}

/// The three policies the targets serve: guest-origin firmware heap (the
/// default), host heaps with LMA, and no host heaps with DMA.
func fuzzGuestSpecs() -> [GuestSpec] {
    var lma = GuestPolicy(fwHeapOrigin: .host, gpuHeapOrigin: .host, heapType: .lma)
    lma.fwHeapSize = 0x2000
    lma.gpuHeapSize = 0x4000
    let dma = GuestPolicy(gpuHeapOrigin: .guest, heapType: .dma, hostHeapsAllowed: false)
    return [
        GuestSpec(osid: OSID(1), carveout: IPARange(start: IPA(0x4000_0000), size: 0x400_0000)!, policy: GuestPolicy()),
        GuestSpec(osid: OSID(2), carveout: IPARange(start: IPA(0x5000_0000), size: 0x40_0000)!, policy: lma),
        GuestSpec(osid: OSID(3), carveout: IPARange(start: IPA(0x6000_0000), size: 0x40_0000)!, policy: dma),
    ]
}

/// Hypercall requests into `PVZHostServer.handleCall` for any OSID, mixed with
/// the VM manager's calls (online, offline, release, configure, connect) in
/// any order. Oracle: a restored ledger saves back exactly as it was saved.
let hypercallTarget = FuzzTarget(name: "hypercall", summary: "PVZHostServer.handleCall and VM manager calls in any order") {
    let ram = FuzzRAM(ranges: [IPARange(start: IPA(0), size: 0x8000_0000)!, IPARange(start: IPA(0x1_0000_0000), size: 0x1000_0000)!])
    let request = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 8)
    let response = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 8)
    let specs = fuzzGuestSpecs()
    return { data in
        var input = FuzzInput(data)
        let server = try! PVZHostServer(maxOSIDs: 4, guests: specs, hostPoolSize: 0x40_0000 + 0x6000)
        let banks = (0 ..< 5).map { RegisterBank(osid: OSID(UInt32($0))) }
        while !input.isEmpty {
            let op = input.u8()
            let osid = OSID(UInt32(input.u8() % 5))
            switch op % 12 {
            case 0, 1, 2, 3:
                // A request: mostly a real header with a function number the
                // fuzzer can steer, then whatever input bytes follow.
                var n = Int(input.u8() % 80)
                if op & 0x10 != 0 {
                    request.storeBytes(of: UInt32(input.u8() % 12).littleEndian, toByteOffset: 0, as: UInt32.self)
                    request.storeBytes(of: input.u32().littleEndian, toByteOffset: 4, as: UInt32.self)
                    request.storeBytes(of: UInt32(input.u8() % 2).littleEndian, toByteOffset: 8, as: UInt32.self)
                    request.storeBytes(of: input.u32().littleEndian, toByteOffset: 12, as: UInt32.self)
                    n = 16 + Int(input.u8() % 32)
                    let b = input.bytes(n - 16)
                    if b.count > 0 { (request.baseAddress! + 16).copyMemory(from: b.baseAddress!, byteCount: b.count) }
                } else {
                    let b = input.bytes(n)
                    if b.count > 0 { request.baseAddress!.copyMemory(from: b.baseAddress!, byteCount: b.count) }
                    n = b.count
                }
                let room = Int(input.u8())
                let out = server.handleCall(osid: osid, request: UnsafeRawBufferPointer(rebasing: request[0 ..< n]),
                                            response: UnsafeMutableRawBufferPointer(rebasing: response[0 ..< room]),
                                            ram: ram, registers: banks[Int(osid.rawValue)])
                precondition(out.bytesWritten <= room, "wrote \(out.bytesWritten) bytes into \(room)")
            case 4: _ = try? server.onVmOnline(osid: osid, priority: input.u32())
            case 5: _ = try? server.onVmOffline(osid: osid)
            case 6: _ = try? server.releaseDevice(osid: osid)
            case 7: _ = try? server.vmmConfigure(param: UInt32(input.u8() % 12), value: input.u32())
            case 8: _ = try? server.guestConnected(osid: osid)
            case 9: _ = try? server.guestDisconnected(osid: osid)
            case 10:
                let saved = server.persistedState()
                let again = try! PVZHostServer(maxOSIDs: 4, guests: specs, hostPoolSize: 0x40_0000 + 0x6000)
                let notes = again.restore(saved)
                precondition(notes.isEmpty, "a saved ledger did not restore whole: \(notes)")
                precondition(again.persistedState() == saved, "restored ledger saves differently")
            default:
                _ = server.snapshot()
                _ = server.configView(osid: osid)
                _ = server.translate(osid: osid, ipa: IPA(input.u64()))
                _ = server.translate(pa: PA(input.u64()))
            }
        }
    }
}
