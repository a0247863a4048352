// FoundationEssentials, not Foundation: keeps libFoundation and ICU out of the daemon (docs/benchmarks.md, memory).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Stable `code` strings of failed responses. Scripts match on these, not on
/// the human `error` text.
public enum ControlErrorCode {
    /// The line is not a JSON object (or not UTF-8, or empty).
    public static let badJSON = "bad_json"
    /// A field is missing, of the wrong type, out of range, or unknown.
    public static let badRequest = "bad_request"
    public static let unknownCommand = "unknown_command"
    public static let lineTooLong = "line_too_long"
    public static let permissionDenied = "permission_denied"
    public static let tooManyClients = "too_many_clients"
    public static let idleTimeout = "idle_timeout"
    /// The OSID is not one of the daemon's guests.
    public static let invalidOSID = "invalid_osid"
    /// The configure parameter is not a VMM_CONF_PARAM value.
    public static let unknownParam = "unknown_param"
    /// DDK: OnVmOnline of an online OSID.
    public static let osidIsOnline = "PVZ_OSID_IS_ONLINE"
    /// DDK: OnVmOffline of an offline OSID.
    public static let osidIsOffline = "PVZ_OSID_IS_OFFLINE"
    /// The guest's vhost-user socket is not accepting (prepare).
    public static let notReady = "not_ready"
    /// A bounded wait (firmware idle on offline) ran out.
    public static let timeout = "timeout"
    public static let notImplemented = "not_implemented"
    public static let internalError = "internal"
}

/// One response line. Exactly one of the payload fields is set on success,
/// matching the request's command; `error` and `code` are set on failure.
public struct ControlResponse: Codable, Sendable, Equatable {
    public var ok: Bool
    public var error: String?
    public var code: String?
    public var status: DaemonStatus?
    public var guests: [GuestStatus]?
    /// online, offline, prepare: the guest after the change.
    public var guest: GuestStatus?
    public var heaps: [HeapStatus]?
    /// configure: the parameter after the change.
    public var parameter: ConfParamStatus?
    /// dt: the overlay blob, base64.
    public var dtbo: String?
    /// A human note on success (e.g. "already online with priority 5").
    public var message: String?
    /// metrics: counters and gauges of every guest.
    public var metrics: DaemonMetrics?

    public init(ok: Bool, error: String? = nil, code: String? = nil) {
        self.ok = ok; self.error = error; self.code = code
    }

    public static func failure(_ code: String, _ error: String) -> ControlResponse {
        ControlResponse(ok: false, error: error, code: code)
    }
    public static var success: ControlResponse { ControlResponse(ok: true) }
    public static func success(status: DaemonStatus) -> ControlResponse { var r = success; r.status = status; return r }
    public static func success(guests: [GuestStatus]) -> ControlResponse { var r = success; r.guests = guests; return r }
    public static func success(guest: GuestStatus, message: String? = nil) -> ControlResponse {
        var r = success; r.guest = guest; r.message = message; return r
    }
    public static func success(heaps: [HeapStatus]) -> ControlResponse { var r = success; r.heaps = heaps; return r }
    public static func success(parameter: ConfParamStatus) -> ControlResponse { var r = success; r.parameter = parameter; return r }
    public static func success(metrics: DaemonMetrics) -> ControlResponse { var r = success; r.metrics = metrics; return r }
    public static func success(dtbo: [UInt8]) -> ControlResponse { var r = success; r.dtbo = Data(dtbo).base64EncodedString(); return r }

    /// The dt payload decoded; nil when absent or not valid base64.
    public var dtboBytes: [UInt8]? {
        guard let dtbo, let data = Data(base64Encoded: dtbo) else { return nil }
        return [UInt8](data)
    }
}

/// Peer of a control connection, from SO_PEERCRED (never from the request).
public struct PeerCredentials: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    public init(pid: Int32, uid: UInt32, gid: UInt32) { self.pid = pid; self.uid = uid; self.gid = gid }
}

/// What the daemon implements: one call per request line. Called from one
/// thread per client connection, so it must be safe to call concurrently.
public protocol ControlHandler: AnyObject, Sendable {
    func handle(_ request: ControlRequest, peer: PeerCredentials) -> ControlResponse
}
