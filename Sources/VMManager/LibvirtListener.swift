import CLibvirt
import Glibc
import Logging
import Platform
import PVZContract
import PVZServer
import Synchronization

/// Turns libvirt domain lifecycle events into VM-manager events for domains
/// that carry the device (pvz metadata, see PVZDomainMetadata):
///
///   STARTED                      -> .online(osid, priority, domain)
///   STOPPED, SHUTDOWN, CRASHED   -> .offline(osid, domain)
///   others (suspend, resume, …)  -> nothing
///
/// Each domain's state is tracked by UUID, so an event seen twice (SHUTDOWN
/// then STOPPED, or a resync after reconnect) gives one event. After every
/// (re)connect the running domains are resynchronised: those not known yet
/// come online, those known but gone go offline. The connection is reopened
/// with backoff (0.1 s doubling to 5 s) when libvirtd goes away.
public final class LibvirtListener: @unchecked Sendable {
    public let uri: String
    public let maxOSIDs: UInt32
    private let logger: Logger
    private let onEvent: @Sendable (VMEvent) -> Void

    private struct Tracked: Equatable { var osid: OSID; var priority: UInt32?; var name: String }
    private struct State {
        var conn: Connection?
        var callbackID: Int32 = -1
        var closed = false
        var stopping = false
        var tracked: [String: Tracked] = [:]
        /// Domains whose bad metadata was already reported (by UUID).
        var reportedInvalid: Set<String> = []
        var connects = 0
    }
    /// A libvirt connection (libvirt's connections may be used from any thread).
    private struct Connection: @unchecked Sendable { let pointer: OpaquePointer }
    private let state = Mutex(State())
    /// Serialises decide-and-emit between the event loop and resyncs.
    private let emitLock = Mutex(())
    private let wakeup = Wakeup()
    private var supervisor: OSThread?

    public static let maxBackoffSeconds = 5.0

    public init(uri: String = "qemu:///system", maxOSIDs: UInt32 = VirtioPVZ.defaultMaxOSIDs,
                logger: Logger = Logger(label: "pvz.libvirt"), onEvent: @escaping @Sendable (VMEvent) -> Void) {
        self.uri = uri
        self.maxOSIDs = maxOSIDs
        self.logger = logger
        self.onEvent = onEvent
    }

    /// Whether a libvirt connection is open now.
    public var isConnected: Bool { state.withLock { $0.conn != nil && !$0.closed } }
    /// How many times a connection was opened (1 + reconnects).
    public var connectCount: Int { state.withLock { $0.connects } }

    /// Starts connecting in the background; a libvirtd that is not running
    /// yet is retried, not an error.
    public func start() throws {
        try LibvirtEventLoop.ensureRunning()
        supervisor = try OSThread(name: "pvz-libvirt") { [self] in supervise() }
    }

    public func stop() {
        state.withLock { $0.stopping = true }
        wakeup.signal()
        supervisor?.join()
        supervisor = nil
    }

    deinit { stop() }

    // MARK: connection

    private func supervise() {
        var backoff = 0.1
        var loggedDown = false
        while !state.withLock({ $0.stopping }) {
            if state.withLock({ $0.conn == nil }) {
                if let err = connect() {
                    if !loggedDown {
                        logger.warning("libvirt not reachable; retrying", metadata: ["uri": "\(uri)", "error": "\(err)"])
                        loggedDown = true
                    }
                    wakeup.wait(seconds: backoff)
                    backoff = min(backoff * 2, Self.maxBackoffSeconds)
                    continue
                }
                logger.info("libvirt connected", metadata: ["uri": "\(uri)"])
                loggedDown = false
                backoff = 0.1
                resync()
                continue
            }
            wakeup.wait(seconds: nil)
            if state.withLock({ $0.closed }) {
                logger.warning("libvirt connection lost; reconnecting", metadata: ["uri": "\(uri)"])
                disconnect()
            }
        }
        disconnect()
    }

