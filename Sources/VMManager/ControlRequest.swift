import PVZServer

/// One request on the control socket (docs/control-protocol.md). The OSID in
/// a request is the VM manager's word about a guest; it is checked against the
/// daemon's configuration by the handler, never trusted further.
public enum ControlRequest: Sendable, Equatable {
    case status
    case guests
    /// Heaps of one OSID, or of every guest when nil.
    case heaps(osid: OSID?)
    /// OnVmOnline. A nil priority means "the daemon's configured priority".
    case online(osid: OSID, priority: UInt32?)
    /// OnVmOffline.
    case offline(osid: OSID)
    /// VMMConfigure(param, value); param is a VMM_CONF_PARAM value 0...9.
    case configure(param: UInt32, value: UInt32)
    /// The guest's device-tree overlay (.dtbo bytes, base64 in the response).
    case dt(osid: OSID)
    /// libvirt's `prepare` hook: is the guest socket of this OSID ready?
    case prepare(osid: OSID, domain: String?)
    /// Counters and gauges of every guest (`pvzctl metrics`).
    case metrics

    /// The `cmd` string of the request.
    public var command: String {
        switch self {
        case .status: return "status"
        case .guests: return "guests"
        case .heaps: return "heaps"
        case .online: return "online"
        case .offline: return "offline"
        case .configure: return "configure"
        case .dt: return "dt"
        case .prepare: return "prepare"
        case .metrics: return "metrics"
        }
    }

    public static let commands = ["status", "guests", "heaps", "online", "offline", "configure", "dt", "prepare", "metrics"]
}

/// DDK 1.10 VMM_CONF_PARAM names, for messages and tables. The values are
/// the wire values of `configure.param`.
public enum VMMConfParamName {
    public static let count: UInt32 = 10
    public static func name(_ param: UInt32) -> String? {
        switch param {
        case 0...7: return "VMM_CONF_PRIO_OSID\(param)"
        case 8: return "VMM_CONF_ISOL_THRES"
        case 9: return "VMM_CONF_HCS_DEADLINE"
        default: return nil
        }
    }
    /// Accepts a number or a DDK name (with or without the VMM_CONF_ prefix).
    public static func parse(_ text: String) -> UInt32? {
        if let n = UInt32(text), name(n) != nil { return n }
        let upper = text.uppercased()
        for p in 0..<count {
            let full = name(p)!
            if upper == full || "VMM_CONF_" + upper == full { return p }
        }
        return nil
    }
}
