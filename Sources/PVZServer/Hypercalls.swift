import PVZContract
import Synchronization

/// What a hypercall's function returns: its status and what it changed.
typealias CallResult = (status: PVZStatus, effect: CallEffect)

/// One call as dispatch hands it to its function: the OSID's ledger, the
/// request exactly as the guest sent it (kept with the answer of a
/// ledger-changing call, for a replay after a restart), the function's input
/// (checked to be its exact size) and its output (exactly its size).
struct Call {
    let ledger: OSIDLedger
    let request: UnsafeRawBufferPointer
    let input: UnsafeRawBufferPointer
    let output: UnsafeMutableRawBufferPointer
    var spec: GuestSpec { ledger.spec }
    var policy: GuestPolicy { ledger.spec.policy }
    static var noOutput: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }
}

// sGuestFuncTab and sConfigFuncTab: one method per function (spec 5), in
// function-number order. Each takes only its own OSID's ledger lock; a heap
// the firmware uses leaves the ledger only after FirmwareControl.release.
extension PVZHostServer {
    /// 1: the register bank at the carve-out's start, and the guest's IRQ.
    func createDevConfig(_ c: Call) -> CallResult {
        let spec = c.spec
        let st = c.ledger.withEntry { g -> PVZStatus in
            guard g.online else { return .vmOffline }
            if g.devConfigCreated { return .alreadyExists }
            g.devConfigCreated = true
            CreateDevConfigOutput(irq: spec.policy.irq, regsSize: UInt32(PVZRegister.bankSize),
                                  regsIPA: spec.carveout.start).encode(into: c.output)
            g.remember(request: c.request, status: .ok, output: UnsafeRawBufferPointer(c.output))
            return .ok
        }
        guard st == .ok else { return (st, .none) }
        let regs = spec.carveout.slice(offset: 0, size: PVZRegister.bankSize)!
        return (.ok, .devConfigCreated(irq: spec.policy.irq, registers: regs))
    }

    /// 2.
    func destroyDevConfig(_ c: Call) -> CallResult {
        let st = c.ledger.withEntry { g -> PVZStatus in
            guard g.online else { return .vmOffline }
            guard g.devConfigCreated else { return .notFound }
            g.devConfigCreated = false
            g.remember(request: c.request, status: .ok, output: Call.noOutput)
            return .ok
        }
        return st == .ok ? (.ok, .devConfigDestroyed) : (st, .none)
    }

    /// 3: the host-origin heaps, carved from the carve-out after the register
    /// bank, their bytes taken from the shared host pool.
    func createDevPhysHeaps(_ c: Call) -> CallResult {
        let spec = c.spec, p = spec.policy
        guard p.hostHeapsAllowed else { return (.notImplemented, .none) }
        guard p.fwHeapOrigin == .host || p.gpuHeapOrigin == .host else { return (.invalidPVZConfig, .none) }
        let result = c.ledger.withEntry { g -> (PVZStatus, HeapRecord?, HeapRecord?) in
            guard g.online else { return (.vmOffline, nil, nil) }
            guard !g.hostHeapsCreated else { return (.alreadyExists, nil, nil) }
            let need = p.hostHeapBytes
            guard PVZRegister.bankSize + need <= spec.carveout.size,
                  shared.withLock({ $0.reserve(need) }) else {
                return (.outOfMemory, nil, nil)
            }
            (g.hostFwHeap, g.hostGpuHeap) = Self.hostHeapLayout(spec)
            g.hostHeapsCreated = true
            // As the DDK's host: a guest-origin heap is not the host's to
            // describe, it answers 0/0 (the guest's own policy says where).
            let view = Self.heapView(g)
            let none = (UInt64(0), IPA(0))
            let fw = p.fwHeapOrigin == .host ? Self.addrSize(of: .fwLocal, p, view) ?? none : none
            let gpu = p.gpuHeapOrigin == .host ? Self.addrSize(of: .gpuLocal, p, view) ?? none : none
            CreateDevPhysHeapsOutput(type: p.heapType.rawValue, fwSize: fw.0, fwIPA: fw.1,
                                     gpuSize: gpu.0, gpuIPA: gpu.1).encode(into: c.output)
            g.remember(request: c.request, status: .ok, output: UnsafeRawBufferPointer(c.output))
            return (.ok, g.hostFwHeap, g.hostGpuHeap)
        }
        guard result.0 == .ok else { return (result.0, .none) }
        return (.ok, .heapsCreated(fw: result.1, gpu: result.2))
    }