    // libvirt calls back on its event thread, possibly after `stop` returned
    // (a dispatch already under way when the callback was deregistered).
    // The event registration holds the listener strongly and libvirt releases
    // it through `releaseListener` once it has let go of the callback. The
    // close callback holds only a weak box: a driver without close callbacks
    // (test:///default) accepts the registration, keeps nothing and never
    // calls its free function, which would leak a strong hold; the box (one
    // per connection) is what such a driver leaks. One function each, so
    // unregistering names the callback that was registered.
    private static let lifecycleCallback: @convention(c) (virConnectPtr?, virDomainPtr?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = {
        _, dom, event, detail, opaque in
        guard let dom, let opaque else { return 0 }
        Unmanaged<LibvirtListener>.fromOpaque(opaque).takeUnretainedValue().lifecycle(dom, event: event, detail: detail)
        return 0
    }
    private static let releaseListener: virFreeCallback = { opaque in
        guard let opaque else { return }
        Unmanaged<LibvirtListener>.fromOpaque(opaque).release()
    }
    private final class CloseTarget: @unchecked Sendable {
        weak var listener: LibvirtListener?
        init(_ l: LibvirtListener) { listener = l }
    }
    private static let closeCallback: virConnectCloseFunc = { _, _, opaque in
        guard let opaque, let me = Unmanaged<CloseTarget>.fromOpaque(opaque).takeUnretainedValue().listener else { return }
        me.state.withLock { $0.closed = true }
        me.wakeup.signal()
    }
    private static let releaseCloseTarget: virFreeCallback = { opaque in
        guard let opaque else { return }
        Unmanaged<CloseTarget>.fromOpaque(opaque).release()
    }

    /// nil on success, else the reason.
    private func connect() -> String? {
        guard let conn = virConnectOpen(uri) else { return lastLibvirtError() }
        let forEvents = Unmanaged.passRetained(self).toOpaque()
        let id = virConnectDomainEventRegisterAny(conn, nil, Int32(VIR_DOMAIN_EVENT_ID_LIFECYCLE.rawValue),
            unsafeBitCast(Self.lifecycleCallback, to: virConnectDomainEventGenericCallback.self), forEvents, Self.releaseListener)
        guard id >= 0 else {
            let err = lastLibvirtError()
            Unmanaged<LibvirtListener>.fromOpaque(forEvents).release()
            virConnectClose(conn)
            return "cannot register for domain events: \(err)"
        }
        // Only remote drivers report a close.
        let forClose = Unmanaged.passRetained(CloseTarget(self)).toOpaque()
        if virConnectRegisterCloseCallback(conn, Self.closeCallback, forClose, Self.releaseCloseTarget) < 0 {
            Unmanaged<CloseTarget>.fromOpaque(forClose).release()
        }
        // A hung libvirtd is noticed within ~20 s; remote drivers only.
        _ = virConnectSetKeepAlive(conn, 5, 3)
        let opened = Connection(pointer: conn)
        state.withLock { s in s.conn = opened; s.callbackID = id; s.closed = false; s.connects += 1 }
        return nil
    }

    private func disconnect() {
        let (opened, id): (Connection?, Int32) = state.withLock { s in
            defer { s.conn = nil; s.callbackID = -1; s.closed = false }
            return (s.conn, s.callbackID)
        }
        guard let conn = opened?.pointer else { return }
        _ = virConnectDomainEventDeregisterAny(conn, id)
        _ = virConnectUnregisterCloseCallback(conn, Self.closeCallback)
        virConnectClose(conn)
    }

    // MARK: events

    private func lifecycle(_ dom: virDomainPtr, event: Int32, detail: Int32) {
        let e = UInt32(bitPattern: event)
        switch e {
        case VIR_DOMAIN_EVENT_STARTED.rawValue:
            emitLock.withLock { _ in domainRunning(dom) }
        case VIR_DOMAIN_EVENT_STOPPED.rawValue, VIR_DOMAIN_EVENT_SHUTDOWN.rawValue, VIR_DOMAIN_EVENT_CRASHED.rawValue:
            emitLock.withLock { _ in
                guard let uuid = Self.uuid(dom) else { return }
                domainGone(uuid)
            }
        default:
            break
        }
    }

    /// A running domain: online unless already known online with that OSID.
    private func domainRunning(_ dom: virDomainPtr) {
        guard let uuid = Self.uuid(dom) else { return }
        let name = virDomainGetName(dom).map { String(cString: $0) } ?? uuid
        switch readMetadata(dom, name: name) {
        case .none:
            return
        case .invalid(let reason):
            let first = state.withLock { $0.reportedInvalid.insert(uuid).inserted }
            if first {
                logger.error("domain has unusable pvz metadata; not brought online", metadata: ["domain": "\(name)", "error": "\(reason)"])
                onEvent(.invalid(domain: name, reason: reason))
            }
        case .valid(let md):
            let t = Tracked(osid: md.osid, priority: md.priority, name: name)
            let previous = state.withLock { s -> Tracked? in
                s.reportedInvalid.remove(uuid)
                defer { s.tracked[uuid] = t }
                return s.tracked[uuid]
            }
            if previous == t { return }
            if let previous, previous.osid != md.osid {
                onEvent(.offline(osid: previous.osid, domain: previous.name))
            }
            onEvent(.online(osid: md.osid, priority: md.priority, domain: name))
        }
    }

    private func domainGone(_ uuid: String) {
        let t: Tracked? = state.withLock { s in
            s.reportedInvalid.remove(uuid)
            return s.tracked.removeValue(forKey: uuid)
        }
        // Not tracked: never online through us, or already offline (SHUTDOWN
        // before STOPPED). Either way there is nothing to undo.
        if let t { onEvent(.offline(osid: t.osid, domain: t.name)) }
    }

    /// Lines the tracked set up with what libvirt says is running.
    private func resync() {
        guard let conn = state.withLock({ $0.conn })?.pointer else { return }
        var list: UnsafeMutablePointer<virDomainPtr?>? = nil
        let n = virConnectListAllDomains(conn, &list, UInt32(VIR_CONNECT_LIST_DOMAINS_ACTIVE.rawValue))
        guard n >= 0, let list else {
            logger.error("cannot list libvirt domains", metadata: ["error": "\(lastLibvirtError())"])
            return
        }
        defer {
            for i in 0..<Int(n) { if let d = list[i] { virDomainFree(d) } }
            free(list)
        }
        emitLock.withLock { _ in
            var running: Set<String> = []
            for i in 0..<Int(n) {
                guard let d = list[i], let uuid = Self.uuid(d) else { continue }
                running.insert(uuid)
                domainRunning(d)
            }
            let gone = state.withLock { s in s.tracked.keys.filter { !running.contains($0) } }
            for uuid in gone { domainGone(uuid) }
        }
    }

    private enum MetadataResult { case none, invalid(String), valid(PVZDomainMetadata) }

    private func readMetadata(_ dom: virDomainPtr, name: String) -> MetadataResult {
        guard let p = virDomainGetMetadata(dom, Int32(VIR_DOMAIN_METADATA_ELEMENT.rawValue),
                                           PVZDomainMetadata.namespaceURI, 0) else {
            if let err = virGetLastError(), err.pointee.code != Int32(VIR_ERR_NO_DOMAIN_METADATA.rawValue) {
                logger.warning("cannot read domain metadata", metadata: ["domain": "\(name)", "error": "\(lastLibvirtError())"])
            }
            return .none
        }
        let xml = String(cString: p)
        free(p)
        switch PVZDomainMetadata.parse(xml, maxOSIDs: maxOSIDs) {
        case .success(let md): return .valid(md)
        case .failure(let e): return .invalid(e.message)
        }
    }

    private static func uuid(_ dom: virDomainPtr) -> String? {
        var buf = [CChar](repeating: 0, count: Int(VIR_UUID_STRING_BUFLEN))
        guard virDomainGetUUIDString(dom, &buf) == 0 else { return nil }
        return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
