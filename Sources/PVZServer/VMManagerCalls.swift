import PVZContract
import Synchronization

// sVmmFuncTab: OnVmOnline, OnVmOffline, VMMConfigure, plus the front-end
// connection events and the read-only views the control plane and the glue use.

public struct OfflineResult: Equatable, Sendable {
    public var osid: OSID
    /// Every heap the OSID held (host-origin ones are back in the pool).
    public var freedHeaps: [HeapRecord]
    public var devConfigDestroyed: Bool
}

/// The DDK-level knobs VMMConfigure sets; the firmware scheduler reads them.
public struct VMMParameters: Equatable, Sendable {
    /// Priority per OSID (index = OSID), higher is served first.
    public var priorities: [UInt32]
    public var isolationThreshold: UInt32
    public var hcsDeadline: UInt32
    public var isolationGroups: [UInt32] = []
    public var timeSlices: [UInt32] = []
    public var timeSliceInterval: UInt32 = 0
    public var connectionCooldown: UInt32 = 0

    /// The value of a knob (0 for a priority beyond the configured OSIDs).
    public func value(of k: VMMKnob) -> UInt32 {
        func at(_ a: [UInt32], _ i: UInt32) -> UInt32 { Int(i) < a.count ? a[Int(i)] : 0 }
        switch k {
        case .priority(let n): return at(priorities, n)
        case .isolationThreshold: return isolationThreshold
        case .hcsDeadline: return hcsDeadline
        case .isolationGroup(let n): return at(isolationGroups, n)
        case .timeSlice(let n): return at(timeSlices, n)
        case .timeSliceInterval: return timeSliceInterval
        case .connectionCooldown: return connectionCooldown
        }
    }
}

public struct HeapSnapshot: Equatable, Sendable {
    public var heap: PhysHeap
    public var origin: HeapOrigin
    public var ipa: IPA
    public var pa: PA
    public var size: UInt64
}

/// One guest as the control plane sees it.
public struct LedgerSnapshot: Equatable, Sendable {
    public var osid: OSID
    public var carveout: IPARange
    public var policy: GuestPolicy
    public var online: Bool
    public var frontEndConnected: Bool
    public var priority: UInt32
    public var devConfigCreated: Bool
    public var heaps: [HeapSnapshot]
    /// Index 0 = unknown function, 1...10 = PVZFunction raw values.
    public var callsByFunction: [UInt64]
    /// Index = PVZStatus raw value.
    public var callsByStatus: [UInt64]
    public var disconnects: UInt64

    public func calls(_ f: PVZFunction) -> UInt64 { callsByFunction[Int(f.rawValue)] }
    public func calls(_ s: PVZStatus) -> UInt64 { callsByStatus[Int(s.rawValue)] }
    public var totalCalls: UInt64 { callsByStatus.reduce(0, &+) }
}

/// What the glue needs for config space (spec 4), read without allocating.
public struct ConfigSpaceView: Equatable, Sendable {
    public var osid: OSID
    public var online: Bool
    public var devConfigCreated: Bool
    public var irq: UInt32
    public var priority: UInt32
    public var regsIPA: IPA
    public var regsSize: UInt32
    public var maxOSIDs: UInt32
    /// The firmware heap (either origin), nil if none.
    public var fwHeap: HeapRecord?
}

extension PVZHostServer {
    private func ledgerOf(_ osid: OSID) throws(PVZError) -> OSIDLedger {
        guard let l = ledger(osid) else { throw .invalidOSID(osid, maxOSIDs: maxOSIDs) }
        return l
    }

    /// OnVmOnline as the ABI has it: with a priority in 1.10/1.13 (nil keeps
    /// the OSID's current one), without one later (a priority is refused,
    /// naming the ABI: it comes from VMM_CONF_PRIO_* only).
    public func onVmOnline(osid: OSID, abiPriority: UInt32?) throws(PVZError) {
        if abiPriority != nil, !ddkABI.onlineTakesPriority { throw .onlinePriorityNotInABI(osid, abi: ddkABI) }
        let p = abiPriority ?? shared.withLock { s in Int(osid.rawValue) < s.priorities.count ? s.priorities[Int(osid.rawValue)] : 0 }
        try onVmOnline(osid: osid, priority: p)
    }

    /// OnVmOnline: the guest may now call. Refused for an online OSID.
    public func onVmOnline(osid: OSID, priority: UInt32) throws(PVZError) {
        let l = try ledgerOf(osid)
        let ok = l.withEntry { g -> Bool in
            guard !g.online else { return false }
            g.online = true
            g.priority = priority
            shared.withLock { $0.priorities[Int(osid.rawValue)] = priority }
            return true
        }
        guard ok else { throw .osidIsOnline(osid) }
    }

