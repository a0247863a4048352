import Synchronization

/// The host PVZ server (sGuestFuncTab + sConfigFuncTab) and the VM manager's
/// entry points (sVmmFuncTab, in VMManagerCalls.swift) for every guest OSID.
/// Thread-safe, per OSID: a guest's call takes only its own ledger's lock
/// (one hold for its bookkeeping, none for the online check), never one that
/// another guest's call takes; the shared host heap pool is locked only by
/// heap creation and release. No lock is held across the glue's callbacks
/// (GuestRAM, RegisterFile, FirmwareControl).
public final class PVZHostServer: Sendable {
    public let maxOSIDs: UInt32
    /// The DDK PVZ ABI this host follows (function ids, VMMConfigure numbering).
    public let ddkABI: DDKABI
    /// Index = OSID raw value; nil for OSIDs without a configured guest (and 0, the host).
    let ledgers: [GuestLedger?]
    let shared: Mutex<SharedState>
    /// Calls for OSIDs without a guest (counted, then refused).
    let invalidOSIDCount = Atomic<UInt64>(0)

    /// - Parameter hostPoolSize: bytes of host-origin heap all guests together
    ///   may hold (the emulated GPU's local memory); nil means only each
    ///   carve-out limits its guest.
    public init(maxOSIDs: UInt32 = 8, guests: [GuestSpec], hostPoolSize: UInt64? = nil,
                ddkABI: DDKABI = .default) throws(PVZConfigError) {
        guard maxOSIDs >= 2, maxOSIDs <= PVZLayout.maxOSIDsLimit else {
            throw .maxOSIDsOutOfRange(maxOSIDs, limit: PVZLayout.maxOSIDsLimit)
        }
        var specs = [GuestSpec?](repeating: nil, count: Int(maxOSIDs))
        for g in guests {
            guard g.osid.rawValue >= 1, g.osid.rawValue < maxOSIDs else {
                throw .osidOutOfRange(g.osid, maxOSIDs: maxOSIDs)
            }
            guard specs[Int(g.osid.rawValue)] == nil else { throw .duplicateOSID(g.osid) }
            try Self.validate(g, abi: ddkABI, maxOSIDs: maxOSIDs)
            specs[Int(g.osid.rawValue)] = g
        }
        self.maxOSIDs = maxOSIDs
        self.ddkABI = ddkABI
        self.ledgers = specs.map { $0.map(GuestLedger.init(spec:)) }
        self.shared = Mutex(SharedState(priorities: Array(repeating: 0, count: Int(maxOSIDs)),
                                        hostPoolLimit: hostPoolSize ?? UInt64.max))
    }

    /// The ledger of a configured guest OSID, nil if none.
    func ledger(_ osid: OSID) -> GuestLedger? {
        osid.rawValue < maxOSIDs ? ledgers[Int(osid.rawValue)] : nil
    }

    /// Firmware heap sizes a DDK of this ABI can have: RGX_FIRMWARE_RAW_HEAP_SIZE
    /// is 1 << RGX_FW_HEAP_SHIFT, shift 22…25 (4–32 MiB) up to 23.2; 23.3 allows
    /// up to 256 MiB divided among the drivers (host and guests build with the
    /// same shift, and MAP needs the guest's size to equal it). The daemon's
    /// configuration refuses other sizes; the server itself only needs a ring's worth.
    public static func ddkFirmwareHeapSizes(_ abi: DDKABI, maxOSIDs: UInt32) -> [UInt64] {
        let shifts: ClosedRange<UInt64> = 22...25
        var sizes = shifts.map { UInt64(1) << $0 }
        if abi == .v23 {
            let cap = (UInt64(1) << 28) / UInt64(max(maxOSIDs, 1))
            sizes = (22...28).map { UInt64(1) << $0 }.filter { $0 <= cap || $0 <= 1 << 25 }
        }
        return sizes
    }

