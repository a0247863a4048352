import CPVZShim
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// A vhost-user front-end that plays QEMU for tests and benchmarks: a real
/// Unix socket, a memfd as guest RAM passed with SCM_RIGHTS, split rings laid
/// out in it, and eventfds for kick and call. Written from vhost-user.rst and
/// the virtio spec, independently of the back-end's code: its messages come
/// from its own encoders (VhostUserWire.swift), never the back-end's structs.
public final class TestFrontEnd {
    public private(set) var socketFD: Int32
    public let memFD: Int32
    public let ram: UnsafeMutableRawPointer
    public let ramSize: UInt64
    /// Guest physical address of the RAM's first byte.
    public let ramGPA: UInt64
    /// The front-end "virtual address" of the RAM (vring addresses use it).
    public let userBase: UInt64 = 0x7f00_0000_0000
    public var queues: [DriverQueue] = []
    private var bump: UInt64

    public enum Failure: Error, CustomStringConvertible {
        case connect(String, Int32)
        case io(String)
        case badReply(String)
        public var description: String {
            switch self {
            case .connect(let p, let e): return "connect \(p): errno \(e)"
            case .io(let s): return s
            case .badReply(let s): return s
            }
        }
    }

    /// Connects to `path` (retrying up to `timeoutMs` while the daemon starts)
    /// and creates `ramSize` bytes of guest RAM at GPA `ramGPA`.
    public init(path: String, ramSize: UInt64 = 256 << 20, ramGPA: UInt64 = 0, timeoutMs: Int = 5000) throws {
        var fd: Int32 = -1
        var waited = 0
        while true {
            fd = pvz_unix_connect(path)
            if fd >= 0 || waited >= timeoutMs { break }
            usleep(10_000); waited += 10
        }
        if fd < 0 { throw Failure.connect(path, errno) }
        socketFD = fd
        memFD = pvz_memfd_create("test-guest-ram", UInt32(MFD_CLOEXEC))
        if memFD < 0 { throw Failure.io("memfd_create: errno \(errno)") }
        if ftruncate(memFD, off_t(ramSize)) != 0 { throw Failure.io("ftruncate: errno \(errno)") }
        guard let p = mmap(nil, Int(ramSize), PROT_READ | PROT_WRITE, MAP_SHARED, memFD, 0), p != MAP_FAILED else {
            throw Failure.io("mmap: errno \(errno)")
        }
        ram = p
        self.ramSize = ramSize
        self.ramGPA = ramGPA
        bump = ramGPA + 0x10_0000
        // A back-end that closes a pipe or socket under a write must fail
        // that write, not kill the test process (the daemon ignores SIGPIPE too).
        signal(SIGPIPE, SIG_IGN)
    }

    deinit {
        if inflightFD >= 0 { close(inflightFD) }
        close(socketFD)
        munmap(ram, Int(ramSize))
        close(memFD)
    }

    public func closeSocket() { shutdown(socketFD, Int32(SHUT_RDWR)) }

    /// Connects again (a restarted back-end) with the same guest RAM and rings,
    /// as QEMU's reconnect does; `start(afterCrash: true)` then sets it up.
    public func reconnect(path: String, timeoutMs: Int = 5000) throws {
        var fd: Int32 = -1
        var waited = 0
        while true {
            fd = pvz_unix_connect(path)
            if fd >= 0 || waited >= timeoutMs { break }
            usleep(10_000); waited += 10
        }
        if fd < 0 { throw Failure.connect(path, errno) }
        close(socketFD)
        socketFD = fd
    }

    // MARK: In-flight buffer (INFLIGHT_SHMFD), kept across back-end restarts

    public private(set) var inflightFD: Int32 = -1
    private var inflightPayload: [UInt8] = []

