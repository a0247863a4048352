import CPVZShim
import Glibc

/// Why a control request got no answer from the daemon. (A daemon that
/// answers `ok: false` is not an error here: that is a `ControlResponse`.)
public enum ControlClientError: Error, CustomStringConvertible, Equatable {
    /// No daemon on the socket (missing file, refused, permission).
    case unreachable(path: String, reason: String)
    /// Connected, but no complete answer within the timeout.
    case timedOut(path: String, seconds: Double)
    /// The daemon closed the connection or answered something unreadable.
    case badAnswer(path: String, reason: String)

    public var description: String {
        switch self {
        case .unreachable(let path, let reason):
            return "daemon unreachable at \(path): \(reason) (is vhost-user-pvz running?)"
        case .timedOut(let path, let seconds):
            return "daemon at \(path) did not answer within \(seconds) s"
        case .badAnswer(let path, let reason):
            return "daemon at \(path) gave no usable answer: \(reason)"
        }
    }
}

/// One connection per request: the CLI, the libvirt hook's equivalent and
/// the tests use it. Bounded in time so a hung daemon cannot hang a caller.
public struct ControlClient: Sendable {
    public var path: String
    public var timeoutSeconds: Double

    public init(path: String = ControlServer.defaultPath, timeoutSeconds: Double = 5) {
        self.path = path
        self.timeoutSeconds = timeoutSeconds
    }

    public func send(_ request: ControlRequest) throws(ControlClientError) -> ControlResponse {
        let line = try sendRaw(Array(ControlCodec.encodeRequest(request).utf8))
        do {
            return try ControlCodec.decodeResponse(line)
        } catch {
            throw .badAnswer(path: path, reason: "response is not a control-protocol JSON object")
        }
    }

    /// Sends bytes as one request line (a newline is appended) and returns
    /// the response line, newline excluded.
    public func sendRaw(_ request: [UInt8]) throws(ControlClientError) -> [UInt8] {
        let fd = pvz_unix_connect(path)
        guard fd >= 0 else {
            let e = errno
            throw .unreachable(path: path, reason: String(cString: strerror(e)))
        }
        defer { close(fd) }
        setSocketTimeouts(fd, seconds: timeoutSeconds)
        guard sendAll(fd, request + [0x0A]) else {
            if errno == EAGAIN || errno == EWOULDBLOCK { throw .timedOut(path: path, seconds: timeoutSeconds) }
            // The daemon may have refused us and closed before reading: its
            // one-line verdict is still worth reading.
            var reader = LineReader(fd: fd, limit: ControlCodec.maxResponseBytes)
            if case .line(let l) = reader.next() { return l }
            throw .badAnswer(path: path, reason: "connection closed while sending: \(String(cString: strerror(errno)))")
        }
        var reader = LineReader(fd: fd, limit: ControlCodec.maxResponseBytes)
        switch reader.next() {
        case .line(let l): return l
        case .timedOut: throw .timedOut(path: path, seconds: timeoutSeconds)
        case .eof: throw .badAnswer(path: path, reason: "connection closed without a response")
        case .tooLong: throw .badAnswer(path: path, reason: "response longer than \(ControlCodec.maxResponseBytes) bytes")
        case .failed(let e): throw .badAnswer(path: path, reason: String(cString: strerror(e)))
        }
    }
}
