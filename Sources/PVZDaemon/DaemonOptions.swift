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

/// How an error names an option: the flag (`--osid`) when it came from the
/// command line, else the config file, the line and column and the key path.
public struct OptionNames: Sendable, Equatable {
    /// The config file; nil when everything came from flags.
    public var file: String?
    /// Key path of the object ("" top level, "guests[0]").
    public var path: String = ""
    public var positions: [String: SourcePosition] = [:]
    /// Keys set by a flag, overriding the file.
    public var fromFlags: Set<String> = []

    public init(file: String? = nil, path: String = "") { self.file = file; self.path = path }

    public func name(_ key: String) -> String {
        guard let file, !fromFlags.contains(key) else { return "--" + key.replacing("_", with: "-") }
        let at = positions[key].map { "\($0): " } ?? ""
        return "\(file): \(at)\(path.isEmpty ? key : "\(path).\(key)")"
    }

    /// The option's bare name, for mentioning it inside another's message.
    public func shortName(_ key: String) -> String {
        file == nil || fromFlags.contains(key) ? "--" + key.replacing("_", with: "-") : key
    }

    /// The object itself (for "missing key" errors).
    public var object: String {
        guard let file else { return "command line" }
        return "\(file): \(path.isEmpty ? "top level" : path)"
    }
}

/// One guest as given, before validation: from flags or a config file, the
/// same checks apply (DaemonOptions.validated()).
public struct GuestOptions: Sendable, Equatable {
    public var socketPath: String?
    public var fd: Int32?
    public var fdName: String?
    public var osid: UInt32?
    public var carveout: String?
    public var onlineOnConnect: Bool?
    public var priority: UInt32?
    public var irq: UInt32?
    public var fwHeapOrigin: String?
    public var gpuHeapOrigin: String?
    public var heapType: String?
    public var fwHeapSize: String?
    public var gpuHeapSize: String?
    public var hostHeaps: Bool?
    public var domain: String?
    public var names = OptionNames()
    public init() {}

    static let keys = ["socket_path", "fd", "fd_name", "osid", "carveout", "online_on_connect", "priority", "irq",
                       "fw_heap_origin", "gpu_heap_origin", "heap_type", "fw_heap_size", "gpu_heap_size", "host_heaps", "domain"]
}

/// The daemon's options as given (flags, config file, or a file with flags
/// over it), before validation.
public struct DaemonOptions: Sendable, Equatable {
    public var controlSocket: String?
    public var maxOSIDs: UInt32?
    public var libvirtURI: String?
    public var stateFile: String?
    public var logLevel: String?
    public var socketGroup: String?
    public var socketMode: String?
    public var allowUsers: [String]?
    public var allowGroups: [String]?
    public var user: String?
    public var group: String?
    public var seccomp: String?
    public var ddkABI: String?
    public var guests: [GuestOptions] = []
    public var names = OptionNames()
    public init() {}

    static let keys = ["control_socket", "max_osids", "libvirt_uri", "state_file", "log_level", "socket_group", "socket_mode",
                       "allow_users", "allow_groups", "user", "group", "seccomp", "ddk_abi", "guests"]

    public static let logLevels = Logger.Level.allCases.map(\.rawValue)

    // MARK: the config file

    public static func load(path: String) throws(ConfigError) -> DaemonOptions {
        guard let data = FileManager.default.contents(atPath: path) else {
            var st = stat()
            if stat(path, &st) == 0 {
                throw ConfigError("cannot read config file \(path): \(st.st_mode & S_IFMT == S_IFDIR ? "it is a directory" : "permission denied")")
            }
            throw ConfigError("cannot read config file \(path): no such file")
        }
        return try parse(Array(data), source: path)
    }

