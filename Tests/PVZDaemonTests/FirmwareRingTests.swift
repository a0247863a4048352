import Testing
import Foundation
import PVZContract
import GPUModel
import PVZDaemon
import PVZServer
import TestFrontEnd
import VhostUser
import VMManager

/// The guest side of the firmware: ring in the firmware heap, doorbells on
/// kickq, interrupts on eventq.
extension Guest {
    static let fwHeap: UInt64 = 0x0100_0000
    var eventq: DriverQueue { fe.queues[1] }
    var kickq: DriverQueue { fe.queues[2] }

    func mapFirmwareHeap() -> PVZStatus? {
        call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(Guest.fwHeap))?.status
    }
    func initRing(size: UInt32 = 4096) {
        fe.store(Guest.fwHeap + 0x4, size)
        fe.store(Guest.fwHeap + 0x8, UInt32(0))
        fe.store(Guest.fwHeap + 0x0, UInt32(0x474E_4952))
    }
    func command(_ slot: UInt32, op: UInt32, seq: UInt64, arg0: UInt64, arg1: UInt64 = 0, flags: UInt32 = 0) {
        let c = Guest.fwHeap + 0x1000 + UInt64(slot) * 32
        fe.store(c, op); fe.store(c + 4, flags); fe.store(c + 8, seq); fe.store(c + 16, arg0); fe.store(c + 24, arg1)
    }
    func postEventBuffers(_ n: Int) -> [UInt64] {
        (0..<n).map { _ in
            let b = fe.alloc(16)
            eventq.add([(b, 16, true)])
            return b
        }
    }
    /// Rings the doorbell and waits for the kick chain to come back.
    func kick(writeOffset: UInt32, flags: UInt32 = 0) -> Bool {
        let b = fe.alloc(8)
        fe.store(b, writeOffset); fe.store(b + 4, flags)
        kickq.add([(b, 8, false)])
        return kickq.waitUsed() != nil
    }
    /// The next event from eventq (buffers are used in the order posted).
    func nextEvent() -> GPUEvent? {
        guard let (_, len) = eventq.waitUsed(), len == 16, !eventBuffers.isEmpty else { return nil }
        let b = eventBuffers.removeFirst()
        return GPUEvent.decode(from: UnsafeRawBufferPointer(start: fe.host(b), count: 16))
    }
}


@Suite("firmware ring, kicks and interrupts through the daemon", .serialized)
struct FirmwareRingTests {
    @Test func fencesTimestampsIRQsAndCompletedSeq() throws {
        let h = try Harness()
        let g = try h.connect(1)
        #expect(g.call(.createDevConfig)?.status == .ok)
        #expect(g.mapFirmwareHeap() == .ok)
        #expect(g.call(.writeReg, Guest.u32(PVZRegister.irqEnable) + Guest.u32(3))?.status == .ok)
        g.eventBuffers = g.postEventBuffers(8)
        g.initRing()
        g.command(0, op: 1, seq: 1, arg0: 0x2000, arg1: 0xFEED_F00D_CAFE_BEEF)  // FENCE
        g.command(1, op: 2, seq: 2, arg0: 0x2008)                               // TIMESTAMP
        g.command(2, op: 3, seq: 3, arg0: 0x42)                                 // IRQ code 0x42
        g.command(3, op: 0, seq: 4, arg0: 0)                                    // NOP
        #expect(g.kick(writeOffset: 4 * 32))
        #expect(g.fe.load(Guest.fwHeap + 0x2000, as: UInt64.self) == 0xFEED_F00D_CAFE_BEEF)
        let ts1 = g.fe.load(Guest.fwHeap + 0x2008, as: UInt64.self)
        #expect(ts1 > 0)
        #expect(g.fe.load(Guest.fwHeap + 0xC, as: UInt32.self) == 128)   // read_offset
        #expect(g.fe.load(Guest.fwHeap + 0x10, as: UInt64.self) == 4)    // completed_seq
        let irq = try #require(g.nextEvent())
        #expect(irq.type == .firmware && irq.code == 0x42 && irq.value == 3)
        let done = try #require(g.nextEvent())
        #expect(done.type == .firmware && done.code == 0 && done.value == 4)
        // IRQ_STATUS bit 0 is set and clears on write-1.
        let st = try #require(g.call(.readReg, Guest.u32(PVZRegister.irqStatus)))
        #expect(st.output.le32(0) & 1 == 1)
        #expect(g.call(.writeReg, Guest.u32(PVZRegister.irqStatus) + Guest.u32(1))?.status == .ok)
        #expect(g.call(.readReg, Guest.u32(PVZRegister.irqStatus))?.output.le32(0) == 0)
        // A second batch: timestamps keep increasing, completed_seq follows.
        g.command(4, op: 2, seq: 5, arg0: 0x2008)
        #expect(g.kick(writeOffset: 5 * 32))
        #expect(g.fe.load(Guest.fwHeap + 0x2008, as: UInt64.self) > ts1)
        #expect(g.fe.load(Guest.fwHeap + 0x10, as: UInt64.self) == 5)
        // The register bank is mirrored into the carve-out.
        #expect(g.fe.load(0x0800_0000 + UInt64(PVZRegister.coreID), as: UInt32.self) == PVZRegister.coreIDValue)
        #expect(g.fe.load(0x0800_0000 + UInt64(PVZRegister.osid), as: UInt32.self) == 1)
        #expect(g.fe.load(0x0800_0000 + UInt64(PVZRegister.commands), as: UInt32.self) == 5)
    }