    static func validate(_ g: GuestSpec, abi: DDKABI = .default, maxOSIDs: UInt32 = 8) throws(PVZConfigError) {
        let page = PVZLayout.pageSize
        guard g.carveout.isPageAligned else { throw .carveoutUnaligned(g.osid, g.carveout, alignment: page) }
        guard g.carveout.size <= PVZLayout.maxRegionSize else {
            throw .carveoutTooLarge(g.osid, size: g.carveout.size, limit: PVZLayout.maxRegionSize)
        }
        let p = g.policy
        // The firmware heap holds the 4 KiB ring header plus at least one page of ring.
        guard p.fwHeapSize >= 2 * page, p.fwHeapSize % page == 0, p.fwHeapSize <= PVZLayout.maxRegionSize else {
            throw .heapSizeInvalid(g.osid, .fwLocal, size: p.fwHeapSize,
                                   reason: "must be a multiple of 4 KiB in 8 KiB...32 GiB")
        }
        guard p.gpuHeapSize >= page, p.gpuHeapSize % page == 0, p.gpuHeapSize <= PVZLayout.maxRegionSize else {
            throw .heapSizeInvalid(g.osid, .gpuLocal, size: p.gpuHeapSize,
                                   reason: "must be a multiple of 4 KiB in 4 KiB...32 GiB")
        }
        if p.heapType == .lma, p.gpuHeapOrigin != .host || !p.hostHeapsAllowed { throw .lmaNeedsHostGPUHeap(g.osid) }
        let needed = PVZLayout.registerBankSize + p.hostHeapBytes
        guard g.carveout.size >= needed else { throw .carveoutTooSmall(g.osid, size: g.carveout.size, needed: needed) }
    }

    /// The configuration of a guest OSID, nil if none.
    public func spec(of osid: OSID) -> GuestSpec? { ledger(osid)?.spec }

    // MARK: the hypercall entry point

    /// Serves one hypercall of `osid` (decided by the VM manager from the
    /// socket, never from the request). Writes the response header (when
    /// `response` holds 16 bytes) and, on OK, the function's output.
    public func handleCall(osid: OSID, request: UnsafeRawBufferPointer, response: UnsafeMutableRawBufferPointer,
                           ram: some GuestRAM, registers: some RegisterFile,
                           firmware: some FirmwareControl = NoFirmware()) -> CallOutcome {
        let header = HypercallRequestHeader.decode(from: request)
        let raw = header?.function ?? 0
        let function = header.flatMap { PVZFunction(rawValue: $0.function) }
        var status: PVZStatus
        var effect = CallEffect.none
        if response.count < HypercallResponseHeader.size {
            status = .malformedRequest
        } else if let header {
            (status, effect) = dispatch(osid: osid, header: header, function: function, request: request,
                                        response: response, ram: ram, registers: registers, firmware: firmware)
        } else {
            status = .malformedRequest
        }
        record(osid: osid, rawFunction: raw, status: status)
        registers.hypercallCompleted(function: function, status: status)
        guard response.count >= HypercallResponseHeader.size else {
            return CallOutcome(bytesWritten: 0, rawFunction: raw, function: function, status: status, effect: .none)
        }
        HypercallResponseHeader(status: status.rawValue, function: raw, requestID: header?.requestID ?? 0)
            .encode(into: response)
        let out = status == .ok ? (function?.outputSize ?? 0) : 0
        return CallOutcome(bytesWritten: HypercallResponseHeader.size + out, rawFunction: raw,
                           function: function, status: status, effect: status == .ok ? effect : .none)
    }

    /// A request replayed after a daemon restart (it was in flight when the
    /// old daemon died): if it is a ledger-changing call that already ran,
    /// writes its original answer and returns the outcome; nil means it never
    /// ran and must run now. Matches on the whole request (its request id included).
    public func recordedAnswer(osid: OSID, request: UnsafeRawBufferPointer,
                               response: UnsafeMutableRawBufferPointer) -> CallOutcome? {
        guard let l = ledger(osid), request.count >= HypercallRequestHeader.size,
              response.count >= HypercallResponseHeader.size,
              let header = HypercallRequestHeader.decode(from: request) else { return nil }
        let found = l.slot.withLock { g -> CallRecord? in
            g.recentCalls.last { $0.request.elementsEqual(request) }
        }
        guard let found else { return nil }
        let room = response.count - HypercallResponseHeader.size
        let out = found.output.count <= room ? found.output.count : 0
        HypercallResponseHeader(status: found.status.rawValue, function: header.function, requestID: header.requestID)
            .encode(into: response)
        if out > 0 {
            found.output.withUnsafeBytes {
                UnsafeMutableRawBufferPointer(rebasing: response[HypercallResponseHeader.size...]).copyMemory(from: $0)
            }
        }
        return CallOutcome(bytesWritten: HypercallResponseHeader.size + out, rawFunction: header.function,
                           function: PVZFunction(rawValue: header.function), status: found.status, effect: .none)
    }

    private func record(osid: OSID, rawFunction: UInt32, status: PVZStatus) {
        if let l = ledger(osid) {
            l.slot.withLock { $0.count(function: rawFunction, status: status) }
        } else {
            invalidOSIDCount.add(1, ordering: .relaxed)
        }
    }

