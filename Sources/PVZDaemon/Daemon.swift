import DeviceTree
// FoundationEssentials, not Foundation: keeps libFoundation and ICU out of the daemon (docs/benchmarks.md, memory).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import PVZContract
import GPUModel
import Logging
import Platform
import PVZServer
import SafeSockets
import Synchronization
import VMManager
import VhostUser

/// One guest as the daemon runs it: its device and the vhost-user server (and thread) of its socket.
public final class ServedGuest: Sendable {
    public let config: GuestConfig
    public let device: PVZDevice
    public let vhostServer: VhostUserServer
    /// The libvirt domain on this guest's socket (config file, or the hook's prepare).
    let domain: Mutex<String?>
    init(config: GuestConfig, device: PVZDevice, vhostServer: VhostUserServer) {
        self.config = config; self.device = device; self.vhostServer = vhostServer
        domain = Mutex(config.domain)
    }
}

/// The daemon: the PVZ host server, one vhost-user server per guest, the
/// control socket and (optionally) the libvirt listener. It is the VM manager:
/// it decides each guest's OSID from the socket the guest is on.
public final class Daemon: ControlHandler, @unchecked Sendable {
    public static let version = PVZVersion.string
    public let config: DaemonConfig
    /// The PVZ host server: every OSID's ledger (PVZServer).
    public let hostServer: PVZHostServer
    public let guests: [ServedGuest]
    /// The emulated GPU's one firmware processor, shared by all OSIDs by priority.
    public let processor: FirmwareProcessor
    let store: StateStore?
    let logger: Logger
    let started = Date()
    private var control: ControlServer?
    /// The control socket, bound (or handed over) in init, served from start.
    private let controlListener: OpenListener?
    private var libvirt: LibvirtListener?

    /// Opens every socket (binding, or taking them from `inherited`: socket
    /// activation), then builds the daemon on them.
    public convenience init(config: DaemonConfig, logger: Logger, inherited: [InheritedSocket] = []) throws {
        let plan = try ListenerPlan.open(config, inherited: inherited)
        do { try self.init(config: config, logger: logger, listeners: plan) } catch {
            plan.discard()
            throw error
        }
    }

    /// Serves sockets already opened (ListenerPlan.open). The executable opens
    /// them, enters its sandbox, and only then builds the daemon: the firmware
    /// thread starts here, and capabilities are dropped per thread.
    public init(config: DaemonConfig, logger: Logger, listeners plan: ListenerPlan) throws {
        self.config = config
        self.logger = logger
        guard !config.guests.isEmpty else { throw ConfigError("no guests configured: give --socket-path/--osid/--carveout or a --config file with guests") }
        var seen = Set<String>()
        for g in config.guests {
            if let p = g.socketPath, !seen.insert(p).inserted { throw ConfigError("socket path \(p) is used by two guests") }
        }
        do {
            hostServer = try PVZHostServer(maxOSIDs: config.maxOSIDs, guests: config.guests.map(\.spec), ddkABI: config.ddkABI)
        } catch {
            throw ConfigError(error.description)
        }
        store = config.stateFile.map(StateStore.init(path:))
        if let store, let saved = try store.load() {
            for note in hostServer.restore(saved) { logger.warning("restoring \(store.path): \(note)") }
            logger.info("ledger restored from \(store.path)")
        }
        processor = try FirmwareProcessor(maxOSIDs: config.maxOSIDs)
        var rts: [ServedGuest] = []
        for (g, listener) in zip(config.guests, plan.guests) {
            let gpu = GuestGPU(osid: g.spec.osid, carveout: g.spec.carveout, processor: processor)
            let dev = PVZDevice(osid: g.spec.osid, hostServer: hostServer, settings: g.settings, gpu: gpu, logger: logger)
            var l = logger
            l[metadataKey: "osid"] = "\(g.spec.osid.rawValue)"
            let vs = try VhostUserServer(listenFD: listener.fd, socketFile: listener.file, ownsSocketFile: listener.ownsFile,
                                         access: config.socketAccess, device: dev, logger: l)
            dev.vhostServer = vs
            dev.crashPoint = CrashPoint(environment: ProcessInfo.processInfo.environment["PVZ_TEST_CRASH"])
            if let store { dev.ledgerChanged = { [hostServer, logger] in if let e = store.save(hostServer.persistedState()) { logger.error("\(e)") } } }
            gpu.wake = { [weak vs] in vs?.wake() }
            rts.append(ServedGuest(config: g, device: dev, vhostServer: vs))
        }
        guests = rts
        controlListener = plan.control
    }