    /// GET_INFLIGHT_FD the first time; SET_INFLIGHT_FD with the kept buffer
    /// after a reconnect. VhostUserInflight: mmap_size u64, mmap_offset u64,
    /// num_queues u16, queue_size u16, 4 bytes padding.
    func setUpInflight(queueCount: Int, queueSize: UInt16) throws {
        if inflightFD >= 0 {
            guard try sendAcked(.setInflightFD, payload: inflightPayload, fds: [inflightFD]) == 0 else {
                throw Failure.badReply("SET_INFLIGHT_FD refused")
            }
            return
        }
        try send(.getInflightFD, payload: Self.inflight(mmapSize: 0, mmapOffset: 0, numQueues: UInt16(queueCount), queueSize: queueSize))
        var pfd = pollfd(fd: socketFD, events: Int16(POLLIN), revents: 0)
        if poll(&pfd, 1, 5000) <= 0 { throw Failure.io("no GET_INFLIGHT_FD reply") }
        var h = [UInt8](repeating: 0, count: VhostUserHeader.size)
        var fds = [Int32](repeating: -1, count: 4)
        var nfds: Int32 = 0, ctrunc: Int32 = 0
        let n = h.withUnsafeMutableBytes { hb in fds.withUnsafeMutableBufferPointer { f in
            pvz_recv_with_fds(socketFD, hb.baseAddress, hb.count, f.baseAddress, 4, &nfds, &ctrunc) } }
        guard n == VhostUserHeader.size, nfds == 1 else { throw Failure.badReply("GET_INFLIGHT_FD reply: \(n) bytes, \(nfds) fds") }
        let size = Int(VhostUserHeader(h).size)
        var body = [UInt8](repeating: 0, count: size)
        try readFully(&body)
        guard size == 24 else { throw Failure.badReply("GET_INFLIGHT_FD payload of \(size) bytes") }
        inflightFD = fds[0]
        inflightPayload = body
    }

    // MARK: Guest memory

