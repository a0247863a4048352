import CPVZShim
import Glibc
import Logging
import Platform
import SafeSockets
import Synchronization

/// The daemon's control socket: accepts on a Unix stream socket, lets in
/// only root and the daemon's own uid (SO_PEERCRED, not file modes: the mode
/// is a second fence, the credential check is the rule), reads bounded
/// request lines and answers each with one response line.
public final class ControlServer: @unchecked Sendable {
    public static let defaultPath = "/run/vhost-user-pvz/control.sock"

    public struct Options: Sendable {
        /// Mode of the socket file: 0600 (root/daemon only) or 0660 for a group.
        public var mode: mode_t = 0o600
        public var maxLineBytes = ControlCodec.maxRequestBytes
        /// Connections served at once; more are answered too_many_clients.
        public var maxClients = 32
        /// A client idle this long between requests is disconnected.
        public var idleTimeoutSeconds: Double = 30
        public init() {}
    }

    public let path: String
    private let handler: ControlHandler
    private let options: Options
    private let logger: Logger
    /// Read at each connection: the daemon may switch to its --user after binding.
    private var daemonUID: uid_t { geteuid() }
    /// A socket bound before start (by the daemon before entering its sandbox, or by systemd).
    private let preBound: (fd: Int32, file: SocketFileIdentity?, ownsFile: Bool)?
    private var socketFile: SocketFileIdentity?
    private var ownsSocketFile = true

    private struct State {
        var listenFD: Int32 = -1
        var stopping = false
        var clients: Set<Int32> = []
        var clientThreads: [Int32: OSThread] = [:]
        var finished: [OSThread] = []
    }
    private let state = Mutex(State())
    private var acceptThread: OSThread?

    public init(path: String = ControlServer.defaultPath, handler: ControlHandler, options: Options = Options(),
                logger: Logger = Logger(label: "pvz.control")) {
        self.path = path
        self.handler = handler
        self.options = options
        self.logger = logger
        self.preBound = nil
    }

    /// Serves a socket that is already bound and listening. `ownsSocketFile`
    /// false (systemd's socket) leaves the file in place at stop.
    public init(listening fd: Int32, path: String, socketFile: SocketFileIdentity?, ownsSocketFile: Bool, handler: ControlHandler,
                options: Options = Options(), logger: Logger = Logger(label: "pvz.control")) {
        self.path = path
        self.handler = handler
        self.options = options
        self.logger = logger
        self.preBound = (fd, socketFile, ownsSocketFile)
    }

    /// Binds the socket (creating its directory) and starts accepting.
    public func start() throws {
        let fd: Int32
        if let p = preBound {
            fd = p.fd
            socketFile = p.file
            ownsSocketFile = p.ownsFile
        } else {
            let b = try Self.bind(path: path, mode: options.mode)
            fd = b.fd
            socketFile = b.file
        }
        state.withLock { $0.listenFD = fd }
        acceptThread = try OSThread(name: "pvz-control") { [self] in acceptLoop(fd) }
        logger.info("control socket listening", metadata: ["path": "\(path)"])
    }

    /// Stops accepting, disconnects every client, waits for their threads
    /// and removes the socket file.
    public func stop() {
        let (fd, clients): (Int32, [Int32]) = state.withLock { s in
            if s.stopping { return (-1, []) }
            s.stopping = true
            return (s.listenFD, Array(s.clients))
        }
        guard fd >= 0 else { return }
        // shutdown() wakes a thread blocked in accept()/recv() on Linux; close
        // alone would not, and could hand the fd number to someone else.
        shutdown(fd, Int32(SHUT_RDWR))
        for c in clients { shutdown(c, Int32(SHUT_RDWR)) }
        acceptThread?.join()
        acceptThread = nil
        while true {
            let threads: [OSThread] = state.withLock { s in
                let t = Array(s.clientThreads.values) + s.finished
                s.clientThreads.removeAll(); s.finished.removeAll()
                return t
            }
            if threads.isEmpty { break }
            threads.forEach { $0.join() }
        }
        close(fd)
        if ownsSocketFile { socketFile?.unlinkIfOurs() }
        logger.info("control socket closed", metadata: ["path": "\(path)"])
    }

    deinit { stop() }

    /// Whether a peer may use the socket: root, or the uid the daemon runs as.
    public static func isAllowed(_ peer: PeerCredentials, daemonUID: uid_t = geteuid()) -> Bool {
        peer.uid == 0 || peer.uid == daemonUID
    }

    // MARK: socket set-up

    /// A path that is not a socket, or a socket another process listens on,
    /// is refused (SafeListener); a stale one is replaced.
    static func bind(path: String, mode: mode_t) throws -> (fd: Int32, file: SocketFileIdentity) {
        do {
            let b = try SafeListener.bind(path: path, access: SocketAccess(mode: mode), backlog: 64)
            return (b.fd, b.identity)
        } catch {
            throw SystemError("bind", errno: error.errno, context: error.message)
        }
    }

    // MARK: serving

