import Testing
import PVZContract
import PVZDaemon
import PVZServer
import TestFrontEnd
import VhostUser
import VMManager
import Foundation

@Suite("virtio-pvz through the daemon's sockets")
struct HypercallTests {
    @Test func configSpaceSaysWhoTheGuestIs() throws {
        let h = try Harness(guests: [(3, true, GuestPolicy())])
        let g = try h.connect(3)
        let c = try g.fe.readConfig(size: 64)
        let cs = try #require(c.withUnsafeBytes { PVZConfigSpace.decode($0) })
        #expect(cs.osid == OSID(3))
        #expect(cs.status.contains(.online))
        #expect(cs.regsIPA == IPA(0x0800_0000))
        #expect(cs.regsSize == 0x10000)
        #expect(cs.maxOSIDs == 8)
        #expect(cs.irq == 103)
    }

    @Test func allTenCallsAnswer() throws {
        let h = try Harness()
        let g = try h.connect(1)
        let cfg = try #require(g.call(.createDevConfig))
        #expect(cfg.status == .ok)
        #expect(cfg.len == 32)
        #expect(cfg.output.le32(0) == 101)          // irq
        #expect(cfg.output.le32(4) == 0x10000)      // regs_size
        #expect(cfg.output.le64(8) == 0x0800_0000)  // regs_pbase = carve-out IPA
        #expect(g.call(.createDevConfig)?.status == .alreadyExists)

        let heaps = try #require(g.call(.createDevPhysHeaps))
        #expect(heaps.status == .ok)
        #expect(heaps.output.le32(0) == 1)  // UMA
        let gpuSize = heaps.output.le64(24), gpuAddr = heaps.output.le64(32)
        #expect(gpuSize == 16 << 20)
        #expect(gpuAddr >= 0x0801_0000 && gpuAddr + gpuSize <= 0x0C00_0000)

        // Guest-origin firmware heap: 32 MiB at 16 MiB in guest RAM.
        #expect(g.call(.getDevPhysHeapOrigin, Guest.u32(PhysHeap.fwLocal.rawValue))?.output.le32(0) == 1)
        let map = g.call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(0x0100_0000))
        #expect(map?.status == .ok)
        #expect(g.call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(0x0100_0000))?.status == .alreadyExists)
        let addr = try #require(g.call(.getDevPhysHeapAddrSize, Guest.u32(PhysHeap.fwLocal.rawValue)))
        #expect(addr.status == .ok)
        #expect(addr.output.le64(0) == 32 << 20)
        #expect(addr.output.le64(8) == 0x0100_0000)

        let cs = try #require(try g.fe.readConfig(size: 64).withUnsafeBytes { PVZConfigSpace.decode($0) })
        #expect(cs.fwHeapIPA == IPA(0x0100_0000))
        #expect(cs.status.contains(.firmwareHeapMapped))
        #expect(cs.status.contains(.devConfigCreated))

        #expect(g.call(.readReg, Guest.u32(0))?.status == .ok)
        #expect(g.call(.readReg, Guest.u32(0x10000))?.status == .invalidParams)
        #expect(g.call(.readReg, Guest.u32(2))?.status == .invalidParams)
        _ = g.call(.writeReg, Guest.u32(0) + Guest.u32(0))

        #expect(g.call(.unmapDevPhysHeap)?.status == .ok)
        #expect(g.call(.unmapDevPhysHeap)?.status == .notFound)
        #expect(g.call(.destroyDevPhysHeaps)?.status == .ok)
        #expect(g.call(.destroyDevPhysHeaps)?.status == .notFound)
        #expect(g.call(.destroyDevConfig)?.status == .ok)
        #expect(g.call(.destroyDevConfig)?.status == .notFound)
    }

    @Test func offlineGuestGetsVMOffline() throws {
        let h = try Harness(guests: [(1, false, GuestPolicy())])
        let g = try h.connect(1)
        #expect(g.call(.createDevConfig)?.status == .vmOffline)
        try h.daemon.vmOnline(OSID(1), priority: 4)
        #expect(g.call(.createDevConfig)?.status == .ok)
    }

    @Test func twoGuestsAreIsolated() throws {
        let h = try Harness(guests: [(1, true, GuestPolicy()), (2, true, GuestPolicy())])
        let g1 = try h.connect(1), g2 = try h.connect(2)
        #expect(try g1.fe.readConfig(size: 64).le32(8) == 1)
        #expect(try g2.fe.readConfig(size: 64).le32(8) == 2)
        #expect(g1.call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(0x0100_0000))?.status == .ok)
        // The same IPA in the other guest's own RAM is that guest's business.
        #expect(g2.call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(0x0100_0000))?.status == .ok)
        #expect(g1.call(.createDevPhysHeaps)?.status == .ok)
        _ = try h.daemon.vmOffline(OSID(1))
        #expect(g1.call(.createDevConfig)?.status == .vmOffline)
        #expect(g2.call(.createDevConfig)?.status == .ok)
        let s = h.daemon.status()
        #expect(s.guests.first { $0.osid == 1 }?.heaps.isEmpty == true)
        #expect(s.guests.first { $0.osid == 2 }?.heaps.count == 1)
    }

    /// A front-end that left released its OSID's heaps (issue 9): the next
    /// one maps again. (A daemon restart keeps them: RestartTests.)
    @Test func aNewFrontEndStartsFromAReleasedDevice() throws {
        let h = try Harness()
        do {
            let g = try h.connect(1)
            #expect(g.call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(0x0100_0000))?.status == .ok)
            g.fe.closeSocket()
        }
        var n = 0
        while h.daemon.status().guests[0].connected && n < 200 { usleep(10_000); n += 1 }
        #expect(h.daemon.status().guests[0].heaps.isEmpty)
        let g2 = try h.connect(1)
        #expect(g2.call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(0x0100_0000))?.status == .ok)
        #expect(h.daemon.status().guests[0].heaps.count == 1)
    }
}
