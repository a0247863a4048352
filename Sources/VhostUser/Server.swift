import CPVZShim
import Logging
import Synchronization
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

/// Serves one vhost-user socket (one guest) on one thread: accepts the
/// front-end, runs its messages and kicks from a single epoll loop, and
/// accepts again after a disconnect. One front-end at a time, as vhost-user is
/// point to point; a second connection is refused while one is served.
public final class VhostUserServer: @unchecked Sendable {
    private static let tagListen: UInt64 = 1 << 40
    private static let tagConnection: UInt64 = (1 << 40) + 1
    private static let tagWake: UInt64 = (1 << 40) + 2
    private static let tagKickBase: UInt64 = 0

    public let device: VhostUserDevice
    public let listenFD: Int32
    public let socketPath: String?
    private let logger: Logger
    private let waker: EventFD
    private let stopping = Atomic<Bool>(false)
    private let connectedFlag = Atomic<Bool>(false)
    private let connectionsServed = Atomic<Int>(0)
    /// Connection state for other threads to read.
    public let stats = EngineStats()
    /// Connection lines are rate-limited: a peer reconnecting in a loop must
    /// not flood the log (server thread only).
    private var connectionLog = RateLimit(burst: 20, perSecond: 2)
    /// The live connection; only the server thread touches it.
    public private(set) var backend: Backend?

    /// Listens on `socketPath` (an existing socket file is replaced).
    public convenience init(socketPath: String, device: VhostUserDevice, logger: Logger) throws(SystemError) {
        unlink(socketPath)
        let fd = pvz_unix_listen(socketPath, 1)
        if fd < 0 { throw SystemError("listen on \(socketPath)") }
        try self.init(listenFD: fd, socketPath: socketPath, device: device, logger: logger)
    }

    /// Serves an already listening socket (`--fd` from a management layer).
    public init(listenFD: Int32, socketPath: String? = nil, device: VhostUserDevice, logger: Logger) throws(SystemError) {
        self.listenFD = listenFD
        self.socketPath = socketPath
        self.device = device
        self.logger = logger
        self.waker = try EventFD()
    }

    public var isConnected: Bool { connectedFlag.load(ordering: .acquiring) }
    public var connections: Int { connectionsServed.load(ordering: .relaxed) }

    /// Rings the guest thread's doorbell: `device.wake` runs there next.
    public func wake() { waker.signal() }

    /// Asks the loop to end (thread-safe); `run` returns soon after.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        waker.signal()
    }

    /// The guest's event loop. Blocks until `stop()`.
    public func run() {
        let epoll: Epoll
        do {
            epoll = try Epoll()
            try epoll.add(listenFD, tag: Self.tagListen)
            try epoll.add(waker.fd, tag: Self.tagWake)
        } catch {
            logger.critical("cannot start the event loop: \(error)")
            return
        }
        while !stopping.load(ordering: .acquiring) {
            epoll.wait { tag in
                switch tag {
                case Self.tagListen: accept(epoll)
                case Self.tagConnection:
                    if let b = backend, !b.handleReadable() { disconnect(epoll, reason: b.endReason) }
                case Self.tagWake:
                    waker.drain()
                    if let b = backend { device.wake(b) }
                default:
                    let q = Int(tag - Self.tagKickBase)
                    if let b = backend, q < b.vrings.count { b.kicked(q) }
                }
            }
        }
        if backend != nil { disconnect(epoll, reason: .serverStopping) }
        close(listenFD)
        if let p = socketPath { unlink(p) }
        waker.close()
    }

    private func accept(_ epoll: Epoll) {
        let fd = pvz_accept_cloexec(listenFD)
        if fd < 0 { logger.warning("accept: \(SystemError("accept4"))"); return }
        if backend != nil {
            if let held = connectionLog.admit() {
                logger.warning("a second front-end tried to connect while one is served: refused\(held > 0 ? " (\(held) connection lines not logged)" : "")")
            }
            close(fd)
            return
        }
        var l = logger
        l[metadataKey: "conn"] = "\(connectionsServed.load(ordering: .relaxed) + 1)"
        let b = Backend(device: device, socketFD: fd, epoll: epoll, kickTagBase: Self.tagKickBase, logger: l, stats: stats)
        do { try epoll.add(fd, tag: Self.tagConnection) } catch {
            logger.error("cannot watch the front-end socket: \(error)")
            close(fd)
            return
        }
        backend = b
        connectionsServed.add(1, ordering: .relaxed)
        connectedFlag.store(true, ordering: .releasing)
        if let held = connectionLog.admit() {
            logger.info("front-end connected\(held > 0 ? " (\(held) connection lines not logged)" : "")")
        }
        device.frontEndConnected(b)
    }

    private func disconnect(_ epoll: Epoll, reason: DisconnectReason) {
        guard let b = backend else { return }
        epoll.remove(b.socketFD)
        device.frontEndDisconnected(b, reason: reason)
        b.teardown()
        close(b.socketFD)
        backend = nil
        connectedFlag.store(false, ordering: .releasing)
        stats.deviceStatus.store(0, ordering: .relaxed)
        let counts = b.messageCounts.sorted { $0.key < $1.key }
            .map { "\(FrontEndRequest(rawValue: $0.key)?.name ?? "#\($0.key)")=\($0.value)" }.joined(separator: " ")
        if let held = connectionLog.admit() {
            logger.info("front-end disconnected (\(reason)); messages seen: \(counts)\(held > 0 ? " (\(held) connection lines not logged)" : "")")
        }
    }
}