    public static func parse(_ bytes: [UInt8], source: String) throws(ConfigError) -> DaemonOptions {
        let root = try ConfigObject(try ConfigJSONParser.parse(bytes, source: source), path: "", source: source)
        try root.onlyKeys(keys)
        var o = DaemonOptions()
        o.names = OptionNames(file: source)
        for m in root.members { o.names.positions[m.key] = m.node.position }
        o.controlSocket = try root.string("control_socket")
        o.maxOSIDs = try root.integer("max_osids", as: UInt32.self)
        o.libvirtURI = try root.string("libvirt_uri")
        o.stateFile = try root.string("state_file")
        o.logLevel = try root.string("log_level")
        o.socketGroup = try root.string("socket_group")
        o.socketMode = try root.string("socket_mode")
        o.allowUsers = try root.strings("allow_users")
        o.allowGroups = try root.strings("allow_groups")
        o.user = try root.string("user")
        o.group = try root.string("group")
        o.seccomp = try root.string("seccomp")
        o.ddkABI = try root.string("ddk_abi")
        guard let guests = try root.objects("guests") else {
            throw ConfigError("\(source): missing key \"guests\" (an array with one object per guest)")
        }
        for g in guests {
            try g.onlyKeys(GuestOptions.keys)
            var x = GuestOptions()
            x.names = OptionNames(file: source, path: g.path)
            for m in g.members { x.names.positions[m.key] = m.node.position }
            x.socketPath = try g.string("socket_path")
            x.fd = try g.integer("fd", as: Int32.self)
            x.fdName = try g.string("fd_name")
            x.osid = try g.integer("osid", as: UInt32.self)
            x.carveout = try g.string("carveout")
            x.onlineOnConnect = try g.bool("online_on_connect")
            x.priority = try g.integer("priority", as: UInt32.self)
            x.irq = try g.integer("irq", as: UInt32.self)
            x.fwHeapOrigin = try g.string("fw_heap_origin")
            x.gpuHeapOrigin = try g.string("gpu_heap_origin")
            x.heapType = try g.string("heap_type")
            x.fwHeapSize = try g.sizeText("fw_heap_size")
            x.gpuHeapSize = try g.sizeText("gpu_heap_size")
            x.hostHeaps = try g.bool("host_heaps")
            x.domain = try g.string("domain")
            o.guests.append(x)
        }
        return o
    }

    // MARK: validation (one set of rules for flags and files)

