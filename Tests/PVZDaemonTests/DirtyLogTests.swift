import Testing
import Foundation
import CPVZShim
import GPUModel
import PVZContract
import PVZDaemon
import PVZServer
import TestFrontEnd
import VhostUser
#if canImport(Glibc)
import Glibc
#endif

/// What QEMU does while it migrates a running guest: a dirty log
/// (LOG_SHMFD), VHOST_F_LOG_ALL, the used rings logged at their guest
/// addresses. Every page the daemon writes (answers, events, used rings,
/// the register mirror, what the firmware stores) must show in the log, or
/// the destination gets it stale.
@Suite("dirty-page logging during a migration", .serialized)
struct MigrationDirtyLogTests {
    /// The front-end's side of the log: a memfd covering the test's 256 MiB of RAM.
    final class Log {
        static let bytes = (256 << 20) / 4096 / 8
        let fd = pvz_memfd_create("dirty-log", UInt32(MFD_CLOEXEC))
        let view: UnsafeMutablePointer<UInt8>
        init() {
            precondition(fd >= 0 && ftruncate(fd, off_t(Self.bytes)) == 0)
            view = mmap(nil, Self.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)!.assumingMemoryBound(to: UInt8.self)
        }
        deinit { munmap(view, Self.bytes); close(fd) }
        /// Dirty pages, cleared as QEMU's sync clears them.
        func take() -> Set<UInt64> {
            var pages = Set<UInt64>()
            for i in 0..<Self.bytes where view[i] != 0 {
                for b in 0..<8 where view[i] & (1 << b) != 0 { pages.insert(UInt64(i * 8 + b)) }
                view[i] = 0
            }
            return pages
        }
        /// Takes until every page of `expected` was seen or 2 s passed: the
        /// daemon marks a page after its write, so the test can see a write
        /// (a used element, an event) a moment before its mark.
        func take(awaiting expected: Set<UInt64>) -> Set<UInt64> {
            var pages = take()
            let end = ContinuousClock.now + .seconds(2)
            while !expected.isSubset(of: pages) && ContinuousClock.now < end {
                usleep(1000)
                pages.formUnion(take())
            }
            return pages
        }
    }

    static func page(_ gpa: UInt64) -> UInt64 { gpa / 4096 }

    /// QEMU's vhost_dev_set_log(true): SET_LOG_BASE, SET_FEATURES with
    /// VHOST_F_LOG_ALL, SET_VRING_ADDR with VHOST_VRING_F_LOG per ring.
    func startLogging(_ fe: TestFrontEnd, _ log: Log, features: UInt64) throws {
        let proto = try fe.getU64(.getProtocolFeatures)
        #expect(proto & ProtocolFeatures.logShmfd.rawValue != 0)
        try fe.send(.setProtocolFeatures, payload: TestFrontEnd.u64(proto & (ProtocolFeatures.mq.rawValue | ProtocolFeatures.replyAck.rawValue
            | ProtocolFeatures.config.rawValue | ProtocolFeatures.backendReq.rawValue | ProtocolFeatures.status.rawValue
            | ProtocolFeatures.configureMemSlots.rawValue | ProtocolFeatures.resetDevice.rawValue
            | ProtocolFeatures.deviceState.rawValue | ProtocolFeatures.logShmfd.rawValue)))
        try fe.send(.setLogBase, payload: TestFrontEnd.u64(UInt64(Log.bytes)) + TestFrontEnd.u64(0), fds: [log.fd])
        let (h, _) = try fe.receive()
        #expect(h.request == FrontEndRequest.setLogBase.rawValue, "QEMU waits for SET_LOG_BASE's reply")
        #expect(try fe.sendAcked(.setFeatures, payload: TestFrontEnd.u64(features | VirtioFeature.logAll)) == 0)
        for q in fe.queues {
            var a = [UInt8](repeating: 0, count: VringAddrPayload.size)
            a.withUnsafeMutableBytes {
                VringAddrPayload(index: UInt32(q.index), flags: VringAddrPayload.logFlag, desc: fe.userBase + (q.descGPA - fe.ramGPA),
                                 used: fe.userBase + (q.usedGPA - fe.ramGPA), avail: fe.userBase + (q.availGPA - fe.ramGPA),
                                 log: q.usedGPA).encode(into: $0)
            }
            #expect(try fe.sendAcked(.setVringAddr, payload: a) == 0)
        }
    }