    /// OnVmOffline: waits (through `waitFirmwareIdle`, bounded by the caller)
    /// for the OSID's firmware to stop, then destroys the device config,
    /// unmaps and frees every heap and marks the VM offline. If the firmware
    /// does not go idle nothing changes and `.firmwareNotIdle` is thrown, so
    /// no heap is freed under a running firmware.
    @discardableResult
    public func onVmOffline(osid: OSID, waitFirmwareIdle: (OSID) -> Bool = { _ in true }) throws(PVZError) -> OfflineResult {
        let l = try ledgerOf(osid)
        guard l.online.load(ordering: .acquiring) else { throw .osidIsOffline(osid) }
        guard waitFirmwareIdle(osid) else { throw .firmwareNotIdle(osid) }
        let result = l.withEntry { g -> OfflineResult? in
            guard g.online else { return nil }
            let r = releaseDevice(&g)
            g.online = false
            return r
        }
        guard let result else { throw .osidIsOffline(osid) }   // raced with another offline
        return result
    }

    /// A device reset, a driver unbind or a front-end gone for good: the
    /// OSID's device config and every heap it holds are released, the VM stays
    /// online. The caller has stopped and detached the OSID's firmware first.
    /// A daemon restart is not a release: the ledger survives it.
    @discardableResult
    public func releaseDevice(osid: OSID) throws(PVZError) -> OfflineResult {
        let l = try ledgerOf(osid)
        return l.withEntry { g in releaseDevice(&g) }
    }

    func releaseDevice(_ g: inout LedgerEntry) -> OfflineResult {
        var freed: [HeapRecord] = []
        if let host = freeHostHeaps(&g) {
            if let h = host.fw { freed.append(h) }
            if let h = host.gpu { freed.append(h) }
        }
        if let h = g.guestFwHeap { freed.append(h) }
        g.guestFwHeap = nil
        let dev = g.devConfigCreated
        g.devConfigCreated = false
        // A new boot numbers its requests from the start again.
        g.recentCalls.removeAll()
        return OfflineResult(osid: g.spec.osid, freedHeaps: freed, devConfigDestroyed: dev)
    }

    /// VMMConfigure with a parameter number as this host's DDK ABI numbers it.
    public func vmmConfigure(param raw: UInt32, value: UInt32) throws(PVZError) {
        guard let k = ddkABI.knob(number: raw) else {
            throw .unknownConfParam(raw, validRange: 0...UInt32(ddkABI.knobs.count - 1))
        }
        try vmmConfigure(knob: k, value: value)
    }

    /// VMMConfigure by name (VMM_CONF_HCS_DEADLINE, PRIO_OSID3, …), checked against this host's ABI.
    public func vmmConfigure(name: String, value: UInt32) throws(PVZError) -> VMMKnob {
        let k = try ddkABI.knob(named: name)
        try vmmConfigure(knob: k, value: value)
        return k
    }

    /// VMMConfigure with the DDK's own checks (its value checks are 23.x's:
    /// a priority within RGXFW_VZ_PRIORITY_MASK, time slices 0…100 summing to ≤ 100).
    public func vmmConfigure(knob: VMMKnob, value: UInt32) throws(PVZError) {
        let name = ddkABI.name(of: knob)
        guard ddkABI.number(of: knob) != nil else { throw .confParamNotInABI(name, abi: ddkABI) }
        switch knob {
        case .priority(let n):
            guard n < maxOSIDs else { throw .priorityOSIDOutOfRange(OSID(n), maxOSIDs: maxOSIDs) }
            if ddkABI == .v23, value & ~((1 << 30) - 1) != 0 {
                throw .confParamValue(name, value, reason: "a priority must fit RGXFW_VZ_PRIORITY_MASK (0...\((1 << 30) - 1))")
            }
            if let l = ledger(OSID(n)) {
                l.withEntry { g in
                    g.priority = value
                    shared.withLock { $0.priorities[Int(n)] = value }
                }
            } else {
                shared.withLock { $0.priorities[Int(n)] = value }
            }
            return
        case .timeSlice(let n):
            guard value <= 100 else { throw .confParamValue(name, value, reason: "a time slice is a percentage, 0...100") }
            let refused = shared.withLock { s -> UInt32? in
                let sum = s.timeSlices.enumerated().reduce(0) { $0 + ($1.offset == Int(n) ? value : $1.element) }
                guard sum <= 100 else { return sum }
                s.timeSlices[Int(n)] = value
                return nil
            }
            if let sum = refused { throw .confParamValue(name, value, reason: "time slices would sum to \(sum)%, over 100%") }
        case .isolationThreshold: shared.withLock { $0.isolationThreshold = value }
        case .hcsDeadline: shared.withLock { $0.hcsDeadline = value }
        case .isolationGroup(let n): shared.withLock { $0.isolationGroups[Int(n)] = value }
        case .timeSliceInterval: shared.withLock { $0.timeSliceInterval = value }
        case .connectionCooldown: shared.withLock { $0.connectionCooldown = value }
        }
    }