    private func acceptLoop(_ listenFD: Int32) {
        while true {
            // accept4 is hidden behind _GNU_SOURCE in Glibc's module; the
            // daemon does not fork, so setting FD_CLOEXEC afterwards is enough.
            let fd = accept(listenFD, nil, nil)
            if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            if fd < 0 {
                let e = errno
                if state.withLock({ $0.stopping }) { return }
                if e == EINTR || e == ECONNABORTED { continue }
                if e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM {
                    // Out of descriptors: back off instead of spinning on the backlog.
                    logger.error("control accept failed", metadata: ["error": "\(SystemError("accept", errno: e))"])
                    usleep(100_000)
                    continue
                }
                logger.error("control accept failed; socket closed", metadata: ["error": "\(SystemError("accept", errno: e))"])
                return
            }
            admit(fd)
        }
    }

    private func admit(_ fd: Int32) {
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        guard pvz_peer_cred(fd, &pid, &uid, &gid) == 0 else {
            logger.warning("control peer credentials unavailable", metadata: ["error": "\(SystemError("getsockopt(SO_PEERCRED)"))"])
            refuse(fd, .failure(ControlErrorCode.permissionDenied, "peer credentials (SO_PEERCRED) unavailable; connection refused"))
            return
        }
        let peer = PeerCredentials(pid: pid, uid: uid, gid: gid)
        guard Self.isAllowed(peer, daemonUID: daemonUID) else {
            logger.warning("control peer refused", metadata: ["uid": "\(uid)", "pid": "\(pid)"])
            refuse(fd, .failure(ControlErrorCode.permissionDenied,
                "permission denied: peer uid \(uid) (pid \(pid)) may not use the control socket; only root (uid 0) and the daemon's uid \(daemonUID) may"))
            return
        }
        let admitted: Bool = state.withLock { s in
            guard !s.stopping, s.clients.count < options.maxClients else { return false }
            s.clients.insert(fd)
            return true
        }
        guard admitted else {
            refuse(fd, .failure(ControlErrorCode.tooManyClients,
                "too many control connections (limit \(options.maxClients)); retry later"))
            return
        }
        do {
            let t = try OSThread(name: "pvz-ctl-client") { [self] in serve(fd, peer) }
            state.withLock { s in
                // The client may already be done; then its thread goes to `finished`.
                if s.clients.contains(fd) { s.clientThreads[fd] = t } else { s.finished.append(t) }
                reap(&s)
            }
        } catch {
            state.withLock { _ = $0.clients.remove(fd) }
            refuse(fd, .failure(ControlErrorCode.internalError, "daemon could not start a thread for this connection: \(error)"))
        }
    }

    /// Joins client threads that have finished, so they do not pile up.
    private func reap(_ s: inout State) {
        // Joining under the lock is fine: a finished thread no longer takes it.
        let done = s.finished
        s.finished.removeAll()
        done.forEach { $0.join() }
    }

    private func refuse(_ fd: Int32, _ response: ControlResponse) {
        setSocketTimeouts(fd, seconds: 0.2)
        _ = sendAll(fd, Array((ControlCodec.encodeResponse(response) + "\n").utf8))
        // A client usually sends its request before reading; closing at once
        // would make that send fail (EPIPE) before it sees why. Read and drop
        // its first request (bounded in bytes and time), then close.
        shutdown(fd, Int32(SHUT_WR))
        var scratch = [UInt8](repeating: 0, count: 4096)
        var drained = 0
        while drained < options.maxLineBytes {
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { break }
            drained += n
            if scratch[..<n].contains(0x0A) { break }
        }
        close(fd)
    }

    private func serve(_ fd: Int32, _ peer: PeerCredentials) {
        setSocketTimeouts(fd, seconds: options.idleTimeoutSeconds)
        var reader = LineReader(fd: fd, limit: options.maxLineBytes)
        loop: while true {
            let response: ControlResponse
            var closeAfter = false
            switch reader.next() {
            case .line(let line):
                switch ControlCodec.decodeRequest(line) {
                case .success(let request):
                    response = handler.handle(request, peer: peer)
                case .failure(let e):
                    response = e.response
                }
            case .tooLong:
                // The rest of the line cannot be skipped safely without reading
                // it; closing is the bounded answer.
                response = .failure(ControlErrorCode.lineTooLong,
                    "request line longer than \(options.maxLineBytes) bytes (limit \(options.maxLineBytes)); connection closed")
                closeAfter = true
            case .timedOut:
                response = .failure(ControlErrorCode.idleTimeout,
                    "no request for \(options.idleTimeoutSeconds) s (idle limit); connection closed")
                closeAfter = true
            case .eof, .failed:
                break loop
            }
            if !sendAll(fd, Array((ControlCodec.encodeResponse(response) + "\n").utf8)) || closeAfter { break }
        }
        let t: OSThread? = state.withLock { s in
            s.clients.remove(fd)
            return s.stopping ? nil : s.clientThreads.removeValue(forKey: fd)
        }
        close(fd)
        if let t { state.withLock { $0.finished.append(t) } }
    }
}
