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
}

public struct PersistedState: Codable, Equatable, Sendable {
    public static let currentVersion = 1
    public var version: Int
    public var guests: [PersistedGuest]
    public var priorities: [UInt32]
    public var isolationThreshold: UInt32
    public var hcsDeadline: UInt32
}

extension PVZHostServer {
    public func persistedState() -> PersistedState {
        state.withLock { s in
            PersistedState(
                version: PersistedState.currentVersion,
                guests: s.guests.compactMap { g in
                    g.map {
                        PersistedGuest(osid: $0.spec.osid.rawValue, carveoutIPA: $0.spec.carveout.start.rawValue,
                                       carveoutSize: $0.spec.carveout.size, online: $0.online, priority: $0.priority,
                                       devConfigCreated: $0.devConfigCreated, hostHeapsCreated: $0.hostHeapsCreated,
                                       guestFwHeapIPA: $0.guestFwHeap?.ipa.start.rawValue)
                    }
                },
                priorities: s.priorities, isolationThreshold: s.isolationThreshold, hcsDeadline: s.hcsDeadline)
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
        state.withLock { s in
            for (i, v) in p.priorities.enumerated() where i < s.priorities.count { s.priorities[i] = v }
            s.isolationThreshold = p.isolationThreshold
            s.hcsDeadline = p.hcsDeadline
            var restored = Set<UInt32>()
            for e in p.guests {
                guard e.osid < UInt32(s.guests.count), var g = s.guests[Int(e.osid)] else {
                    notes.append("OSID \(e.osid): no such guest in the configuration; entry dropped")
                    continue
                }
                // A second entry would count the same host heaps against the pool twice.
                guard restored.insert(e.osid).inserted else {
                    notes.append("OSID \(e.osid): listed again; only the first entry is used")
                    continue
                }
                let spec = g.spec
                guard spec.carveout.start.rawValue == e.carveoutIPA, spec.carveout.size == e.carveoutSize else {
                    notes.append("OSID \(e.osid): carve-out changed since the state was saved; entry dropped")
                    continue
                }
                let osid = spec.osid
                g.online = e.online
                g.priority = e.priority
                g.devConfigCreated = e.devConfigCreated && e.online
                let policy = spec.policy
                if e.hostHeapsCreated && e.online && policy.hostHeapsAllowed
                    && s.hostPoolUsed + policy.hostHeapBytes <= s.hostPoolLimit {
                    (g.hostFwHeap, g.hostGpuHeap) = Self.hostHeapLayout(spec)
                    g.hostHeapsCreated = true
                    s.hostPoolUsed += policy.hostHeapBytes
                } else if e.hostHeapsCreated {
                    notes.append("OSID \(e.osid): host heaps no longer allowed or no room; dropped")
                }
                if let ipa = e.guestFwHeapIPA, e.online {
                    if policy.fwHeapOrigin == .guest, IPA(ipa).isPageAligned, ipa != 0,
                       let r = IPARange(start: IPA(ipa), size: policy.fwHeapSize), !r.overlaps(spec.carveout) {
                        g.guestFwHeap = HeapRecord(osid: osid, heap: .fwLocal, origin: .guest, ipa: r, pa: PAWindow.guestHeap(osid))
                    } else {
                        notes.append("OSID \(e.osid): saved firmware heap at 0x\(String(ipa, radix: 16)) no longer fits the policy; dropped")
                    }
                }
                s.guests[Int(e.osid)] = g
            }
        }
        return notes
    }
}