    /// Order of checks: OSID, online, known function, exact request length,
    /// room for the output, dev_id; then the function's own checks.
    private func dispatch(osid: OSID, header: HypercallRequestHeader, function: PVZFunction?,
                          request: UnsafeRawBufferPointer, response: UnsafeMutableRawBufferPointer,
                          ram: some GuestRAM, registers: some RegisterFile,
                          firmware: some FirmwareControl) -> (PVZStatus, CallEffect) {
        guard let ledger = ledger(osid) else { return (.invalidOSID, .none) }
        let spec = ledger.spec
        // Lock-free; checked again under the ledger's lock by every call that
        // changes it: OnVmOffline may run between here and there.
        guard ledger.online.load(ordering: .acquiring) else { return (.vmOffline, .none) }
        guard let function else { return (.malformedRequest, .none) }
        let inSize = function.inputSize
        // Exact length: a longer request is as suspect as a shorter one.
        guard request.count == HypercallRequestHeader.size + inSize else { return (.malformedRequest, .none) }
        guard response.count >= HypercallResponseHeader.size + function.outputSize else { return (.malformedRequest, .none) }
        guard header.devID == 0 else { return (.invalidParams, .none) }
        // The call must exist in this DDK ABI. Its ui32FuncID is checked where
        // the DDK's server checks it (1.13, 1.15: Map 1, Unmap 2, else
        // INVALID_PARAMS; 0 = not given); 1.10 only asserts in debug builds and
        // passes it through, 1.18 and later have none.
        guard let funcID = ddkABI.funcID(of: function) else { return (.notImplemented, .none) }
        if ddkABI == .v1_13 || ddkABI == .v1_15, header.funcID != 0, header.funcID != funcID {
            return (.invalidParams, .none)
        }
        let input = UnsafeRawBufferPointer(rebasing: request[HypercallRequestHeader.size...])
        let output = UnsafeMutableRawBufferPointer(rebasing: response[HypercallResponseHeader.size...])
        let policy = spec.policy

        switch function {
        case .createDevConfig:
            let out = UnsafeMutableRawBufferPointer(rebasing: output[..<function.outputSize])
            let st = ledger.withSlot { g -> PVZStatus in
                guard g.online else { return .vmOffline }
                if g.devConfigCreated { return .alreadyExists }
                g.devConfigCreated = true
                CreateDevConfigOutput(irq: policy.irq, regsSize: UInt32(PVZLayout.registerBankSize),
                                      regsPBase: spec.carveout.start.rawValue).encode(into: out)
                g.remember(request: request, status: .ok, output: UnsafeRawBufferPointer(out))
                return .ok
            }
            guard st == .ok else { return (st, .none) }
            let regs = spec.carveout.slice(offset: 0, size: PVZLayout.registerBankSize)!
            return (.ok, .devConfigCreated(irq: policy.irq, registers: regs))

        case .destroyDevConfig:
            let st = ledger.withSlot { g -> PVZStatus in
                guard g.online else { return .vmOffline }
                guard g.devConfigCreated else { return .notFound }
                g.devConfigCreated = false
                g.remember(request: request, status: .ok, output: UnsafeRawBufferPointer(start: nil, count: 0))
                return .ok
            }
            return st == .ok ? (.ok, .devConfigDestroyed) : (st, .none)

        case .createDevPhysHeaps:
            return createHostHeaps(ledger, output: output, request: request)

        case .destroyDevPhysHeaps:
            guard policy.hostHeapsAllowed else { return (.notImplemented, .none) }
            // The firmware lets go of a host-origin firmware heap before it leaves the ledger.
            let (online, created, fw) = ledger.slot.withLock { g in (g.online, g.hostHeapsCreated, g.hostFwHeap) }
            guard online else { return (.vmOffline, .none) }
            guard created else { return (.notFound, .none) }
            if let fw { firmware.release(fw) }
            let (stillOnline, freed) = ledger.withSlot { g -> (Bool, (fw: HeapRecord?, gpu: HeapRecord?)?) in
                guard g.online else { return (false, nil) }
                let f = freeHostHeaps(&g)
                if f != nil { g.remember(request: request, status: .ok, output: UnsafeRawBufferPointer(start: nil, count: 0)) }
                return (true, f)
            }
            guard stillOnline else { return (.vmOffline, .none) }
            guard let freed else { return (.notFound, .none) }
            return (.ok, .heapsDestroyed(fw: freed.fw, gpu: freed.gpu))

        case .mapDevPhysHeap:
            let inp = MapDevPhysHeapInput.decode(from: input)!
            return mapGuestFwHeap(ledger, input: inp, ram: ram, request: request)

        case .unmapDevPhysHeap:
            guard policy.fwHeapOrigin == .guest else { return (.invalidPVZConfig, .none) }
            let (online, mapped) = ledger.slot.withLock { g in (g.online, g.guestFwHeap) }
            guard online else { return (.vmOffline, .none) }
            guard let mapped else { return (.notFound, .none) }
            // UNMAP answers OK only once the firmware is stopped and detached.
            firmware.release(mapped)
            let (stillOnline, heap) = ledger.withSlot { g -> (Bool, HeapRecord?) in
                guard g.online else { return (false, nil) }
                defer { g.guestFwHeap = nil }
                if g.guestFwHeap != nil { g.remember(request: request, status: .ok, output: UnsafeRawBufferPointer(start: nil, count: 0)) }
                return (true, g.guestFwHeap)
            }
            guard stillOnline else { return (.vmOffline, .none) }
            guard let heap else { return (.notFound, .none) }
            return (.ok, .fwHeapUnmapped(heap))

        case .getDevPhysHeapOrigin:
            let q = HeapQueryInput.decode(from: input)!
            guard let heap = PhysHeap(rawValue: q.heap) else { return (.invalidParams, .none) }
            HeapOriginOutput(origin: Self.origin(of: heap, policy).rawValue).encode(into: output)
            return (.ok, .none)

        case .getDevPhysHeapAddrSize:
            let q = HeapQueryInput.decode(from: input)!
            guard let heap = PhysHeap(rawValue: q.heap) else { return (.invalidParams, .none) }
            let slot = ledger.slot.withLock { Self.heapView($0) }
            guard let (size, addr) = Self.addrSize(of: heap, policy, slot) else { return (.notFound, .none) }
            HeapAddrSizeOutput(size: size, addr: addr).encode(into: output)
            return (.ok, .none)

        case .readReg:
            let r = ReadRegInput.decode(from: input)!
            guard Self.validRegisterOffset(r.offset) else { return (.invalidParams, .none) }
            switch registers.read(offset: r.offset) {
            case .success(let v):
                ReadRegOutput(value: v).encode(into: output)
                return (.ok, .none)
            case .failure(let e):
                return (e == .ok ? .invalidParams : e, .none)
            }

        case .writeReg:
            let w = WriteRegInput.decode(from: input)!
            guard Self.validRegisterOffset(w.offset) else { return (.invalidParams, .none) }
            let st = registers.write(offset: w.offset, value: w.value)
            return (st, st == .ok ? .registerWritten(offset: w.offset, value: w.value) : .none)
        }
    }

