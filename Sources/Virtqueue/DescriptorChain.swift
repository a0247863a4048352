/// Why a descriptor chain (or the ring around it) was refused. Any of these
/// means the driver broke the virtio contract: the device for that guest goes
/// to NEEDS_RESET.
public enum ChainError: Error, Equatable, CustomStringConvertible {
    case headOutOfRange(head: UInt16, queueSize: UInt16)
    case nextOutOfRange(next: UInt16, tableSize: Int)
    case tooLong(limit: Int)
    case addressOutOfRange(gpa: UInt64, length: UInt32)
    case readableAfterWritable(index: Int)
    case indirectNotNegotiated
    case nestedIndirect
    case indirectWithNext
    case badIndirectLength(length: UInt32, limit: Int)
    case availIndexJump(availIdx: UInt16, lastAvailIdx: UInt16, queueSize: UInt16)

    public var description: String {
        switch self {
        case .headOutOfRange(let h, let s): return "descriptor head \(h) is outside the queue (size \(s))"
        case .nextOutOfRange(let n, let s): return "descriptor next \(n) is outside its table (\(s) entries)"
        case .tooLong(let l): return "descriptor chain longer than \(l) descriptors (a loop, or more than the queue size)"
        case .addressOutOfRange(let g, let l):
            return "descriptor buffer 0x\(String(g, radix: 16)) length \(l) is not inside one guest memory region"
        case .readableAfterWritable(let i): return "device-readable descriptor at position \(i) follows a device-writable one"
        case .indirectNotNegotiated: return "indirect descriptor used but VIRTIO_RING_F_INDIRECT_DESC was not negotiated"
        case .nestedIndirect: return "indirect descriptor inside an indirect table"
        case .indirectWithNext: return "indirect descriptor also has VIRTQ_DESC_F_NEXT"
        case .badIndirectLength(let l, let lim):
            return "indirect table length \(l) is not a non-zero multiple of 16 up to \(lim) entries"
        case .availIndexJump(let a, let l, let s):
            return "avail idx \(a) is more than the queue size \(s) ahead of last seen \(l)"
        }
    }
}

/// One entry of a descriptor table (virtio 1.x 2.7.5, `struct virtq_desc`).
enum Descriptor {
    static let size = 16
    enum Offset { static let addr = 0, len = 8, flags = 12, next = 14 }
    static let fNext: UInt16 = 1
    static let fWrite: UInt16 = 2
    static let fIndirect: UInt16 = 4
}

/// One buffer of a chain, already translated to a host address.
public struct ChainSegment {
    public var host: UnsafeMutableRawPointer
    public var length: Int
    /// Where it is in guest physical space (what a dirty log marks).
    public var gpa: UInt64
}

/// One descriptor chain, walked and checked (`walk`): the device-readable
/// buffers, then the device-writable ones, as host addresses. A scratch object
/// reused for every chain of a queue, so walking a chain allocates nothing.
public final class DescriptorChain {
    public let capacity: Int
    public private(set) var head: UInt16 = 0
    public private(set) var readableCount = 0
    public private(set) var writableCount = 0
    public private(set) var readableLength = 0
    public private(set) var writableLength = 0
    private let readable: UnsafeMutableBufferPointer<ChainSegment>
    private let writable: UnsafeMutableBufferPointer<ChainSegment>
    /// The dirty log of the memory table the chain was walked in.
    private var dirtyLog: DirtyLog?

    public init(capacity: Int) {
        self.capacity = capacity
        readable = .allocate(capacity: capacity)
        writable = .allocate(capacity: capacity)
    }

    deinit {
        readable.deallocate()
        writable.deallocate()
    }

    private func reset(head: UInt16, dirtyLog: DirtyLog?) {
        self.head = head
        self.dirtyLog = dirtyLog
        readableCount = 0
        writableCount = 0
        readableLength = 0
        writableLength = 0
    }

    private func appendReadable(_ p: UnsafeMutableRawPointer, _ len: Int, gpa: UInt64) {
        readable[readableCount] = ChainSegment(host: p, length: len, gpa: gpa)
        readableCount += 1
        readableLength += len
    }