    /// 4: the firmware lets go of a host-origin firmware heap before it leaves the ledger.
    func destroyDevPhysHeaps(_ c: Call, firmware: some FirmwareControl) -> CallResult {
        guard c.policy.hostHeapsAllowed else { return (.notImplemented, .none) }
        let (online, created, fw) = c.ledger.entry.withLock { g in (g.online, g.hostHeapsCreated, g.hostFwHeap) }
        guard online else { return (.vmOffline, .none) }
        guard created else { return (.notFound, .none) }
        if let fw { firmware.release(fw) }
        let (stillOnline, freed) = c.ledger.withEntry { g -> (Bool, (fw: HeapRecord?, gpu: HeapRecord?)?) in
            guard g.online else { return (false, nil) }
            let f = freeHostHeaps(&g)
            if f != nil { g.remember(request: c.request, status: .ok, output: Call.noOutput) }
            return (true, f)
        }
        guard stillOnline else { return (.vmOffline, .none) }
        guard let freed else { return (.notFound, .none) }
        return (.ok, .heapsDestroyed(fw: freed.fw, gpu: freed.gpu))
    }

    /// 5: the guest-origin firmware heap, in the guest's own RAM outside its carve-out.
    func mapDevPhysHeap(_ c: Call, ram: some GuestRAM) -> CallResult {
        let spec = c.spec, p = spec.policy, osid = spec.osid
        let input = MapDevPhysHeapInput.decode(from: c.input)!
        guard p.fwHeapOrigin == .guest else { return (.invalidPVZConfig, .none) }
        guard input.ipa.rawValue != 0, input.ipa.isPageAligned, input.size == p.fwHeapSize else { return (.invalidParams, .none) }
        guard let range = IPARange(start: input.ipa, size: input.size) else { return (.addressOutOfRange, .none) }
        // Asked before taking the lock: the glue's memory table has its own.
        let inRAM = ram.contains(range)
        return c.ledger.withEntry { g -> CallResult in
            guard g.online else { return (.vmOffline, .none) }
            guard g.guestFwHeap == nil else { return (.alreadyExists, .none) }
            guard inRAM, !range.overlaps(spec.carveout) else { return (.addressOutOfRange, .none) }
            // Host heaps sit inside the carve-out today; checked anyway so a
            // future layout cannot silently alias them.
            if let h = g.hostFwHeap, h.ipa.overlaps(range) { return (.addressOutOfRange, .none) }
            if let h = g.hostGpuHeap, h.ipa.overlaps(range) { return (.addressOutOfRange, .none) }
            let rec = HeapRecord(osid: osid, heap: .fwLocal, origin: .guest, ipa: range, pa: PAWindow.guestHeap(osid))
            g.guestFwHeap = rec
            g.remember(request: c.request, status: .ok, output: Call.noOutput)
            return (.ok, .fwHeapMapped(rec))
        }
    }

    /// 6: answers OK only once the firmware is stopped and detached from the heap.
    func unmapDevPhysHeap(_ c: Call, firmware: some FirmwareControl) -> CallResult {
        guard c.policy.fwHeapOrigin == .guest else { return (.invalidPVZConfig, .none) }
        let (online, mapped) = c.ledger.entry.withLock { g in (g.online, g.guestFwHeap) }
        guard online else { return (.vmOffline, .none) }
        guard let mapped else { return (.notFound, .none) }
        firmware.release(mapped)
        let (stillOnline, heap) = c.ledger.withEntry { g -> (Bool, HeapRecord?) in
            guard g.online else { return (false, nil) }
            defer { g.guestFwHeap = nil }
            if g.guestFwHeap != nil { g.remember(request: c.request, status: .ok, output: Call.noOutput) }
            return (true, g.guestFwHeap)
        }
        guard stillOnline else { return (.vmOffline, .none) }
        guard let heap else { return (.notFound, .none) }
        return (.ok, .fwHeapUnmapped(heap))
    }

    /// 7: the policy's answer; takes no lock.
    func getDevPhysHeapOrigin(_ c: Call) -> CallResult {
        let q = HeapQueryInput.decode(from: c.input)!
        guard let heap = PhysHeap(rawValue: q.heap) else { return (.invalidParams, .none) }
        HeapOriginOutput(origin: c.policy.origin(of: heap).rawValue).encode(into: c.output)
        return (.ok, .none)
    }

    /// 8: the reference header's conventions (UMA 0/0, DMA size/0, host heaps IPA/size).
    func getDevPhysHeapAddrSize(_ c: Call) -> CallResult {
        let q = HeapQueryInput.decode(from: c.input)!
        guard let heap = PhysHeap(rawValue: q.heap) else { return (.invalidParams, .none) }
        let view = c.ledger.entry.withLock { Self.heapView($0) }
        guard let (size, ipa) = Self.addrSize(of: heap, c.policy, view) else { return (.notFound, .none) }
        HeapAddrSizeOutput(size: size, ipa: ipa).encode(into: c.output)
        return (.ok, .none)
    }