    public func host(_ gpa: UInt64) -> UnsafeMutableRawPointer {
        precondition(gpa >= ramGPA && gpa < ramGPA + ramSize, "GPA 0x\(String(gpa, radix: 16)) outside test RAM")
        return ram + Int(gpa - ramGPA)
    }
    public func write(_ gpa: UInt64, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { host(gpa).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }
    public func read(_ gpa: UInt64, _ count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: host(gpa), count: count))
    }
    public func load<T: FixedWidthInteger>(_ gpa: UInt64, as: T.Type) -> T {
        T(littleEndian: host(gpa).loadUnaligned(as: T.self))
    }
    public func store<T: FixedWidthInteger>(_ gpa: UInt64, _ v: T) {
        host(gpa).storeBytes(of: v.littleEndian, as: T.self)
    }
    /// Bump-allocates guest memory (never freed; tests are short).
    public func alloc(_ size: UInt64, align: UInt64 = 64) -> UInt64 {
        bump = (bump + align - 1) & ~(align - 1)
        let a = bump
        bump += size
        precondition(bump <= ramGPA + ramSize / 2, "test allocator exhausted")
        return a
    }

    // MARK: Messages

    public func send(_ request: VhostUserRequest, flags: UInt32 = VhostUserHeader.version, payload: [UInt8] = [], fds: [Int32] = []) throws {
        try sendRaw(request: request.rawValue, flags: flags, payload: payload, fds: fds)
    }

    /// Any header (an unknown request, a wrong size or version) and payload.
    public func sendRaw(request: UInt32, flags: UInt32 = VhostUserHeader.version, size: UInt32? = nil, payload: [UInt8] = [], fds: [Int32] = []) throws {
        let b = VhostUserHeader(request: request, flags: flags, size: size ?? UInt32(payload.count)).bytes + payload
        let r = b.withUnsafeBytes { bp in fds.withUnsafeBufferPointer { pvz_send_with_fds(socketFD, bp.baseAddress, bp.count, $0.baseAddress, Int32(fds.count)) } }
        if r != b.count { throw Failure.io("sendmsg: \(r) of \(b.count) bytes, errno \(errno)") }
    }

    /// Reads one reply (waits up to `timeoutMs`).
    public func receive(timeoutMs: Int32 = 5000) throws -> (VhostUserHeader, [UInt8]) {
        var pfd = pollfd(fd: socketFD, events: Int16(POLLIN), revents: 0)
        if poll(&pfd, 1, timeoutMs) <= 0 { throw Failure.io("no reply within \(timeoutMs) ms") }
        var h = [UInt8](repeating: 0, count: VhostUserHeader.size)
        try readFully(&h)
        let header = VhostUserHeader(h)
        var p = [UInt8](repeating: 0, count: Int(header.size))
        if header.size > 0 { try readFully(&p) }
        return (header, p)
    }

    private func readFully(_ b: inout [UInt8]) throws {
        var got = 0
        while got < b.count {
            let r = b.withUnsafeMutableBytes { recv(socketFD, $0.baseAddress! + got, $0.count - got, 0) }
            if r <= 0 { throw Failure.io("connection closed by back-end (read \(got) of \(b.count))") }
            got += r
        }
    }

    /// True when the back-end has closed the connection (EOF readable).
    public func backendClosed(timeoutMs: Int32 = 2000) -> Bool {
        var pfd = pollfd(fd: socketFD, events: Int16(POLLIN), revents: 0)
        if poll(&pfd, 1, timeoutMs) <= 0 { return false }
        var c: UInt8 = 0
        return recv(socketFD, &c, 1, Int32(MSG_PEEK)) == 0
    }

    public func getU64(_ request: VhostUserRequest) throws -> UInt64 {
        try send(request)
        let (h, p) = try receive()
        guard h.request == request.rawValue, p.count == 8 else { throw Failure.badReply("\(request): reply \(h.request) size \(p.count)") }
        return readLE64(p, 0)
    }

    /// Sends with NEED_REPLY and returns the ack value (0 = success).
    public func sendAcked(_ request: VhostUserRequest, payload: [UInt8] = [], fds: [Int32] = []) throws -> UInt64 {
        try send(request, flags: VhostUserHeader.version | VhostUserHeader.needReply, payload: payload, fds: fds)
        let (h, p) = try receive()
        guard h.request == request.rawValue, p.count == 8 else { throw Failure.badReply("\(request): ack \(h.request) size \(p.count)") }
        return readLE64(p, 0)
    }

    /// The guest's whole RAM as one region: what this front-end maps.
    public var ramRegion: [UInt8] { Self.region(gpa: ramGPA, size: ramSize, userAddr: userBase, mmapOffset: 0) }

    public func memTablePayload() -> [UInt8] { Self.memoryTable([ramRegion]) }

    // MARK: The QEMU start sequence

    /// GET_FEATURES ... SET_VRING_ENABLE for every queue, as QEMU 10.0 does for
    /// vhost-user-base; returns the negotiated virtio features.
    @discardableResult
    public func start(queueCount: Int = 3, queueSize: UInt16 = 64, wantFeatures: UInt64? = nil, useAddMemReg: Bool = false,
                      inflight: Bool = false, afterCrash: Bool = false) throws -> UInt64 {
        let offered = try getU64(.getFeatures)
        let proto = try getU64(.getProtocolFeatures)
        typealias F = VhostUserProtocolFeature
        let want = proto & (F.mq | F.replyAck | F.config | F.backendReq | F.status | F.configureMemSlots
            | F.resetDevice | (inflight ? F.inflightShmfd : 0) | F.deviceState)
        try send(.setProtocolFeatures, payload: Self.u64(want))
        let qn = try getU64(.getQueueNum)
        guard qn == UInt64(queueCount) else { throw Failure.badReply("GET_QUEUE_NUM \(qn), expected \(queueCount)") }
        try send(.setOwner)
        // VHOST_F_LOG_ALL is QEMU's to switch on while it migrates, never at start.
        let features = wantFeatures ?? (offered & ~VhostUserFeature.logAll)
        guard try sendAcked(.setFeatures, payload: Self.u64(features)) == 0 else { throw Failure.badReply("SET_FEATURES refused") }
        if useAddMemReg {
            guard try sendAcked(.addMemReg, payload: Self.singleRegion(ramRegion), fds: [memFD]) == 0 else { throw Failure.badReply("ADD_MEM_REG refused") }
        } else {
            guard try sendAcked(.setMemTable, payload: memTablePayload(), fds: [memFD]) == 0 else { throw Failure.badReply("SET_MEM_TABLE refused") }
        }
        if inflight { try setUpInflight(queueCount: queueCount, queueSize: queueSize) }
        if queues.isEmpty {
            for i in 0..<queueCount { queues.append(try DriverQueue(fe: self, index: i, size: queueSize)) }
        }
        // After a back-end crash QEMU cannot ask for the ring bases: it
        // restarts each ring at its used index (what the guest has seen).
        for q in queues { try q.setUp(self, base: afterCrash ? q.usedIdx : nil) }
        for q in queues {
            guard try sendAcked(.setVringEnable, payload: Self.state(UInt32(q.index), 1)) == 0 else { throw Failure.badReply("SET_VRING_ENABLE refused") }
        }
        return features
    }

    /// Every ring back to index 0 in place, fds kept (a guest reboot under the same QEMU).
    public func resetQueues() { for q in queues { q.resetRing() } }

    /// Forgets the rings: the next `start` lays out fresh ones at index 0, as a
    /// guest driver does after a device reset.
    public func forgetQueues() {
        queues = []
    }

    // MARK: Device state (live migration), as QEMU's vhost_save/load_backend_state

    /// Protocol features only (what QEMU negotiates at realize, before a
    /// destination loads state into a device that has not started).
    public func negotiate() throws {
        _ = try getU64(.getFeatures)
        let proto = try getU64(.getProtocolFeatures)
        typealias F = VhostUserProtocolFeature
        try send(.setProtocolFeatures, payload: Self.u64(proto & (F.replyAck | F.mq | F.deviceState | F.config)))
    }

    /// SET_DEVICE_STATE_FD (direction u32, phase u32 = 0) with one end of a
    /// pipe; returns the reply's u64.
    private func setDeviceStateFD(direction: UInt32, fd: Int32) throws -> UInt64 {
        try send(.setDeviceStateFD, payload: Self.deviceState(direction: direction), fds: [fd])
        let (h, r) = try receive()
        guard h.request == VhostUserRequest.setDeviceStateFD.rawValue, r.count == 8 else { throw Failure.badReply("SET_DEVICE_STATE_FD reply") }
        return readLE64(r, 0)
    }

    /// Source side: the back-end's state, read from the pipe to its end,
    /// then CHECK_DEVICE_STATE. Throws when either step fails.
    public func saveDeviceState() throws -> [UInt8] {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw Failure.io("pipe: errno \(errno)") }
        let r = try setDeviceStateFD(direction: 0, fd: fds[1])
        close(fds[1])
        defer { close(fds[0]) }
        guard r & 0xff == 0, r & 0x100 != 0 else { throw Failure.badReply("SET_DEVICE_STATE_FD(save) answered 0x\(String(r, radix: 16))") }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fds[0], $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        guard try getU64(.checkDeviceState) == 0 else { throw Failure.badReply("CHECK_DEVICE_STATE after save failed") }
        return out
    }

    /// Destination side: writes `bytes` into the pipe, closes it, and returns
    /// what CHECK_DEVICE_STATE answers (0 = taken over).
    public func loadDeviceState(_ bytes: [UInt8]) throws -> UInt64 {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw Failure.io("pipe: errno \(errno)") }
        let r = try setDeviceStateFD(direction: 1, fd: fds[0])
        close(fds[0])
        guard r & 0xff == 0, r & 0x100 != 0 else { close(fds[1]); throw Failure.badReply("SET_DEVICE_STATE_FD(load) answered 0x\(String(r, radix: 16))") }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fds[1], $0.baseAddress! + off, $0.count - off) }
            if n <= 0 { break }
            off += n
        }
        close(fds[1])
        return try getU64(.checkDeviceState)
    }

    /// Stops every ring (GET_VRING_BASE) as QEMU does on guest reset.
    public func stopQueues() throws -> [UInt32] {
        var bases: [UInt32] = []
        for q in queues {
            try send(.setVringEnable, payload: Self.state(UInt32(q.index), 0))
            try send(.getVringBase, payload: Self.state(UInt32(q.index), 0))
            let (_, p) = try receive()
            guard p.count == 8 else { throw Failure.badReply("GET_VRING_BASE reply of \(p.count) bytes") }
            bases.append(readLE32(p, 4))
        }
        return bases
    }

    /// GET_CONFIG of the whole config space.
    public func readConfig(size: Int) throws -> [UInt8] {
        let b = Self.config(offset: 0, bytes: [UInt8](repeating: 0, count: size))
        try send(.getConfig, payload: b)
        let (h, p) = try receive()
        guard h.request == VhostUserRequest.getConfig.rawValue, p.count == b.count else { throw Failure.badReply("GET_CONFIG reply of \(p.count) bytes") }
        return Array(p[(b.count - size)...])
    }
}

