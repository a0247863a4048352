import Glibc

/// Writes all of `bytes` to a socket; false when the peer went away.
func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
        if n < 0 {
            if errno == EINTR { continue }
            return false
        }
        off += n
    }
    return true
}

/// Sets SO_RCVTIMEO/SO_SNDTIMEO; a zero duration means no timeout.
func setSocketTimeouts(_ fd: Int32, seconds: Double) {
    var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
}

/// Reads newline-terminated lines from a socket without ever holding more
/// than `limit` bytes of one line.
struct LineReader {
    enum Result: Equatable {
        case line([UInt8])
        /// The line passed the limit before a newline came.
        case tooLong
        case eof
        /// Receive timeout (SO_RCVTIMEO) ran out.
        case timedOut
        case failed(Int32)
    }

    let fd: Int32
    let limit: Int
    private var buffer: [UInt8] = []
    private var scanned = 0

    init(fd: Int32, limit: Int) { self.fd = fd; self.limit = limit }

    mutating func next() -> Result {
        while true {
            if let nl = buffer[scanned...].firstIndex(of: 0x0A) {
                var line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                scanned = 0
                if line.last == 0x0D { line.removeLast() }
                if line.count > limit { return .tooLong }
                return .line(line)
            }
            scanned = buffer.count
            // One byte of slack for a CR before the newline.
            if buffer.count > limit + 1 { return .tooLong }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 { return .eof }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return .timedOut }
                return .failed(errno)
            }
            buffer.append(contentsOf: chunk[..<n])
        }
    }
}
