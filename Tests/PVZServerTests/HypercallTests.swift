import Testing
import PVZContract
@testable import PVZServer

/// The ten functions on their OK paths and their own status codes.
@Suite struct HypercallTests {
    let fw32: UInt64 = 32 << 20

    @Test func createAndDestroyDevConfig() throws {
        let s = try makeServer(GuestPolicy(irq: 47))
        let r = call(s, .createDevConfig)
        #expect(r.status == .ok)
        #expect(r.outcome.bytesWritten == 32)
        #expect(r.header == HypercallResponseHeader(status: 0, function: 1, requestID: 0x1234))
        let out = r.output.withUnsafeBytes { CreateDevConfigOutput.decode(from: $0) }
        #expect(out == CreateDevConfigOutput(irq: 47, regsSize: 0x10000, regsIPA: IPA(512 * MiB)))
        #expect(r.outcome.effect == .devConfigCreated(irq: 47, registers: IPARange(start: IPA(512 * MiB), size: 0x10000)!))
        #expect(call(s, .createDevConfig).status == .alreadyExists)
        let d = call(s, .destroyDevConfig)
        #expect(d.status == .ok && d.outcome.effect == .devConfigDestroyed && d.outcome.bytesWritten == 16)
        #expect(call(s, .destroyDevConfig).status == .notFound)
        #expect(call(s, .createDevConfig).status == .ok)
    }

    @Test func createHostHeapsDefaultPolicy() throws {
        // Default: FW GUEST, GPU HOST, UMA -> only the GPU heap comes from the carve-out.
        let s = try makeServer()
        let r = call(s, .createDevPhysHeaps)
        #expect(r.status == .ok && r.outcome.bytesWritten == 56)
        let o = r.output.withUnsafeBytes { CreateDevPhysHeapsOutput.decode(from: $0) }!
        #expect(o.type == PhysHeapType.uma.rawValue)
        // Guest-origin: 0/0, as the DDK's host answers (it skips a GUEST-origin
        // heap); the guest's own policy (GET_DEV_PHYS_HEAP_ADDR_SIZE) gives 0/size.
        #expect(o.fwSize == 0 && o.fwIPA == IPA(0))
        #expect(o.gpuSize == 16 * MiB && o.gpuIPA.rawValue == 512 * MiB + 0x10000)
        guard case let .heapsCreated(fw, gpu) = r.outcome.effect else { Issue.record("effect \(r.outcome.effect)"); return }
        #expect(fw == nil)
        #expect(gpu?.pa == PA(1 << 36 | 0x10000))
        #expect(call(s, .createDevPhysHeaps).status == .alreadyExists)
        #expect(s.hostPoolUsed == 16 * MiB)
        let d = call(s, .destroyDevPhysHeaps)
        #expect(d.status == .ok)
        #expect(d.outcome.effect == .heapsDestroyed(fw: nil, gpu: gpu))
        #expect(s.hostPoolUsed == 0)
        #expect(call(s, .destroyDevPhysHeaps).status == .notFound)
    }