/// The driver's side of one split virtqueue inside the test front-end's RAM.
public final class DriverQueue {
    public let index: Int
    public let size: UInt16
    public let descGPA: UInt64, availGPA: UInt64, usedGPA: UInt64
    public let kick: EventFD
    public let call: EventFD
    /// The vring error eventfd: QEMU sets it once, when the device is
    /// initialised, not at every start.
    public let err: EventFD
    private var errSent = false
    public private(set) var availIdx: UInt16 = 0
    public private(set) var lastUsed: UInt16 = 0
    private var nextDesc: UInt16 = 0
    unowned let fe: TestFrontEnd

    init(fe: TestFrontEnd, index: Int, size: UInt16) throws {
        self.fe = fe
        self.index = index
        self.size = size
        descGPA = fe.alloc(16 * UInt64(size), align: 4096)
        availGPA = fe.alloc(6 + 2 * UInt64(size), align: 4096)
        usedGPA = fe.alloc(6 + 8 * UInt64(size), align: 4096)
        kick = try EventFD(nonBlocking: true)
        call = try EventFD(nonBlocking: true)
        err = try EventFD(nonBlocking: true)
    }

    func setUp(_ fe: TestFrontEnd, base: UInt16? = nil) throws {
        try fe.send(.setVringNum, payload: TestFrontEnd.state(UInt32(index), UInt32(size)))
        try fe.send(.setVringBase, payload: TestFrontEnd.state(UInt32(index), UInt32(base ?? availIdx)))
        try fe.send(.setVringAddr, payload: TestFrontEnd.vringAddr(index: UInt32(index), desc: fe.userBase + (descGPA - fe.ramGPA),
                                                                   used: fe.userBase + (usedGPA - fe.ramGPA),
                                                                   avail: fe.userBase + (availGPA - fe.ramGPA)))
        try fe.send(.setVringKick, payload: TestFrontEnd.u64(UInt64(index)), fds: [kick.fd])
        try fe.send(.setVringCall, payload: TestFrontEnd.u64(UInt64(index)), fds: [call.fd])
        if !errSent {
            try fe.send(.setVringErr, payload: TestFrontEnd.u64(UInt64(index)), fds: [err.fd])
            errSent = true
        }
    }