    static func validRegisterOffset(_ o: UInt32) -> Bool {
        o & 3 == 0 && UInt64(o) < PVZLayout.registerBankSize
    }

    // MARK: heaps

    private func createHostHeaps(_ ledger: GuestLedger, output: UnsafeMutableRawBufferPointer,
                                 request: UnsafeRawBufferPointer) -> (PVZStatus, CallEffect) {
        let spec = ledger.spec, p = spec.policy
        guard p.hostHeapsAllowed else { return (.notImplemented, .none) }
        guard p.fwHeapOrigin == .host || p.gpuHeapOrigin == .host else { return (.invalidPVZConfig, .none) }
        let out = UnsafeMutableRawBufferPointer(rebasing: output[..<CreateDevPhysHeapsOutput.size])
        let result = ledger.withSlot { g -> (PVZStatus, HeapRecord?, HeapRecord?) in
            guard g.online else { return (.vmOffline, nil, nil) }
            guard !g.hostHeapsCreated else { return (.alreadyExists, nil, nil) }
            let need = p.hostHeapBytes
            guard PVZLayout.registerBankSize + need <= spec.carveout.size,
                  shared.withLock({ $0.reserve(need) }) else {
                return (.outOfMemory, nil, nil)
            }
            (g.hostFwHeap, g.hostGpuHeap) = Self.hostHeapLayout(spec)
            g.hostHeapsCreated = true
            // As the DDK's host: a guest-origin heap is not the host's to
            // describe, it answers 0/0 (the guest's own policy says where).
            let view = Self.heapView(g)
            let fw = p.fwHeapOrigin == .host ? Self.addrSize(of: .fwLocal, p, view) ?? (0, 0) : (0, 0)
            let gpu = p.gpuHeapOrigin == .host ? Self.addrSize(of: .gpuLocal, p, view) ?? (0, 0) : (0, 0)
            CreateDevPhysHeapsOutput(type: p.heapType.rawValue, fwSize: fw.0, fwPAddr: fw.1,
                                     gpuSize: gpu.0, gpuPAddr: gpu.1).encode(into: out)
            g.remember(request: request, status: .ok, output: UnsafeRawBufferPointer(out))
            return (.ok, g.hostFwHeap, g.hostGpuHeap)
        }
        guard result.0 == .ok else { return (result.0, .none) }
        return (.ok, .heapsCreated(fw: result.1, gpu: result.2))
    }

