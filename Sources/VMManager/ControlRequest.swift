import PVZContract
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
    /// VMMConfigure. The parameter is named (VMM_CONF_HCS_DEADLINE, PRIO_OSID3, …):
    /// a number means different parameters in different DDK ABIs (8 is
    /// ISOL_THRES in 1.10, HCS_DEADLINE in 1.15), so a number is only taken
    /// together with the ABI it is numbered in, which must be the daemon's.
    case configure(param: ConfParam, value: UInt32)
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

/// A VMMConfigure parameter as a control client names it.
public enum ConfParam: Sendable, Equatable, CustomStringConvertible {
    /// A DDK name, with or without the VMM_CONF_ prefix, any case.
    case name(String)
    /// A VMM_CONF_PARAM number as DDK `abi` ("1.10", "1.15", …) numbers it.
    case number(UInt32, abi: String)
    public var description: String {
        switch self {
        case .name(let n): return n
        case .number(let n, let abi): return "\(n) (DDK \(abi) numbering)"
        }
    }
}