    /// A driver re-initialising the queue after a device reset: the rings
    /// start from index 0 again; the eventfds stay (QEMU keeps them).
    public func resetRing() {
        availIdx = 0
        lastUsed = 0
        nextDesc = 0
        memset(fe.host(availGPA), 0, Int(6 + 2 * UInt64(size)))
        memset(fe.host(usedGPA), 0, Int(6 + 8 * UInt64(size)))
    }

    /// True once the back-end signalled this ring's error eventfd (drains it).
    public func errorSignalled(timeoutMs: Int32 = 2000) -> Bool {
        var pfd = pollfd(fd: err.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMs) > 0 else { return false }
        err.drain()
        return true
    }

    /// A raw descriptor for malformed-chain tests.
    public struct Desc {
        public var addr: UInt64, len: UInt32, flags: UInt16, next: UInt16
        public init(addr: UInt64, len: UInt32, flags: UInt16, next: UInt16) { self.addr = addr; self.len = len; self.flags = flags; self.next = next }
    }
    public static let fNext: UInt16 = 1, fWrite: UInt16 = 2, fIndirect: UInt16 = 4

    public func writeDesc(_ i: UInt16, _ d: Desc, table: UInt64? = nil) {
        let base = (table ?? descGPA) + 16 * UInt64(i)
        fe.store(base, d.addr); fe.store(base + 8, d.len); fe.store(base + 12, d.flags); fe.store(base + 14, d.next)
    }