    @Test func badCommandFailsAloneAndBadRingFailsTheKick() throws {
        let h = try Harness()
        let g = try h.connect(1)
        #expect(g.mapFirmwareHeap() == .ok)
        _ = g.call(.writeReg, Guest.u32(PVZRegister.irqEnable) + Guest.u32(3))
        g.eventBuffers = g.postEventBuffers(8)
        g.initRing()
        g.command(0, op: 1, seq: 1, arg0: 0x4000_0000, arg1: 1)  // FENCE outside the 32 MiB heap
        g.command(1, op: 1, seq: 2, arg0: 0x2000, arg1: 7)       // fine
        #expect(g.kick(writeOffset: 64))
        let fault = try #require(g.nextEvent())
        #expect(fault.code == 0xE000_0001)
        #expect(g.fe.load(Guest.fwHeap + 0x2000, as: UInt64.self) == 7)
        #expect(g.fe.load(Guest.fwHeap + 0x10, as: UInt64.self) == 2)
        _ = g.nextEvent()  // kick done
        // Bad magic: the whole kick fails with a fault event; nothing moves.
        g.fe.store(Guest.fwHeap, UInt32(0xBAD))
        g.command(2, op: 1, seq: 3, arg0: 0x2000, arg1: 9)
        #expect(g.kick(writeOffset: 96))
        #expect(g.nextEvent()?.code == 0xE000_0001)
        #expect(g.fe.load(Guest.fwHeap + 0x2000, as: UInt64.self) == 7)
        // Ring size not a power of two; write offset outside the ring; unaligned.
        g.initRing(size: 3000)
        #expect(g.kick(writeOffset: 96))
        #expect(g.nextEvent()?.code == 0xE000_0001)
        g.initRing(size: 4096)
        #expect(g.kick(writeOffset: 8192))
        #expect(g.nextEvent()?.code == 0xE000_0001)
        #expect(g.kick(writeOffset: 70))
        #expect(g.nextEvent()?.code == 0xE000_0001)
        #expect(h.daemon.status().guests[0].counters.faults >= 1)
        #expect(h.daemon.status().guests[0].needsReset == false)
    }

    @Test func kickWithNoHeapIsAFaultNotACrash() throws {
        let h = try Harness()
        let g = try h.connect(1)
        _ = g.call(.writeReg, Guest.u32(PVZRegister.irqEnable) + Guest.u32(3))
        g.eventBuffers = g.postEventBuffers(2)
        #expect(g.kick(writeOffset: 32))
        #expect(g.nextEvent()?.code == 0xE000_0001)
        // A kick buffer of the wrong size.
        let b = g.fe.alloc(8)
        g.kickq.add([(b, 3, false)])
        #expect(g.kickq.waitUsed() != nil)
    }

    @Test func offlineWithPendingWorkFreesHeapsAndTellsTheGuest() throws {
        let h = try Harness(guests: [(1, true, GuestPolicy()), (2, true, GuestPolicy())])
        let g = try h.connect(1), g2 = try h.connect(2)
        #expect(g.mapFirmwareHeap() == .ok)
        #expect(g.call(.createDevPhysHeaps)?.status == .ok)
        #expect(g2.mapFirmwareHeap() == .ok)
        _ = g.call(.writeReg, Guest.u32(PVZRegister.irqEnable) + Guest.u32(3))
        g.eventBuffers = g.postEventBuffers(8)
        g.initRing()
        for i in 0..<100 { g.command(UInt32(i), op: 2, seq: UInt64(i + 1), arg0: 0x2008) }
        h.daemon.processor.pause()
        let kb = g.fe.alloc(8)
        g.fe.store(kb, UInt32(100 * 32)); g.fe.store(kb + 4, UInt32(0))
        g.kickq.add([(kb, 8, false)])
        usleep(50_000)
        h.daemon.processor.resume()
        let r = h.daemon.handle(.offline(osid: OSID(1)), peer: PeerCredentials(pid: 0, uid: 0, gid: 0))
        #expect(r.ok)
        let s = h.daemon.status()
        #expect(s.guests[0].online == false)
        #expect(s.guests[0].heaps.isEmpty)
        #expect(s.guests[0].firmware == "stopped")
        #expect(s.guests[1].heaps.count == 1)
        // The guest hears about it on eventq (after the kick-done event).
        var sawVMM = false
        for _ in 0..<4 { if let e = g.nextEvent(), e.type == .vmManager { sawVMM = true; break } }
        #expect(sawVMM)
        #expect(g.call(.createDevConfig)?.status == .vmOffline)
        #expect(g2.call(.createDevConfig)?.status == .ok)
        // Offline twice is refused with the DDK's error; online again works.
        let again = h.daemon.handle(.offline(osid: OSID(1)), peer: PeerCredentials(pid: 0, uid: 0, gid: 0))
        #expect(!again.ok && again.code == ControlErrorCode.osidIsOffline)
        #expect(h.daemon.handle(.online(osid: OSID(1), priority: 3), peer: PeerCredentials(pid: 0, uid: 0, gid: 0)).ok)
        let twice = h.daemon.handle(.online(osid: OSID(1), priority: 3), peer: PeerCredentials(pid: 0, uid: 0, gid: 0))
        #expect(!twice.ok && twice.code == ControlErrorCode.osidIsOnline)
        #expect(g.mapFirmwareHeap() == .ok)
    }
}

