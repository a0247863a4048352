import CPVZShim
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

/// Guest RAM for tests: memfd-backed regions mapped through the real
/// `GuestMemory` (so translate, bounds and the SIGBUS guard are the code under
/// test), plus a driver-side view to lay out descriptors and rings. No socket,
/// no thread, no front-end.
final class MockGuestMemory {
    struct Region { var gpa: UInt64; var size: UInt64; var fd: Int32 }
    let regions: [Region]
    let memory: GuestMemory

    /// Regions as (guest physical address, size); each gets its own memfd.
    init(_ layout: [(gpa: UInt64, size: UInt64)] = [(0, 0x10_0000)], dirtyLog: DirtyLog? = nil) throws {
        var rs: [Region] = []
        for (gpa, size) in layout {
            let fd = pvz_memfd_create("mock-guest", UInt32(MFD_CLOEXEC))
            precondition(fd >= 0 && ftruncate(fd, off_t(size)) == 0, "memfd: errno \(errno)")
            rs.append(Region(gpa: gpa, size: size, fd: fd))
        }
        regions = rs
        memory = try GuestMemory(
            descriptors: rs.map { MemoryRegionDescriptor(guestPhysAddr: $0.gpa, size: $0.size, userAddr: $0.gpa, mmapOffset: 0) },
            fds: rs.map(\.fd), dirtyLog: dirtyLog)
    }

    deinit { for r in regions { close(r.fd) } }

    func host(_ gpa: UInt64, _ length: UInt64 = 1) -> UnsafeMutableRawPointer {
        guard let p = memory.translate(gpa: gpa, length: length) else { fatalError("test wrote outside its RAM at 0x\(String(gpa, radix: 16))") }
        return p
    }

    func write16(_ gpa: UInt64, _ v: UInt16) { host(gpa, 2).storeBytes(of: v.littleEndian, as: UInt16.self) }
    func write32(_ gpa: UInt64, _ v: UInt32) { host(gpa, 4).storeBytes(of: v.littleEndian, as: UInt32.self) }
    func write64(_ gpa: UInt64, _ v: UInt64) { host(gpa, 8).storeBytes(of: v.littleEndian, as: UInt64.self) }
    func read16(_ gpa: UInt64) -> UInt16 { UInt16(littleEndian: host(gpa, 2).loadUnaligned(as: UInt16.self)) }
    func read32(_ gpa: UInt64) -> UInt32 { UInt32(littleEndian: host(gpa, 4).loadUnaligned(as: UInt32.self)) }
}

/// The driver's side of one split ring in `MockGuestMemory` (rust-vmm
/// virtio-queue's MockSplitQueue is the model): descriptor table, avail and
/// used rings at fixed guest addresses, written the way a driver would.
final class MockSplitQueue {
    static let next: UInt16 = 1, write: UInt16 = 2, indirect: UInt16 = 4
    let mem: MockGuestMemory
    let size: UInt16
    let descGPA: UInt64, availGPA: UInt64, usedGPA: UInt64
    private(set) var availIdx: UInt16 = 0

    init(_ mem: MockGuestMemory, size: UInt16 = 16, at base: UInt64 = 0x1000) {
        self.mem = mem
        self.size = size
        descGPA = base
        availGPA = base + 16 * UInt64(size)
        usedGPA = (availGPA + 6 + 2 * UInt64(size) + 3) & ~3
    }

    /// Writes descriptor `i` of the table at `table` (the queue's own by default).
    func desc(_ i: Int, addr: UInt64, len: UInt32, flags: UInt16 = 0, next: UInt16 = 0, table: UInt64? = nil) {
        let d = (table ?? descGPA) + 16 * UInt64(i)
        mem.write64(d, addr)
        mem.write32(d + 8, len)
        mem.write16(d + 12, flags)
        mem.write16(d + 14, next)
    }

    /// Makes `head` available and publishes the new avail idx.
    func push(_ head: UInt16) {
        mem.write16(availGPA + 4 + 2 * UInt64(availIdx & (size - 1)), head)
        availIdx &+= 1
        mem.write16(availGPA + 2, availIdx)
    }

    /// Sets avail idx directly (a driver that lies about it).
    func setAvailIdx(_ v: UInt16) { availIdx = v; mem.write16(availGPA + 2, v) }
    func setAvailFlags(_ v: UInt16) { mem.write16(availGPA, v) }
    func setUsedEvent(_ v: UInt16) { mem.write16(availGPA + 4 + 2 * UInt64(size), v) }

    var usedIdx: UInt16 { mem.read16(usedGPA + 2) }
    func usedElem(_ slot: Int) -> (id: UInt32, len: UInt32) {
        let e = usedGPA + 4 + 8 * UInt64(slot)
        return (mem.read32(e), mem.read32(e + 4))
    }
    var availEvent: UInt16 { mem.read16(usedGPA + 4 + 8 * UInt64(size)) }

    /// The device side, built by the same translate the engine uses.
    func deviceQueue(indirect: Bool = true, eventIdx: Bool = false, base: UInt16 = 0) throws -> SplitQueue {
        let layout = try SplitQueue.layout(size: size, desc: descGPA, avail: availGPA, used: usedGPA) {
            mem.memory.translate(gpa: $0, length: $1)
        }
        return SplitQueue(size: size, layout: layout, base: base, eventIdx: eventIdx, indirect: indirect)
    }
}

/// Pops and walks the next chain the way the engine does.
func popAndWalk(_ q: inout SplitQueue, _ mem: MockGuestMemory, _ chain: DescriptorChain) throws(ChainError) -> UInt16? {
    guard let head = try q.popHead() else { return nil }
    try chain.walk(head: head, of: q, memory: mem.memory)
    return head
}
