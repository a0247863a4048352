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

/// One buffer of a chain, already translated to a host address.
public struct ChainSegment {
    public var host: UnsafeMutableRawPointer
    public var length: Int
    /// Where it is in guest physical space (what a dirty log marks).
    public var gpa: UInt64
}

/// A walked descriptor chain: the device-readable buffers, then the
/// device-writable ones. A scratch object reused for every chain of a queue,
/// so walking a chain allocates nothing.
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
    @usableFromInline var dirtyLog: DirtyLog?

    public init(capacity: Int) {
        self.capacity = capacity
        readable = .allocate(capacity: capacity)
        writable = .allocate(capacity: capacity)
    }

    deinit {
        readable.deallocate()
        writable.deallocate()
    }

    @usableFromInline
    func reset(head: UInt16, dirtyLog: DirtyLog? = nil) {
        self.head = head
        self.dirtyLog = dirtyLog
        readableCount = 0
        writableCount = 0
        readableLength = 0
        writableLength = 0
    }

    @usableFromInline
    func appendReadable(_ p: UnsafeMutableRawPointer, _ len: Int, gpa: UInt64) {
        readable[readableCount] = ChainSegment(host: p, length: len, gpa: gpa)
        readableCount += 1
        readableLength += len
    }

    @usableFromInline
    func appendWritable(_ p: UnsafeMutableRawPointer, _ len: Int, gpa: UInt64) {
        writable[writableCount] = ChainSegment(host: p, length: len, gpa: gpa)
        writableCount += 1
        writableLength += len
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
