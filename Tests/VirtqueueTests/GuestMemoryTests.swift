import Testing
import CPVZShim
import Foundation
import Platform
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

/// Memory-table values straight from a hostile front-end: every one is an
/// error with the value in it, never a trap.
@Suite struct MemoryTableTests {
    func eventFD() -> Int32 { eventfd(0, Int32(EFD_CLOEXEC)) }

    /// Issue 10: an eventfd (or pipe) with mmap_offset >= 2^63 trapped at
    /// `off_t(alignedOffset)` ("Not enough bits"), killing every guest.
    @Test(arguments: [UInt64(1) << 63, (UInt64(1) << 63) + 0x1234, UInt64.max - 0xFFF])
    func nonRegularFDWithHugeOffset(_ offset: UInt64) throws {
        let fd = eventFD()
        defer { close(fd) }
        let d = MemoryRegionDescriptor(guestPhysAddr: 0, size: 0x1000, userAddr: 0x1000_0000, mmapOffset: offset)
        #expect(throws: GuestMemoryError.self) { try MappedRegion(fd: fd, d, index: 0) }
        if offset <= UInt64.max - 0x1000 {
            #expect(throws: GuestMemoryError.offsetTooLarge(index: 0, offset: offset, limit: UInt64(Int64.max))) {
                _ = try GuestMemory(descriptors: [d], fds: [fd])
            }
        }
    }

    @Test func pipeWithHugeOffset() throws {
        var p: [Int32] = [0, 0]
        #expect(pipe(&p) == 0)
        defer { close(p[0]); close(p[1]) }
        let d = MemoryRegionDescriptor(guestPhysAddr: 0, size: 0x1000, userAddr: 0, mmapOffset: 1 << 63)
        #expect(throws: GuestMemoryError.offsetTooLarge(index: 0, offset: 1 << 63, limit: UInt64(Int64.max))) {
            try MappedRegion(fd: p[0], d, index: 0)
        }
    }

    @Test func regionMappedPastItsFileIsRefused() throws {
        let fd = pvz_memfd_create("t", UInt32(MFD_CLOEXEC))
        defer { close(fd) }
        #expect(ftruncate(fd, 0x2000) == 0)
        let d = MemoryRegionDescriptor(guestPhysAddr: 0, size: 0x2000, userAddr: 0, mmapOffset: 1 << 63)
        #expect(throws: GuestMemoryError.fileTooSmall(index: 0, needed: (1 << 63) + 0x2000, actual: 0x2000)) {
            try MappedRegion(fd: fd, d, index: 0)
        }
    }

    @Test func sizeAndOffsetWrapping() throws {
        let fd = eventFD()
        defer { close(fd) }
        let d = MemoryRegionDescriptor(guestPhysAddr: 0, size: UInt64.max, userAddr: 0, mmapOffset: 0x1234)
        #expect(throws: GuestMemoryError.wraps(index: 0, what: "mmap offset", start: 0x1234, size: UInt64.max)) {
            try MappedRegion(fd: fd, d, index: 0)
        }
        let z = MemoryRegionDescriptor(guestPhysAddr: 0, size: 0, userAddr: 0, mmapOffset: 0)
        #expect(throws: GuestMemoryError.emptyRegion(index: 3)) { try MappedRegion(fd: fd, z, index: 3) }
    }

    @Test func translateNeverWraps() throws {
        let mem = try MockGuestMemory([(UInt64.max - 0xFFFF, 0x10000)])
        #expect(mem.memory.translate(gpa: UInt64.max - 0xF, length: 16) != nil)
        #expect(mem.memory.translate(gpa: UInt64.max - 0xF, length: 17) == nil)
        #expect(mem.memory.translate(gpa: UInt64.max, length: UInt64.max) == nil)
        #expect(mem.memory.totalSize == 0x10000)
    }
}

/// Guest memory that shrinks under the daemon (issue 10): the front-end
/// truncates its memfd after SET_MEM_TABLE. An access to the lost pages must
/// break only that guest's memory table, never the process.
@Suite struct ShrinkingMemoryTests {
    @Test func truncatedRegionReadsZeroAndIsFlagged() throws {
        let mem = try MockGuestMemory([(0, 0x10000), (0x10000, 0x10000)])
        mem.write32(0x8000, 0x1234_5678)
        #expect(!mem.memory.faulted)
        #expect(ftruncate(mem.regions[0].fd, 0x1000) == 0)
        // Before the guard, this read killed the process with SIGBUS.
        let v = mem.host(0x8000, 4).load(as: UInt32.self)
        #expect(v == 0)
        #expect(mem.memory.faulted)
        #expect(mem.memory.regions[0].faulted && !mem.memory.regions[1].faulted)
        // The replaced pages stay usable for whatever the daemon still does there.
        mem.write32(0x8000, 7)
        #expect(mem.read32(0x8000) == 7)
        mem.write32(0x18000, 9)
        #expect(mem.read32(0x18000) == 9)
    }

    @Test func ringWalkOverTruncatedMemoryEndsWithoutACrash() throws {
        let mem = try MockGuestMemory([(0, 0x10000)])
        let q = MockSplitQueue(mem, size: 8, at: 0x4000)
        q.desc(0, addr: 0x8000, len: 8)
        q.push(0)
        var dq = try q.deviceQueue()
        #expect(ftruncate(mem.regions[0].fd, 0) == 0)
        let chain = DescriptorChain(capacity: 8)
        // The avail idx now reads 0: the ring looks empty.
        do { let h = try popAndWalk(&dq, mem, chain); #expect(h == nil) }
        #expect(mem.memory.faulted)
    }

    @Test func faultOnAnotherThreadIsCaughtToo() throws {
        let mem = try MockGuestMemory([(0, 0x10000)])
        #expect(ftruncate(mem.regions[0].fd, 0) == 0)
        let p = UInt(bitPattern: mem.host(0x9000, 8))
        // As the firmware thread writing a fence would.
        let t = try OSThread(name: "fence") {
            pvz_store_release_u64(UnsafeMutableRawPointer(bitPattern: p)!, 42)
        }
        t.join()
        #expect(mem.memory.faulted)
        #expect(mem.read32(0x9000) == 42)
    }

    @Test func freedMappingLeavesTheGuardTable() throws {
        // More tables than guard slots, one after another: slots are reused.
        for _ in 0..<(Int(PVZ_GUARD_SLOTS) + 10) {
            let mem = try MockGuestMemory([(0, 0x1000)])
            #expect(!mem.memory.faulted)
        }
    }

    /// A SIGBUS that is not in guest memory is a daemon bug: it must still
    /// kill the process, as it did before the guard existed.
    @Test func sigbusOutsideGuestMemoryStillKills() async {
        await #expect(processExitsWith: .signal(SIGBUS)) {
            #expect(pvz_guard_install() == 0)
            let fd = pvz_memfd_create("not-guest", 0)
            _ = ftruncate(fd, 0x2000)
            let p = mmap(nil, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)!
            _ = ftruncate(fd, 0)
            _ = p.load(fromByteOffset: 0x1000, as: UInt8.self)
        }
    }

    @Test func sigbusSentByKillStillKills() async {
        await #expect(processExitsWith: .signal(SIGBUS)) {
            #expect(pvz_guard_install() == 0)
            kill(getpid(), SIGBUS)
            // kill() to the process may be taken by any thread, a little later:
            // wait for it rather than exit 0 first.
            for _ in 0..<100 { usleep(50_000) }
        }
    }
}
