import Platform
import Testing
import CPVZShim
import TestFrontEnd
import VhostUser
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

/// A bad message that the back-end must refuse (nack) and survive.
struct BadMessage: CustomTestStringConvertible, Sendable {
    let name: String
    let build: @Sendable (TestFrontEnd) -> (VhostUserRequest, [UInt8], [Int32])
    var testDescription: String { name }
}

// Payloads from the test front-end's own encoders (vhost-user.rst), not the back-end's.
func region(_ gpa: UInt64, _ size: UInt64, _ ua: UInt64, _ off: UInt64) -> [UInt8] {
    TestFrontEnd.region(gpa: gpa, size: size, userAddr: ua, mmapOffset: off)
}
func table(_ rs: [[UInt8]], count: UInt32? = nil) -> [UInt8] { TestFrontEnd.memoryTable(rs, count: count) }
func single(_ r: [UInt8]) -> [UInt8] { TestFrontEnd.singleRegion(r) }
func addr(_ i: UInt32, desc: UInt64, used: UInt64, avail: UInt64) -> [UInt8] {
    TestFrontEnd.vringAddr(index: i, desc: desc, used: used, avail: avail)
}

let badMessages: [BadMessage] = [
    .init(name: "SET_FEATURES with bits never offered") { _ in (.setFeatures, TestFrontEnd.u64(1 << 63), []) },
    .init(name: "SET_FEATURES short payload") { _ in (.setFeatures, [1, 2, 3], []) },
    .init(name: "SET_PROTOCOL_FEATURES with unknown bits") { _ in (.setProtocolFeatures, TestFrontEnd.u64(1 << 40), []) },
    .init(name: "SET_MEM_TABLE without its fd") { fe in (.setMemTable, fe.memTablePayload(), []) },
    .init(name: "SET_MEM_TABLE with an extra fd") { fe in (.setMemTable, fe.memTablePayload(), [fe.memFD, fe.memFD]) },
    .init(name: "SET_MEM_TABLE overlapping regions") { fe in
        (.setMemTable, table([region(0, 0x100000, 0x1000_0000, 0), region(0x80000, 0x100000, 0x2000_0000, 0)]), [fe.memFD, fe.memFD]) },
    .init(name: "SET_MEM_TABLE region wrapping past 2^64") { fe in
        (.setMemTable, table([region(UInt64.max - 0xfff, 0x2000, 0x1000_0000, 0)]), [fe.memFD]) },
    .init(name: "SET_MEM_TABLE region larger than its file") { fe in
        (.setMemTable, table([region(0, fe.ramSize * 2, 0x1000_0000, 0)]), [fe.memFD]) },
    .init(name: "SET_MEM_TABLE zero-sized region") { fe in (.setMemTable, table([region(0, 0, 0x1000_0000, 0)]), [fe.memFD]) },
    .init(name: "SET_MEM_TABLE count says 9") { fe in (.setMemTable, table([region(0, 0x1000, 0x1000_0000, 0)], count: 9), [fe.memFD]) },
    .init(name: "SET_MEM_TABLE count disagrees with size") { fe in (.setMemTable, table([region(0, 0x1000, 0x1000_0000, 0)], count: 2), [fe.memFD, fe.memFD]) },
    .init(name: "ADD_MEM_REG zero size") { fe in (.addMemReg, single(region(0x4000_0000, 0, 0x9000_0000, 0)), [fe.memFD]) },
    .init(name: "ADD_MEM_REG without fd") { _ in (.addMemReg, single(region(0x4000_0000, 0x1000, 0x9000_0000, 0)), []) },
    .init(name: "ADD_MEM_REG overlapping the table") { fe in (.addMemReg, single(region(0x1000, 0x1000, 0x9000_0000, 0)), [fe.memFD]) },
    .init(name: "REM_MEM_REG of a region never added") { _ in (.remMemReg, single(region(0x5000_0000, 0x1000, 0, 0)), []) },
    .init(name: "SET_VRING_NUM not a power of two") { _ in (.setVringNum, TestFrontEnd.state(0, 100), []) },
    .init(name: "SET_VRING_NUM above the maximum") { _ in (.setVringNum, TestFrontEnd.state(0, 4096), []) },
    .init(name: "SET_VRING_NUM index out of range") { _ in (.setVringNum, TestFrontEnd.state(7, 64), []) },
    .init(name: "SET_VRING_BASE beyond 16 bits") { _ in (.setVringBase, TestFrontEnd.state(1, 70000), []) },
    .init(name: "SET_VRING_ADDR short payload") { _ in (.setVringAddr, [0, 0, 0, 0], []) },
    .init(name: "SET_VRING_CALL with reserved bits") { fe in (.setVringCall, TestFrontEnd.u64(0x1_0000), [fe.queues[0].call.fd]) },
    .init(name: "SET_VRING_KICK with neither fd nor NOFD") { _ in (.setVringKick, TestFrontEnd.u64(1), []) },
    .init(name: "SET_VRING_ENABLE value 2") { _ in (.setVringEnable, TestFrontEnd.state(0, 2), []) },
    .init(name: "SET_STATUS wider than 8 bits") { _ in (.setStatus, TestFrontEnd.u64(0x1ff), []) },
    .init(name: "SET_CONFIG (config space is read-only)") { _ in (.setConfig, TestFrontEnd.config(offset: 0, bytes: [0, 0, 0, 0]), []) },
    .init(name: "SET_LOG_BASE (not offered)") { _ in (.setLogBase, TestFrontEnd.u64(0) + TestFrontEnd.u64(0), []) },
]

