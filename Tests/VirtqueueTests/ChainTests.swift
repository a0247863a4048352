import Testing
import Virtqueue

/// Every hostile-chain case against the real walker over in-memory guest RAM:
/// no socket, no thread, milliseconds.
@Suite struct ChainTests {
    let mem: MockGuestMemory
    let q: MockSplitQueue
    let chain = DescriptorChain(capacity: 1024)
    init() throws {
        mem = try MockGuestMemory()
        q = MockSplitQueue(mem, size: 16)
    }

    func walkNext(indirect: Bool = true) throws(ChainError) -> UInt16? {
        var dq = try! q.deviceQueue(indirect: indirect)
        return try popAndWalk(&dq, mem, chain)
    }

    @Test func readableThenWritableChain() throws {
        q.desc(0, addr: 0x8000, len: 24, flags: MockSplitQueue.next, next: 3)
        q.desc(3, addr: 0x9000, len: 8, flags: MockSplitQueue.next, next: 5)
        q.desc(5, addr: 0xA000, len: 64, flags: MockSplitQueue.write)
        q.push(0)
        #expect(try walkNext() == 0)
        #expect(chain.readableCount == 2 && chain.readableLength == 32)
        #expect(chain.writableCount == 1 && chain.writableLength == 64)
        #expect(chain.readableSegment(1).host == mem.host(0x9000))
    }

    @Test func emptyRingGivesNothing() throws {
        #expect(try walkNext() == nil)
    }

    @Test func zeroLengthDescriptorsAreSkipped() throws {
        q.desc(0, addr: 0xFFFF_FFFF_FFFF_0000, len: 0, flags: MockSplitQueue.next, next: 1)
        q.desc(1, addr: 0x8000, len: 4)
        q.push(0)
        #expect(try walkNext() == 0)
        #expect(chain.readableCount == 1)
    }

    @Test func loopIsRefused() {
        q.desc(0, addr: 0x8000, len: 8, flags: MockSplitQueue.next, next: 1)
        q.desc(1, addr: 0x8000, len: 8, flags: MockSplitQueue.next, next: 0)
        q.push(0)
        #expect(throws: ChainError.tooLong(limit: 16)) { try walkNext() }
    }

    @Test func selfLoopIsRefused() {
        q.desc(7, addr: 0x8000, len: 8, flags: MockSplitQueue.next, next: 7)
        q.push(7)
        #expect(throws: ChainError.tooLong(limit: 16)) { try walkNext() }
    }

    @Test func chainLongerThanTheQueueIsRefused() {
        // One indirect descriptor plus a full 16-entry table: 17 descriptors > 16.
        let table: UInt64 = 0x4000
        for i in 0..<16 { q.desc(i, addr: 0x8000, len: 4, flags: i < 15 ? MockSplitQueue.next : 0, next: UInt16(i + 1), table: table) }
        q.desc(0, addr: table, len: 16 * 16, flags: MockSplitQueue.indirect)
        q.push(0)
        #expect(throws: ChainError.tooLong(limit: 16)) { try walkNext() }
    }

    @Test func headOutOfRange() {
        q.push(16)
        #expect(throws: ChainError.headOutOfRange(head: 16, queueSize: 16)) { try walkNext() }
    }

    @Test func nextOutOfRange() {
        q.desc(0, addr: 0x8000, len: 8, flags: MockSplitQueue.next, next: 0xFFFF)
        q.push(0)
        #expect(throws: ChainError.nextOutOfRange(next: 0xFFFF, tableSize: 16)) { try walkNext() }
    }

    @Test func availIndexJump() {
        q.setAvailIdx(17)
        #expect(throws: ChainError.availIndexJump(availIdx: 17, lastAvailIdx: 0, queueSize: 16)) { try walkNext() }
    }

