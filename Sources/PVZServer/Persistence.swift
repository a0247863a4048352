import PVZContract
import Synchronization

// The ledger as it must survive a daemon restart: which VMs are online, with
// what priority, and which heaps exist. Host heaps are re-derived from the
// policy (their layout in the carve-out is deterministic), so only facts are
// stored, never addresses the daemon would have to trust back.

public struct PersistedGuest: Codable, Equatable, Sendable {
    public var osid: UInt32
    /// The carve-out the entry was made under; an entry whose carve-out no
    /// longer matches the configuration is dropped (the guest changed).
    public var carveoutIPA: UInt64
    public var carveoutSize: UInt64
    public var online: Bool
    public var priority: UInt32
    public var devConfigCreated: Bool
    public var hostHeapsCreated: Bool
    /// IPA of the guest-origin firmware heap, if mapped (its size is the policy's).
    public var guestFwHeapIPA: UInt64?
    /// Answers of this boot's last ledger-changing calls (exactly-once replay
    /// after a restart). Absent in files written before it existed.
    public var recentCalls: [PersistedCall]?
}

/// A `CallRecord` on disk.
public struct PersistedCall: Codable, Equatable, Sendable {
    public var request: [UInt8]
    public var status: UInt32
    public var output: [UInt8]
}

public struct PersistedState: Codable, Equatable, Sendable {
    public static let currentVersion = 1
    public var version: Int
    public var guests: [PersistedGuest]
    public var priorities: [UInt32]
    public var isolationThreshold: UInt32
    public var hcsDeadline: UInt32
    /// 23.x knobs (absent in files written before them).
    public var isolationGroups: [UInt32]?
    public var timeSlices: [UInt32]?
    public var timeSliceInterval: UInt32?
    public var connectionCooldown: UInt32?
}

extension PVZHostServer {
    public func persistedState() -> PersistedState {
        let guests = ledgers.compactMap { l in
            l?.entry.withLock { g in
                PersistedGuest(osid: g.spec.osid.rawValue, carveoutIPA: g.spec.carveout.start.rawValue,
                               carveoutSize: g.spec.carveout.size, online: g.online, priority: g.priority,
                               devConfigCreated: g.devConfigCreated, hostHeapsCreated: g.hostHeapsCreated,
                               guestFwHeapIPA: g.guestFwHeap?.ipa.start.rawValue,
                               recentCalls: g.recentCalls.map {
                                   PersistedCall(request: $0.request, status: $0.status.rawValue, output: $0.output)
                               })
            }
        }
        return shared.withLock { s in
            PersistedState(version: PersistedState.currentVersion, guests: guests,
                           priorities: s.priorities, isolationThreshold: s.isolationThreshold, hcsDeadline: s.hcsDeadline,
                           isolationGroups: s.isolationGroups, timeSlices: s.timeSlices,
                           timeSliceInterval: s.timeSliceInterval, connectionCooldown: s.connectionCooldown)
        }
    }

    /// Restores a saved ledger into a fresh server. Entries that no longer fit
    /// the configuration are skipped; the returned lines say which and why.
    @discardableResult
    public func restore(_ p: PersistedState) -> [String] {
        var notes: [String] = []
        guard p.version == PersistedState.currentVersion else {
            return ["state version \(p.version) is not \(PersistedState.currentVersion): ignored"]
        }
        shared.withLock { s in
            for (i, v) in p.priorities.enumerated() where i < s.priorities.count { s.priorities[i] = v }
            s.isolationThreshold = p.isolationThreshold
            s.hcsDeadline = p.hcsDeadline
            for (i, v) in (p.isolationGroups ?? []).enumerated() where i < s.isolationGroups.count { s.isolationGroups[i] = v }
            // Time slices only if they still add up (a hand-edited file is not trusted).
            if let t = p.timeSlices, t.count <= s.timeSlices.count, t.allSatisfy({ $0 <= 100 }),
               t.reduce(0, { $0 + UInt64($1) }) <= 100 {
                for (i, v) in t.enumerated() { s.timeSlices[i] = v }
            }
            s.timeSliceInterval = p.timeSliceInterval ?? 0
            s.connectionCooldown = p.connectionCooldown ?? 0
        }
        var restored = Set<UInt32>()
        for e in p.guests {
            guard e.osid < maxOSIDs, let l = ledgers[Int(e.osid)] else {
                notes.append("OSID \(e.osid): no such guest in the configuration; entry dropped")
                continue
            }
            // A second entry would overwrite the first one's facts (online, heaps) half-way.
            guard restored.insert(e.osid).inserted else {
                notes.append("OSID \(e.osid): listed again; only the first entry is used")
                continue
            }
            let spec = l.spec
            guard spec.carveout.start.rawValue == e.carveoutIPA, spec.carveout.size == e.carveoutSize else {
                notes.append("OSID \(e.osid): carve-out changed since the state was saved; entry dropped")
                continue
            }
            let osid = spec.osid
            let policy = spec.policy
            l.withEntry { g in
                g.online = e.online
                g.priority = e.priority
                g.devConfigCreated = e.devConfigCreated && e.online
                if e.hostHeapsCreated && e.online && policy.hostHeapsAllowed && !g.hostHeapsCreated
                    && shared.withLock({ $0.reserve(policy.hostHeapBytes) }) {
                    (g.hostFwHeap, g.hostGpuHeap) = Self.hostHeapLayout(spec)
                    g.hostHeapsCreated = true
                } else if e.hostHeapsCreated && !g.hostHeapsCreated {
                    notes.append("OSID \(e.osid): host heaps no longer allowed or no room; dropped")
                }
                // Hostile file: only well-formed records of known statuses, at most `kept`.
                g.recentCalls = (e.recentCalls ?? []).suffix(CallRecord.kept).compactMap { c in
                    guard e.online, c.request.count >= HypercallRequestHeader.size, c.request.count <= CallRecord.maxRequest,
                          c.output.count <= CallRecord.maxOutput, let st = PVZStatus(rawValue: c.status) else { return nil }
                    return CallRecord(request: c.request, status: st, output: c.output)
                }
                if let ipa = e.guestFwHeapIPA, e.online {
                    if policy.fwHeapOrigin == .guest, IPA(ipa).isPageAligned, ipa != 0,
                       let r = IPARange(start: IPA(ipa), size: policy.fwHeapSize), !r.overlaps(spec.carveout) {
                        g.guestFwHeap = HeapRecord(osid: osid, heap: .fwLocal, origin: .guest, ipa: r, pa: PAWindow.guestHeap(osid))
                    } else {
                        notes.append("OSID \(e.osid): saved firmware heap at 0x\(String(ipa, radix: 16)) no longer fits the policy; dropped")
                    }
                }
            }
        }
        return notes
    }
}
