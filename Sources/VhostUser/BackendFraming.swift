import CPVZShim
import Logging
import Platform
import Synchronization
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

// Connection framing: one message in (header, payload, fds, a deadline on a
// partial message), replies out. Handlers never touch the socket themselves.
extension Backend {
    // MARK: - Reading messages

    /// Outcome of one handler, before the generic REPLY_ACK step.
    enum Outcome {
        case ok
        case failed(String)
        case replied
    }

    /// Reads and handles one message. Returns false when the connection is over
    /// (EOF, socket error, or a framing error that leaves the stream unusable).
    public func handleReadable() -> Bool {
        if streamBroken { return false }
        var fds = [Int32](repeating: -1, count: Int(PVZ_MAX_FDS))
        var nfds: Int32 = 0
        var ctrunc: Int32 = 0
        let n = fds.withUnsafeMutableBufferPointer { f in
            pvz_recv_with_fds(socketFD, buffer.baseAddress, MessageHeader.size, f.baseAddress, PVZ_MAX_FDS, &nfds, &ctrunc)
        }
        var received = Array(fds.prefix(Int(nfds)))
        defer { for fd in received where fd >= 0 { close(fd) } }
        if n == 0 { logger.info("front-end closed the connection"); return false }
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return true }  // nothing after all
        if n < 0 { logger.warning("reading vhost-user header failed: \(SystemError("recvmsg"))"); return false }
        let deadline = Deadline(ms: Self.messageDeadlineMs)
        if n < MessageHeader.size {
            guard readFully(buffer.baseAddress! + n, MessageHeader.size - n, deadline) else {
                logger.error("short vhost-user header: \(n) of \(MessageHeader.size) bytes, the rest did not come within \(Self.messageDeadlineMs) ms")
                endReason = .protocolError; return false
            }
        }
        let header = MessageHeader.decode(UnsafeRawBufferPointer(buffer))!
        if ctrunc != 0 {
            logger.error("request \(header.request): more than \(PVZ_MAX_FDS) file descriptors attached; closing connection")
            endReason = .protocolError; return false
        }
        if header.flags & MessageHeader.versionMask != MessageHeader.version {
            logger.error("request \(header.request): protocol version \(header.flags & MessageHeader.versionMask), only \(MessageHeader.version) is spoken; closing connection")
            endReason = .protocolError; return false
        }
        if Int(header.size) > Self.maxPayload {
            logger.error("request \(header.request): payload size \(header.size) exceeds the limit \(Self.maxPayload); closing connection")
            endReason = .protocolError; return false
        }
        if header.size > 0 && !readFully(buffer.baseAddress! + MessageHeader.size, Int(header.size), deadline) {
            logger.error("request \(header.request): connection ended or stalled more than \(Self.messageDeadlineMs) ms inside a \(header.size)-byte payload")
            endReason = .protocolError; return false
        }
        let payload = UnsafeRawBufferPointer(rebasing: buffer[MessageHeader.size ..< MessageHeader.size + Int(header.size)])

        guard let request = FrontEndRequest(rawValue: header.request) else {
            // Unknown codes are not counted by value: a front-end could grow the table at will.
            if let held = refusals.admit() {
                logger.warning("unknown vhost-user request \(header.request) (size \(header.size), \(received.count) fds): refused\(held > 0 ? " (\(held) more refusals not logged)" : "")")
            }
            if header.needsReply && ackedProtocolFeatures.contains(.replyAck) { sendAck(header, success: false) }
            return true
        }
        messageCounts[header.request, default: 0] += 1
        logger.debug("\(request.name) size=\(header.size) fds=\(received.count) flags=0x\(String(header.flags, radix: 16))")
        let outcome = dispatch(request, header, payload, &received)
        switch outcome {
        case .replied:
            break
        case .ok:
            if header.needsReply && ackedProtocolFeatures.contains(.replyAck) && !request.hasReply { sendAck(header, success: true) }
        case .failed(let why):
            if let held = refusals.admit() {
                logger.warning("\(request.name) refused: \(why)\(held > 0 ? " (\(held) more refusals not logged)" : "")")
            }
            if request.hasReply {
                sendReply(header, payloadSize: 0)  // an empty reply: the front-end sees the size mismatch
            } else if header.needsReply && ackedProtocolFeatures.contains(.replyAck) {
                sendAck(header, success: false)
            }
        }
        return !streamBroken
    }

    /// Reads the rest of a message; false on EOF, error, or when `deadline` passes.
    func readFully(_ p: UnsafeMutableRawPointer, _ count: Int, _ deadline: Deadline) -> Bool {
        var got = 0
        while got < count {
            var fds = [Int32](repeating: -1, count: Int(PVZ_MAX_FDS))
            var nfds: Int32 = 0, ctrunc: Int32 = 0
            let r = fds.withUnsafeMutableBufferPointer { f in
                pvz_recv_with_fds(socketFD, p + got, count - got, f.baseAddress, PVZ_MAX_FDS, &nfds, &ctrunc)
            }
            for i in 0..<Int(nfds) { close(fds[i]) }  // fds belong on the header only
            if r > 0 { got += r; continue }
            if r == 0 { return false }
            guard errno == EAGAIN || errno == EWOULDBLOCK, deadline.wait(socketFD, events: Int16(POLLIN)) else { return false }
        }
        return true
    }

    /// Sends all of `count` bytes within the message deadline, or marks the
    /// stream broken. `fd` (if any) rides on the first bytes.
    func sendFully(_ p: UnsafeRawPointer, _ count: Int, fd: Int32 = -1) -> Bool {
        let deadline = Deadline(ms: Self.messageDeadlineMs)
        var sent = 0
        var fds = fd
        while sent < count {
            let attach = sent == 0 && fd >= 0
            let r = withUnsafePointer(to: &fds) {
                pvz_send_with_fds(socketFD, p + sent, count - sent, attach ? $0 : nil, attach ? 1 : 0)
            }
            if r > 0 { sent += r; continue }
            guard r < 0, errno == EAGAIN || errno == EWOULDBLOCK, deadline.wait(socketFD, events: Int16(POLLOUT)) else {
                streamBroken = true
                endReason = .protocolError
                return false
            }
        }
        return true
    }

    // MARK: - Replies

    func sendReply(_ request: MessageHeader, payloadSize: Int, fd: Int32 = -1) {
        let h = MessageHeader(request: request.request, flags: MessageHeader.version | MessageHeader.replyFlag, size: UInt32(payloadSize))
        h.encode(into: replyBuffer)
        if !sendFully(replyBuffer.baseAddress!, MessageHeader.size + payloadSize, fd: fd) {
            logger.error("reply to request \(request.request) not sent whole within \(Self.messageDeadlineMs) ms (\(SystemError("sendmsg"))): closing connection")
        }
    }

    var replyPayload: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: replyBuffer[MessageHeader.size...])
    }

    func sendU64(_ request: MessageHeader, _ value: UInt64) {
        replyPayload.putLE64(0, value)
        sendReply(request, payloadSize: 8)
    }

    func sendAck(_ request: MessageHeader, success: Bool) {
        sendU64(request, success ? 0 : 1)
    }
}
