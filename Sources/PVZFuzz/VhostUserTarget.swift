import CPVZShim
import PVZContract
import GPUModel
import PVZDaemon
import PVZServer
import VhostUser
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

/// The vhost-user message stream into the back-end's handlers, over a real
/// socketpair with real file descriptors attached (guest-RAM memfd, eventfds,
/// pipes, /dev/null, a tiny memfd, a socket), into the real `PVZDevice`; with
/// guest RAM writes (rings, chains, hypercall requests), kicks, wakes and the
/// front-end truncating its RAM in between. One fresh connection per input,
/// driven the way `VhostUserServer.run` drives it, to one guest that lives
/// across inputs as a daemon's does. Each input starts from the same guest:
/// the front-end gone for good must leave the ledger exactly as it was (an
/// oracle: a leaked heap, device config or recorded call fails it), and the
/// register bank's counters are put back.
let vhostUserTarget = FuzzTarget(name: "vhost-user", summary: "vhost-user messages, RAM writes, kicks, truncation into Backend + PVZDevice") {
    let ramSize = 0x4_0000
    let userBase: UInt64 = 0x7f00_0000_0000
    let queueSize: UInt16 = 64
    let scheduler = try! FirmwareProcessor(maxOSIDs: 4)
    var policy = GuestPolicy()
    policy.fwHeapSize = 0x2000
    policy.gpuHeapSize = 0x4000
    let spec = GuestSpec(osid: OSID(1), carveout: IPARange(start: IPA(0x2_0000), size: 0x2_0000)!, policy: policy)
    let logger = quietLogger()
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
    let message = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 8)

    // One guest, as the daemon has it: each input is the next front-end to connect to it.
    let server = try! PVZHostServer(maxOSIDs: 4, guests: [spec])
    let gpu = GuestGPU(osid: spec.osid, carveout: spec.carveout, processor: scheduler)
    let device = PVZDevice(osid: spec.osid, hostServer: server, settings: GuestSettings(onlineOnConnect: true, priority: 1),
                           gpu: gpu, logger: logger)
    // Online as its first front-end would find it (onlineOnConnect), so every input finds it so.
    try! server.onVmOnline(osid: spec.osid, priority: 1)
    gpu.vmOnline(priority: 1)
    let cleanLedger = server.persistedState()
    let cleanPool = server.hostPoolUsed
    let cleanBank = gpu.bank.snapshot()

    return { data in
        var input = FuzzInput(data)
        var sv: [Int32] = [-1, -1]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) == 0)
        let ramFD = pvz_memfd_create("fuzz-ram", UInt32(MFD_CLOEXEC))
        precondition(ramFD >= 0 && ftruncate(ramFD, off_t(ramSize)) == 0)
        let backend = try! Backend(device: device, socketFD: sv[0], logger: logger)
        device.frontEndConnected(backend)
        var open = true
        defer {
            if debugFuzz, let g = server.snapshot(osid: spec.osid) {
                print("vhost-user: status 0x\(String(backend.status, radix: 16)) online \(g.online) calls \(g.callsByFunction) kicks \(gpu.counters.kicks)")
            }
            device.frontEndDisconnected(backend, reason: .frontEndClosed)
            backend.teardown()
            close(sv[0]); close(sv[1]); close(ramFD)
            let ledger = server.persistedState()
            precondition(ledger == cleanLedger && server.hostPoolUsed == cleanPool,
                         "the front-end gone did not leave the ledger as it was: \(ledger), host pool \(server.hostPoolUsed) (was \(cleanPool))")
            var bank = cleanBank
            bank.clockNs = gpu.bank.clockNs
            try! gpu.bank.restore(bank)
        }

        /// What VhostUserServer.run does while the socket is readable, then the fault check.
        func pump() {
            var p = pollfd(fd: sv[0], events: Int16(POLLIN), revents: 0)
            while open && poll(&p, 1, 0) > 0 {
                if !backend.handleReadable() { open = false }
            }
            // Replies the front-end reads (so the back-end never waits on a full socket).
            // One recv takes every queued byte of a stream socket up to the buffer's size.
            while recv(sv[1], scratch.baseAddress, scratch.count, Int32(MSG_DONTWAIT)) == scratch.count {}
            if open && backend.memoryFaulted() { open = false }
        }

        /// A file descriptor of the kind the input asks for (closed after sending).
        func makeFD(_ kind: UInt8) -> Int32 {
            switch kind % 7 {
            case 0: return dup(ramFD)
            case 1: return eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
            case 2, 3:
                var p: [Int32] = [-1, -1]
                guard pipe(&p) == 0 else { return -1 }
                close(kind % 7 == 2 ? p[1] : p[0])
                return kind % 7 == 2 ? p[0] : p[1]
            case 4: return Glibc.open("/dev/null", O_RDWR | O_CLOEXEC)
            case 5:
                let fd = pvz_memfd_create("fuzz-small", UInt32(MFD_CLOEXEC))
                _ = ftruncate(fd, 0x1000)
                return fd
            default:
                var s: [Int32] = [-1, -1]
                guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &s) == 0 else { return -1 }
                close(s[1])
                return s[0]
            }
        }

        /// Sends one message; `pumping`: the back-end handles it before this returns.
        func send(_ request: UInt32, flags: UInt32 = MessageHeader.version, sizeField: UInt32? = nil,
                  _ payload: UnsafeRawBufferPointer, fds: [Int32] = [], pumping: Bool = true) {
            let n = min(payload.count, message.count - MessageHeader.size)
            MessageHeader(request: request, flags: flags, size: sizeField ?? UInt32(n)).encode(into: message)
            if n > 0 { (message.baseAddress! + MessageHeader.size).copyMemory(from: payload.baseAddress!, byteCount: n) }
            _ = fds.withUnsafeBufferPointer { pvz_send_with_fds(sv[1], message.baseAddress, MessageHeader.size + n, $0.baseAddress, Int32(fds.count)) }
            if let s = sizeField, Int(s) != n { shutdown(sv[1], Int32(SHUT_WR)) }  // a lie about the size: the stream ends here
            if pumping { pump() }
        }
        func send(_ r: FrontEndRequest, _ bytes: [UInt8] = [], fds: [Int32] = []) {
            bytes.withUnsafeBytes {
                send(r.rawValue, flags: MessageHeader.version | MessageHeader.needReplyFlag, $0, fds: fds, pumping: false)
            }
        }
        func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        func state(_ i: UInt32, _ n: UInt32) -> [UInt8] { withUnsafeBytes(of: (UInt64(n) << 32 | UInt64(i)).littleEndian) { Array($0) } }
        func ringGPA(_ q: Int) -> UInt64 { 0x1000 + UInt64(q) * 0x2000 }
        func pwrite(_ gpa: UInt64, _ bytes: UnsafeRawBufferPointer) {
            guard bytes.count > 0, gpa < UInt64(ramSize) else { return }
            _ = Glibc.pwrite(ramFD, bytes.baseAddress, min(bytes.count, ramSize - Int(gpa)), off_t(gpa))
        }
        func pwrite<T: FixedWidthInteger>(_ gpa: UInt64, _ v: T) { withUnsafeBytes(of: v.littleEndian) { pwrite(gpa, $0) } }
        func pread16(_ gpa: UInt64) -> UInt16 {
            var v: UInt16 = 0
            _ = Glibc.pread(ramFD, &v, 2, off_t(gpa))
            return UInt16(littleEndian: v)
        }

        /// QEMU's start sequence with every offered feature: the messages are
        /// queued, then the back-end handles them in order (as it would one at
        /// a time; the replies, which nothing checks, are read at the end).
        func startSequence() {
            defer { pump() }
            send(.getFeatures)
            send(.setProtocolFeatures, u64(backend.offeredProtocolFeatures.rawValue))
            send(.setOwner)
            send(.setFeatures, u64(backend.offeredFeatures))
            var table = [UInt8](repeating: 0, count: 8 + 32)
            table.withUnsafeMutableBytes {
                MemoryTablePayload(regions: [MemoryRegionWire(guestPhysAddr: 0, memorySize: UInt64(ramSize), userAddr: userBase, mmapOffset: 0)]).encode(into: $0)
            }
            send(.setMemTable, table, fds: [ramFD])
            for q in 0 ..< 3 {
                let g = ringGPA(q)
                send(.setVringNum, state(UInt32(q), UInt32(queueSize)))
                var a = [UInt8](repeating: 0, count: VringAddrPayload.size)
                a.withUnsafeMutableBytes {
                    VringAddrPayload(index: UInt32(q), flags: 0, desc: userBase + g, used: userBase + g + 0x800, avail: userBase + g + 0x400, log: 0).encode(into: $0)
                }
                send(.setVringAddr, a)
                send(.setVringBase, state(UInt32(q), 0))
                let k = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK)), c = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
                send(.setVringKick, u64(UInt64(q)), fds: [k])
                send(.setVringCall, u64(UInt64(q)), fds: [c])
                close(k); close(c)
                send(.setVringEnable, state(UInt32(q), 1))
            }
        }

        /// A chain on queue `q`: readable bytes from the input, then a writable buffer.
        func chain(_ q: Int) {
            let g = ringGPA(q)
            let head = UInt16(input.u8()) % queueSize
            let second = (head &+ 1) % queueSize
            let req = 0x8000 + UInt64(input.u8()) * 0x100
            let resp = 0x20000 + UInt64(input.u8()) * 0x100
            let body = input.bytes(Int(input.u8() % 64))
            pwrite(req, body)
            let respLen = UInt32(input.u8())
            pwrite(g + 16 * UInt64(head), req)
            pwrite(g + 16 * UInt64(head) + 8, UInt32(body.count))
            pwrite(g + 16 * UInt64(head) + 12, UInt16(respLen > 0 ? 1 : 0))  // NEXT
            pwrite(g + 16 * UInt64(head) + 14, second)
            pwrite(g + 16 * UInt64(second), resp)
            pwrite(g + 16 * UInt64(second) + 8, respLen)
            pwrite(g + 16 * UInt64(second) + 12, UInt16(2))  // WRITE
            let idx = pread16(g + 0x400 + 2)
            pwrite(g + 0x400 + 4 + 2 * UInt64(idx % queueSize), head)
            pwrite(g + 0x400 + 2, idx &+ 1)
            backend.kicked(q)
        }

        // A start sequence is 23 messages; an input that repeats it dozens of
        // times (the fuzzer likes it: each adds counter features) costs
        // milliseconds and finds nothing a second re-negotiation does not.
        var startsLeft = 2
        while open && !input.isEmpty {
            switch input.u8() % 10 {
            case 0, 1:
                // A message: any request code, payload and fds the input says.
                let r = input.u8()
                let request = r < 0xF0 ? UInt32(r % 45) : input.u32()
                let f = input.u8()
                let flags = f & 0x80 != 0 ? input.u32() : MessageHeader.version | (f & 1 != 0 ? MessageHeader.needReplyFlag : 0)
                let n = Int(input.u16() % 300)
                let sizeField: UInt32? = f & 0x40 != 0 ? input.u32() : nil
                let payload = input.bytes(n)
                let fds = (0 ..< Int(input.u8() % 4)).map { _ in makeFD(input.u8()) }.filter { $0 >= 0 }
                send(request, flags: flags, sizeField: sizeField, payload, fds: fds)
                fds.forEach { close($0) }
            case 2 where startsLeft > 0:
                startsLeft -= 1
                startSequence()
            case 3:
                let gpa = UInt64(input.u32()) % UInt64(ramSize)
                pwrite(gpa, input.bytes(Int(input.u8())))
            case 4, 5: chain(Int(input.u8() % 3))
            case 6:
                backend.kicked(Int(input.u8() % 4))
                pump()
            case 7:
                device.wake(backend)
                pump()
            case 8:
                if input.u8() == 0xAA {  // the front-end shrinks its RAM (rarely: it ends the connection)
                    _ = ftruncate(ramFD, off_t(input.u32() % UInt32(ramSize)))
                    backend.kicked(Int(input.u8() % 3))
                    pump()
                    _ = ftruncate(ramFD, off_t(ramSize))
                }
            default:
                if input.bool() { sched_yield() }  // let the firmware thread run a kick
                device.wake(backend)
                pump()
            }
        }
    }
}