@Suite("the HCS deadline through the daemon", .serialized)
struct HCSDeadlineTests {
    @Test func aLongKickUnderADeadlineStillCompletesOnceAndWhole() throws {
        let h = try Harness()
        let g = try h.connect(1)
        #expect(g.mapFirmwareHeap() == .ok)
        _ = g.call(.writeReg, Guest.u32(PVZRegister.irqEnable) + Guest.u32(1))
        #expect(h.daemon.handle(.configure(param: .name("HCS_DEADLINE"), value: 1), peer: PeerCredentials(pid: 0, uid: 0, gid: 0)).ok)
        g.eventBuffers = g.postEventBuffers(4)
        g.initRing(size: 0x10000)
        let n = 2000
        for i in 0..<n { g.command(UInt32(i), op: 2, seq: UInt64(i + 1), arg0: 0x20000 + 8 * UInt64(i)) }
        #expect(g.kick(writeOffset: UInt32(n * 32)))
        #expect(g.fe.load(Guest.fwHeap + 0x10, as: UInt64.self) == UInt64(n))
        let done = try #require(g.nextEvent())
        #expect(done.code == 0 && done.value == UInt64(n))
        // Timestamps strictly increase across any pre-emption points.
        var last: UInt64 = 0, increasing = true
        for i in 0..<n {
            let t = g.fe.load(Guest.fwHeap + 0x20000 + 8 * UInt64(i), as: UInt64.self)
            if t <= last { increasing = false }
            last = t
        }
        #expect(increasing)
        // Nobody more important waited: the deadline never pre-empted (DDK:
        // the hard context switch is for more important work).
        #expect(h.daemon.guests[0].device.gpu.preemptedKicks == 0)
    }

    /// A long kick of a low-priority OSID past the deadline yields at a
    /// command boundary to a higher-priority OSID's kick, then finishes.
    @Test func aLongKickYieldsToAHigherPriorityOSIDPastTheDeadline() throws {
        let h = try Harness(guests: [(1, true, GuestPolicy()), (2, true, GuestPolicy())])  // priority = OSID
        let low = try h.connect(1), high = try h.connect(2)
        #expect(low.mapFirmwareHeap() == .ok && high.mapFirmwareHeap() == .ok)
        #expect(h.daemon.handle(.configure(param: .name("HCS_DEADLINE"), value: 1), peer: PeerCredentials(pid: 0, uid: 0, gid: 0)).ok)
        low.initRing(size: 16 << 20)          // 512 Ki NOPs: far longer than 1 ms
        high.initRing()
        high.command(0, op: 1, seq: 1, arg0: 0x2000, arg1: 7)
        let bell = low.fe.alloc(8)
        low.fe.store(bell, UInt32((16 << 20) - 32)); low.fe.store(bell + 4, UInt32(0))
        low.kickq.add([(bell, 8, false)])
        usleep(20_000)
        #expect(high.kick(writeOffset: 32))
        // The high-priority kick is done while the low one still runs.
        #expect(high.fe.load(Guest.fwHeap + 0x2000, as: UInt64.self) == 7)
        #expect(low.kickq.usedIdx == 0, "the low-priority kick finished first: no pre-emption")
        #expect(low.kickq.waitUsed(timeoutMs: 60_000) != nil)
        #expect(h.daemon.guests[0].device.gpu.preemptedKicks >= 1)
        #expect(low.fe.load(Guest.fwHeap + 0xC, as: UInt32.self) == UInt32((16 << 20) - 32))   // ran whole
    }
}