    public func validated() throws(ConfigError) -> DaemonConfig {
        let n = names
        let maxOSIDs = self.maxOSIDs ?? VirtioPVZ.defaultMaxOSIDs
        guard maxOSIDs >= 2, maxOSIDs <= VirtioPVZ.maxOSIDsLimit else {
            throw ConfigError("\(n.name("max_osids")): \(maxOSIDs) is out of range 2...\(VirtioPVZ.maxOSIDsLimit) (OSIDs including the host's 0)")
        }
        let level: Logger.Level
        if let l = logLevel {
            guard let v = Logger.Level(rawValue: l) else {
                throw ConfigError("\(n.name("log_level")): '\(l)' is not one of \(Self.logLevels.joined(separator: ", "))")
            }
            level = v
        } else { level = .info }
        let seccompMode: SeccompMode
        if let s = seccomp {
            guard let m = SeccompMode(rawValue: s) else {
                throw ConfigError("\(n.name("seccomp")): '\(s)' is not one of \(SeccompMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            seccompMode = m
        } else { seccompMode = .kill }

        var sandboxUser: SandboxUser?
        if let u = user {
            guard let pw = SandboxUser.lookupUser(u) else {
                throw ConfigError("\(n.name("user")): no such user '\(u)' (a name from /etc/passwd or a uid)")
            }
            var gid = pw.gid
            if let g = group {
                guard let v = SandboxUser.lookupGroup(g) else {
                    throw ConfigError("\(n.name("group")): no such group '\(g)' (a name from /etc/group or a gid)")
                }
                gid = v
            }
            sandboxUser = SandboxUser.resolving(name: pw.name, uid: pw.uid, gid: gid)
        } else if group != nil {
            throw ConfigError("\(n.name("group")): needs a user too (\(n.name("user"))): the group replaces that user's primary group")
        }

        var socketGID: gid_t?
        if let g = socketGroup {
            guard let gid = SandboxUser.lookupGroup(g) else { throw ConfigError("\(n.name("socket_group")): no such group '\(g)'") }
            socketGID = gid
        }
        var mode: mode_t?
        if let m = socketMode {
            let digits = m.hasPrefix("0o") ? String(m.dropFirst(2)) : m
            guard !digits.isEmpty, digits.count <= 4, let v = UInt32(digits, radix: 8) else {
                throw ConfigError("\(n.name("socket_mode")): '\(m)' is not an octal mode like 0660")
            }
            do { try SocketAccess.checkMode(v) } catch { throw ConfigError("\(n.name("socket_mode")): \(error.message)") }
            if v & 0o070 != 0 && socketGID == nil {
                throw ConfigError("\(n.name("socket_mode")): 0\(String(v, radix: 8)) opens the socket to its group; say which with \(n.name("socket_group"))")
            }
            mode = v
        }
        var uids: [uid_t] = []
        for u in allowUsers ?? [] {
            if let p = getpwnam(u) { uids.append(p.pointee.pw_uid) } else if let v = UInt32(u), v != UInt32.max { uids.append(v) } else {
                throw ConfigError("\(n.name("allow_users")): no such user '\(u)'")
            }
        }
        var gids: [gid_t] = []
        for g in allowGroups ?? [] {
            guard let v = SandboxUser.lookupGroup(g) else { throw ConfigError("\(n.name("allow_groups")): no such group '\(g)'") }
            gids.append(v)
        }

        if let uri = libvirtURI {
            guard !uri.isEmpty else { throw ConfigError("\(n.name("libvirt_uri")): empty URI (e.g. qemu:///system)") }
            let scheme = uri.split(separator: ":").first.map(String.init) ?? ""
            if seccompMode != .off, ["+ssh", "+libssh", "+libssh2", "+ext"].contains(where: { scheme.hasSuffix($0) }) {
                throw ConfigError("\(n.name("libvirt_uri")): '\(uri)' makes libvirt run an external command, which the seccomp sandbox forbids; use a local URI (qemu:///system) or \(n.name("seccomp")) off")
            }
        }
        if let c = controlSocket { try Self.checkSocketPath(c, n.name("control_socket")) }
        if let s = stateFile, s.isEmpty { throw ConfigError("\(n.name("state_file")): empty path") }

        guard !guests.isEmpty else {
            throw ConfigError("\(n.object): no guests configured (give --osid/--carveout and a socket, or \"guests\" in a config file)")
        }
        var abi = DDKABI.default
        if let a = ddkABI {
            guard let known = DDKABI(rawValue: a) else {
                throw ConfigError("\(names.name("ddk_abi")): '\(a)' is not a DDK PVZ ABI this host speaks: \(DDKABI.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            abi = known
        }
        let ddkSizes = PVZHostServer.ddkFirmwareHeapSizes(abi, maxOSIDs: maxOSIDs)
        var configs: [GuestConfig] = []
        var osids = Set<UInt32>()
        var paths = Set<String>()
        for g in guests {
            let c = try g.validated(maxOSIDs: maxOSIDs, maxName: n.shortName("max_osids"))
            // A DDK guest's firmware heap is RGX_FIRMWARE_RAW_HEAP_SIZE; MAP needs the sizes equal.
            guard ddkSizes.contains(c.spec.policy.fwHeapSize) else {
                throw ConfigError("\(g.names.name("fw_heap_size")): \(c.spec.policy.fwHeapSize) bytes is not a \(abi) firmware heap size (1 << RGX_FW_HEAP_SHIFT: \(ddkSizes.map { "\($0 >> 20)M" }.joined(separator: ", ")))")
            }
            guard osids.insert(c.spec.osid.rawValue).inserted else {
                throw ConfigError("\(g.names.name("osid")): OSID \(c.spec.osid.rawValue) is configured for two guests")
            }
            if let p = c.socketPath, !paths.insert(p).inserted {
                throw ConfigError("\(g.names.name("socket_path")): \(p) is used by two guests")
            }
            configs.append(c)
        }
        var c = DaemonConfig(guests: configs, controlSocket: controlSocket, maxOSIDs: maxOSIDs, libvirtURI: libvirtURI, stateFile: stateFile)
        c.ddkABI = abi
        c.logLevel = level
        c.socketAccess = SocketAccess(mode: mode, group: socketGID, owner: sandboxUser?.uid, allowedUIDs: uids, allowedGIDs: gids)
        c.sandbox = SandboxSettings(user: sandboxUser, seccomp: seccompMode)
        return c
    }

    static func checkSocketPath(_ p: String, _ name: String) throws(ConfigError) {
        guard !p.isEmpty, p.utf8.count <= SafeListener.maxPathBytes else {
            throw ConfigError("\(name): \"\(p)\" is \(p.utf8.count) bytes; a Unix socket path must be 1...\(SafeListener.maxPathBytes) bytes")
        }
    }
}

extension GuestOptions {
    func validated(maxOSIDs: UInt32, maxName: String) throws(ConfigError) -> GuestConfig {
        let n = names
        guard let osid else { throw ConfigError("\(n.object): \(n.file == nil ? "--osid" : "osid") is required (1...\(maxOSIDs - 1))") }
        guard osid >= 1, osid < maxOSIDs else {
            throw ConfigError("\(n.name("osid")): \(osid) is not a guest OSID: must be 1...\(maxOSIDs - 1) (\(maxName) \(maxOSIDs); 0 is the host)")
        }
        guard let carveoutText = carveout else {
            throw ConfigError("\(n.object): \(n.file == nil ? "--carveout" : "carveout") IPA:SIZE is required, e.g. 0x10000000:64M")
        }
        let given = [socketPath != nil, fd != nil, fdName != nil].filter { $0 }.count
        guard given <= 1 else {
            throw ConfigError("\(n.object): give one of \(n.file == nil ? "--socket-path or --fd" : "socket_path, fd or fd_name"), not several")
        }
        if let p = socketPath { try DaemonOptions.checkSocketPath(p, n.name("socket_path")) }
        if let f = fd, f < 3 {
            throw ConfigError("\(n.name("fd")): \(f) is \(f < 0 ? "not a file descriptor" : "standard \(["input", "output", "error"][Int(f)])"), not a listening socket")
        }
        if let name = fdName, name.isEmpty || name.utf8.count > 255 || name.contains(":") {
            throw ConfigError("\(n.name("fd_name")): '\(name)' is not a FileDescriptorName= (1...255 characters, no ':')")
        }
        var policy = GuestPolicy()
        if let o = fwHeapOrigin { policy.fwHeapOrigin = try DaemonConfig.origin(o, n.name("fw_heap_origin")) }
        if let o = gpuHeapOrigin { policy.gpuHeapOrigin = try DaemonConfig.origin(o, n.name("gpu_heap_origin")) }
        if let t = heapType { policy.heapType = try DaemonConfig.heapType(t, n.name("heap_type")) }
        if let s = fwHeapSize {
            guard let v = NumberParser.parse(s) else { throw ConfigError("\(n.name("fw_heap_size")): '\(s)' is not a number (decimal, 0x-hex, K/M/G suffix)") }
            policy.fwHeapSize = v
        }
        if let s = gpuHeapSize {
            guard let v = NumberParser.parse(s) else { throw ConfigError("\(n.name("gpu_heap_size")): '\(s)' is not a number (decimal, 0x-hex, K/M/G suffix)") }
            policy.gpuHeapSize = v
        }
        if let h = hostHeaps { policy.hostHeapsAllowed = h }
        guard let irq = irq ?? DaemonConfig.defaultIRQ(osid: osid) else {
            throw ConfigError("\(n.name("osid")): \(osid) leaves no default IRQ (100+OSID); give \(n.name("irq"))")
        }
        policy.irq = irq
        let carve: IPARange
        do { carve = try NumberParser.carveout(carveoutText) } catch { throw ConfigError("\(n.name("carveout")): \(error)") }
        if let d = domain, d.isEmpty || d.utf8.count > 256 || d.unicodeScalars.contains(where: { $0.value < 0x20 }) {
            throw ConfigError("\(n.name("domain")): not a libvirt domain name (1...256 bytes, no control characters)")
        }
        // Heap sizes against the carve-out are PVZHostServer's rules, checked when the daemon builds it.
        let spec = GuestSpec(osid: OSID(osid), carveout: carve, policy: policy)
        return GuestConfig(socketPath: socketPath, listenFD: fd, fdName: fdName, spec: spec,
                           settings: GuestSettings(onlineOnConnect: onlineOnConnect ?? false, priority: priority ?? 0),
                           domain: domain)
    }
}
