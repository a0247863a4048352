import PVZContract
import PVZServer

/// A VM-manager event from libvirt (listener) for the daemon: the same
/// OnVmOnline/OnVmOffline the hook sends through the control socket.
public enum VMEvent: Sendable, Equatable, CustomStringConvertible {
    /// A domain carrying the device is running. nil priority: daemon's config.
    case online(osid: OSID, priority: UInt32?, domain: String)
    /// That domain stopped, crashed or shut down.
    case offline(osid: OSID, domain: String)
    /// A domain has pvz metadata that cannot be used; nothing is changed.
    case invalid(domain: String, reason: String)

    public var description: String {
        switch self {
        case .online(let o, let p, let d): return "online(\(o), priority \(p.map(String.init) ?? "default"), domain \(d))"
        case .offline(let o, let d): return "offline(\(o), domain \(d))"
        case .invalid(let d, let r): return "invalid(domain \(d): \(r))"
        }
    }
}

/// Applies VM events to the daemon's control handler with the idempotence
/// rule shared by hook and listener: online of an OSID already online with
/// the same priority, and offline of an OSID already offline, are successes
/// (the first of the two deliveries had the effect).
public enum VMEventApplier {
    public enum Outcome: Equatable, Sendable {
        case applied
        /// Already in that state: no effect, not an error.
        case alreadyDone(String)
        case ignored
        case failed(code: String, message: String)
    }

    public static func apply(_ event: VMEvent, to handler: ControlHandler, peer: PeerCredentials) -> Outcome {
        switch event {
        case .invalid: return .ignored
        case .online(let osid, let priority, _):
            let r = handler.handle(.online(osid: osid, priority: priority), peer: peer)
            if r.ok { return .applied }
            guard r.code == ControlErrorCode.osidIsOnline else { return failed(r) }
            // "Same params": compare with the priority the daemon holds.
            let g = handler.handle(.guests, peer: peer).guests?.first { $0.osid == osid.rawValue }
            guard let g else { return failed(r) }
            if priority == nil || g.priority == priority {
                return .alreadyDone("\(osid) already online with priority \(g.priority)")
            }
            return .failed(code: ControlErrorCode.osidIsOnline,
                message: "\(osid) is already online with priority \(g.priority), not \(priority!); take it offline first")
        case .offline(let osid, _):
            let r = handler.handle(.offline(osid: osid), peer: peer)
            if r.ok { return .applied }
            if r.code == ControlErrorCode.osidIsOffline { return .alreadyDone("\(osid) already offline") }
            return failed(r)
        }
    }

    private static func failed(_ r: ControlResponse) -> Outcome {
        .failed(code: r.code ?? ControlErrorCode.internalError, message: r.error ?? "refused without a message")
    }
}
