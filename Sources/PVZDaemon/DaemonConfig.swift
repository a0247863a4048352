// FoundationEssentials, not Foundation: keeps libFoundation and ICU out of the daemon (docs/benchmarks.md, memory).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PVZContract
import PVZServer
import SafeSockets
import Sandbox

/// One guest as the daemon runs it, validated (DaemonOptions.validated()).
public struct GuestConfig: Sendable, Equatable {
    public var socketPath: String?
    /// An already listening socket inherited from a management layer (`--fd`).
    public var listenFD: Int32?
    /// A socket handed over by systemd under this FileDescriptorName= (`fd_name`).
    public var fdName: String?
    public var spec: GuestSpec
    public var settings: GuestSettings
    /// libvirt domain name, when known (status display, hook matching).
    public var domain: String?
    public init(socketPath: String?, listenFD: Int32? = nil, fdName: String? = nil, spec: GuestSpec, settings: GuestSettings, domain: String? = nil) {
        self.socketPath = socketPath; self.listenFD = listenFD; self.fdName = fdName; self.spec = spec; self.settings = settings
        self.domain = domain
    }
}

public struct DaemonConfig: Sendable, Equatable {
    public var guests: [GuestConfig]
    public var controlSocket: String?
    public var maxOSIDs: UInt32 = VirtioPVZ.defaultMaxOSIDs
    /// libvirt URI for the event listener; nil disables it.
    public var libvirtURI: String?
    /// Where the ledger is kept across restarts; nil keeps it in memory only.
    public var stateFile: String?
    /// The DDK PVZ ABI the host follows (`--ddk-abi`, `"ddk_abi"`).
    public var ddkABI: DDKABI = .default
    public var logLevel: Logger.Level = .info
    /// Mode, group and allowed peers of the guest sockets.
    public var socketAccess = SocketAccess()
    /// Entered by the executable once every socket is bound.
    public var sandbox = SandboxSettings()
    public init(guests: [GuestConfig], controlSocket: String?, maxOSIDs: UInt32 = VirtioPVZ.defaultMaxOSIDs, libvirtURI: String? = nil, stateFile: String? = nil) {
        self.guests = guests; self.controlSocket = controlSocket; self.maxOSIDs = maxOSIDs; self.libvirtURI = libvirtURI
        self.stateFile = stateFile
    }

    public static func load(path: String) throws(ConfigError) -> DaemonConfig {
        try DaemonOptions.load(path: path).validated()
    }

    public static func parse(_ data: Data, source: String = "config") throws(ConfigError) -> DaemonConfig {
        try DaemonOptions.parse(Array(data), source: source).validated()
    }

    /// The interrupt number written to a guest's device tree when none is
    /// configured: 100 + OSID, nil when that does not fit (an OSID that
    /// large is refused anyway).
    public static func defaultIRQ(osid: UInt32) -> UInt32? {
        let (irq, overflow) = osid.addingReportingOverflow(100)
        return overflow ? nil : irq
    }

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
}

public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ m: String) { message = m }
    public var description: String { message }
}

/// Numbers in configs and flags: decimal, 0x-hex, with an optional K/M/G suffix for sizes.
public enum NumberParser {
    public static func parse(_ text: String) -> UInt64? {
        let blank: (Character) -> Bool = { $0.isWhitespace && !$0.isNewline }
        var t = String(text.drop(while: blank).reversed().drop(while: blank).reversed()).replacing("_", with: "")
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
