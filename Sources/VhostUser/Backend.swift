import CPVZShim
import Logging
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
    public private(set) var logger: Logger
    public private(set) var memory: GuestMemory = .empty
    /// The front-end's dirty-page log (live migration): every memory table
    /// of this connection carries it to the writers.
    public let dirtyLog = DirtyLog()
    public let vrings: [Vring]
    public private(set) var ackedFeatures: UInt64 = 0
    public private(set) var ackedProtocolFeatures: ProtocolFeatures = []
    public private(set) var owned = false
    public private(set) var deviceStatus: UInt8 = 0
    private var backendChannelFD: Int32 = -1
    /// A reply could not be sent whole: the stream is out of step, end it.
    private var streamBroken = false
    /// Regions of earlier memory tables still alive (a firmware attach holds
    /// them): a SIGBUS there is this guest's too.
    private var retiredRegions: [WeakRegion] = []
    private var faultHandled = false
    private let epoll: Epoll
    private let kickTagBase: UInt64
    /// How many of each request arrived (the real sequence is logged at debug).
    public private(set) var messageCounts: [UInt32: Int] = [:]
    public private(set) var protocolErrors = 0
    /// Refused messages are the front-end's doing: their log lines are rate-limited.
    private var refusals = RateLimit()
    /// Why `handleReadable` last returned false.
    public private(set) var endReason: DisconnectReason = .frontEndClosed

    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: MessageHeader.size + maxPayload, alignment: 8)
    private let replyBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: MessageHeader.size + maxPayload, alignment: 8)

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
        setNonBlocking(socketFD)
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
        closeIfOpen(&backendChannelFD)
        memory = .empty
        dirtyLog.reset()
    }

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
        stats.messages.add(1, ordering: .relaxed)

        guard let request = FrontEndRequest(rawValue: header.request) else {
            // Unknown codes are not counted by value: a front-end could grow the table at will.
            protocolErrors += 1
            stats.protocolErrors.add(1, ordering: .relaxed)
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
            protocolErrors += 1
            stats.protocolErrors.add(1, ordering: .relaxed)
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
    private func readFully(_ p: UnsafeMutableRawPointer, _ count: Int, _ deadline: Deadline) -> Bool {
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
    private func sendFully(_ p: UnsafeRawPointer, _ count: Int, fd: Int32 = -1) -> Bool {
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

    private func sendReply(_ request: MessageHeader, payloadSize: Int, fd: Int32 = -1) {
        let h = MessageHeader(request: request.request, flags: MessageHeader.version | MessageHeader.replyFlag, size: UInt32(payloadSize))
        h.encode(into: replyBuffer)
        if !sendFully(replyBuffer.baseAddress!, MessageHeader.size + payloadSize, fd: fd) {
            logger.error("reply to request \(request.request) not sent whole within \(Self.messageDeadlineMs) ms (\(SystemError("sendmsg"))): closing connection")
        }
    }

    private var replyPayload: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: replyBuffer[MessageHeader.size...])
    }

    private func sendU64(_ request: MessageHeader, _ value: UInt64) {
        replyPayload.putLE64(0, value)
        sendReply(request, payloadSize: 8)
    }

    private func sendAck(_ request: MessageHeader, success: Bool) {
        sendU64(request, success ? 0 : 1)
    }

    // MARK: - Dispatch

    private func dispatch(_ r: FrontEndRequest, _ h: MessageHeader, _ p: UnsafeRawBufferPointer, _ fds: inout [Int32]) -> Outcome {
        // Descriptor count check first: a message with the wrong fds is refused whole.
        let expected: ClosedRange<Int>
        switch r {
        case .setMemTable: expected = p.count >= 4 ? Int(min(p.le32(0), 8))...Int(min(p.le32(0), 8)) : 0...0
        case .addMemReg, .setBackendReqFD, .setLogFD, .setInflightFD, .setDeviceStateFD, .setLogBase: expected = 1...1
        case .remMemReg: expected = 0...1
        case .setVringKick, .setVringCall, .setVringErr:
            expected = p.count == 8 && VringFDPayload(p.le64(0)).noFD ? 0...0 : 1...1
        default: expected = 0...0
        }
        if !expected.contains(fds.count) {
            return .failed("\(fds.count) file descriptors attached, expected \(expected.lowerBound == expected.upperBound ? "\(expected.lowerBound)" : "\(expected.lowerBound)...\(expected.upperBound)")")
        }
        switch r {
        case .getFeatures: return getFeatures(h, p)
        case .setFeatures: return setFeatures(p)
        case .setOwner: owned = true; return .ok
        case .resetOwner: resetAll(); return .ok
        case .setMemTable: return setMemTable(p, &fds)
        case .setVringNum: return setVringNum(p)
        case .setVringAddr: return setVringAddr(p)
        case .setVringBase: return setVringBase(p)
        case .getVringBase: return getVringBase(h, p)
        case .setVringKick: return setVringFD(p, &fds, kind: .kick)
        case .setVringCall: return setVringFD(p, &fds, kind: .call)
        case .setVringErr: return setVringFD(p, &fds, kind: .err)
        case .getProtocolFeatures: return getProtocolFeatures(h, p)
        case .setProtocolFeatures: return setProtocolFeatures(p)
        case .getQueueNum: return getQueueNum(h, p)
        case .setVringEnable: return setVringEnable(p)
        case .setBackendReqFD: return setBackendReqFD(&fds)
        case .getConfig: return getConfig(h, p)
        case .setConfig: return setConfig(p)
        case .resetDevice: resetAll(); return .ok
        case .getMaxMemSlots: return getMaxMemSlots(h, p)
        case .addMemReg: return addMemReg(p, &fds)
        case .remMemReg: return remMemReg(p)
        case .setStatus: return setStatus(p)
        case .getStatus: return getStatus(h, p)
        case .getInflightFD: return getInflightFD(h, p)
        case .setDeviceStateFD: return setDeviceStateFD(h, p, &fds)
        case .checkDeviceState: return checkDeviceState(h, p)
        case .setInflightFD: return setInflightFD(p, &fds)
        case .setLogBase: return setLogBase(h, p, &fds)
        default:
            return .failed("not supported by this back-end (its feature was not offered)")
        }
    }

    private func expectSize(_ p: UnsafeRawBufferPointer, _ size: Int, _ name: String) -> String? {
        p.count == size ? nil : "payload of \(p.count) bytes, expected \(size)"
    }

    private func vring(_ index: UInt32) -> Vring? {
        Int(index) < vrings.count ? vrings[Int(index)] : nil
    }

    private func badIndex(_ index: UInt32) -> Outcome {
        .failed("vring index \(index) out of range (device has \(vrings.count) queues)")
    }

    // MARK: Features

    private func getFeatures(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        if p.count != 0 && p.count != 8 { return .failed("payload of \(p.count) bytes, expected 0 or 8") }
        sendU64(h, offeredFeatures)
        return .replied
    }

    private func setFeatures(_ p: UnsafeRawBufferPointer) -> Outcome {
        if let e = expectSize(p, 8, "SET_FEATURES") { return .failed(e) }
        let f = p.le64(0)
        let unknown = f & ~offeredFeatures
        if unknown != 0 { return .failed("features 0x\(String(f, radix: 16)) include bits 0x\(String(unknown, radix: 16)) never offered (offered 0x\(String(offeredFeatures, radix: 16)))") }
        ackedFeatures = f
        stats.ackedFeatures.store(f, ordering: .relaxed)
        let logAll = f & VirtioFeature.logAll != 0
        if logAll != dirtyLog.logAll {
            logger.info("dirty-page logging \(logAll ? "on (a migration copies guest RAM)" : "off")")
        }
        dirtyLog.setLogAll(logAll)
        for v in vrings where v.queue != nil {
            v.queue!.eventIdx = f & RingFeature.eventIdx != 0
            v.queue!.indirect = f & RingFeature.indirectDesc != 0
        }
        // Without PROTOCOL_FEATURES rings are enabled as soon as they start.
        if f & VirtioFeature.protocolFeatures == 0 { for v in vrings { v.enabled = true } }
        return .ok
    }

    private func getProtocolFeatures(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        if p.count != 0 && p.count != 8 { return .failed("payload of \(p.count) bytes, expected 0 or 8") }
        sendU64(h, offeredProtocolFeatures.rawValue)
        return .replied
    }

    private func setProtocolFeatures(_ p: UnsafeRawBufferPointer) -> Outcome {
        if let e = expectSize(p, 8, "") { return .failed(e) }
        let f = ProtocolFeatures(rawValue: p.le64(0))
        let unknown = f.subtracting(offeredProtocolFeatures)
        if !unknown.isEmpty { return .failed("protocol features 0x\(String(f.rawValue, radix: 16)) include bits 0x\(String(unknown.rawValue, radix: 16)) never offered") }
        ackedProtocolFeatures = f
        return .ok
    }

    private func getQueueNum(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        if p.count != 0 && p.count != 8 { return .failed("payload of \(p.count) bytes, expected 0 or 8") }
        sendU64(h, UInt64(vrings.count))
        return .replied
    }

    private func getMaxMemSlots(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        if p.count != 0 && p.count != 8 { return .failed("payload of \(p.count) bytes, expected 0 or 8") }
        sendU64(h, Self.maxMemSlots)
        return .replied
    }

    // MARK: Memory

    private func setMemTable(_ p: UnsafeRawBufferPointer, _ fds: inout [Int32]) -> Outcome {
        guard let table = MemoryTablePayload.decode(p) else {
            return .failed("memory table payload of \(p.count) bytes is malformed (count \(p.count >= 4 ? p.le32(0) : 0), limit \(MemoryTablePayload.maxRegions) regions of 32 bytes)")
        }
        if table.regions.count != fds.count { return .failed("\(table.regions.count) regions but \(fds.count) fds") }
        let ds = table.regions.map { MemoryRegionDescriptor(guestPhysAddr: $0.guestPhysAddr, size: $0.memorySize, userAddr: $0.userAddr, mmapOffset: $0.mmapOffset) }
        do {
            let m = try GuestMemory(descriptors: ds, fds: fds, dirtyLog: dirtyLog)
            installMemory(m)
        } catch {
            return .failed(error.description)
        }
        return .ok
    }

    private func addMemReg(_ p: UnsafeRawBufferPointer, _ fds: inout [Int32]) -> Outcome {
        guard let msg = SingleRegionPayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected \(SingleRegionPayload.size)") }
        let r = msg.region
        let d = MemoryRegionDescriptor(guestPhysAddr: r.guestPhysAddr, size: r.memorySize, userAddr: r.userAddr, mmapOffset: r.mmapOffset)
        if memory.regions.count >= GuestMemory.maxRegions {
            return .failed("memory table already holds \(memory.regions.count) regions, limit \(GuestMemory.maxRegions)")
        }
        do {
            try GuestMemory.validate([d])
            let region = try MappedRegion(fd: fds[0], d, index: memory.regions.count)
            installMemory(try memory.adding(region))
        } catch {
            return .failed(error.description)
        }
        return .ok
    }

    private func remMemReg(_ p: UnsafeRawBufferPointer) -> Outcome {
        guard let msg = SingleRegionPayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected \(SingleRegionPayload.size)") }
        let r = msg.region
        do {
            installMemory(try memory.removing(MemoryRegionDescriptor(guestPhysAddr: r.guestPhysAddr, size: r.memorySize, userAddr: r.userAddr, mmapOffset: r.mmapOffset)))
        } catch {
            return .failed(error.description)
        }
        return .ok
    }

    /// Swaps the memory table and re-resolves every started ring against it.
    private func installMemory(_ m: GuestMemory) {
        retiredRegions.removeAll { $0.region == nil }
        for r in memory.regions where !m.regions.contains(where: { $0 === r }) { retiredRegions.append(WeakRegion(r)) }
        memory = m
        for v in vrings where v.started {
            if !buildQueue(v) { needsReset(queue: v.index, reason: "ring addresses no longer inside the memory table") }
        }
        device.memoryChanged(self)
    }

    // MARK: Vrings

    private func setVringNum(_ p: UnsafeRawBufferPointer) -> Outcome {
        guard let s = VringStatePayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected 8") }
        guard let v = vring(s.index) else { return badIndex(s.index) }
        guard s.num <= UInt32(UInt16.max), SplitQueue.validSize(UInt16(s.num), max: device.maxQueueSize) else {
            return .failed("queue \(s.index) size \(s.num) is not a power of two in 1...\(device.maxQueueSize)")
        }
        if v.started { return .failed("queue \(s.index) is started; stop it (GET_VRING_BASE) before resizing") }
        v.size = UInt16(s.num)
        if v.kickSet && v.addr != nil { return startRing(v) }
        return .ok
    }

    private func setVringAddr(_ p: UnsafeRawBufferPointer) -> Outcome {
        guard let a = VringAddrPayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected \(VringAddrPayload.size)") }
        guard let v = vring(a.index) else { return badIndex(a.index) }
        v.addr = a
        if v.started && !buildQueue(v) { return .failed("queue \(a.index) ring addresses are not inside the memory table") }
        if !v.started && v.kickSet && v.size > 0 { return startRing(v) }
        return .ok
    }

    private func setVringBase(_ p: UnsafeRawBufferPointer) -> Outcome {
        guard let s = VringStatePayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected 8") }
        guard let v = vring(s.index) else { return badIndex(s.index) }
        guard s.num <= UInt32(UInt16.max) else { return .failed("queue \(s.index) base \(s.num) exceeds 65535 (split ring)") }
        if v.started { return .failed("queue \(s.index) is started; its base cannot change") }
        v.base = UInt16(s.num)
        return .ok
    }

    private func getVringBase(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        guard let s = VringStatePayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected 8") }
        guard let v = vring(s.index) else { return badIndex(s.index) }
        if v.started { stopRing(v) }
        closeIfOpen(&v.kickFD)
        v.kickSet = false
        VringStatePayload(index: s.index, num: UInt32(v.base)).encode(into: replyPayload)
        sendReply(h, payloadSize: VringStatePayload.size)
        return .replied
    }

    enum FDKind { case kick, call, err }

    private func setVringFD(_ p: UnsafeRawBufferPointer, _ fds: inout [Int32], kind: FDKind) -> Outcome {
        if let e = expectSize(p, 8, "") { return .failed(e) }
        let raw = p.le64(0)
        let f = VringFDPayload(raw)
        if raw & ~(VringFDPayload.indexMask | VringFDPayload.noFDFlag) != 0 {
            return .failed("reserved bits set in 0x\(String(raw, radix: 16))")
        }
        guard let v = vring(f.index) else { return badIndex(f.index) }
        let fd: Int32 = f.noFD ? -1 : fds[0]
        if !f.noFD { fds[0] = -1 }  // ownership moves to the vring
        // A call or err fd nobody reads (a full pipe, say) must not block the guest thread.
        switch kind {
        case .call:
            closeIfOpen(&v.callFD); v.callFD = fd
            if fd >= 0 { setNonBlocking(fd) }
        case .err:
            closeIfOpen(&v.errFD); v.errFD = fd
            if fd >= 0 { setNonBlocking(fd) }
        case .kick:
            if v.started { stopRing(v) }
            closeIfOpen(&v.kickFD)
            v.kickFD = fd
            if fd >= 0 { setNonBlocking(fd) }
            // The ring starts on SET_VRING_KICK (vhost-user.rst "Starting and stopping rings").
            return startRing(v)
        }
        return .ok
    }

    private func setVringEnable(_ p: UnsafeRawBufferPointer) -> Outcome {
        guard let s = VringStatePayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected 8") }
        guard let v = vring(s.index) else { return badIndex(s.index) }
        guard s.num <= 1 else { return .failed("queue \(s.index) enable value \(s.num), expected 0 or 1") }
        if ackedFeatures & VirtioFeature.protocolFeatures == 0 && ackedFeatures != 0 {
            return .failed("SET_VRING_ENABLE without VHOST_USER_F_PROTOCOL_FEATURES negotiated")
        }
        let was = v.enabled
        v.enabled = s.num == 1
        if v.enabled && !was && v.isLive { device.queueKicked(v.index, self) }
        return .ok
    }

    private func startRing(_ v: Vring) -> Outcome {
        v.kickSet = true
        // A kick before the ring's size or addresses: start once they arrive.
        guard v.size > 0, v.addr != nil else {
            logger.debug("queue \(v.index): kick fd before SET_VRING_NUM/ADDR; the ring starts when both are set")
            return .ok
        }
        guard buildQueue(v) else {
            return .failed("queue \(v.index) ring addresses (desc 0x\(String(v.addr!.desc, radix: 16)), avail 0x\(String(v.addr!.avail, radix: 16)), used 0x\(String(v.addr!.used, radix: 16))) are not inside the memory table, or misaligned")
        }
        v.started = true
        v.brokenReason = nil
        v.inflight = inflight?.queue(v.index)
        let resubmitted = v.resumeFromInflight()
        if resubmitted > 0 {
            logger.info("queue \(v.index): resubmitting \(resubmitted) chains left in flight by the previous back-end")
        }
        if v.kickFD >= 0 {
            do { try epoll.add(v.kickFD, tag: kickTagBase + UInt64(v.index)) } catch {
                v.started = false
                return .failed("queue \(v.index): \(error)")
            }
        } else {
            logger.warning("queue \(v.index) started without a kick fd: it is served only when enabled or woken")
        }
        device.queueStarted(v.index, self)
        if v.isLive { device.queueKicked(v.index, self) }
        return .ok
    }

    @discardableResult
    private func buildQueue(_ v: Vring) -> Bool {
        guard let a = v.addr, v.size > 0 else { return false }
        do {
            let layout = try SplitQueue.layout(size: v.size, desc: a.desc, avail: a.avail, used: a.used) { memory.translate(userAddr: $0, length: $1) }
            // Resume from the live indices when re-resolving a running queue.
            var q = SplitQueue(size: v.size, layout: layout,
                               base: v.queue?.lastAvailIdx ?? v.base, usedIdx: v.queue?.usedIdx,
                               eventIdx: ackedFeatures & RingFeature.eventIdx != 0,
                               indirect: ackedFeatures & RingFeature.indirectDesc != 0)
            q.usedLog = a.flags & VringAddrPayload.logFlag != 0 ? (dirtyLog, a.log) : nil
            v.queue = q
            return true
        } catch {
            logger.warning("queue \(v.index): \(error)")
            v.queue = nil
            return false
        }
    }

    private func stopRing(_ v: Vring) {
        if v.kickFD >= 0 { epoll.remove(v.kickFD) }
        // The device returns what it popped while the ring is still there.
        device.queueStopping(v.index, self)
        if let q = v.queue { v.base = q.lastAvailIdx }
        v.started = false
        v.queue = nil
        v.inflight = nil
        v.forgetResubmits()
        device.queueStopped(v.index, self)
    }

    /// Kick eventfd of queue `index` fired.
    public func kicked(_ index: Int) {
        guard index >= 0, index < vrings.count else { return }
        let v = vrings[index]
        if v.kickFD >= 0 { EventFD.drain(v.kickFD) }
        if v.isLive { device.queueKicked(index, self) }
    }

    // MARK: In-flight tracking (INFLIGHT_SHMFD)

    /// The in-flight buffer shared with the front-end; it outlives this
    /// back-end (the front-end keeps it) so the next one can resubmit.
    private var inflight: InflightRegion?

    private func getInflightFD(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        guard let m = InflightPayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected \(InflightPayload.size)") }
        do {
            let r = try InflightRegion(numQueues: m.numQueues, queueSize: m.queueSize,
                                       maxQueues: vrings.count, maxQueueSize: device.maxQueueSize)
            inflight = r
            r.payload.encode(into: replyPayload)
            sendReply(h, payloadSize: InflightPayload.size, fd: r.fd)
            return .replied
        } catch {
            return .failed(error.description)
        }
    }

    private func setInflightFD(_ p: UnsafeRawBufferPointer, _ fds: inout [Int32]) -> Outcome {
        guard let m = InflightPayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected \(InflightPayload.size)") }
        let fd = fds[0]
        fds[0] = -1
        do {
            inflight = try InflightRegion(fd: fd, m, maxQueues: vrings.count, maxQueueSize: device.maxQueueSize)
        } catch {
            return .failed(error.description)
        }
        return .ok
    }

    // MARK: Dirty-page log (live migration)

    /// SET_LOG_BASE (LOG_SHMFD): the log to mark, as an fd. With LOG_SHMFD
    /// QEMU blocks until it is answered (it does not read the answer), so a
    /// refusal is answered too; a log that cannot be mapped is remembered,
    /// and the state save refuses (see `setDeviceStateFD`).
    private func setLogBase(_ h: MessageHeader, _ p: UnsafeRawBufferPointer, _ fds: inout [Int32]) -> Outcome {
        guard ackedProtocolFeatures.contains(.logShmfd) else { return .failed("SET_LOG_BASE without LOG_SHMFD negotiated (the log must come as an fd)") }
        func refuse(_ why: String) -> Outcome {
            logger.error("SET_LOG_BASE refused: \(why); a migration now fails at the state save")
            sendU64(h, 1)
            return .replied
        }
        guard p.count == 16 else {
            _ = try? dirtyLog.install(fd: -1, size: 0, offset: 0)  // remembered as the failure
            return refuse("payload of \(p.count) bytes, expected 16 (mmap size, mmap offset)")
        }
        let size = p.le64(0), offset = p.le64(8)
        do {
            try dirtyLog.install(fd: fds[0], size: size, offset: offset)
        } catch {
            return refuse(error.description)
        }
        logger.info("dirty log mapped: \(size) bytes at offset \(offset) (guest physical space up to \((size * 8 * DirtyLog.pageSize) >> 20) MiB)")
        sendU64(h, 0)
        return .replied
    }

    // MARK: Device state (live migration)

    private var transfer: DeviceStateTransfer?
    /// Largest state a destination reads (a hostile source cannot make it grow without bound).
    public static let maxDeviceState = 1 << 20

    private func setDeviceStateFD(_ h: MessageHeader, _ p: UnsafeRawBufferPointer, _ fds: inout [Int32]) -> Outcome {
        func reply(_ code: UInt64) -> Outcome {
            sendU64(h, code | DeviceStateTransferPayload.replyNoFD)
            return .replied
        }
        guard ackedProtocolFeatures.contains(.deviceState) else { return .failed("DEVICE_STATE was not negotiated") }
        guard let m = DeviceStateTransferPayload.decode(p) else {
            logger.error("SET_DEVICE_STATE_FD: payload of \(p.count) bytes, expected \(DeviceStateTransferPayload.size)")
            return reply(1)
        }
        guard m.phase == DeviceStateTransferPayload.phaseStopped, let dir = DeviceStateTransferPayload.Direction(rawValue: m.direction) else {
            logger.error("SET_DEVICE_STATE_FD: direction \(m.direction) phase \(m.phase) not supported (save 0 / load 1, phase 0 stopped)")
            return reply(1)
        }
        if let running = vrings.first(where: { $0.started }) {
            logger.error("SET_DEVICE_STATE_FD: queue \(running.index) still runs; the device must be stopped first")
            return reply(1)
        }
        if let old = transfer { _ = old.finish() }
        var bytes: [UInt8] = []
        if dir == .save, let why = dirtyLog.failure {
            // Pages this daemon wrote may be missing from the copy: the migration must fail.
            logger.error("device state save refused: \(why)")
            return reply(1)
        }
        if dir == .save {
            switch device.saveState(self) {
            case .success(let b): bytes = b
            case .failure(let e):
                logger.error("saving the device state: \(e)")
                return reply(1)
            }
        }
        let fd = fds[0]
        fds[0] = -1
        transfer = DeviceStateTransfer(direction: dir, fd: fd, bytes: bytes, limit: Self.maxDeviceState)
        logger.info("device state \(dir == .save ? "save (\(bytes.count) bytes)" : "load") started")
        return reply(0)
    }

    private func checkDeviceState(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        guard ackedProtocolFeatures.contains(.deviceState) else { return .failed("DEVICE_STATE was not negotiated") }
        guard let t = transfer else {
            logger.error("CHECK_DEVICE_STATE without a transfer")
            sendU64(h, 1)
            return .replied
        }
        transfer = nil
        let (bytes, error) = t.finish()
        if let error {
            logger.error("device state \(t.direction == .save ? "save" : "load") failed: \(error)")
            sendU64(h, 1)
            return .replied
        }
        if t.direction == .load, let refusal = device.loadState(bytes, self) {
            logger.error("device state refused: \(refusal)")
            sendU64(h, 1)
            return .replied
        }
        logger.info("device state \(t.direction == .save ? "saved" : "loaded (\(bytes.count) bytes)")")
        sendU64(h, 0)
        return .replied
    }

    // MARK: Config, status, back-end channel

    private func getConfig(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        guard let c = ConfigPayload.decode(p) else { return .failed("config payload of \(p.count) bytes is malformed") }
        let size = device.configSize
        guard Int(c.offset) + Int(c.size) <= size else {
            return .failed("config read at offset \(c.offset) size \(c.size) exceeds the \(size)-byte config space")
        }
        var full = [UInt8](repeating: 0, count: size)
        full.withUnsafeMutableBytes { device.readConfig(into: $0) }
        c.encodeHeader(into: replyPayload)
        for i in 0..<Int(c.size) { replyPayload[ConfigPayload.headerSize + i] = full[Int(c.offset) + i] }
        sendReply(h, payloadSize: ConfigPayload.headerSize + Int(c.size))
        return .replied
    }

    private func setConfig(_ p: UnsafeRawBufferPointer) -> Outcome {
        guard let c = ConfigPayload.decode(p) else { return .failed("config payload of \(p.count) bytes is malformed") }
        // Config space is read-only (virtio-pvz.md section 4): a whole-buffer write
        // cannot say which field the guest meant.
        return .failed("config space is read-only (write of \(c.size) bytes at offset \(c.offset) ignored)")
    }

    private func setBackendReqFD(_ fds: inout [Int32]) -> Outcome {
        closeIfOpen(&backendChannelFD)
        backendChannelFD = fds[0]
        fds[0] = -1
        // Notifications only: when the front-end does not read them they are dropped, never waited for.
        setNonBlocking(backendChannelFD)
        return .ok
    }

    private func getStatus(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        if p.count != 0 && p.count != 8 { return .failed("payload of \(p.count) bytes, expected 0 or 8") }
        sendU64(h, UInt64(status))
        return .replied
    }

    private func setStatus(_ p: UnsafeRawBufferPointer) -> Outcome {
        if let e = expectSize(p, 8, "") { return .failed(e) }
        let v = p.le64(0)
        guard v <= 0xff else { return .failed("status 0x\(String(v, radix: 16)) does not fit in 8 bits") }
        let old = deviceStatus
        deviceStatus = UInt8(v)
        stats.deviceStatus.store(deviceStatus, ordering: .relaxed)
        // Status 0 is what QEMU sends whenever it stops the device (VM paused,
        // migration, and the first half of a guest reset): the rings stop, the
        // device keeps its state. A real reset follows as RESET_DEVICE.
        if v == 0 { resetRings() } else { device.statusChanged(from: old, to: deviceStatus, self) }
        return .ok
    }

    /// RESET_DEVICE / RESET_OWNER: the rings stop and the device forgets
    /// everything it held for this front-end's guest (a new boot follows).
    private func resetAll() {
        resetRings()
        device.reset(self)
    }

    private func resetRings() {
        for v in vrings {
            if v.started { stopRing(v) }
            // QEMU sets the error eventfd once, at init (vhost_virtqueue_init),
            // and kick/call at every start: a reset must keep the first.
            v.closeKickAndCall()
            v.enabled = false
            v.size = 0
            v.addr = nil
            v.base = 0
            v.kickSet = false
            v.brokenReason = nil
        }
        deviceStatus = 0
        stats.deviceStatus.store(0, ordering: .relaxed)
        stats.needsReset.store(false, ordering: .relaxed)
    }

    // MARK: BackendContext

    public func needsReset(queue: Int, reason: String) {
        guard queue < vrings.count else { return }
        let v = vrings[queue]
        if v.brokenReason == nil, let held = refusals.admit() {
            logger.error("queue \(queue) broken, device needs reset: \(reason)\(held > 0 ? " (\(held) more refusals not logged)" : "")")
        }
        v.brokenReason = reason
        stats.needsReset.store(true, ordering: .relaxed)
        if v.kickFD >= 0 { epoll.remove(v.kickFD) }
        if v.errFD >= 0 { EventFD.signal(v.errFD) }
        sendConfigChange()
    }

    public func sendConfigChange() {
        guard backendChannelFD >= 0, ackedProtocolFeatures.contains(.backendReq) else { return }
        var b = [UInt8](repeating: 0, count: MessageHeader.size)
        b.withUnsafeMutableBytes {
            MessageHeader(request: BackendRequest.configChangeMsg.rawValue, flags: MessageHeader.version, size: 0).encode(into: $0)
        }
        let r = b.withUnsafeBytes { pvz_send_with_fds(backendChannelFD, $0.baseAddress, $0.count, nil, 0) }
        if r == MessageHeader.size { return }
        if r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
            logger.debug("CONFIG_CHANGE_MSG dropped: the front-end is not reading its back-end channel")
            return
        }
        // Part of a message went out: the channel's framing is lost for good.
        logger.warning("CONFIG_CHANGE_MSG not sent (\(r) bytes, \(SystemError("sendmsg"))): back-end channel closed")
        closeIfOpen(&backendChannelFD)
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

/// A point in time a blocking wait must not pass.
struct Deadline {
    let end: ContinuousClock.Instant
    init(ms: Int) { end = .now + .milliseconds(ms) }
    /// Waits for `events` on `fd` until the deadline; false when it passed or poll failed.
    func wait(_ fd: Int32, events: Int16) -> Bool {
        while true {
            let left = ContinuousClock.now.duration(to: end)
            if left <= .zero { return false }
            let ms = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            var p = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&p, 1, ms)
            if r > 0 { return true }
            if r == 0 { return false }
            if errno != EINTR { return false }
        }
    }
}
