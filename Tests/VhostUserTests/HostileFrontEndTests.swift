import Platform
import Testing
import CPVZShim
import TestFrontEnd
import VhostUser
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

/// Issue 10: front-ends that shrink their memory, stall mid-message or never
/// read what the back-end writes. Each may end its own connection; none may
/// kill the daemon or stop its guest thread, and the other guest never notices.
@Suite("hostile front-ends end only their own connection")
struct HostileFrontEndTests {
    /// Two echo guests; the first front-end is returned with a check that the
    /// other guest still works.
    func setUp() throws -> (TestFrontEnd, VhostUserServer, String, () -> Bool, [VhostUserServer]) {
        let (s1, p1) = try startServer(EchoDevice(), name: "hostile")
        let (s2, p2) = try startServer(EchoDevice(), name: "bystander")
        let other = try TestFrontEnd(path: p2)
        try other.start(queueCount: 2)
        let fe = try TestFrontEnd(path: p1)
        try fe.start(queueCount: 2)
        let otherWorks = {
            let r = other.alloc(8), w = other.alloc(8)
            other.write(r, [1, 2])
            other.queues[0].add([(r, 2, false), (w, 2, true)])
            return other.queues[0].waitUsed()?.1 == 2 && other.read(w, 2) == [2, 1]
        }
        return (fe, s1, p1, otherWorks, [s1, s2])
    }

    /// The guest's socket serves a new front-end: its thread is not stuck.
    func reconnects(_ server: VhostUserServer, _ path: String) throws -> Bool {
        var n = 0
        while server.isConnected && n < 500 { usleep(10_000); n += 1 }
        let again = try TestFrontEnd(path: path)
        try again.start(queueCount: 2)
        let r = again.alloc(8), w = again.alloc(8)
        again.write(r, [5, 6, 7])
        again.queues[0].add([(r, 3, false), (w, 3, true)])
        return again.queues[0].waitUsed()?.1 == 3 && again.read(w, 3) == [7, 6, 5]
    }

    /// GET_STATUS until NEEDS_RESET shows (the kick and the message race on the guest thread).
    func needsReset(_ fe: TestFrontEnd) throws -> Bool {
        for _ in 0..<200 {
            if try fe.getU64(.getStatus) & UInt64(DeviceStatus.needsReset) != 0 { return true }
            usleep(10_000)
        }
        return false
    }

    /// Before the SIGBUS guard this killed the whole test process (Bus error).
    @Test func memoryShrunkAfterSetMemTableThenKick() throws {
        let (fe, s1, p1, otherWorks, servers) = try setUp()
        defer { servers.forEach { $0.stop() } }
        let r = fe.alloc(8), w = fe.alloc(8)
        fe.queues[0].add([(r, 2, false), (w, 2, true)], kick: false)
        // From here the test must not touch fe.ram itself: its own mapping is gone too.
        #expect(ftruncate(fe.memFD, 0) == 0)
        fe.queues[0].kick.signal()
        #expect(fe.backendClosed(timeoutMs: 3000), "connection with vanished memory still open")
        #expect(otherWorks())
        #expect(try reconnects(s1, p1))
    }

    /// An in-flight buffer (SET_INFLIGHT_FD) in a file the front-end then
    /// shrinks: starting a ring reads it. Before the guard: Bus error.
    @Test func inflightBufferShrunk() throws {
        let (fe, s1, p1, otherWorks, servers) = try setUp()
        defer { servers.forEach { $0.stop() } }
        _ = try fe.stopQueues()
        let fd = pvz_memfd_create("hostile-inflight", UInt32(MFD_CLOEXEC))
        defer { close(fd) }
        let length = InflightRegion.stride(queueSize: 64) * 2
        #expect(ftruncate(fd, off_t(length)) == 0)
        let b = TestFrontEnd.inflight(mmapSize: UInt64(length), mmapOffset: 0, numQueues: 2, queueSize: 64)
        #expect(try fe.sendAcked(.setInflightFD, payload: b, fds: [fd]) == 0)
        #expect(ftruncate(fd, 0) == 0)
        _ = try? fe.start(queueCount: 2)  // the rings start, read the buffer, and the connection ends
        #expect(fe.backendClosed(timeoutMs: 3000), "connection with a vanished in-flight buffer still open")
        #expect(otherWorks())
        #expect(try reconnects(s1, p1))
    }

    /// Before the deadline the guest thread blocked in recv forever.
    @Test func stallInsidePayload() throws {
        let (fe, s1, p1, otherWorks, servers) = try setUp()
        defer { servers.forEach { $0.stop() } }
        let b = VhostUserHeader(request: VhostUserRequest.setFeatures.rawValue, flags: VhostUserHeader.version, size: 8).bytes + [0, 0, 0, 0]
        #expect(b.withUnsafeBytes { send(fe.socketFD, $0.baseAddress, $0.count, 0) } == b.count)
        #expect(otherWorks())
        #expect(fe.backendClosed(timeoutMs: Int32(Backend.messageDeadlineMs) + 2000), "stalled message did not end the connection")
        #expect(try reconnects(s1, p1))
    }