    /// Puts a chain of (gpa, len, writable) buffers on the ring and kicks.
    @discardableResult
    public func add(_ buffers: [(UInt64, UInt32, Bool)], kick doKick: Bool = true) -> UInt16 {
        let head = nextDesc
        for (k, b) in buffers.enumerated() {
            let i = (head &+ UInt16(k)) % size
            let last = k == buffers.count - 1
            writeDesc(i, Desc(addr: b.0, len: b.1, flags: (b.2 ? Self.fWrite : 0) | (last ? 0 : Self.fNext), next: (i + 1) % size))
        }
        nextDesc = (head &+ UInt16(buffers.count)) % size
        publish(head: head, kick: doKick)
        return head
    }

    /// One device-readable buffer (a doorbell) without building an array (benchmark path).
    @discardableResult
    @inline(__always)
    public func add1(_ gpa: UInt64, _ len: UInt32) -> UInt16 {
        let head = nextDesc
        writeDesc(head, Desc(addr: gpa, len: len, flags: 0, next: 0))
        nextDesc = (head &+ 1) % size
        publish(head: head)
        return head
    }

    /// A request/response pair without building an array (benchmark path: no allocation).
    @discardableResult
    @inline(__always)
    public func addPair(request: UInt64, _ reqLen: UInt32, response: UInt64, _ respLen: UInt32) -> UInt16 {
        let head = nextDesc
        let second = (head &+ 1) % size
        writeDesc(head, Desc(addr: request, len: reqLen, flags: Self.fNext, next: second))
        writeDesc(second, Desc(addr: response, len: respLen, flags: Self.fWrite, next: 0))
        nextDesc = (head &+ 2) % size
        publish(head: head)
        return head
    }

    /// Makes `head` available (whatever its descriptors say) and optionally kicks.
    public func publish(head: UInt16, kick doKick: Bool = true) {
        fe.store(availGPA + 4 + 2 * UInt64(availIdx % size), head)
        let old = availIdx
        availIdx &+= 1
        pvz_store_release_u16(fe.host(availGPA + 2), availIdx)
        guard doKick else { return }
        if honourEventIdx {
            // Linux's virtqueue_kick_prepare: kick only if the device asked
            // for it (vring_need_event on the used ring's avail_event).
            pvz_fence_seq_cst()
            let event = pvz_load_acquire_u16(fe.host(usedGPA + 4 + 8 * UInt64(size)))
            if availIdx &- event &- 1 < availIdx &- old { kick.signal() }
        } else {
            kick.signal()
        }
    }

    /// Kick only when the device's avail_event asks for it, as a Linux
    /// driver with VIRTIO_RING_F_EVENT_IDX does (default: always kick).
    public var honourEventIdx = false

    /// Sets avail idx directly (for index-jump tests).
    public func forceAvailIdx(_ v: UInt16) { pvz_store_release_u16(fe.host(availGPA + 2), v); availIdx = v }

    public var usedIdx: UInt16 { pvz_load_acquire_u16(fe.host(usedGPA + 2)) }

    /// EVENT_IDX: ask for an interrupt when the next used element appears.
    @inline(__always)
    public func armUsedEvent() {
        pvz_store_release_u16(fe.host(availGPA + 4 + 2 * UInt64(size)), lastUsed)
        pvz_fence_seq_cst()
    }

    /// Next used element (id, len), waiting up to `timeoutMs` on the call eventfd.
    public func waitUsed(timeoutMs: Int32 = 2000) -> (UInt32, UInt32)? {
        var waited: Int32 = 0
        armUsedEvent()
        while usedIdx == lastUsed {
            var pfd = pollfd(fd: call.fd, events: Int16(POLLIN), revents: 0)
            let step: Int32 = 100
            if poll(&pfd, 1, step) > 0 { call.drain() }
            waited += step
            if waited >= timeoutMs && usedIdx == lastUsed { return nil }
        }
        let e = usedGPA + 4 + 8 * UInt64(lastUsed % size)
        lastUsed &+= 1
        return (fe.load(e, as: UInt32.self), fe.load(e + 4, as: UInt32.self))
    }

    /// Blocks on the call eventfd until the next used element (benchmark path).
    @inline(__always)
    public func blockUsed() -> UInt32 {
        armUsedEvent()
        while usedIdx == lastUsed {
            var pfd = pollfd(fd: call.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, 1000)
            call.drain()
        }
        let e = usedGPA + 4 + 8 * UInt64(lastUsed % size)
        lastUsed &+= 1
        return fe.load(e + 4, as: UInt32.self)
    }
}