    /// Where the host-origin heaps of a guest sit: the register bank, then the
    /// FW heap, then the GPU heap. Deterministic, so a restart re-derives it.
    static func hostHeapLayout(_ spec: GuestSpec) -> (fw: HeapRecord?, gpu: HeapRecord?) {
        let p = spec.policy, osid = spec.osid
        var offset = PVZLayout.registerBankSize
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
    func freeHostHeaps(_ g: inout GuestSlot) -> (fw: HeapRecord?, gpu: HeapRecord?)? {
        guard g.hostHeapsCreated else { return nil }
        let freed = (g.hostFwHeap, g.hostGpuHeap)
        shared.withLock { $0.giveBack(g.spec.policy.hostHeapBytes) }
        g.hostFwHeap = nil
        g.hostGpuHeap = nil
        g.hostHeapsCreated = false
        return freed
    }

    private func mapGuestFwHeap(_ ledger: GuestLedger, input: MapDevPhysHeapInput,
                                ram: some GuestRAM, request: UnsafeRawBufferPointer) -> (PVZStatus, CallEffect) {
        let spec = ledger.spec, p = spec.policy, osid = spec.osid
        guard p.fwHeapOrigin == .guest else { return (.invalidPVZConfig, .none) }
        let start = IPA(input.paddr)
        guard input.paddr != 0, start.isPageAligned, input.size == p.fwHeapSize else { return (.invalidParams, .none) }
        guard let range = IPARange(start: start, size: input.size) else { return (.addressOutOfRange, .none) }
        // Asked before taking the lock: the glue's memory table has its own.
        let inRAM = ram.contains(range)
        return ledger.withSlot { g -> (PVZStatus, CallEffect) in
            guard g.online else { return (.vmOffline, .none) }
            guard g.guestFwHeap == nil else { return (.alreadyExists, .none) }
            guard inRAM, !range.overlaps(spec.carveout) else { return (.addressOutOfRange, .none) }
            // Host heaps sit inside the carve-out today; checked anyway so a
            // future layout cannot silently alias them.
            if let h = g.hostFwHeap, h.ipa.overlaps(range) { return (.addressOutOfRange, .none) }
            if let h = g.hostGpuHeap, h.ipa.overlaps(range) { return (.addressOutOfRange, .none) }
            let rec = HeapRecord(osid: osid, heap: .fwLocal, origin: .guest, ipa: range, pa: PAWindow.guestHeap(osid))
            g.guestFwHeap = rec
            g.remember(request: request, status: .ok, output: UnsafeRawBufferPointer(start: nil, count: 0))
            return (.ok, .fwHeapMapped(rec))
        }
    }

    // MARK: sConfigFuncTab policy

    static func origin(of heap: PhysHeap, _ p: GuestPolicy) -> HeapOrigin { p.origin(of: heap) }

    struct HeapView {
        var hostFw: IPARange?
        var hostGpu: IPARange?
        var guestFw: IPARange?
    }

    static func heapView(_ g: GuestSlot) -> HeapView {
        HeapView(hostFw: g.hostFwHeap?.ipa, hostGpu: g.hostGpuHeap?.ipa, guestFw: g.guestFwHeap?.ipa)
    }

    /// (size, addr) for GET_DEV_PHYS_HEAP_ADDR_SIZE and CREATE_DEV_PHYS_HEAPS;
    /// nil (NOT_FOUND) for a host-origin heap not yet created. The table is
    /// docs/pvz-server.md.
    static func addrSize(of heap: PhysHeap, _ p: GuestPolicy, _ v: HeapView) -> (UInt64, UInt64)? {
        switch heap {
        case .fwLocal, .fwGuest:
            if p.fwHeapOrigin == .host {
                guard let r = v.hostFw else { return nil }
                return (r.size, r.start.rawValue)
            }
            if let r = v.guestFw { return (r.size, r.start.rawValue) }
            return (p.fwHeapSize, 0)
        case .gpuLocal:
            if p.gpuHeapOrigin == .host {
                guard let r = v.hostGpu else { return nil }
                return (r.size, r.start.rawValue)
            }
            switch p.heapType {
            case .uma: return (0, 0)
            case .dma: return (p.gpuHeapSize, 0)
            case .lma: return nil   // refused at init: LMA is always host-origin
            }
        case .cpuLocal, .external:
            return (0, 0)
        }
    }
}
