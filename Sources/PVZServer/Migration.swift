import PVZContract
import Synchronization

// One OSID's ledger for a live migration of its guest: the facts the state
// file keeps (online, priority, device config, heaps, recorded answers) plus
// the policy they were made under, so the destination can refuse a guest it
// is not configured for instead of serving it wrongly.

/// The heap policy as a migration compares it.
public struct PolicyFingerprint: Codable, Equatable, Sendable, CustomStringConvertible {
    public var fwHeapOrigin: String
    public var gpuHeapOrigin: String
    public var heapType: String
    public var hostHeaps: Bool
    public var fwHeapSize: UInt64
    public var gpuHeapSize: UInt64

    public init(_ p: GuestPolicy) {
        fwHeapOrigin = p.fwHeapOrigin.description
        gpuHeapOrigin = p.gpuHeapOrigin.description
        heapType = p.heapType.description
        hostHeaps = p.hostHeapsAllowed
        fwHeapSize = p.fwHeapSize
        gpuHeapSize = p.gpuHeapSize
    }

    public var description: String {
        "fw heap \(fwHeapOrigin) \(fwHeapSize) B, gpu heap \(gpuHeapOrigin) \(gpuHeapSize) B, \(heapType), host heaps \(hostHeaps ? "on" : "off")"
    }
}

public struct MigratedLedger: Codable, Equatable, Sendable {
    public var guest: PersistedGuest
    public var policy: PolicyFingerprint
}

public enum MigrationError: Error, Equatable, CustomStringConvertible {
    case wrongOSID(sent: UInt32, here: UInt32)
    case carveoutMismatch(sent: String, here: String)
    case policyMismatch(sent: PolicyFingerprint, here: PolicyFingerprint)
    case busy(OSID)
    case invalid(String)

    public var description: String {
        switch self {
        case .wrongOSID(let s, let h): return "migrated state is for OSID \(s), this socket serves OSID \(h)"
        case .carveoutMismatch(let s, let h): return "migrated guest's carve-out \(s) differs from this daemon's \(h)"
        case .policyMismatch(let s, let h): return "migrated guest's heap policy (\(s)) differs from this daemon's (\(h))"
        case .busy(let o): return "\(o) already holds a device config or heaps here; a migration needs it fresh"
        case .invalid(let s): return "migrated state is malformed: \(s)"
        }
    }
}

extension PVZHostServer {
    /// The OSID's ledger as a migration carries it.
    public func migrationLedger(osid: OSID) throws(PVZError) -> MigratedLedger {
        guard let l = ledger(osid) else { throw .invalidOSID(osid, maxOSIDs: maxOSIDs) }
        let g = l.entry.withLock { g in
            PersistedGuest(osid: g.spec.osid.rawValue, carveoutIPA: g.spec.carveout.start.rawValue,
                           carveoutSize: g.spec.carveout.size, online: g.online, priority: g.priority,
                           devConfigCreated: g.devConfigCreated, hostHeapsCreated: g.hostHeapsCreated,
                           guestFwHeapIPA: g.guestFwHeap?.ipa.start.rawValue,
                           recentCalls: g.recentCalls.map { PersistedCall(request: $0.request, status: $0.status.rawValue, output: $0.output) })
        }
        return MigratedLedger(guest: g, policy: PolicyFingerprint(l.spec.policy))
    }

    /// Takes over a migrated guest's ledger for `osid`, after checking it
    /// against this daemon's configuration. Nothing changes when it throws.
    public func takeMigratedLedger(_ m: MigratedLedger, osid: OSID) throws(MigrationError) {
        guard let l = ledger(osid) else { throw .wrongOSID(sent: m.guest.osid, here: osid.rawValue) }
        let spec = l.spec, e = m.guest
        guard e.osid == osid.rawValue else { throw .wrongOSID(sent: e.osid, here: osid.rawValue) }
        guard e.carveoutIPA == spec.carveout.start.rawValue, e.carveoutSize == spec.carveout.size else {
            throw .carveoutMismatch(sent: "0x\(String(e.carveoutIPA, radix: 16))+0x\(String(e.carveoutSize, radix: 16))",
                                    here: "\(spec.carveout)")
        }
        let here = PolicyFingerprint(spec.policy)
        guard m.policy == here else { throw .policyMismatch(sent: m.policy, here: here) }
        let policy = spec.policy
        var fw: HeapRecord?
        if let ipa = e.guestFwHeapIPA {
            guard policy.fwHeapOrigin == .guest, ipa != 0, IPA(ipa).isPageAligned,
                  let r = IPARange(start: IPA(ipa), size: policy.fwHeapSize), !r.overlaps(spec.carveout) else {
                throw .invalid("firmware heap at 0x\(String(ipa, radix: 16)) does not fit the policy")
            }
            fw = HeapRecord(osid: osid, heap: .fwLocal, origin: .guest, ipa: r, pa: PAWindow.guestHeap(osid))
        }
        guard !e.hostHeapsCreated || policy.hostHeapsAllowed else { throw .invalid("host heaps under a policy without them") }
        let calls = e.recentCalls ?? []
        guard calls.count <= CallRecord.kept else { throw .invalid("\(calls.count) recorded answers, at most \(CallRecord.kept)") }
        var records: [CallRecord] = []
        for c in calls {
            guard c.request.count >= HypercallRequestHeader.size, c.request.count <= CallRecord.maxRequest,
                  c.output.count <= CallRecord.maxOutput, let st = PVZStatus(rawValue: c.status) else {
                throw .invalid("a recorded answer of \(c.request.count)+\(c.output.count) bytes, status \(c.status)")
            }
            records.append(CallRecord(request: c.request, status: st, output: c.output))
        }
        let refusal = l.withEntry { g -> MigrationError? in
            guard !g.devConfigCreated, !g.hostHeapsCreated, g.guestFwHeap == nil else { return .busy(osid) }
            if e.hostHeapsCreated {
                guard shared.withLock({ $0.reserve(policy.hostHeapBytes) }) else {
                    return .invalid("no room in the host heap pool for \(policy.hostHeapBytes) bytes")
                }
                (g.hostFwHeap, g.hostGpuHeap) = Self.hostHeapLayout(spec)
                g.hostHeapsCreated = true
            }
            g.online = e.online
            g.priority = e.priority
            g.devConfigCreated = e.devConfigCreated
            g.guestFwHeap = fw
            g.recentCalls = records
            shared.withLock { $0.priorities[Int(osid.rawValue)] = e.priority }
            return nil
        }
        if let refusal { throw refusal }
    }
}
