import Platform
import Testing
import CPVZShim
import TestFrontEnd
import VhostUser
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

@Suite("vhost-user engine against a test front-end")
struct EngineTests {
    @Test func handshakeAndEcho() throws {
        let dev = EchoDevice()
        let (server, path) = try startServer(dev)
        defer { server.stop() }
        let fe = try TestFrontEnd(path: path)
        let features = try fe.start(queueCount: 2)
        #expect(features & VirtioFeature.version1 != 0)
        #expect(features & VirtioFeature.protocolFeatures != 0)
        let q = fe.queues[0]
        let req = fe.alloc(8), resp = fe.alloc(8)
        fe.write(req, [1, 2, 3, 4, 5])
        q.add([(req, 5, false), (resp, 8, true)])
        let used = try #require(q.waitUsed())
        #expect(used.1 == 5)
        #expect(fe.read(resp, 5) == [5, 4, 3, 2, 1])
    }

    @Test func configSpaceIsReadableAndReadOnly() throws {
        let (server, path) = try startServer(EchoDevice())
        defer { server.stop() }
        let fe = try TestFrontEnd(path: path)
        try fe.start(queueCount: 2)
        let c = try fe.readConfig(size: 16)
        #expect(c == (0..<16).map { UInt8($0) &+ 0xA0 })
        #expect(try fe.sendAcked(.setConfig, payload: TestFrontEnd.config(offset: 0, bytes: [0, 0, 0, 0])) != 0)
        // Reading past the end is refused with an empty reply.
        try fe.send(.getConfig, payload: TestFrontEnd.config(offset: 12, bytes: [UInt8](repeating: 0, count: 8)))
        let (_, p) = try fe.receive()
        #expect(p.isEmpty)
    }

    @Test func addMemRegPathWorks() throws {
        let (server, path) = try startServer(EchoDevice())
        defer { server.stop() }
        let fe = try TestFrontEnd(path: path)
        try fe.start(queueCount: 2, useAddMemReg: true)
        let q = fe.queues[0]
        let req = fe.alloc(8), resp = fe.alloc(8)
        fe.write(req, [9, 8])
        q.add([(req, 2, false), (resp, 2, true)])
        #expect(q.waitUsed()?.1 == 2)
        #expect(fe.read(resp, 2) == [8, 9])
    }

    @Test func indirectChain() throws {
        let (server, path) = try startServer(EchoDevice())
        defer { server.stop() }
        let fe = try TestFrontEnd(path: path)
        try fe.start(queueCount: 2)
        let q = fe.queues[0]
        let table = fe.alloc(32, align: 16), req = fe.alloc(8), resp = fe.alloc(8)
        fe.write(req, [7, 6, 5])
        q.writeDesc(0, .init(addr: req, len: 3, flags: DriverQueue.fNext, next: 1), table: table)
        q.writeDesc(1, .init(addr: resp, len: 3, flags: DriverQueue.fWrite, next: 0), table: table)
        q.writeDesc(0, .init(addr: table, len: 32, flags: DriverQueue.fIndirect, next: 0))
        q.publish(head: 0)
        #expect(q.waitUsed()?.1 == 3)
        #expect(fe.read(resp, 3) == [5, 6, 7])
    }

    @Test func stopReturnsBaseAndRestartResumes() throws {
        let (server, path) = try startServer(EchoDevice())
        defer { server.stop() }
        let fe = try TestFrontEnd(path: path)
        try fe.start(queueCount: 2)
        let q = fe.queues[0]
        let req = fe.alloc(8), resp = fe.alloc(8)
        for _ in 0..<3 {
            q.add([(req, 1, false), (resp, 1, true)])
            #expect(q.waitUsed() != nil)
        }
        let bases = try fe.stopQueues()
        #expect(bases == [3, 0])
        try fe.start(queueCount: 2)
        q.add([(req, 1, false), (resp, 1, true)])
        #expect(q.waitUsed() != nil)
    }

    @Test func reconnectAfterDisconnect() throws {
        let (server, path) = try startServer(EchoDevice())
        defer { server.stop() }
        do {
            let fe = try TestFrontEnd(path: path)
            try fe.start(queueCount: 2)
            fe.closeSocket()
        }
        var waited = 0
        while server.isConnected && waited < 200 { usleep(10_000); waited += 1 }
        let fe2 = try TestFrontEnd(path: path)
        try fe2.start(queueCount: 2)
        let q = fe2.queues[0]
        let req = fe2.alloc(8), resp = fe2.alloc(8)
        q.add([(req, 1, false), (resp, 1, true)])
        #expect(q.waitUsed() != nil)
        #expect(server.connections == 2)
    }

    /// vhost-user.rst does not fix the order of a ring's set-up messages: a
    /// front-end may send the kick fd first; the ring starts once it is complete.
    @Test func kickBeforeAddressesStartsTheRingLater() throws {
        let (server, path) = try startServer(EchoDevice())
        defer { server.stop() }
        let fe = try TestFrontEnd(path: path)
        try fe.start(queueCount: 2)
        #expect(try fe.sendAcked(.resetDevice) == 0)  // forget every ring's size and addresses
        let q = fe.queues[0]
        #expect(try fe.sendAcked(.setVringKick, payload: TestFrontEnd.u64(0), fds: [q.kick.fd]) == 0)
        #expect(try fe.sendAcked(.setVringNum, payload: TestFrontEnd.state(0, UInt32(q.size))) == 0)
        #expect(try fe.sendAcked(.setVringBase, payload: TestFrontEnd.state(0, UInt32(q.availIdx))) == 0)
        let a = TestFrontEnd.vringAddr(index: 0, desc: fe.userBase + q.descGPA, used: fe.userBase + q.usedGPA,
                                       avail: fe.userBase + q.availGPA)
        #expect(try fe.sendAcked(.setVringAddr, payload: a) == 0)
        #expect(try fe.sendAcked(.setVringEnable, payload: TestFrontEnd.state(0, 1)) == 0)
        let req = fe.alloc(8), resp = fe.alloc(8)
        fe.write(req, [3, 4])
        q.add([(req, 2, false), (resp, 2, true)])
        #expect(q.waitUsed()?.1 == 2)
        #expect(fe.read(resp, 2) == [4, 3])
    }
}