    @Test func createHostHeapsBothHostLMA() throws {
        let s = try makeServer(GuestPolicy(fwHeapOrigin: .host, gpuHeapOrigin: .host, heapType: .lma))
        let r = call(s, .createDevPhysHeaps)
        #expect(r.status == .ok)
        let o = r.output.withUnsafeBytes { CreateDevPhysHeapsOutput.decode(from: $0) }!
        #expect(o == CreateDevPhysHeapsOutput(type: 2, fwSize: fw32, fwIPA: IPA(512 * MiB + 0x10000),
                                              gpuSize: 16 * MiB, gpuIPA: IPA(512 * MiB + 0x10000 + fw32)))
        guard case let .heapsCreated(fw?, gpu?) = r.outcome.effect else { Issue.record("no heaps"); return }
        #expect(!fw.ipa.overlaps(gpu.ipa))
        #expect(fw.origin == .host && fw.heap == .fwLocal && gpu.heap == .gpuLocal)
        // MAP/UNMAP contradict a host-origin firmware heap.
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0x100000)).status == .invalidPVZConfig)
        #expect(call(s, .unmapDevPhysHeap).status == .invalidPVZConfig)
        #expect(s.configView(osid: OSID(1))?.fwHeap == fw)
    }

    @Test func createHeapsRefusedByPolicy() throws {
        let off = try makeServer(GuestPolicy(hostHeapsAllowed: false))
        #expect(call(off, .createDevPhysHeaps).status == .notImplemented)
        #expect(call(off, .destroyDevPhysHeaps).status == .notImplemented)
        let allGuest = try makeServer(GuestPolicy(fwHeapOrigin: .guest, gpuHeapOrigin: .guest))
        #expect(call(allGuest, .createDevPhysHeaps).status == .invalidPVZConfig)
    }

    @Test func hostPoolOutOfMemory() throws {
        let s = try makeServer(osids: [1, 2], pool: 24 * MiB)
        #expect(call(s, osid: 1, .createDevPhysHeaps).status == .ok)
        let r = call(s, osid: 2, .createDevPhysHeaps)
        #expect(r.status == .outOfMemory && r.outcome.bytesWritten == 16)
        #expect(r.outcome.effect == .none)
        #expect(call(s, osid: 1, .destroyDevPhysHeaps).status == .ok)
        #expect(call(s, osid: 2, .createDevPhysHeaps).status == .ok)
    }

    @Test func mapAndUnmapGuestFirmwareHeap() throws {
        let s = try makeServer()
        let r = call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0x1000_0000))
        #expect(r.status == .ok && r.outcome.bytesWritten == 16)
        let rec = HeapRecord(osid: OSID(1), heap: .fwLocal, origin: .guest,
                             ipa: IPARange(start: IPA(0x1000_0000), size: fw32)!, pa: PA(1 << 36 | 1 << 35))
        #expect(r.outcome.effect == .fwHeapMapped(rec))
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0x1000_0000)).status == .alreadyExists)
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0x2000_0000)).status == .alreadyExists)
        #expect(s.translate(osid: OSID(1), ipa: IPA(0x1000_0040)) == PA(1 << 36 | 1 << 35 | 0x40))
        #expect(s.translate(pa: PA(1 << 36 | 1 << 35 | 0x40)).map { $0.1 } == IPA(0x1000_0040))
        let u = call(s, .unmapDevPhysHeap)
        #expect(u.status == .ok && u.outcome.effect == .fwHeapUnmapped(rec))
        #expect(call(s, .unmapDevPhysHeap).status == .notFound)
        #expect(s.translate(osid: OSID(1), ipa: IPA(0x1000_0040)) == nil)
    }

    @Test func heapOriginPerPolicy() throws {
        func origin(_ s: PVZHostServer, _ h: UInt32) -> (PVZStatus, UInt32?) {
            let r = call(s, .getDevPhysHeapOrigin, input: u32(h))
            return (r.status, r.status == .ok ? r.output.withUnsafeBytes { HeapOriginOutput.decode(from: $0)!.origin } : nil)
        }
        let d = try makeServer()
        #expect(origin(d, 2) == (.ok, 1))   // FW_LOCAL GUEST
        #expect(origin(d, 3) == (.ok, 1))   // FW_GUEST follows FW_LOCAL
        #expect(origin(d, 0) == (.ok, 0))   // GPU_LOCAL HOST
        #expect(origin(d, 1) == (.ok, 1))   // CPU_LOCAL is guest OS memory
        #expect(origin(d, 4) == (.ok, 1))
        #expect(origin(d, 5).0 == .invalidParams)
        #expect(origin(d, 0xFFFF_FFFF).0 == .invalidParams)
        let h = try makeServer(GuestPolicy(fwHeapOrigin: .host, gpuHeapOrigin: .guest))
        #expect(origin(h, 2) == (.ok, 0))
        #expect(origin(h, 0) == (.ok, 1))
    }

    func addrSize(_ s: PVZHostServer, _ h: PhysHeap) -> (PVZStatus, UInt64, UInt64) {
        let r = call(s, .getDevPhysHeapAddrSize, input: u32(h.rawValue))
        guard r.status == .ok else { return (r.status, 0, 0) }
        let o = r.output.withUnsafeBytes { HeapAddrSizeOutput.decode(from: $0) }!
        return (.ok, o.ipa.rawValue, o.size)
    }

    @Test func addrSizeTable() throws {
        // GPU heap guest-origin: UMA 0/0, DMA 0/size.
        let uma = try makeServer(GuestPolicy(gpuHeapOrigin: .guest, heapType: .uma))
        #expect(addrSize(uma, .gpuLocal) == (.ok, 0, 0))
        let dma = try makeServer(GuestPolicy(gpuHeapOrigin: .guest, heapType: .dma, gpuHeapSize: 8 * MiB))
        #expect(addrSize(dma, .gpuLocal) == (.ok, 0, 8 * MiB))
        // Host-origin GPU heap (carve-out / LMA): NOT_FOUND before CREATE, then addr/size.
        let lma = try makeServer(GuestPolicy(heapType: .lma))
        #expect(addrSize(lma, .gpuLocal).0 == .notFound)
        #expect(call(lma, .createDevPhysHeaps).status == .ok)
        #expect(addrSize(lma, .gpuLocal) == (.ok, 512 * MiB + 0x10000, 16 * MiB))
        // FW heap guest-origin: 0/size until mapped, then the mapped IPA.
        #expect(addrSize(lma, .fwLocal) == (.ok, 0, fw32))
        #expect(call(lma, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0x400_0000)).status == .ok)
        #expect(addrSize(lma, .fwLocal) == (.ok, 0x400_0000, fw32))
        #expect(addrSize(lma, .cpuLocal) == (.ok, 0, 0))
        // FW heap host-origin: NOT_FOUND until created.
        let hf = try makeServer(GuestPolicy(fwHeapOrigin: .host))
        #expect(addrSize(hf, .fwLocal).0 == .notFound)
        #expect(call(hf, .createDevPhysHeaps).status == .ok)
        #expect(addrSize(hf, .fwLocal) == (.ok, 512 * MiB + 0x10000, fw32))
    }

    @Test func registers() throws {
        let s = try makeServer()
        let regs = TestRegisters()
        let r = call(s, .readReg, input: u32(0), regs: regs)
        #expect(r.status == .ok && r.outcome.bytesWritten == 20)
        #expect(r.output.prefix(4).elementsEqual(u32(0xC0DE)))
        let w = call(s, .writeReg, input: u32(0x10) + u32(0xFEED), regs: regs)
        #expect(w.status == .ok && w.outcome.effect == .registerWritten(offset: 0x10, value: 0xFEED))
        #expect(regs.values[0x10] == 0xFEED)
        #expect(call(s, .readReg, input: u32(0x10), regs: regs).output.prefix(4).elementsEqual(u32(0xFEED)))
        // The bank's own refusal passes through.
        #expect(call(s, .writeReg, input: u32(4) + u32(1), regs: regs).status == .invalidParams)
        #expect(call(s, .readReg, input: u32(0xFFFC), regs: regs).status == .ok)
        #expect(regs.completed.count == 5 && regs.completed.last!.0 == .readReg)
    }

    @Test func countersPerFunctionAndStatus() throws {
        let s = try makeServer()
        _ = call(s, .createDevConfig)
        _ = call(s, .createDevConfig)
        _ = call(s, request(99))
        let g = s.snapshot(osid: OSID(1))!
        #expect(g.calls(.createDevConfig) == 2)
        #expect(g.calls(.ok) == 1 && g.calls(.alreadyExists) == 1 && g.calls(.malformedRequest) == 1)
        #expect(g.callsByFunction[0] == 1)
        #expect(g.totalCalls == 3)
    }
}
