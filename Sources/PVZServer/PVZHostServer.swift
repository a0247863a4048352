import PVZContract
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
    let ledgers: [OSIDLedger?]
    let shared: Mutex<SharedState>
    /// Calls for OSIDs without a guest (counted, then refused).
    let invalidOSIDCount = Atomic<UInt64>(0)

    /// - Parameter hostPoolSize: bytes of host-origin heap all guests together
    ///   may hold (the emulated GPU's local memory); nil means only each
    ///   carve-out limits its guest.
    public init(maxOSIDs: UInt32 = VirtioPVZ.defaultMaxOSIDs, guests: [GuestSpec], hostPoolSize: UInt64? = nil,
                ddkABI: DDKABI = .default) throws(PVZConfigError) {
        guard maxOSIDs >= 2, maxOSIDs <= VirtioPVZ.maxOSIDsLimit else {
            throw .maxOSIDsOutOfRange(maxOSIDs, limit: VirtioPVZ.maxOSIDsLimit)
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
        self.ledgers = specs.map { $0.map(OSIDLedger.init(spec:)) }
        self.shared = Mutex(SharedState(priorities: Array(repeating: 0, count: Int(maxOSIDs)),
                                        hostPoolLimit: hostPoolSize ?? UInt64.max))
    }

    /// The ledger of a configured guest OSID, nil if none.
    func ledger(_ osid: OSID) -> OSIDLedger? {
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

    static func validate(_ g: GuestSpec, abi: DDKABI = .default, maxOSIDs: UInt32 = VirtioPVZ.defaultMaxOSIDs) throws(PVZConfigError) {
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
        let needed = PVZRegister.bankSize + p.hostHeapBytes
        guard g.carveout.size >= needed else { throw .carveoutTooSmall(g.osid, size: g.carveout.size, needed: needed) }
    }

    /// The configuration of a guest OSID, nil if none.
    public func spec(of osid: OSID) -> GuestSpec? { ledger(osid)?.spec }

    // MARK: the hypercall entry point

    /// Serves one hypercall of `osid` (decided by the VM manager from the
    /// socket, never from the request). Writes the response header (when
    /// `response` holds 16 bytes) and, on OK, the function's output. The
    /// checks every call shares are here; each function is one method below
    /// (Hypercalls.swift), named after it.
    public func handleCall(osid: OSID, request: UnsafeRawBufferPointer, response: UnsafeMutableRawBufferPointer,
                           ram: some GuestRAM, registers: some RegisterFile,
                           firmware: some FirmwareControl = NoFirmware()) -> CallOutcome {
        let header = HypercallRequestHeader.decode(from: request)
        let raw = header?.function ?? 0
        let function = header.flatMap { PVZFunction(rawValue: $0.function) }
        var result: CallResult = (.malformedRequest, .none)
        if response.count >= HypercallResponseHeader.size, let header {
            result = dispatch(osid: osid, header: header, function: function, request: request,
                              response: response, ram: ram, registers: registers, firmware: firmware)
        }
        record(osid: osid, rawFunction: raw, status: result.status)
        registers.hypercallCompleted(function: function, status: result.status)
        guard response.count >= HypercallResponseHeader.size else {
            return CallOutcome(bytesWritten: 0, rawFunction: raw, function: function, status: result.status, effect: .none)
        }
        HypercallResponseHeader(status: result.status.rawValue, function: raw, requestID: header?.requestID ?? 0)
            .encode(into: response)
        let ok = result.status == .ok
        let out = ok ? (function?.outputSize ?? 0) : 0
        return CallOutcome(bytesWritten: HypercallResponseHeader.size + out, rawFunction: raw,
                           function: function, status: result.status, effect: ok ? result.effect : .none)
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
        let found = l.entry.withLock { g -> CallRecord? in
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
            l.entry.withLock { $0.count(function: rawFunction, status: status) }
        } else {
            invalidOSIDCount.add(1, ordering: .relaxed)
        }
    }

    /// The checks every call shares, in this order: OSID, online, known
    /// function, exact request length, room for the output, dev_id, the
    /// call's existence in this DDK ABI and its func_id; then the function.
    private func dispatch(osid: OSID, header: HypercallRequestHeader, function: PVZFunction?,
                          request: UnsafeRawBufferPointer, response: UnsafeMutableRawBufferPointer,
                          ram: some GuestRAM, registers: some RegisterFile,
                          firmware: some FirmwareControl) -> CallResult {
        guard let ledger = ledger(osid) else { return (.invalidOSID, .none) }
        // Lock-free; checked again under the ledger's lock by every call that
        // changes it: OnVmOffline may run between here and there.
        guard ledger.online.load(ordering: .acquiring) else { return (.vmOffline, .none) }
        guard let function else { return (.malformedRequest, .none) }
        // Exact length: a longer request is as suspect as a shorter one.
        guard request.count == HypercallRequestHeader.size + function.inputSize else { return (.malformedRequest, .none) }
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
        let call = Call(ledger: ledger, request: request,
                        input: UnsafeRawBufferPointer(rebasing: request[HypercallRequestHeader.size...]),
                        output: UnsafeMutableRawBufferPointer(
                            rebasing: response[HypercallResponseHeader.size ..< HypercallResponseHeader.size + function.outputSize]))
        switch function {
        case .createDevConfig: return createDevConfig(call)
        case .destroyDevConfig: return destroyDevConfig(call)
        case .createDevPhysHeaps: return createDevPhysHeaps(call)
        case .destroyDevPhysHeaps: return destroyDevPhysHeaps(call, firmware: firmware)
        case .mapDevPhysHeap: return mapDevPhysHeap(call, ram: ram)
        case .unmapDevPhysHeap: return unmapDevPhysHeap(call, firmware: firmware)
        case .getDevPhysHeapOrigin: return getDevPhysHeapOrigin(call)
        case .getDevPhysHeapAddrSize: return getDevPhysHeapAddrSize(call)
        case .readReg: return readReg(call, registers: registers)
        case .writeReg: return writeReg(call, registers: registers)
        }
    }
}
