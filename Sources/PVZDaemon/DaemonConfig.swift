import Foundation
import PVZServer

/// One guest as the daemon is told about it (config file or CLI flags).
public struct GuestConfig: Sendable, Equatable {
    public var socketPath: String?
    /// An already listening socket inherited from a management layer (`--fd`).
    public var listenFD: Int32?
    public var spec: GuestSpec
    public var settings: GuestSettings
    /// libvirt domain name, when known (status display, hook matching).
    public var domain: String?
    public init(socketPath: String?, listenFD: Int32? = nil, spec: GuestSpec, settings: GuestSettings, domain: String? = nil) {
        self.socketPath = socketPath; self.listenFD = listenFD; self.spec = spec; self.settings = settings; self.domain = domain
    }
}

public struct DaemonConfig: Sendable, Equatable {
    public var guests: [GuestConfig]
    public var controlSocket: String?
    public var maxOSIDs: UInt32 = 8
    /// libvirt URI for the event listener; nil disables it.
    public var libvirtURI: String?
    /// Where the ledger is kept across restarts; nil keeps it in memory only.
    public var stateFile: String?
    /// The DDK PVZ ABI the host follows (`--ddk-abi`, `"ddk_abi"`).
    public var ddkABI: DDKABI = .default
    public init(guests: [GuestConfig], controlSocket: String?, maxOSIDs: UInt32 = 8, libvirtURI: String? = nil, stateFile: String? = nil) {
        self.guests = guests; self.controlSocket = controlSocket; self.maxOSIDs = maxOSIDs; self.libvirtURI = libvirtURI
        self.stateFile = stateFile
    }
}

public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ m: String) { message = m }
    public var description: String { message }
}

/// Numbers in configs and flags: decimal, 0x-hex, with an optional K/M/G suffix for sizes.
public enum NumberParser {
    public static func parse(_ text: String) -> UInt64? {
        var t = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_", with: "")
        var mult: UInt64 = 1
        let isHex = t.lowercased().hasPrefix("0x")
        if !isHex, let last = t.last {
            switch last {
            case "K", "k": mult = 1 << 10; t.removeLast()
            case "M", "m": mult = 1 << 20; t.removeLast()
            case "G", "g": mult = 1 << 30; t.removeLast()
            default: break
            }
        }
        let v: UInt64?
        if t.lowercased().hasPrefix("0x") { v = UInt64(t.dropFirst(2), radix: 16) } else { v = UInt64(t) }
        guard let v else { return nil }
        let (r, o) = v.multipliedReportingOverflow(by: mult)
        return o ? nil : r
    }

    /// "IPA:SIZE" → a page-aligned IPA range.
    public static func carveout(_ text: String) throws(ConfigError) -> IPARange {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let ipa = parse(String(parts[0])), let size = parse(String(parts[1])) else {
            throw ConfigError("carve-out '\(text)' is not IPA:SIZE (e.g. 0x10000000:0x4000000 or 0x10000000:64M)")
        }
        guard let r = IPARange(start: IPA(ipa), size: size) else {
            throw ConfigError("carve-out '\(text)' is empty or wraps past 2^64")
        }
        return r
    }
}

extension DaemonConfig {
    /// The JSON config file format (docs/configuration.md).
    struct File: Decodable {
        var control_socket: String?
        var max_osids: UInt32?
        var libvirt_uri: String?
        var state_file: String?
        var guests: [Guest]
        struct Guest: Decodable {
            var socket_path: String?
            var fd: Int32?
            var osid: UInt32
            var carveout: String
            var online_on_connect: Bool?
            var priority: UInt32?
            var irq: UInt32?
            var fw_heap_origin: String?
            var gpu_heap_origin: String?
            var heap_type: String?
            var fw_heap_size: FlexibleNumber?
            var gpu_heap_size: FlexibleNumber?
            var host_heaps: Bool?
            var domain: String?
        }
    }

    struct FlexibleNumber: Decodable {
        var value: UInt64
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let n = try? c.decode(UInt64.self) { value = n; return }
            let s = try c.decode(String.self)
            guard let v = NumberParser.parse(s) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "'\(s)' is not a number (decimal, 0x-hex, K/M/G suffix)")
            }
            value = v
        }
    }

    public static func load(path: String) throws(ConfigError) -> DaemonConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("cannot read config file \(path)")
        }
        return try parse(data, source: path)
    }

    public static func parse(_ data: Data, source: String = "config") throws(ConfigError) -> DaemonConfig {
        let f: File
        do { f = try JSONDecoder().decode(File.self, from: data) } catch {
            throw ConfigError("\(source): \(Self.describe(error))")
        }
        var guests: [GuestConfig] = []
        for (i, g) in f.guests.enumerated() {
            let whereText = "\(source): guests[\(i)] (osid \(g.osid))"
            guard (g.socket_path != nil) != (g.fd != nil) else {
                throw ConfigError("\(whereText): give exactly one of socket_path or fd")
            }
            var policy = GuestPolicy()
            policy.irq = g.irq ?? Self.defaultIRQ(osid: g.osid)
            if let o = g.fw_heap_origin { policy.fwHeapOrigin = try origin(o, whereText) }
            if let o = g.gpu_heap_origin { policy.gpuHeapOrigin = try origin(o, whereText) }
            if let t = g.heap_type { policy.heapType = try heapType(t, whereText) }
            if let s = g.fw_heap_size { policy.fwHeapSize = s.value }
            if let s = g.gpu_heap_size { policy.gpuHeapSize = s.value }
            if let h = g.host_heaps { policy.hostHeapsAllowed = h }
            let carve: IPARange
            do { carve = try NumberParser.carveout(g.carveout) } catch { throw ConfigError("\(whereText): \(error)") }
            guests.append(GuestConfig(socketPath: g.socket_path, listenFD: g.fd,
                                      spec: GuestSpec(osid: OSID(g.osid), carveout: carve, policy: policy),
                                      settings: GuestSettings(onlineOnConnect: g.online_on_connect ?? false, priority: g.priority ?? 0),
                                      domain: g.domain))
        }
        return DaemonConfig(guests: guests, controlSocket: f.control_socket, maxOSIDs: f.max_osids ?? 8, libvirtURI: f.libvirt_uri,
                            stateFile: f.state_file)
    }

    /// The interrupt number written to a guest's device tree when none is configured.
    public static func defaultIRQ(osid: UInt32) -> UInt32 { 100 &+ osid }  // an osid that wraps is refused later (osidOutOfRange)

    public static func origin(_ s: String, _ w: String) throws(ConfigError) -> HeapOrigin {
        switch s.lowercased() {
        case "guest": return .guest
        case "host": return .host
        default: throw ConfigError("\(w): heap origin '\(s)' is not 'guest' or 'host'")
        }
    }

    public static func heapType(_ s: String, _ w: String) throws(ConfigError) -> PhysHeapType {
        switch s.lowercased() {
        case "uma": return .uma
        case "lma": return .lma
        case "dma": return .dma
        default: throw ConfigError("\(w): heap type '\(s)' is not 'uma', 'lma' or 'dma'")
        }
    }

    static func describe(_ e: Error) -> String {
        switch e {
        case DecodingError.keyNotFound(let k, let c):
            return "missing key '\(k.stringValue)' at \(c.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c), DecodingError.dataCorrupted(let c):
            return "\(c.debugDescription) at \(c.codingPath.map(\.stringValue).joined(separator: "."))"
        default:
            return "\(e)"
        }
    }
}