/// Starts two echo guests, hands back the first connected front-end and a
/// check that both guests still work.
func twoGuests() throws -> (TestFrontEnd, () throws -> Bool, [VhostUserServer]) {
    let (s1, p1) = try startServer(EchoDevice(), name: "a")
    let (s2, p2) = try startServer(EchoDevice(), name: "b")
    let fe = try TestFrontEnd(path: p1)
    try fe.start(queueCount: 2)
    let other = try TestFrontEnd(path: p2)
    try other.start(queueCount: 2)
    func echo(_ f: TestFrontEnd) -> Bool {
        let req = f.alloc(8), resp = f.alloc(8)
        f.write(req, [1, 2])
        f.queues[0].add([(req, 2, false), (resp, 2, true)])
        return f.queues[0].waitUsed()?.1 == 2 && f.read(resp, 2) == [2, 1]
    }
    return (fe, { echo(other) && echo(fe) }, [s1, s2])
}

@Suite("malformed vhost-user messages are refused, the daemon and other guests go on")
struct MalformedMessageTests {
    @Test(arguments: badMessages)
    func refused(_ bad: BadMessage) throws {
        let (fe, bothWork, servers) = try twoGuests()
        defer { servers.forEach { $0.stop() } }
        let (req, payload, fds) = bad.build(fe)
        #expect(try fe.sendAcked(req, payload: payload, fds: fds) != 0, "\(bad.name) was accepted")
        #expect(try bothWork())
    }

    @Test func unknownRequestIsNacked() throws {
        let (fe, bothWork, servers) = try twoGuests()
        defer { servers.forEach { $0.stop() } }
        try fe.sendRaw(request: 999, flags: VhostUserHeader.version | VhostUserHeader.needReply, payload: [1, 2, 3])
        let (h, p) = try fe.receive()
        #expect(h.request == 999 && p.count == 8 && p[0] == 1)
        #expect(try bothWork())
    }

    @Test func getConfigPastTheEndGetsEmptyReply() throws {
        let (fe, bothWork, servers) = try twoGuests()
        defer { servers.forEach { $0.stop() } }
        try fe.send(.getConfig, payload: TestFrontEnd.config(offset: 12, bytes: [UInt8](repeating: 0, count: 8)))
        #expect(try fe.receive().1.isEmpty)
        #expect(try bothWork())
    }

    @Test func ringOutsideMemoryIsNotStarted() throws {
        let (fe, bothWork, servers) = try twoGuests()
        defer { servers.forEach { $0.stop() } }
        _ = try fe.stopQueues()
        try fe.send(.setVringAddr, payload: addr(1, desc: 0x10, used: 0x7f00_0000_0000, avail: 0x7f00_0000_0000))
        #expect(try fe.sendAcked(.setVringKick, payload: TestFrontEnd.u64(1), fds: [fe.queues[1].kick.fd]) != 0)
        try fe.send(.setVringAddr, payload: addr(1, desc: 0x1, used: 0x1, avail: 0x1))
        #expect(try fe.sendAcked(.setVringKick, payload: TestFrontEnd.u64(1), fds: [fe.queues[1].kick.fd]) != 0)
        try fe.start(queueCount: 2)
        #expect(try bothWork())
    }

    /// Framing errors end the connection (the stream cannot be resynchronised);
    /// the guest's socket accepts a new front-end and the other guest never notices.
    @Test(arguments: ["oversized", "badVersion", "shortHeader"])
    func framingErrorsCloseOnlyThatConnection(_ kind: String) throws {
        let (s1, p1) = try startServer(EchoDevice(), name: "c")
        let (s2, p2) = try startServer(EchoDevice(), name: "d")
        defer { s1.stop(); s2.stop() }
        let other = try TestFrontEnd(path: p2)
        try other.start(queueCount: 2)
        let fe = try TestFrontEnd(path: p1)
        switch kind {
        case "oversized": try fe.sendRaw(request: 1, size: 1 << 20, payload: [])
        case "badVersion": try fe.sendRaw(request: 1, flags: 0x2)
        default:
            _ = [UInt8](repeating: 1, count: 5).withUnsafeBytes { send(fe.socketFD, $0.baseAddress, 5, 0) }
            fe.closeSocket()
        }
        if kind != "shortHeader" { #expect(fe.backendClosed()) }
        var n = 0
        while (s1.connections < 1 || s1.isConnected) && n < 300 { usleep(10_000); n += 1 }
        let again = try TestFrontEnd(path: p1)
        try again.start(queueCount: 2)
        let req = again.alloc(8), resp = again.alloc(8)
        again.queues[0].add([(req, 1, false), (resp, 1, true)])
        #expect(again.queues[0].waitUsed() != nil)
        let r2 = other.alloc(8), w2 = other.alloc(8)
        other.queues[0].add([(r2, 1, false), (w2, 1, true)])
        #expect(other.queues[0].waitUsed() != nil)
    }
}
