import CPVZShim
import Logging
import Platform
import SafeSockets
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
    /// The socket file QEMU connects to, when there is one.
    public let socketFile: SocketFileIdentity?
    public var socketPath: String? { socketFile?.path }
    /// Removed at stop when ours (bound here), left in place when inherited.
    private let ownsSocketFile: Bool
    /// Who may be the front-end (SO_PEERCRED at accept).
    public let access: SocketAccess
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
    /// The live connection's socket (the back-end borrows it).
    private var connection: FileDescriptor?

    /// Listens on `socketPath` (SafeListener: a path that is not a socket, or
    /// a socket another process listens on, is refused; a stale one replaced).
    public convenience init(socketPath: String, access: SocketAccess = SocketAccess(), device: VhostUserDevice, logger: Logger) throws {
        let b = try SafeListener.bind(path: socketPath, access: access)
        do {
            try self.init(listenFD: b.fd, socketFile: b.identity, ownsSocketFile: true, access: access, device: device, logger: logger)
        } catch {
            close(b.fd)
            b.identity.unlinkIfOurs()
            throw error
        }
    }

    /// Serves an already listening Unix stream socket (`--fd`, systemd, or
    /// bound by the daemon before it entered its sandbox); anything else is refused.
    public init(listenFD: Int32, socketFile: SocketFileIdentity? = nil, ownsSocketFile: Bool = false, access: SocketAccess = SocketAccess(),
                device: VhostUserDevice, logger: Logger) throws {
        try SafeListener.checkListening(fd: listenFD, what: "vhost-user socket")
        self.listenFD = listenFD
        self.socketFile = socketFile
        self.ownsSocketFile = ownsSocketFile
        self.access = access
        self.device = device
        self.logger = logger
        self.waker = try EventFD()
    }

    /// Whether QEMU can reach this server now: the loop has not stopped, the
    /// socket listens, and its file (if any) is still the one at the path.
    public var isListening: Bool {
        !stopping.load(ordering: .acquiring) && SafeListener.isListening(listenFD) && (socketFile?.isInPlace ?? true)
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
                // After each batch: a SIGBUS in this guest's memory ends only this connection.
                if let b = backend, b.memoryFaulted() { disconnect(epoll, reason: .protocolError) }
            }
        }
        if backend != nil { disconnect(epoll, reason: .serverStopping) }
        close(listenFD)
        if ownsSocketFile { socketFile?.unlinkIfOurs() }
    }

    private func accept(_ epoll: Epoll) {
        let raw = pvz_accept_cloexec(listenFD)
        if raw < 0 { logger.warning("accept: \(SystemError("accept4"))"); return }
        let socket = FileDescriptor(taking: raw)
        let fd = socket.rawValue
        guard let peer = SocketPeer.of(fd), access.admits(peer) else {
            let who = SocketPeer.of(fd).map(\.description) ?? "unknown peer (SO_PEERCRED failed)"
            logger.warning("front-end refused: \(who) may not connect (allowed: \(access.describe()))")
            return
        }
        if backend != nil {
            if let held = connectionLog.admit() {
                logger.warning("a second front-end tried to connect while one is served: refused\(held > 0 ? " (\(held) connection lines not logged)" : "")")
            }
            return
        }
        var l = logger
        l[metadataKey: "conn"] = "\(connectionsServed.load(ordering: .relaxed) + 1)"
        let b = Backend(device: device, socketFD: fd, epoll: epoll, kickTagBase: Self.tagKickBase, logger: l, stats: stats)
        do { try epoll.add(fd, tag: Self.tagConnection) } catch {
            logger.error("cannot watch the front-end socket: \(error)")
            return
        }
        backend = b
        connection = consume socket
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
        backend = nil
        connection = nil
        connectedFlag.store(false, ordering: .releasing)
        stats.deviceStatus.store(0, ordering: .relaxed)
        let counts = b.messageCounts.sorted { $0.key < $1.key }
            .map { "\(FrontEndRequest(rawValue: $0.key)?.name ?? "#\($0.key)")=\($0.value)" }.joined(separator: " ")
        if let held = connectionLog.admit() {
            logger.info("front-end disconnected (\(reason)); messages seen: \(counts)\(held > 0 ? " (\(held) connection lines not logged)" : "")")
        }
    }
}