    @Test func availIndexWrapsAround() throws {
        // A ring resumed at 0xFFFF: idx wrapping to 0 is one entry, not a jump.
        q.desc(0, addr: 0x8000, len: 8)
        var dq = try q.deviceQueue(base: 0xFFFF)
        mem.write16(q.availGPA + 4 + 2 * 15, 0)
        q.setAvailIdx(0)
        do { let h = try popAndWalk(&dq, mem, chain); #expect(h == 0) }
        do { let h = try popAndWalk(&dq, mem, chain); #expect(h == nil) }
    }

    @Test func writableBeforeReadable() {
        q.desc(0, addr: 0x8000, len: 8, flags: MockSplitQueue.write | MockSplitQueue.next, next: 1)
        q.desc(1, addr: 0x9000, len: 8)
        q.push(0)
        #expect(throws: ChainError.readableAfterWritable(index: 1)) { try walkNext() }
    }

    @Test func bufferOutsideMemory() {
        q.desc(0, addr: 0x10_0000, len: 1)
        q.push(0)
        #expect(throws: ChainError.addressOutOfRange(gpa: 0x10_0000, length: 1)) { try walkNext() }
    }

    @Test func bufferRunningOffTheEndOfMemory() {
        q.desc(0, addr: 0xF_FFF0, len: 0x20)
        q.push(0)
        #expect(throws: ChainError.addressOutOfRange(gpa: 0xF_FFF0, length: 0x20)) { try walkNext() }
    }

    @Test func addressPlusLengthWrapping2to64() {
        q.desc(0, addr: UInt64.max - 3, len: 8)
        q.push(0)
        #expect(throws: ChainError.addressOutOfRange(gpa: UInt64.max - 3, length: 8)) { try walkNext() }
    }

    @Test func indirectWithoutTheFeature() {
        q.desc(0, addr: 0x4000, len: 16, flags: MockSplitQueue.indirect)
        q.push(0)
        #expect(throws: ChainError.indirectNotNegotiated) { try walkNext(indirect: false) }
    }

    @Test func indirectTableIsWalked() throws {
        let table: UInt64 = 0x4000
        q.desc(0, addr: 0x8000, len: 16, flags: MockSplitQueue.next, next: 1, table: table)
        q.desc(1, addr: 0x9000, len: 32, flags: MockSplitQueue.write, table: table)
        q.desc(2, addr: table, len: 32, flags: MockSplitQueue.indirect)
        q.push(2)
        #expect(try walkNext() == 2)
        #expect(chain.readableLength == 16 && chain.writableLength == 32)
    }

    @Test func nestedIndirect() {
        let table: UInt64 = 0x4000
        q.desc(0, addr: 0x5000, len: 16, flags: MockSplitQueue.indirect, table: table)
        q.desc(0, addr: table, len: 16, flags: MockSplitQueue.indirect)
        q.push(0)
        #expect(throws: ChainError.nestedIndirect) { try walkNext() }
    }

    @Test func indirectWithNext() {
        q.desc(0, addr: 0x4000, len: 16, flags: MockSplitQueue.indirect | MockSplitQueue.next, next: 1)
        q.push(0)
        #expect(throws: ChainError.indirectWithNext) { try walkNext() }
    }

    @Test(arguments: [0, 8, 17, 16 * 17, UInt32.max & ~15] as [UInt32])
    func badIndirectLength(_ len: UInt32) {
        q.desc(0, addr: 0x4000, len: len, flags: MockSplitQueue.indirect)
        q.push(0)
        #expect(throws: ChainError.badIndirectLength(length: len, limit: 16)) { try walkNext() }
    }

    @Test func indirectTableOutsideMemory() {
        q.desc(0, addr: 0xF_FFF0, len: 32, flags: MockSplitQueue.indirect)
        q.push(0)
        #expect(throws: ChainError.addressOutOfRange(gpa: 0xF_FFF0, length: 32)) { try walkNext() }
    }

    @Test func indirectNextOutOfItsTable() {
        let table: UInt64 = 0x4000
        q.desc(0, addr: 0x8000, len: 16, flags: MockSplitQueue.next, next: 2, table: table)
        q.desc(0, addr: table, len: 32, flags: MockSplitQueue.indirect)
        q.push(0)
        #expect(throws: ChainError.nextOutOfRange(next: 2, tableSize: 2)) { try walkNext() }
    }

    @Test func indirectLoopIsRefused() {
        let table: UInt64 = 0x4000
        q.desc(0, addr: 0x8000, len: 16, flags: MockSplitQueue.next, next: 1, table: table)
        q.desc(1, addr: 0x8000, len: 16, flags: MockSplitQueue.next, next: 0, table: table)
        q.desc(0, addr: table, len: 32, flags: MockSplitQueue.indirect)
        q.push(0)
        #expect(throws: ChainError.tooLong(limit: 16)) { try walkNext() }
    }

    @Test func gatherAndScatterStayInsideTheChain() throws {
        let src = mem.host(0x8000, 8)
        for i in 0..<8 { src.storeBytes(of: UInt8(i + 1), toByteOffset: i, as: UInt8.self) }
        q.desc(0, addr: 0x8000, len: 8, flags: MockSplitQueue.next, next: 1)
        q.desc(1, addr: 0x9000, len: 4, flags: MockSplitQueue.write)
        q.push(0)
        #expect(try walkNext() == 0)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
        defer { buf.deallocate() }
        #expect(chain.gather(into: buf) == 8)
        #expect(buf[7] == 8)
        mem.write32(0x9004, 0xDEAD_BEEF)
        let bytes: [UInt8] = [9, 9, 9, 9, 9, 9]
        #expect(bytes.withUnsafeBytes { chain.scatter($0) } == 4)
        #expect(mem.read32(0x9004) == 0xDEAD_BEEF)
    }
}

/// A buffer is checked against one region: two regions that happen to be
/// adjacent in guest-physical space are still two mappings in the daemon.
@Suite struct RegionTests {
    @Test func bufferSpanningTwoAdjacentRegions() throws {
        let mem = try MockGuestMemory([(0, 0x10000), (0x10000, 0x10000)])
        let q = MockSplitQueue(mem, size: 8)
        q.desc(0, addr: 0xFFF8, len: 16)
        q.push(0)
        var dq = try q.deviceQueue()
        let chain = DescriptorChain(capacity: 8)
        #expect(throws: ChainError.addressOutOfRange(gpa: 0xFFF8, length: 16)) { try popAndWalk(&dq, mem, chain) }
        // Each half alone is fine.
        q.desc(1, addr: 0xFFF8, len: 8, flags: MockSplitQueue.next, next: 2)
        q.desc(2, addr: 0x10000, len: 8)
        q.push(1)
        do { let h = try popAndWalk(&dq, mem, chain); #expect(h == 1) }
        #expect(chain.readableCount == 2)
    }

    @Test func ringPartsMustBeInMemoryAndAligned() throws {
        let mem = try MockGuestMemory([(0, 0x10000)])
        #expect(throws: QueueSetupError.misaligned(part: "descriptor", address: 0x1008, alignment: 16)) {
            _ = try SplitQueue.layout(size: 8, desc: 0x1008, avail: 0x2000, used: 0x3000) { mem.memory.translate(gpa: $0, length: $1) }
        }
        #expect(throws: QueueSetupError.notInMemory(part: "used", address: 0xFFF0, length: 6 + 8 * 8)) {
            _ = try SplitQueue.layout(size: 8, desc: 0x1000, avail: 0x2000, used: 0xFFF0) { mem.memory.translate(gpa: $0, length: $1) }
        }
        #expect(throws: QueueSetupError.notInMemory(part: "avail", address: UInt64.max - 1, length: 6 + 2 * 8)) {
            _ = try SplitQueue.layout(size: 8, desc: 0x1000, avail: UInt64.max - 1, used: 0x3000) { mem.memory.translate(gpa: $0, length: $1) }
        }
    }
}

