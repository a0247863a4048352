import Testing
import CPVZShim
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

/// The dirty-page log a live migration reads: the bits, the pages a ring and
/// a chain mark, and what happens when there is no usable log.
@Suite struct DirtyLogTests {
    /// A log as QEMU makes one: a memfd of `bytes` bytes, mapped here to read it back.
    final class FrontEndLog {
        let fd: Int32
        let bytes: Int
        let view: UnsafeMutablePointer<UInt8>
        init(bytes: Int) {
            fd = pvz_memfd_create("dirty-log", UInt32(MFD_CLOEXEC))
            precondition(fd >= 0 && ftruncate(fd, off_t(bytes)) == 0)
            self.bytes = bytes
            view = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)!.assumingMemoryBound(to: UInt8.self)
        }
        deinit { munmap(view, bytes); close(fd) }
        /// The dirty pages, and clears them (what QEMU's sync does).
        func take() -> [UInt64] {
            var pages: [UInt64] = []
            for i in 0..<bytes where view[i] != 0 {
                for b in 0..<8 where view[i] & (1 << b) != 0 { pages.append(UInt64(i * 8 + b)) }
                view[i] = 0
            }
            return pages
        }
    }

    @Test func marksEveryPageOfARangeOnlyWhileLogging() throws {
        let fe = FrontEndLog(bytes: 16)  // 128 pages
        let log = DirtyLog()
        try log.install(fd: fe.fd, size: 16, offset: 0)
        log.mark(gpa: 0x3000, length: 8)
        #expect(fe.take() == [], "VHOST_F_LOG_ALL is off: nothing is marked")
        log.setLogAll(true)
        log.mark(gpa: 0x3000, length: 8)
        log.mark(gpa: 0x5FFF, length: 2)          // straddles pages 5 and 6
        log.mark(gpa: 0x7F000, length: 0x3000)    // pages 127..129: the last is outside the log
        log.mark(gpa: UInt64.max - 1, length: 8)  // wraps: nothing inside the log, no trap
        #expect(fe.take() == [3, 5, 6, 127])
        #expect(log.failure == nil)
        log.setLogAll(false)
        log.mark(gpa: 0x3000, length: 8)
        #expect(fe.take() == [])
    }

    @Test func aLogThatCannotBeMappedIsRememberedUntilTheNextOne() throws {
        let log = DirtyLog()
        #expect(throws: DirtyLogError.badSize(0, limit: DirtyLog.maxBytes)) { try log.install(fd: -1, size: 0, offset: 0) }
        #expect(log.failure?.contains("0 bytes") == true)
        #expect(throws: (any Error).self) { try log.install(fd: -1, size: 16, offset: 0) }
        #expect(log.failure?.contains("could not be mapped") == true)
        let fe = FrontEndLog(bytes: 16)
        try log.install(fd: fe.fd, size: 16, offset: 0)
        #expect(log.failure == nil)
        log.reset()
        #expect(log.size == 0 && !log.logAll)
    }

    @Test func aWriteWhileLoggingWithoutALogIsAFailure() {
        let log = DirtyLog()
        log.setLogAll(true)
        log.mark(gpa: 0x2000, length: 4)
        #expect(log.failure?.contains("0x2000") == true)
    }

    /// What a device does with a chain and its ring while QEMU logs: the
    /// pages it wrote (the answer, the used ring) are marked, the request's
    /// page (only read) is not.
    @Test func chainAnswersAndTheUsedRingAreMarked() throws {
        let fe = FrontEndLog(bytes: 8)  // 64 pages: the mock's 1 MiB is 256, so pages past 63 are outside
        let log = DirtyLog()
        try log.install(fd: fe.fd, size: 8, offset: 0)
        log.setLogAll(true)
        let mem = try MockGuestMemory(dirtyLog: log)
        let q = MockSplitQueue(mem, size: 16, at: 0x1000)
        let chain = DescriptorChain(capacity: 16)
        q.desc(0, addr: 0x8000, len: 16, flags: MockSplitQueue.next, next: 1)   // request: page 8
        q.desc(1, addr: 0x9FF8, len: 16, flags: MockSplitQueue.write)           // answer: pages 9 and 10
        q.push(0)
        var dq = try q.deviceQueue(eventIdx: true)
        dq.usedLog = (log, q.usedGPA)
        let head = try #require(try popAndWalk(&dq, mem, chain))
        #expect(fe.take() == [], "reading marks nothing")
        let answer: [UInt8] = Array(repeating: 0xAB, count: 12)
        #expect(answer.withUnsafeBytes { chain.scatter($0) } == 12)
        #expect(fe.take() == [9, 10])
        dq.addUsed(head: head, length: 12)
        #expect(fe.take() == [q.usedGPA / DirtyLog.pageSize])
        _ = dq.armAndRecheck()  // EVENT_IDX: avail_event lives in the used ring
        #expect(fe.take() == [(q.usedGPA + 4 + 8 * 16) / DirtyLog.pageSize])
        #expect(q.usedElem(0).len == 12)
    }

    /// A ring the front-end does not log (no VHOST_VRING_F_LOG) marks no used-ring page.
    @Test func usedRingWithoutLogFlagIsNotMarked() throws {
        let fe = FrontEndLog(bytes: 8)
        let log = DirtyLog()
        try log.install(fd: fe.fd, size: 8, offset: 0)
        log.setLogAll(true)
        let mem = try MockGuestMemory(dirtyLog: log)
        let q = MockSplitQueue(mem, size: 16, at: 0x1000)
        q.desc(0, addr: 0x8000, len: 16)
        q.push(0)
        var dq = try q.deviceQueue()
        let head = try #require(try popAndWalk(&dq, mem, DescriptorChain(capacity: 16)))
        dq.addUsed(head: head, length: 0)
        #expect(fe.take() == [])
    }
}