    /// Starts every guest thread, the control socket and the libvirt listener.
    /// The guest threads `start` started; `stop` joins them (start and stop
    /// are the owner's calls, from one thread).
    private var guestThreads: [OSThread] = []

    public func start() throws {
        for g in guests {
            let s = g.vhostServer
            guestThreads.append(try OSThread(name: "pvz-osid\(g.config.spec.osid.rawValue)") { s.run() })
            logger.info("serving \(g.config.spec.osid) on \(socketLabel(g)) carve-out \(g.config.spec.carveout)")
        }
        if let cl = controlListener {
            let c = ControlServer(listening: cl.fd, path: cl.file?.path ?? cl.label, socketFile: cl.file, ownsSocketFile: cl.ownsFile,
                                  handler: self, logger: logger)
            try c.start()
            control = c
        }
        if let uri = config.libvirtURI {
            let l = LibvirtListener(uri: uri, maxOSIDs: config.maxOSIDs, logger: logger) { [weak self] event in
                guard let self else { return }
                let outcome = VMEventApplier.apply(event, to: self, peer: PeerCredentials(pid: getpid(), uid: geteuid(), gid: getegid()))
                self.logger.info("libvirt \(event): \(outcome)")
            }
            try l.start()
            libvirt = l
        }
    }

    public func stop() {
        libvirt?.stop()
        control?.stop()
        for g in guests { g.vhostServer.stop() }
        // Each guest thread ends its connection and closes its socket before
        // stop returns: a restart can take the same paths at once.
        let threads = guestThreads
        guestThreads = []
        for t in threads { t.join() }
        processor.shutdown()
    }

    func persist() {
        if let store, let e = store.save(hostServer.persistedState()) { logger.error("\(e)") }
    }

    func runtime(_ osid: OSID) -> ServedGuest? { guests.first { $0.config.spec.osid == osid } }

    /// The guest's socket as status shows it: its path, else the descriptor.
    func socketLabel(_ rt: ServedGuest) -> String {
        rt.vhostServer.socketPath ?? rt.config.socketPath ?? "fd:\(rt.vhostServer.listenFD)"
    }

    // MARK: VM manager (sVmmFuncTab)

    /// OnVmOnline. Under a DDK ABI whose OnVmOnline takes no priority (1.15
    /// and later) the VM manager sets the priority with VMMConfigure
    /// (VMM_CONF_PRIO_*) first, as a VM manager of that DDK must.
    public func vmOnline(_ osid: OSID, priority: UInt32?) throws(PVZError) {
        let p = priority ?? runtime(osid)?.config.settings.priority ?? 0
        if hostServer.ddkABI.onlineTakesPriority {
            try hostServer.onVmOnline(osid: osid, priority: p)
        } else {
            try hostServer.vmmConfigure(knob: .priority(osid.rawValue), value: p)
            try hostServer.onVmOnline(osid: osid, abiPriority: nil)
        }
        persist()
        if let rt = runtime(osid) {
            rt.device.gpu.vmOnline(priority: p)
            rt.device.configChanged()
        }
        logger.info("OnVmOnline(\(osid), priority \(p))")
    }

    public func vmOffline(_ osid: OSID) throws(PVZError) -> OfflineResult {
        let rt = runtime(osid)
        let r = try hostServer.onVmOffline(osid: osid) { _ in rt?.device.gpu.stopFirmware() ?? true }
        persist()
        if let rt {
            rt.device.gpu.vmOffline()
            rt.device.configChanged()
        }
        logger.info("OnVmOffline(\(osid)): freed \(r.freedHeaps.count) heaps")
        return r
    }

    // MARK: ControlHandler