/// The used ring and notification suppression, driver side checked.
@Suite struct UsedRingTests {
    @Test func addUsedPublishesElementAndIndex() throws {
        let mem = try MockGuestMemory()
        let q = MockSplitQueue(mem, size: 4)
        var dq = try q.deviceQueue()
        dq.addUsed(head: 3, length: 77)
        #expect(q.usedIdx == 1)
        #expect(q.usedElem(0).id == 3 && q.usedElem(0).len == 77)
        for _ in 0..<4 { dq.addUsed(head: 1, length: 1) }
        #expect(q.usedIdx == 5)
        #expect(q.usedElem(0).id == 1 && q.usedElem(0).len == 1)  // slot 4 & 3 == 0: the ring wraps
    }

    @Test func noInterruptFlagSuppressesCalls() throws {
        let mem = try MockGuestMemory()
        let q = MockSplitQueue(mem, size: 4)
        var dq = try q.deviceQueue(eventIdx: false)
        dq.addUsed(head: 0, length: 0)
        do { let n = dq.needsNotification(); #expect(n) }
        q.setAvailFlags(1)
        do { let n = dq.needsNotification(); #expect(!n) }
    }

    @Test func eventIdxAsksOnlyWhenUsedEventIsCrossed() throws {
        let mem = try MockGuestMemory()
        let q = MockSplitQueue(mem, size: 8)
        var dq = try q.deviceQueue(eventIdx: true)
        dq.addUsed(head: 0, length: 0)
        do { let n = dq.needsNotification(); #expect(n) }     // first time: always
        q.setUsedEvent(3)                   // driver: wake me when used idx passes 3
        dq.addUsed(head: 0, length: 0)      // used idx 2
        do { let n = dq.needsNotification(); #expect(!n) }
        dq.addUsed(head: 0, length: 0)      // 3
        dq.addUsed(head: 0, length: 0)      // 4: crossed 3
        do { let n = dq.needsNotification(); #expect(n) }
    }

    @Test func armWritesAvailEventAndSeesLateBuffers() throws {
        let mem = try MockGuestMemory()
        let q = MockSplitQueue(mem, size: 8)
        q.desc(0, addr: 0x8000, len: 4)
        var dq = try q.deviceQueue(eventIdx: true)
        #expect(!dq.armAndRecheck())
        q.push(0)
        #expect(dq.armAndRecheck())
        let chain = DescriptorChain(capacity: 8)
        do { let h = try popAndWalk(&dq, mem, chain); #expect(h == 0) }
        #expect(!dq.armAndRecheck())
        #expect(q.availEvent == 1)
    }
}
