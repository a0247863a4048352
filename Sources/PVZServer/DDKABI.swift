import PVZContract
// The DDK PVZ ABIs the host speaks. The wire protocol (spec section 5) is the
// same for all; what differs is which calls a guest of that DDK makes and with
// which ui32FuncID, whether OnVmOnline takes a priority, and how VMMConfigure
// numbers its parameters. Facts: docs/pvz-server.md "DDK ABIs", with the DDK
// sources they were read from.

/// A DDK release family whose PVZ ABI the host follows (`--ddk-abi`).
public enum DDKABI: String, CaseIterable, Sendable, Codable, CustomStringConvertible {
    /// The reference header's: six PVZ calls with PVZ_BRIDGE ids 1…6,
    /// OnVmOnline(OSID, priority), VMM_CONF_PARAM 0–7 priorities, 8 ISOL_THRES, 9 HCS_DEADLINE.
    case v1_10 = "1.10"
    /// Map/Unmap only (PVZ_BRIDGE ids 1, 2); VMMConfigure as 1.10.
    case v1_13 = "1.13"
    /// As 1.13, but OnVmOnline has no priority and HCS_DEADLINE is 8 (ISOL_THRES gone).
    case v1_15 = "1.15"
    /// As 1.15, with no ui32FuncID at all (and a DevID on the VM manager's calls).
    case v1_18 = "1.18"
    /// 23.x: DriverIDs; priorities PRIO_DRV0–7, 8 HCS_DEADLINE, 9–16 isolation groups,
    /// 17–24 time slices, 25 time-slice interval, 26 connection cooldown.
    case v23 = "23"

    public static let `default` = DDKABI.v1_10
    public var description: String { "DDK \(rawValue)" }

    /// The ui32FuncID a guest of this DDK sends with a wire function: nil
    /// when the call does not exist in this ABI, 0 when the ABI has no ids.
    /// Functions 7–10 are this project's (policy queries, registers) and
    /// exist under every ABI, without an id.
    public func funcID(of f: PVZFunction) -> UInt32? {
        switch f {
        case .getDevPhysHeapOrigin, .getDevPhysHeapAddrSize, .readReg, .writeReg:
            return 0
        case .createDevConfig, .destroyDevConfig, .createDevPhysHeaps, .destroyDevPhysHeaps:
            return self == .v1_10 ? f.rawValue : nil
        case .mapDevPhysHeap:
            switch self { case .v1_10: return 5; case .v1_13, .v1_15: return 1; case .v1_18, .v23: return 0 }
        case .unmapDevPhysHeap:
            switch self { case .v1_10: return 6; case .v1_13, .v1_15: return 2; case .v1_18, .v23: return 0 }
        }
    }

    /// OnVmOnline(OSID, priority) in 1.10 and 1.13; later the priority comes
    /// from VMMConfigure only.
    public var onlineTakesPriority: Bool { self == .v1_10 || self == .v1_13 }

    /// What the DDK calls an OSID's slot in parameter names.
    var slotWord: String { self == .v23 ? "DRV" : "OSID" }

    /// Every VMMConfigure parameter of this ABI, in number order.
    public var knobs: [VMMKnob] {
        let prios = (0..<8).map { VMMKnob.priority(UInt32($0)) }
        switch self {
        case .v1_10, .v1_13: return prios + [.isolationThreshold, .hcsDeadline]
        case .v1_15, .v1_18: return prios + [.hcsDeadline]
        case .v23:
            return prios + [.hcsDeadline] + (0..<8).map { .isolationGroup(UInt32($0)) }
                + (0..<8).map { .timeSlice(UInt32($0)) } + [.timeSliceInterval, .connectionCooldown]
        }
    }

    /// The VMM_CONF_PARAM number of a knob under this ABI; nil when it has none.
    public func number(of k: VMMKnob) -> UInt32? {
        knobs.firstIndex(of: k).map { UInt32($0) }
    }

    public func knob(number: UInt32) -> VMMKnob? {
        number < UInt32(knobs.count) ? knobs[Int(number)] : nil
    }

    /// The DDK's name of a knob under this ABI, e.g. VMM_CONF_PRIO_OSID3 or VMM_CONF_PRIO_DRV3.
    public func name(of k: VMMKnob) -> String {
        switch k {
        case .priority(let n): return "VMM_CONF_PRIO_\(slotWord)\(n)"
        case .isolationThreshold: return "VMM_CONF_ISOL_THRES"
        case .hcsDeadline: return "VMM_CONF_HCS_DEADLINE"
        case .isolationGroup(let n): return "VMM_CONF_ISOLATION_GROUP_DRV\(n)"
        case .timeSlice(let n): return "VMM_CONF_TIME_SLICE_DRV\(n)"
        case .timeSliceInterval: return "VMM_CONF_TIME_SLICE_INTERVAL"
        case .connectionCooldown: return "VMM_CONF_VZ_CONNECTION_COOLDOWN_PERIOD"
        }
    }

    /// A knob by name, with or without the VMM_CONF_ prefix, any case; the
    /// other ABIs' spelling of a priority (PRIO_OSIDn / PRIO_DRVn) is accepted.
    /// Throws a refusal naming the ABI when the knob does not exist in it.
    public func knob(named raw: String) throws(PVZError) -> VMMKnob {
        var n = raw.uppercased()
        if n.hasPrefix("VMM_CONF_") { n.removeFirst("VMM_CONF_".count) }
        func indexed(_ prefixes: [String]) -> UInt32? {
            for p in prefixes where n.hasPrefix(p) {
                let digits = n.dropFirst(p.count)
                if digits.count == 1, let d = UInt32(digits), d < 8 { return d }
            }
            return nil
        }
        var k: VMMKnob?
        if let d = indexed(["PRIO_OSID", "PRIO_DRV"]) { k = .priority(d) }
        else if let d = indexed(["ISOLATION_GROUP_DRV"]) { k = .isolationGroup(d) }
        else if let d = indexed(["TIME_SLICE_DRV"]) { k = .timeSlice(d) }
        else {
            switch n {
            case "ISOL_THRES": k = .isolationThreshold
            case "HCS_DEADLINE": k = .hcsDeadline
            case "TIME_SLICE_INTERVAL": k = .timeSliceInterval
            case "VZ_CONNECTION_COOLDOWN_PERIOD", "CONNECTION_COOLDOWN": k = .connectionCooldown
            default: k = nil
            }
        }
        guard let k else { throw .unknownConfParamName(raw, abi: self) }
        guard number(of: k) != nil else { throw .confParamNotInABI(name(of: k), abi: self) }
        return k
    }

    /// Every parameter name of this ABI (for help texts and refusals).
    public var parameterNames: [String] { knobs.map { name(of: $0) } }
}

/// A VMMConfigure parameter by what it means.
public enum VMMKnob: Hashable, Sendable {
    /// Scheduling priority of OSID / DriverID n (higher is served first).
    case priority(UInt32)
    /// OSIDs at or above this priority form the isolation group (1.10, 1.13).
    case isolationThreshold
    /// Milliseconds a context switch may take before it is forced (hard context switch).
    case hcsDeadline
    /// Isolation group of driver n (23.x).
    case isolationGroup(UInt32)
    /// Percentage of GPU time of driver n, 0 = off; the sum stays ≤ 100 (23.x).
    case timeSlice(UInt32)
    /// Milliseconds of one time-slice period (23.x).
    case timeSliceInterval
    /// Seconds a driver waits after a lost connection (23.x).
    case connectionCooldown
}