    public func handle(_ request: ControlRequest, peer: PeerCredentials) -> ControlResponse {
        switch request {
        case .status:
            return .success(status: status())
        case .guests:
            return .success(guests: guests.map(guestStatus))
        case .heaps(let osid):
            if let osid, runtime(osid) == nil { return .failure(ControlErrorCode.invalidOSID, "no guest with \(osid) (configured: \(guests.map { $0.config.spec.osid.rawValue }))") }
            let hs = guests.filter { osid == nil || $0.config.spec.osid == osid }.flatMap { guestStatus($0).heaps }
            return .success(heaps: hs)
        case .online(let osid, let priority):
            guard let rt = runtime(osid) else { return .failure(ControlErrorCode.invalidOSID, "no guest with \(osid) (configured: \(guests.map { $0.config.spec.osid.rawValue }))") }
            do { try vmOnline(osid, priority: priority) } catch { return failure(error) }
            return .success(guest: guestStatus(rt))
        case .offline(let osid):
            guard let rt = runtime(osid) else { return .failure(ControlErrorCode.invalidOSID, "no guest with \(osid) (configured: \(guests.map { $0.config.spec.osid.rawValue }))") }
            let r: OfflineResult
            do { r = try vmOffline(osid) } catch { return failure(error) }
            return .success(guest: guestStatus(rt), message: "freed \(r.freedHeaps.count) heaps")
        case .configure(let param, let value):
            let abi = hostServer.ddkABI
            let knob: VMMKnob
            do {
                switch param {
                case .name(let n):
                    knob = try abi.knob(named: n)
                case .number(let n, let theirs):
                    guard theirs == abi.rawValue else {
                        return .failure(ControlErrorCode.unknownParam, "VMM_CONF_PARAM \(n) is numbered for DDK \(theirs); this daemon speaks \(abi) (\(abi.parameterNames.joined(separator: ", "))): give the name")
                    }
                    guard let k = abi.knob(number: n) else {
                        return .failure(ControlErrorCode.unknownParam, "unknown VMM_CONF_PARAM \(n) in \(abi): valid values are 0...\(abi.knobs.count - 1) (\(abi.parameterNames.joined(separator: ", ")))")
                    }
                    knob = k
                }
                try hostServer.vmmConfigure(knob: knob, value: value)
            } catch { return failure(error) }
            persist()
            for g in guests { g.device.gpu.parametersChanged(hostServer.vmmParameters) }
            return .success(parameter: ConfParamStatus(param: abi.number(of: knob) ?? 0, name: abi.name(of: knob), value: value))
        case .dt(let osid):
            guard runtime(osid) != nil, let d = guestDescription(osid) else {
                return .failure(ControlErrorCode.invalidOSID, "no guest with \(osid) (configured: \(guests.map { $0.config.spec.osid.rawValue }))")
            }
            do { return .success(dtbo: try makeOverlay(d)) } catch {
                return .failure(ControlErrorCode.internalError, "overlay for \(osid): \(error)")
            }
        case .metrics:
            return .success(metrics: metrics())
        case .prepare(let osid, let domain):
            guard let rt = runtime(osid) else { return .failure(ControlErrorCode.invalidOSID, "no guest with \(osid) (configured: \(guests.map { $0.config.spec.osid.rawValue }))") }
            // A front-end of another domain still on the socket: this domain's QEMU could not connect.
            let current = rt.domain.withLock { $0 }
            if rt.vhostServer.isConnected, let domain, let current, current != domain {
                return .failure(ControlErrorCode.notReady, "\(osid)'s socket \(socketLabel(rt)) is in use by domain '\(current)', not '\(domain)'")
            }
            guard rt.vhostServer.isListening else {
                return .failure(ControlErrorCode.notReady, "\(osid)'s socket \(socketLabel(rt)) is not listening (its file was removed or replaced): QEMU could not connect")
            }
            if let domain { rt.domain.withLock { $0 = domain } }
            return .success(guest: guestStatus(rt), message: "socket \(socketLabel(rt)) is listening")
        }
    }

    /// `metrics`: the ledger's call counters and heaps, the device's and GPU's counters.
    public func metrics() -> DaemonMetrics {
        let gs = guests.map { rt -> GuestMetrics in
            let osid = rt.config.spec.osid
            let st = hostServer.snapshot(osid: osid)
            let gc = rt.device.gpu.counters
            var byFunction: [NamedCount] = []
            var byStatus: [NamedCount] = []
            if let st {
                for (i, n) in st.callsByFunction.enumerated() {
                    byFunction.append(NamedCount(name: PVZFunction(rawValue: UInt32(i))?.name ?? "UNKNOWN", count: n))
                }
                for (i, n) in st.callsByStatus.enumerated() {
                    byStatus.append(NamedCount(name: PVZStatus(rawValue: UInt32(i))?.name ?? "STATUS_\(i)", count: n))
                }
            }
            return GuestMetrics(osid: osid.rawValue, domain: rt.domain.withLock { $0 }, listening: rt.vhostServer.isListening,
                                connected: rt.vhostServer.isConnected, online: st?.online ?? false,
                                needsReset: rt.vhostServer.stats.needsReset.load(ordering: .relaxed),
                                callsByFunction: byFunction, callsByStatus: byStatus, kicks: gc.kicks, commands: gc.commands,
                                faults: gc.faults, events: gc.events, eventsDropped: gc.eventsDropped,
                                heapBytes: (st?.heaps ?? []).reduce(0) { $0 &+ $1.size }, disconnects: st?.disconnects ?? 0)
        }
        return DaemonMetrics(uptimeSeconds: Date().timeIntervalSince(started), hostHeapBytes: hostServer.hostPoolUsed,
                             invalidOsidCalls: hostServer.invalidOSIDCalls, guests: gs)
    }