    @Test func everyPageTheDaemonWritesIsLogged() throws {
        let h = try Harness()
        let fe = try TestFrontEnd(path: h.socket(1))
        let features = try fe.start()
        #expect(try fe.getU64(.getFeatures) & VirtioFeature.logAll != 0, "a migratable device offers VHOST_F_LOG_ALL")
        #expect(features & VirtioFeature.logAll == 0)
        let g = Guest(fe: fe)
        #expect(g.call(.createDevConfig)?.status == .ok)
        #expect(g.mapFirmwareHeap() == .ok)
        #expect(g.call(.writeReg, Guest.u32(PVZRegister.irqEnable) + Guest.u32(3))?.status == .ok)
        g.eventBuffers = g.postEventBuffers(4)
        g.initRing()
        let log = Log()
        try startLogging(fe, log, features: features)
        _ = log.take()

        // A hypercall: its answer, the hypercallq's used ring, the register mirror.
        #expect(g.call(.readReg, Guest.u32(PVZRegister.coreID))?.status == .ok)
        let carveout: UInt64 = 0x0800_0000
        var dirty = log.take(awaiting: [Self.page(g.resp), Self.page(g.hypercallq.usedGPA), Self.page(carveout)])
        #expect(dirty.contains(Self.page(g.resp)))
        #expect(dirty.contains(Self.page(g.hypercallq.usedGPA)))
        #expect(dirty.contains(Self.page(carveout)))
        #expect(!dirty.contains(Self.page(g.hypercallq.descGPA)), "the descriptors were only read")

        // A kick: the firmware's ring fields and FENCE target, kickq's used
        // ring, the events (buffers and eventq's used ring).
        let target: UInt64 = 0x40_0000   // its own page, far from the ring
        g.command(0, op: 1, seq: 1, arg0: target, arg1: 0xF00D)
        let eventBuffer = try #require(g.eventBuffers.first)
        #expect(g.kick(writeOffset: 32))
        let done = try #require(g.nextEvent())
        #expect(done.code == 0 && done.value == 1)
        dirty = log.take(awaiting: [Self.page(Guest.fwHeap), Self.page(Guest.fwHeap + target), Self.page(g.kickq.usedGPA),
                                    Self.page(g.eventq.usedGPA), Self.page(eventBuffer)])
        #expect(dirty.contains(Self.page(Guest.fwHeap)), "read_offset and completed_seq")
        #expect(dirty.contains(Self.page(Guest.fwHeap + target)), "the FENCE target")
        #expect(dirty.contains(Self.page(g.kickq.usedGPA)))
        #expect(dirty.contains(Self.page(g.eventq.usedGPA)))
        #expect(dirty.contains(Self.page(eventBuffer)), "the KICK_DONE event")
        #expect(g.fe.load(Guest.fwHeap + target, as: UInt64.self) == 0xF00D)

        // QEMU turns logging off when the migration ends: nothing more is marked.
        #expect(try fe.sendAcked(.setFeatures, payload: TestFrontEnd.u64(features)) == 0)
        _ = log.take()   // marks of writes made while it was on
        #expect(g.call(.readReg, Guest.u32(PVZRegister.coreID))?.status == .ok)
        #expect(log.take().isEmpty)
    }

    /// A log the daemon could not map: QEMU does not read SET_LOG_BASE's
    /// answer, so the state save must refuse, or the migration would
    /// complete with pages the daemon wrote missing from the copy.
    @Test func aLogThatCannotBeMappedFailsTheMigration() throws {
        let h = try Harness()
        let fe = try TestFrontEnd(path: h.socket(1))
        let features = try fe.start()
        let g = Guest(fe: fe)
        #expect(g.call(.createDevConfig)?.status == .ok)
        let tiny = Log()
        try startLogging(fe, tiny, features: features)
        // A new log (QEMU resizes it) of size 0: refused, and still answered (QEMU blocks on the answer).
        try fe.send(.setLogBase, payload: TestFrontEnd.u64(0) + TestFrontEnd.u64(0), fds: [tiny.fd])
        let (reply, answer) = try fe.receive()
        #expect(reply.request == FrontEndRequest.setLogBase.rawValue && answer == TestFrontEnd.u64(1))
        _ = try fe.stopQueues()
        #expect(throws: (any Error).self) { _ = try fe.saveDeviceState() }
        // The next log maps: the save works again.
        try fe.send(.setLogBase, payload: TestFrontEnd.u64(UInt64(Log.bytes)) + TestFrontEnd.u64(0), fds: [tiny.fd])
        _ = try fe.receive()
        #expect(try fe.saveDeviceState().count > 12)
    }
}

/// What a migration relies on at the source: when QEMU stops the device
/// (GET_VRING_BASE), every kick the daemon popped is back on kickq's used
/// ring, finished or cancelled, so the ring's base is also its used index
/// and nothing is left in flight for the destination to lose.
@Suite("kickq stop leaves nothing in flight", .serialized)
struct KickqStopTests {
    @Test func everyPoppedKickIsReturnedBeforeTheBaseIsAnswered() throws {
        let h = try Harness()
        let g = try h.connect(1)
        #expect(g.call(.createDevConfig)?.status == .ok)
        #expect(g.mapFirmwareHeap() == .ok)
        g.eventBuffers = g.postEventBuffers(32)
        g.initRing()
        for slot in 0..<UInt32(127) { g.command(slot, op: 2, seq: UInt64(slot) + 1, arg0: 0x2000) }   // TIMESTAMPs
        // 32 doorbells at once (the limit a guest may queue), then the stop.
        for _ in 0..<32 {
            let b = g.fe.alloc(8)
            g.fe.store(b, UInt32(127 * 32)); g.fe.store(b + 4, UInt32(0))
            _ = g.kickq.add([(b, 8, false)])
        }
        #expect(g.kickq.waitUsed() != nil, "the first kick came back")
        let bases = try g.fe.stopQueues()
        #expect(bases[2] == UInt32(g.kickq.usedIdx), "kickq base \(bases[2]) but used idx \(g.kickq.usedIdx): kicks left in flight")
        #expect(bases[2] >= 1)
        #expect(g.fe.load(Guest.fwHeap + 0x10, as: UInt64.self) == 127, "the first kick ran its 127 commands")
    }
}