    @Test func stallInsideHeader() throws {
        let (fe, s1, p1, otherWorks, servers) = try setUp()
        defer { servers.forEach { $0.stop() } }
        let b: [UInt8] = [1, 0, 0, 0, 1]
        #expect(b.withUnsafeBytes { send(fe.socketFD, $0.baseAddress, $0.count, 0) } == 5)
        #expect(fe.backendClosed(timeoutMs: Int32(Backend.messageDeadlineMs) + 2000), "stalled header did not end the connection")
        #expect(otherWorks())
        #expect(try reconnects(s1, p1))
    }

    /// A pipe filled to the brim, handed over in blocking mode.
    func fullPipe() -> (read: Int32, write: Int32) {
        var p: [Int32] = [0, 0]
        _ = pipe(&p)
        let flags = fcntl(p[1], F_GETFL)
        _ = fcntl(p[1], F_SETFL, flags | O_NONBLOCK)
        var junk = [UInt8](repeating: 0xAB, count: 4096)
        while junk.withUnsafeMutableBytes({ write(p[1], $0.baseAddress, $0.count) }) > 0 {}
        _ = fcntl(p[1], F_SETFL, flags)
        return (p[0], p[1])
    }

    /// Before: the guest thread blocked writing the call fd and served nothing more.
    @Test func callFDNobodyReads() throws {
        let (fe, _, _, otherWorks, servers) = try setUp()
        defer { servers.forEach { $0.stop() } }
        let p = fullPipe()
        defer { close(p.read); close(p.write) }
        #expect(try fe.sendAcked(.setVringCall, payload: TestFrontEnd.u64(0), fds: [p.write]) == 0)
        for i in 0..<4 {
            let r = fe.alloc(8), w = fe.alloc(8)
            fe.queues[0].add([(r, 1, false), (w, 1, true)])
            #expect(fe.queues[0].waitUsed() != nil, "chain \(i) not served")
        }
        #expect(try fe.getU64(.getStatus) & UInt64(DeviceStatus.needsReset) == 0)
        #expect(otherWorks())
    }

    /// Before: the guest thread blocked writing the err fd on the first broken chain.
    @Test func errFDNobodyReads() throws {
        let (fe, _, _, otherWorks, servers) = try setUp()
        defer { servers.forEach { $0.stop() } }
        let p = fullPipe()
        defer { close(p.read); close(p.write) }
        #expect(try fe.sendAcked(.setVringErr, payload: TestFrontEnd.u64(0), fds: [p.write]) == 0)
        fe.queues[0].forceAvailIdx(fe.queues[0].size + 5)  // an avail index jump
        fe.queues[0].kick.signal()
        #expect(try needsReset(fe))
        #expect(otherWorks())
    }

    /// Before: CONFIG_CHANGE_MSG blocked in sendmsg on a channel nobody reads.
    @Test func backendChannelNobodyReads() throws {
        let (fe, _, _, otherWorks, servers) = try setUp()
        defer { servers.forEach { $0.stop() } }
        var sv: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv) == 0)
        defer { close(sv[0]) }
        var junk = [UInt8](repeating: 0, count: 4096)
        while junk.withUnsafeMutableBytes({ send(sv[1], $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
        #expect(try fe.sendAcked(.setBackendReqFD, fds: [sv[1]]) == 0)
        close(sv[1])
        fe.queues[0].forceAvailIdx(fe.queues[0].size + 5)
        fe.queues[0].kick.signal()
        #expect(try needsReset(fe))
        #expect(otherWorks())
    }

    /// Before: the guest thread blocked in sendmsg once the reply buffer was full.
    @Test func repliesNobodyReads() throws {
        let (fe, s1, p1, otherWorks, servers) = try setUp()
        defer { servers.forEach { $0.stop() } }
        let b = VhostUserHeader(request: VhostUserRequest.getQueueNum.rawValue, flags: VhostUserHeader.version, size: 0).bytes
        // Keep asking, never read: the daemon's reply queue stays full.
        var sent = 0
        var waited = 0
        while waited < 5000 {
            let r = b.withUnsafeBytes { send(fe.socketFD, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            if r == b.count { sent += 1; continue }
            if r < 0 && errno != EAGAIN { break }  // the daemon closed the connection
            usleep(1000); waited += 1
        }
        #expect(otherWorks())
        var n = 0
        while s1.isConnected && n < 300 { usleep(10_000); n += 1 }
        #expect(!s1.isConnected, "front-end that never reads its replies is still connected after \(sent) requests")
        #expect(try reconnects(s1, p1))
    }
}
