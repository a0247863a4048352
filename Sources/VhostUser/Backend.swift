import CPVZShim
import Logging
import Platform
import Synchronization
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

/// One front-end connection: reads vhost-user messages, keeps the negotiated
/// state, the memory table and the vrings, and dispatches to the device.
/// One handler per message, in vhost-user.rst's order (libvhost-user's shape).
public final class Backend: BackendContext {
    /// Largest payload accepted; the biggest legal one is SET_MEM_TABLE (264) or
    /// GET/SET_CONFIG (12 + 256). A larger size cannot be skipped safely on a
    /// stream socket, so it ends the connection.
    public static let maxPayload = 4096
    public static let maxMemSlots: UInt64 = UInt64(GuestMemory.maxRegions)
    /// How long a message may take to arrive whole once its first byte is in,
    /// and a reply to leave. A front-end stalling longer ends only its own
    /// connection; QEMU sends each message with one sendmsg.
    public static let messageDeadlineMs = 1000

    public let device: VhostUserDevice
    public let socketFD: Int32
    public internal(set) var logger: Logger
    public internal(set) var memory: GuestMemory = .empty
    /// The front-end's dirty-page log (live migration): every memory table
    /// of this connection carries it to the writers.
    public let dirtyLog = DirtyLog()
    public let vrings: [Vring]
    public internal(set) var ackedFeatures: UInt64 = 0
    public internal(set) var ackedProtocolFeatures: ProtocolFeatures = []
    public internal(set) var deviceStatus: UInt8 = 0
    /// The back-end channel (SET_BACKEND_REQ_FD): notifications to the front-end.
    var backendChannel: FileDescriptor?
    /// A reply could not be sent whole: the stream is out of step, end it.
    var streamBroken = false
    /// Regions of earlier memory tables still alive (a firmware attach holds
    /// them): a SIGBUS there is this guest's too.
    var retiredRegions: [WeakRegion] = []
    var faultHandled = false
    let epoll: Epoll
    let kickTagBase: UInt64
    /// How many of each request arrived (the real sequence is logged at debug).
    public internal(set) var messageCounts: [UInt32: Int] = [:]
    /// Refused messages are the front-end's doing: their log lines are rate-limited.
    var refusals = RateLimit()
    /// Why `handleReadable` last returned false.
    public internal(set) var endReason: DisconnectReason = .frontEndClosed

    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: MessageHeader.size + maxPayload, alignment: 8)
    let replyBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: MessageHeader.size + maxPayload, alignment: 8)

    public var status: UInt8 {
        deviceStatus | (vrings.contains { $0.brokenReason != nil } ? DeviceStatus.needsReset : 0)
    }

    /// A device that migrates also logs its writes: QEMU refuses to migrate a
    /// vhost device without VHOST_F_LOG_ALL and LOG_SHMFD.
    public var offeredFeatures: UInt64 {
        device.deviceFeatures | VirtioFeature.protocolFeatures | (device.supportsMigration ? VirtioFeature.logAll : 0)
    }

    public var offeredProtocolFeatures: ProtocolFeatures {
        var p: ProtocolFeatures = [.mq, .replyAck, .backendReq, .resetDevice, .configureMemSlots, .status, .inflightShmfd]
        if device.configSize > 0 { p.insert(.config) }
        if device.supportsMigration { p.formUnion([.deviceState, .logShmfd]) }
        return p
    }

    let stats: EngineStats

    init(device: VhostUserDevice, socketFD: Int32, epoll: Epoll, kickTagBase: UInt64, logger: Logger, stats: EngineStats) {
        self.stats = stats
        stats.deviceStatus.store(0, ordering: .relaxed)
        stats.ackedFeatures.store(0, ordering: .relaxed)
        stats.needsReset.store(false, ordering: .relaxed)
        self.device = device
        self.socketFD = socketFD
        self.epoll = epoll
        self.kickTagBase = kickTagBase
        self.logger = logger
        self.vrings = (0..<device.queueCount).map { Vring(index: $0, maxSize: device.maxQueueSize) }
        self.memory = .empty(dirtyLog: dirtyLog)
        // Reads and writes on the stream are bounded by messageDeadlineMs, never blocking.
        Platform.setNonBlocking(socketFD)
    }

    /// A connection driven by the caller instead of `VhostUserServer` (fuzzing,
    /// in-process tests): the caller calls `handleReadable` when `socketFD` is
    /// readable and `kicked` for a kick. Kick fds are watched in its own epoll.
    public convenience init(device: VhostUserDevice, socketFD: Int32, logger: Logger) throws(SystemError) {
        self.init(device: device, socketFD: socketFD, epoll: try Epoll(), kickTagBase: 0, logger: logger, stats: EngineStats())
    }

    deinit {
        buffer.deallocate()
        replyBuffer.deallocate()
    }

    /// Releases everything the connection holds (fds, mappings). The socket is the caller's.
    public func teardown() {
        if let t = transfer { t.cancel(); _ = t.finish(); transfer = nil }
        for v in vrings {
            if v.started { stopRing(v) }
            v.closeFDs()
        }
        backendChannel = nil
        memory = .empty
        dirtyLog.reset()
    }


    /// The in-flight buffer shared with the front-end; it outlives this
    /// back-end (the front-end keeps it) so the next one can resubmit.
    var inflight: InflightRegion?
    var transfer: DeviceStateTransfer?
    /// Largest state a destination reads (a hostile source cannot make it grow without bound).
    public static let maxDeviceState = 1 << 20

    // MARK: BackendContext

    public func needsReset(queue: Int, reason: String) {
        guard queue < vrings.count else { return }
        let v = vrings[queue]
        if v.brokenReason == nil, let held = refusals.admit() {
            logger.error("queue \(queue) broken, device needs reset: \(reason)\(held > 0 ? " (\(held) more refusals not logged)" : "")")
        }
        takeBack(v, .broken)
        v.brokenReason = reason
        stats.needsReset.store(true, ordering: .relaxed)
        if let fd = v.kick?.rawValue { epoll.remove(fd) }
        if let fd = v.err?.rawValue { EventFD.signal(fd) }
        sendConfigChange()
    }

    public func sendConfigChange() {
        guard let channel = backendChannel?.rawValue, ackedProtocolFeatures.contains(.backendReq) else { return }
        var b = [UInt8](repeating: 0, count: MessageHeader.size)
        b.withUnsafeMutableBytes {
            MessageHeader(request: BackendRequest.configChangeMsg.rawValue, flags: MessageHeader.version, size: 0).encode(into: $0)
        }
        let r = b.withUnsafeBytes { pvz_send_with_fds(channel, $0.baseAddress, $0.count, nil, 0) }
        if r == MessageHeader.size { return }
        if r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
            logger.debug("CONFIG_CHANGE_MSG dropped: the front-end is not reading its back-end channel")
            return
        }
        // Part of a message went out: the channel's framing is lost for good.
        logger.warning("CONFIG_CHANGE_MSG not sent (\(r) bytes, \(SystemError("sendmsg"))): back-end channel closed")
        backendChannel = nil
    }

    // MARK: Guest memory that shrank

    /// Checked by the guest thread after each batch: true when an access to
    /// this guest's memory raised SIGBUS (the front-end shrank a file it
    /// mapped). Every vring then goes to NEEDS_RESET and the caller ends the
    /// connection; the daemon and other guests carry on.
    public func memoryFaulted() -> Bool {
        if faultHandled { return true }
        guard memory.faulted || retiredRegions.contains(where: { $0.region?.faulted == true })
            || inflight?.faulted == true || vrings.contains(where: { $0.inflight?.region.faulted == true }) else { return false }
        faultHandled = true
        let reason = "guest memory vanished under the daemon (SIGBUS: the front-end shrank the file behind a memory region or the in-flight buffer); closing the connection"
        for v in vrings { needsReset(queue: v.index, reason: reason) }
        return true
    }
}

/// A region of an earlier memory table, not kept alive by the connection.
struct WeakRegion {
    weak var region: MappedRegion?
    init(_ r: MappedRegion) { region = r }
}