    public var vmmParameters: VMMParameters {
        shared.withLock { VMMParameters(priorities: $0.priorities, isolationThreshold: $0.isolationThreshold,
                                        hcsDeadline: $0.hcsDeadline, isolationGroups: $0.isolationGroups,
                                        timeSlices: $0.timeSlices, timeSliceInterval: $0.timeSliceInterval,
                                        connectionCooldown: $0.connectionCooldown) }
    }

    /// A front-end (QEMU) connected on this OSID's socket. Returns the state it
    /// must find: after a reconnect the ledger is exactly as it was left.
    @discardableResult
    public func guestConnected(osid: OSID) throws(PVZError) -> LedgerSnapshot {
        let l = try ledgerOf(osid)
        return l.withEntry { g in
            g.frontEndConnected = true
            return Self.snapshot(of: g)
        }
    }

    /// The front-end's connection ended. Only the connection state changes
    /// here; the glue decides whether that is a release (`releaseDevice`).
    public func guestDisconnected(osid: OSID) throws(PVZError) {
        let l = try ledgerOf(osid)
        l.withEntry { g in
            g.frontEndConnected = false
            g.disconnects &+= 1
        }
    }

    // MARK: views

    public func snapshot() -> [LedgerSnapshot] {
        ledgers.compactMap { l in l.map { $0.entry.withLock { Self.snapshot(of: $0) } } }
    }

    public func snapshot(osid: OSID) -> LedgerSnapshot? {
        ledger(osid)?.entry.withLock { Self.snapshot(of: $0) }
    }

    /// Config-space fields of a guest; nil for an OSID without a guest.
    public func configView(osid: OSID) -> ConfigSpaceView? {
        guard let l = ledger(osid) else { return nil }
        let spec = l.spec
        return l.entry.withLock { g in
            ConfigSpaceView(osid: osid, online: g.online, devConfigCreated: g.devConfigCreated,
                            irq: spec.policy.irq, priority: g.priority, regsIPA: spec.carveout.start,
                            regsSize: UInt32(PVZRegister.bankSize), maxOSIDs: maxOSIDs,
                            fwHeap: g.fwHeap)
        }
    }

    /// Calls made with an OSID that has no guest (refused with INVALID_OSID).
    public var invalidOSIDCalls: UInt64 { invalidOSIDCount.load(ordering: .relaxed) }

    /// Bytes of host-origin heap in use, all guests together.
    public var hostPoolUsed: UInt64 { shared.withLock { $0.hostPoolUsed } }

    static func snapshot(of g: LedgerEntry) -> LedgerSnapshot {
        var heaps: [HeapSnapshot] = []
        for h in [g.hostFwHeap, g.hostGpuHeap, g.guestFwHeap] {
            if let h { heaps.append(HeapSnapshot(heap: h.heap, origin: h.origin, ipa: h.ipa.start, pa: h.pa, size: h.size)) }
        }
        return LedgerSnapshot(osid: g.spec.osid, carveout: g.spec.carveout, policy: g.spec.policy, online: g.online,
                          frontEndConnected: g.frontEndConnected, priority: g.priority,
                          devConfigCreated: g.devConfigCreated, heaps: heaps,
                          callsByFunction: g.callsByFunction, callsByStatus: g.callsByStatus,
                          disconnects: g.disconnects)
    }

    // MARK: IPA <-> PA

    /// PA of a guest IPA: anywhere in the carve-out (register bank, host
    /// heaps) or in the mapped guest-origin firmware heap; nil elsewhere.
    public func translate(osid: OSID, ipa: IPA) -> PA? {
        guard let spec = spec(of: osid) else { return nil }
        let c = spec.carveout
        if ipa.rawValue >= c.start.rawValue, ipa.rawValue <= c.last {
            return PAWindow.carveout(osid, offset: ipa.rawValue - c.start.rawValue)
        }
        return ledger(osid)?.entry.withLock { $0.guestFwHeap?.pa(of: ipa) }
    }

    /// The OSID and IPA behind a GPU PA; nil if no carve-out or mapped heap holds it.
    public func translate(pa: PA) -> (OSID, IPA)? {
        let osid = PAWindow.osid(of: pa)
        guard let spec = spec(of: osid) else { return nil }
        let off = pa.rawValue - PAWindow.base(osid).rawValue
        if off < spec.carveout.size { return (osid, IPA(spec.carveout.start.rawValue + off)) }
        guard let ipa = ledger(osid)?.entry.withLock({ $0.guestFwHeap?.ipa(of: pa) }) else { return nil }
        return (osid, ipa)
    }
}