    /// 9: through the OSID's register bank (its own lock).
    func readReg(_ c: Call, registers: some RegisterFile) -> CallResult {
        let r = ReadRegInput.decode(from: c.input)!
        guard PVZRegister.isValidOffset(r.offset) else { return (.invalidParams, .none) }
        switch registers.read(offset: r.offset) {
        case .success(let v):
            ReadRegOutput(value: v).encode(into: c.output)
            return (.ok, .none)
        case .failure(let e):
            return (e == .ok ? .invalidParams : e, .none)
        }
    }

    /// 10.
    func writeReg(_ c: Call, registers: some RegisterFile) -> CallResult {
        let w = WriteRegInput.decode(from: c.input)!
        guard PVZRegister.isValidOffset(w.offset) else { return (.invalidParams, .none) }
        let st = registers.write(offset: w.offset, value: w.value)
        return (st, st == .ok ? .registerWritten(offset: w.offset, value: w.value) : .none)
    }

    // MARK: heaps

    /// Where the host-origin heaps of a guest sit: the register bank, then the
    /// FW heap, then the GPU heap. Deterministic, so a restart re-derives it.
    static func hostHeapLayout(_ spec: GuestSpec) -> (fw: HeapRecord?, gpu: HeapRecord?) {
        let p = spec.policy, osid = spec.osid
        var offset = PVZRegister.bankSize
        var fw: HeapRecord?, gpu: HeapRecord?
        if p.fwHeapOrigin == .host {
            fw = HeapRecord(osid: osid, heap: .fwLocal, origin: .host,
                            ipa: spec.carveout.slice(offset: offset, size: p.fwHeapSize)!,
                            pa: PAWindow.carveout(osid, offset: offset))
            offset += p.fwHeapSize
        }
        if p.gpuHeapOrigin == .host {
            gpu = HeapRecord(osid: osid, heap: .gpuLocal, origin: .host,
                             ipa: spec.carveout.slice(offset: offset, size: p.gpuHeapSize)!,
                             pa: PAWindow.carveout(osid, offset: offset))
        }
        return (fw, gpu)
    }

    /// Frees the host-origin heaps of a guest (their bytes go back to the
    /// pool); nil when there were none. Called under the guest's ledger lock.
    func freeHostHeaps(_ g: inout LedgerEntry) -> (fw: HeapRecord?, gpu: HeapRecord?)? {
        guard g.hostHeapsCreated else { return nil }
        let freed = (g.hostFwHeap, g.hostGpuHeap)
        shared.withLock { $0.giveBack(g.spec.policy.hostHeapBytes) }
        g.hostFwHeap = nil
        g.hostGpuHeap = nil
        g.hostHeapsCreated = false
        return freed
    }

    // MARK: sConfigFuncTab policy

    struct HeapView {
        var hostFw: IPARange?
        var hostGpu: IPARange?
        var guestFw: IPARange?
    }

    static func heapView(_ g: LedgerEntry) -> HeapView {
        HeapView(hostFw: g.hostFwHeap?.ipa, hostGpu: g.hostGpuHeap?.ipa, guestFw: g.guestFwHeap?.ipa)
    }

    /// (size, IPA) for GET_DEV_PHYS_HEAP_ADDR_SIZE and CREATE_DEV_PHYS_HEAPS;
    /// nil (NOT_FOUND) for a host-origin heap not yet created. The table is
    /// docs/pvz-server.md.
    static func addrSize(of heap: PhysHeap, _ p: GuestPolicy, _ v: HeapView) -> (UInt64, IPA)? {
        switch heap {
        case .fwLocal, .fwGuest:
            if p.fwHeapOrigin == .host {
                guard let r = v.hostFw else { return nil }
                return (r.size, r.start)
            }
            if let r = v.guestFw { return (r.size, r.start) }
            return (p.fwHeapSize, IPA(0))
        case .gpuLocal:
            if p.gpuHeapOrigin == .host {
                guard let r = v.hostGpu else { return nil }
                return (r.size, r.start)
            }
            switch p.heapType {
            case .uma: return (0, IPA(0))
            case .dma: return (p.gpuHeapSize, IPA(0))
            case .lma: return nil   // refused at init: LMA is always host-origin
            }
        case .cpuLocal, .external:
            return (0, IPA(0))
        }
    }
}
