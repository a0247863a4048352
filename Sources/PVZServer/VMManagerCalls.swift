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
}

public struct HeapSnapshot: Equatable, Sendable {
    public var heap: PhysHeap
    public var origin: HeapOrigin
    public var ipa: IPA
    public var pa: PA
    public var size: UInt64
}

/// One guest as the control plane sees it.
public struct GuestState: Equatable, Sendable {
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
public struct GuestConfigView: Equatable, Sendable {
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
    private func ledgerOf(_ osid: OSID) throws(PVZError) -> GuestLedger {
        guard let l = ledger(osid) else { throw .invalidOSID(osid, maxOSIDs: maxOSIDs) }
        return l
    }

    /// OnVmOnline: the guest may now call. Refused for an online OSID.
    public func onVmOnline(osid: OSID, priority: UInt32) throws(PVZError) {
        let l = try ledgerOf(osid)
        let ok = l.withSlot { g -> Bool in
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
        let result = l.withSlot { g -> OfflineResult? in
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
        return l.withSlot { g in releaseDevice(&g) }
    }

    func releaseDevice(_ g: inout GuestSlot) -> OfflineResult {
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

    /// VMMConfigure with a raw VMM_CONF_PARAM (as it arrives from the control socket).
    public func vmmConfigure(param raw: UInt32, value: UInt32) throws(PVZError) {
        guard let p = VMMConfParam(rawValue: raw) else {
            throw .unknownConfParam(raw, validRange: 0...VMMConfParam.hcsDeadline.rawValue)
        }
        try vmmConfigure(param: p, value: value)
    }

    public func vmmConfigure(param: VMMConfParam, value: UInt32) throws(PVZError) {
        if let o = param.priorityOSID {
            guard o.rawValue < maxOSIDs else { throw .priorityOSIDOutOfRange(o, maxOSIDs: maxOSIDs) }
            if let l = ledger(o) {
                l.withSlot { g in
                    g.priority = value
                    shared.withLock { $0.priorities[Int(o.rawValue)] = value }
                }
            } else {
                shared.withLock { $0.priorities[Int(o.rawValue)] = value }
            }
            return
        }
        shared.withLock { s in
            if param == .isolationThreshold { s.isolationThreshold = value } else { s.hcsDeadline = value }
        }
    }

    public var vmmParameters: VMMParameters {
        shared.withLock { VMMParameters(priorities: $0.priorities, isolationThreshold: $0.isolationThreshold,
                                        hcsDeadline: $0.hcsDeadline) }
    }

    /// A front-end (QEMU) connected on this OSID's socket. Returns the state it
    /// must find: after a reconnect the ledger is exactly as it was left.
    @discardableResult
    public func guestConnected(osid: OSID) throws(PVZError) -> GuestState {
        let l = try ledgerOf(osid)
        return l.withSlot { g in
            g.frontEndConnected = true
            return Self.guestState(g)
        }
    }

    /// The front-end's connection ended. Only the connection state changes
    /// here; the glue decides whether that is a release (`releaseDevice`).
    public func guestDisconnected(osid: OSID) throws(PVZError) {
        let l = try ledgerOf(osid)
        l.withSlot { g in
            g.frontEndConnected = false
            g.disconnects &+= 1
        }
    }

    // MARK: views

    public func snapshot() -> [GuestState] {
        ledgers.compactMap { l in l.map { $0.slot.withLock { Self.guestState($0) } } }
    }

    public func snapshot(osid: OSID) -> GuestState? {
        ledger(osid)?.slot.withLock { Self.guestState($0) }
    }

    /// Config-space fields of a guest; nil for an OSID without a guest.
    public func configView(osid: OSID) -> GuestConfigView? {
        guard let l = ledger(osid) else { return nil }
        let spec = l.spec
        return l.slot.withLock { g in
            GuestConfigView(osid: osid, online: g.online, devConfigCreated: g.devConfigCreated,
                            irq: spec.policy.irq, priority: g.priority, regsIPA: spec.carveout.start,
                            regsSize: UInt32(PVZLayout.registerBankSize), maxOSIDs: maxOSIDs,
                            fwHeap: g.fwHeap)
        }
    }

    /// Calls made with an OSID that has no guest (refused with INVALID_OSID).
    public var invalidOSIDCalls: UInt64 { invalidOSIDCount.load(ordering: .relaxed) }

    /// Bytes of host-origin heap in use, all guests together.
    public var hostPoolUsed: UInt64 { shared.withLock { $0.hostPoolUsed } }

    static func guestState(_ g: GuestSlot) -> GuestState {
        var heaps: [HeapSnapshot] = []
        for h in [g.hostFwHeap, g.hostGpuHeap, g.guestFwHeap] {
            if let h { heaps.append(HeapSnapshot(heap: h.heap, origin: h.origin, ipa: h.ipa.start, pa: h.pa, size: h.size)) }
        }
        return GuestState(osid: g.spec.osid, carveout: g.spec.carveout, policy: g.spec.policy, online: g.online,
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
        return ledger(osid)?.slot.withLock { $0.guestFwHeap?.pa(of: ipa) }
    }

    /// The OSID and IPA behind a GPU PA; nil if no carve-out or mapped heap holds it.
    public func translate(pa: PA) -> (OSID, IPA)? {
        let osid = PAWindow.osid(of: pa)
        guard let spec = spec(of: osid) else { return nil }
        let off = pa.rawValue - PAWindow.base(osid).rawValue
        if off < spec.carveout.size { return (osid, IPA(spec.carveout.start.rawValue + off)) }
        guard let ipa = ledger(osid)?.slot.withLock({ $0.guestFwHeap?.ipa(of: pa) }) else { return nil }
        return (osid, ipa)
    }
}