    private func appendWritable(_ p: UnsafeMutableRawPointer, _ len: Int, gpa: UInt64) {
        writable[writableCount] = ChainSegment(host: p, length: len, gpa: gpa)
        writableCount += 1
        writableLength += len
    }

    /// Walks the chain of `queue` starting at `head` (a head `queue.popHead()`
    /// returned, or one resubmitted from the in-flight buffer), checking every
    /// index, length and address (virtio 1.x 2.7.5 / 2.7.7 rules). Replaces what
    /// this chain held; allocates nothing.
    public func walk(head: UInt16, of queue: SplitQueue, memory: GuestMemory) throws(ChainError) {
        reset(head: head, dirtyLog: memory.dirtyLog)
        let limit = Int(queue.size)
        var table = queue.layout.desc
        var tableSize = limit
        var index = Int(head)
        var seen = 0
        var inIndirect = false
        while true {
            if index >= tableSize { throw .nextOutOfRange(next: UInt16(truncatingIfNeeded: index), tableSize: tableSize) }
            seen += 1
            if seen > limit { throw .tooLong(limit: limit) }
            let d = table + Descriptor.size * index
            let addr = d.loadUnaligned(fromByteOffset: Descriptor.Offset.addr, as: UInt64.self).littleEndian
            let len = d.loadUnaligned(fromByteOffset: Descriptor.Offset.len, as: UInt32.self).littleEndian
            let flags = d.loadUnaligned(fromByteOffset: Descriptor.Offset.flags, as: UInt16.self).littleEndian
            let next = d.loadUnaligned(fromByteOffset: Descriptor.Offset.next, as: UInt16.self).littleEndian
            if flags & Descriptor.fIndirect != 0 {
                if !queue.indirect { throw .indirectNotNegotiated }
                if inIndirect { throw .nestedIndirect }
                if flags & Descriptor.fNext != 0 { throw .indirectWithNext }
                if len == 0 || len % UInt32(Descriptor.size) != 0 || Int(len) / Descriptor.size > limit {
                    throw .badIndirectLength(length: len, limit: limit)
                }
                guard let t = memory.translate(gpa: addr, length: UInt64(len)) else {
                    throw .addressOutOfRange(gpa: addr, length: len)
                }
                table = t
                tableSize = Int(len) / Descriptor.size
                index = 0
                inIndirect = true
                continue
            }
            if len > 0 {
                guard let p = memory.translate(gpa: addr, length: UInt64(len)) else {
                    throw .addressOutOfRange(gpa: addr, length: len)
                }
                if flags & Descriptor.fWrite != 0 {
                    appendWritable(p, Int(len), gpa: addr)
                } else {
                    if writableCount > 0 { throw .readableAfterWritable(index: seen - 1) }
                    appendReadable(p, Int(len), gpa: addr)
                }
            }
            if flags & Descriptor.fNext == 0 { return }
            index = Int(next)
        }
    }

    public func readableSegment(_ i: Int) -> ChainSegment { readable[i] }
    public func writableSegment(_ i: Int) -> ChainSegment { writable[i] }

    /// Copies up to `buffer.count` device-readable bytes into `buffer` (the guest
    /// may change its memory at any time: copy first, then validate the copy).
    public func gather(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        var copied = 0
        for i in 0..<readableCount where copied < buffer.count {
            let s = readable[i]
            let n = min(s.length, buffer.count - copied)
            (buffer.baseAddress! + copied).copyMemory(from: s.host, byteCount: n)
            copied += n
        }
        return copied
    }

    /// Copies `bytes` into the device-writable buffers; returns bytes written
    /// (less than `bytes.count` when the chain is too small). What it wrote
    /// is marked in the dirty log.
    public func scatter(_ bytes: UnsafeRawBufferPointer) -> Int {
        var written = 0
        for i in 0..<writableCount where written < bytes.count {
            let s = writable[i]
            let n = min(s.length, bytes.count - written)
            s.host.copyMemory(from: bytes.baseAddress! + written, byteCount: n)
            dirtyLog?.mark(gpa: s.gpa, length: UInt64(n))
            written += n
        }
        return written
    }
}