    private func failure(_ e: PVZError) -> ControlResponse {
        let code: String
        switch e {
        case .osidIsOnline: code = ControlErrorCode.osidIsOnline
        case .osidIsOffline: code = ControlErrorCode.osidIsOffline
        case .invalidOSID: code = ControlErrorCode.invalidOSID
        case .unknownConfParam: code = ControlErrorCode.unknownParam
        case .firmwareNotIdle: code = ControlErrorCode.timeout
        default: code = ControlErrorCode.badRequest
        }
        return .failure(code, e.description)
    }

    /// The guest's GPU as its device tree must describe it, from the live ledger:
    /// the carve-out and every host-origin heap (guest-origin heaps are the
    /// guest OS's own memory and need no reservation).
    public func guestDescription(_ osid: OSID) -> GuestGPUDescription? {
        guard let spec = hostServer.spec(of: osid), let st = hostServer.snapshot(osid: osid) else { return nil }
        let heaps = st.heaps.filter { $0.origin == .host }.map {
            ReservedRegion(name: $0.heap == .fwLocal ? "pvz-fw-heap" : "pvz-gpu-heap", base: $0.ipa.rawValue, size: $0.size)
        }
        return GuestGPUDescription(osid: osid.rawValue, regsBase: spec.carveout.start.rawValue,
                                   regsSize: PVZRegister.bankSize, irq: spec.policy.irq,
                                   carveout: ReservedRegion(name: "pvz-carveout", base: spec.carveout.start.rawValue, size: spec.carveout.size),
                                   heaps: heaps)
    }

    public func status() -> DaemonStatus {
        let p = hostServer.vmmParameters
        let abi = hostServer.ddkABI
        let params = abi.knobs.enumerated().map { i, k in
            ConfParamStatus(param: UInt32(i), name: abi.name(of: k), value: p.value(of: k))
        }
        return DaemonStatus(version: Self.version, pid: getpid(), uptimeSeconds: Date().timeIntervalSince(started),
                            controlSocket: controlListener.map { $0.file?.path ?? $0.label } ?? "", maxOsids: config.maxOSIDs,
                            parameters: params, guests: guests.map(guestStatus),
                            libvirtConnected: libvirt.map(\.isConnected), ddkAbi: abi.rawValue)
    }

    func guestStatus(_ rt: ServedGuest) -> GuestStatus {
        let osid = rt.config.spec.osid
        let st = hostServer.snapshot(osid: osid)
        let stats = rt.vhostServer.stats
        let heaps = (st?.heaps ?? []).map {
            HeapStatus(osid: osid.rawValue, heapId: $0.heap.rawValue, heapName: $0.heap.description,
                       origin: $0.origin == .host ? "HOST" : "GUEST", ipa: $0.ipa.rawValue, pa: $0.pa.rawValue, size: $0.size)
        }
        let gc = rt.device.gpu.counters
        let counters = GuestCounters(calls: st?.totalCalls ?? 0, kicks: gc.kicks, commands: gc.commands, faults: gc.faults,
                                     events: gc.events, eventsDropped: gc.eventsDropped)
        return GuestStatus(osid: osid.rawValue, domain: rt.domain.withLock { $0 }, socketPath: socketLabel(rt),
                           listening: rt.vhostServer.isListening, connected: rt.vhostServer.isConnected, online: st?.online ?? false,
                           priority: st?.priority ?? 0, deviceStatus: stats.deviceStatus.load(ordering: .relaxed),
                           needsReset: stats.needsReset.load(ordering: .relaxed),
                           features: stats.ackedFeatures.load(ordering: .relaxed),
                           firmware: rt.device.gpu.firmwareState, carveoutIpa: rt.config.spec.carveout.start.rawValue,
                           carveoutSize: rt.config.spec.carveout.size, counters: counters, heaps: heaps)
    }
}
