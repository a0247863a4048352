import CPVZShim
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

/// Chain walking over in-memory guest memory: the input lays out a split
/// ring (descriptor table, avail ring, an indirect-table area) in guest RAM
/// made of two adjacent regions and one at the top of the address space; the
/// device side pops, walks, gathers, scatters and returns chains as the
/// engine does. Oracle: every buffer a walk hands out lies inside one mapping.
let chainTarget = FuzzTarget(name: "chain", summary: "split-ring pop/walk/used over fuzzed rings in guest memory") {
    let layout: [(gpa: UInt64, size: UInt64)] = [(0, 0x10000), (0x10000, 0x10000), (UInt64.max - 0xFFFF, 0x10000)]
    var fds: [Int32] = []
    for (_, size) in layout {
        let fd = pvz_memfd_create("fuzz-chain", UInt32(MFD_CLOEXEC))
        precondition(fd >= 0 && ftruncate(fd, off_t(size)) == 0)
        fds.append(fd)
    }
    let memory = try! GuestMemory(descriptors: layout.map {
        MemoryRegionDescriptor(guestPhysAddr: $0.gpa, size: $0.size, userAddr: $0.gpa, mmapOffset: 0)
    }, fds: fds)
    let hostRanges = memory.regions.map { (UInt(bitPattern: $0.host), UInt($0.descriptor.size)) }
    func inside(_ p: UnsafeMutableRawPointer, _ n: Int) -> Bool {
        let a = UInt(bitPattern: p)
        return hostRanges.contains { a >= $0.0 && n >= 0 && UInt(n) <= $0.1 && a - $0.0 <= $0.1 - UInt(n) }
    }
    let chain = DescriptorChain(capacity: 256)
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
    let descGPA: UInt64 = 0x1000, availGPA: UInt64 = 0x3000, usedGPA: UInt64 = 0x4000, tableGPA: UInt64 = 0xF000

    return { data in
        var input = FuzzInput(data)
        let size = UInt16(1) << (input.u8() % 9)          // 1...256
        let flags = input.u8()
        let base = input.u16()
        // Lay out the ring parts (zero-filled past the input's end).
        func fill(_ gpa: UInt64, _ n: Int) {
            let p = memory.translate(gpa: gpa, length: UInt64(n))!
            let b = input.bytes(n)
            if b.count > 0 { p.copyMemory(from: b.baseAddress!, byteCount: b.count) }
            if b.count < n { (p + b.count).initializeMemory(as: UInt8.self, repeating: 0, count: n - b.count) }
        }
        fill(descGPA, 16 * Int(size))
        fill(availGPA, 6 + 2 * Int(size))
        fill(usedGPA, 6 + 8 * Int(size))
        fill(tableGPA, min(input.remaining, 0x1000))
        let layoutParts = try? SplitQueue.layout(size: size, desc: descGPA, avail: availGPA, used: usedGPA) {
            memory.translate(gpa: $0, length: $1)
        }
        guard let l = layoutParts else { preconditionFailure("ring layout inside RAM was refused") }
        var q = SplitQueue(size: size, layout: l, base: base, eventIdx: flags & 1 != 0, indirect: flags & 2 != 0)
        for _ in 0 ..< 2 * Int(size) {
            let head: UInt16?
            do { head = try q.popHead() } catch { return }
            guard let head else { break }
            do { try chain.walk(head: head, of: q, memory: memory) } catch { return }
            precondition(chain.readableCount + chain.writableCount <= Int(size), "chain longer than the queue")
            for i in 0 ..< chain.readableCount {
                let s = chain.readableSegment(i)
                precondition(inside(s.host, s.length), "readable buffer outside guest memory")
            }
            for i in 0 ..< chain.writableCount {
                let s = chain.writableSegment(i)
                precondition(inside(s.host, s.length), "writable buffer outside guest memory")
            }
            let n = chain.gather(into: scratch)
            let w = chain.scatter(UnsafeRawBufferPointer(rebasing: scratch[0 ..< n]))
            q.addUsed(head: head, length: UInt32(w))
            _ = q.needsNotification()
            _ = q.armAndRecheck()
        }
    }
}
