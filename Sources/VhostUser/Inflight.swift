import CPVZShim
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// VhostUserInflight (GET/SET_INFLIGHT_FD): where the in-flight buffer is and
/// how it is cut into queues. 24 bytes on the wire (20 used, 4 padding).
public struct InflightPayload: Equatable, Sendable {
    public static let size = 24
    public var mmapSize: UInt64
    public var mmapOffset: UInt64
    public var numQueues: UInt16
    public var queueSize: UInt16
    public init(mmapSize: UInt64, mmapOffset: UInt64, numQueues: UInt16, queueSize: UInt16) {
        self.mmapSize = mmapSize; self.mmapOffset = mmapOffset; self.numQueues = numQueues; self.queueSize = queueSize
    }
    public static func decode(_ b: UnsafeRawBufferPointer) -> InflightPayload? {
        guard b.count == size else { return nil }
        return InflightPayload(mmapSize: b.le64(0), mmapOffset: b.le64(8), numQueues: b.le16(16), queueSize: b.le16(18))
    }
    public func encode(into b: UnsafeMutableRawBufferPointer) {
        b.putLE64(0, mmapSize); b.putLE64(8, mmapOffset)
        b.putLE16(16, numQueues); b.putLE16(18, queueSize); b.putLE32(20, 0)
    }
}

public enum InflightError: Error, Equatable, CustomStringConvertible {
    case badGeometry(numQueues: UInt16, queueSize: UInt16, maxQueues: Int, maxQueueSize: UInt16)
    case sizeMismatch(mmapSize: UInt64, expected: UInt64)
    case badOffset(UInt64)
    case fileTooSmall(needed: UInt64, actual: UInt64)
    case system(call: String, errno: Int32)

    public var description: String {
        switch self {
        case .badGeometry(let n, let q, let maxN, let maxQ):
            return "in-flight buffer for \(n) queues of \(q) entries: need 1...\(maxN) queues of a power-of-two size up to \(maxQ)"
        case .sizeMismatch(let s, let e): return "in-flight buffer mmap_size \(s), expected \(e) for that geometry"
        case .badOffset(let o): return "in-flight buffer mmap_offset 0x\(String(o, radix: 16)) is not page aligned or wraps"
        case .fileTooSmall(let n, let a): return "in-flight buffer fd holds \(a) bytes, needs \(n)"
        case .system(let c, let e): return "in-flight buffer: \(c) failed: errno \(e) (\(String(cString: strerror(e))))"
        }
    }
}

/// The shared buffer in which the back-end records which chains it has
/// popped and not yet returned (vhost-user.rst "Inflight I/O tracking"). The
/// front-end keeps it across a back-end crash and hands it to the next one,
/// which resubmits exactly those chains. Split-ring layout per queue, at a
/// stride of ALIGN_UP(16 × queue_size + 2, 64) as libvhost-user cuts it:
///   u64 features, u16 version (1), u16 desc_num, u16 last_batch_head,
///   u16 used_idx, then desc_num × { u8 inflight, 5 pad, u16 next, u64 counter }.
public final class InflightRegion: @unchecked Sendable {
    public static let version: UInt16 = 1
    public let descriptor: FileDescriptor
    public var fd: Int32 { descriptor.rawValue }
    public let numQueues: Int
    public let queueSize: UInt16
    private let mapping: UnsafeMutableRawPointer
    private let mappingLength: Int
    private let base: UnsafeMutableRawPointer
    /// SIGBUS guard slot (CPVZShim guard.c): a front-end's SET_INFLIGHT_FD file
    /// may shrink under us like guest RAM; -1 when the table was full.
    private var guardSlot: Int32 = -1

    // <linux/fcntl.h>; Glibc's module does not export the sealing constants.
    static let addSeals: Int32 = 1024 + 9
    static let sealSeal: Int32 = 1, sealShrink: Int32 = 2, sealGrow: Int32 = 4

    public static func stride(queueSize: UInt16) -> Int {
        (16 * Int(queueSize) + 2 + 63) & ~63
    }

    static func checkGeometry(_ n: UInt16, _ q: UInt16, maxQueues: Int, maxQueueSize: UInt16) throws(InflightError) {
        guard n >= 1, Int(n) <= maxQueues, q >= 1, q <= maxQueueSize, q & (q - 1) == 0 else {
            throw .badGeometry(numQueues: n, queueSize: q, maxQueues: maxQueues, maxQueueSize: maxQueueSize)
        }
    }

    /// GET_INFLIGHT_FD: a new zeroed buffer in a sealed memfd.
    public init(numQueues n: UInt16, queueSize q: UInt16, maxQueues: Int, maxQueueSize: UInt16) throws(InflightError) {
        try Self.checkGeometry(n, q, maxQueues: maxQueues, maxQueueSize: maxQueueSize)
        let length = Self.stride(queueSize: q) * Int(n)
        let raw = pvz_memfd_create("vhost-user-pvz-inflight", UInt32(MFD_CLOEXEC | MFD_ALLOW_SEALING))
        if raw < 0 { throw .system(call: "memfd_create", errno: errno) }
        let fd = FileDescriptor(taking: raw)
        guard ftruncate(raw, off_t(length)) == 0 else { throw .system(call: "ftruncate", errno: errno) }
        // The front-end cannot shrink what we write through.
        _ = fcntl(raw, Self.addSeals, Self.sealSeal | Self.sealShrink | Self.sealGrow)
        guard let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, raw, 0), p != MAP_FAILED else {
            throw .system(call: "mmap", errno: errno)
        }
        memset(p, 0, length)
        descriptor = fd
        numQueues = Int(n)
        queueSize = q
        mapping = p
        mappingLength = length
        base = p
    }

    /// SET_INFLIGHT_FD: the buffer a previous back-end filled (closed on a refusal).
    public init(fd: consuming FileDescriptor, _ m: InflightPayload, maxQueues: Int, maxQueueSize: UInt16) throws(InflightError) {
        let raw = fd.rawValue
        try Self.checkGeometry(m.numQueues, m.queueSize, maxQueues: maxQueues, maxQueueSize: maxQueueSize)
        let length = Self.stride(queueSize: m.queueSize) * Int(m.numQueues)
        guard m.mmapSize == UInt64(length) else { throw .sizeMismatch(mmapSize: m.mmapSize, expected: UInt64(length)) }
        let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        guard m.mmapOffset & (page - 1) == 0, m.mmapOffset <= UInt64(Int64.max) - UInt64(length) else {
            throw .badOffset(m.mmapOffset)
        }
        var st = stat()
        guard fstat(raw, &st) == 0 else { throw .system(call: "fstat", errno: errno) }
        // A regular file shorter than the buffer would fault on access.
        let size = st.st_size < 0 ? 0 : UInt64(st.st_size)
        if (st.st_mode & S_IFMT) == S_IFREG, size < m.mmapOffset + UInt64(length) {
            throw .fileTooSmall(needed: m.mmapOffset + UInt64(length), actual: size)
        }
        guard let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, raw, off_t(m.mmapOffset)), p != MAP_FAILED else {
            throw .system(call: "mmap", errno: errno)
        }
        let slot = pvz_guard_register(p, length)
        if slot < 0 { munmap(p, length); throw .system(call: "SIGBUS guard (every slot taken)", errno: ENOSPC) }
        descriptor = fd
        numQueues = Int(m.numQueues)
        queueSize = m.queueSize
        mapping = p
        mappingLength = length
        base = p
        guardSlot = slot
    }

    /// True once an access raised SIGBUS (the front-end shrank its file): the
    /// buffer now reads zeros and the connection must end.
    public var faulted: Bool { pvz_guard_faults(guardSlot) != 0 }

    deinit {
        pvz_guard_unregister(guardSlot)
        munmap(mapping, mappingLength)
    }

    public var payload: InflightPayload {
        InflightPayload(mmapSize: UInt64(mappingLength), mmapOffset: 0, numQueues: UInt16(numQueues), queueSize: queueSize)
    }

    /// Queue `index`'s part, nil beyond the buffer.
    public func queue(_ index: Int) -> InflightQueue? {
        guard index >= 0, index < numQueues else { return nil }
        return InflightQueue(region: self, base: base + index * Self.stride(queueSize: queueSize), size: queueSize)
    }
}

/// One queue's part of the in-flight buffer. Used by the guest thread only.
/// Every field is front-end memory: read, bounds-checked, never trusted.
public struct InflightQueue {
    /// Keeps the mapping alive while a vring points into it.
    let region: InflightRegion
    let base: UnsafeMutableRawPointer
    public let size: UInt16

    private var versionPtr: UnsafeMutableRawPointer { base + 8 }
    private var descNumPtr: UnsafeMutableRawPointer { base + 10 }
    private var lastBatchHeadPtr: UnsafeMutableRawPointer { base + 12 }
    private var usedIdxPtr: UnsafeMutableRawPointer { base + 14 }
    private func desc(_ head: UInt16) -> UnsafeMutableRawPointer { base + 16 + 16 * Int(head) }

    /// A chain was popped from the avail ring: in flight, in pop order.
    @inline(__always)
    public func popped(head: UInt16, counter: UInt64) {
        guard head < size else { return }
        desc(head).storeBytes(of: counter.littleEndian, toByteOffset: 8, as: UInt64.self)
        pvz_store_release_u8(desc(head), 1)
    }

    /// Before the used element is published: the batch list (of one).
    @inline(__always)
    public func willReturn(head: UInt16) {
        guard head < size else { return }
        let last = lastBatchHeadPtr.loadUnaligned(as: UInt16.self)
        desc(head).storeBytes(of: last, toByteOffset: 6, as: UInt16.self)
        lastBatchHeadPtr.storeBytes(of: head.littleEndian, as: UInt16.self)
    }

    /// After the used index moved to `usedIdx`: no longer in flight.
    @inline(__always)
    public func returned(head: UInt16, usedIdx: UInt16) {
        guard head < size else { return }
        pvz_store_release_u8(desc(head), 0)
        pvz_store_release_u16(usedIdxPtr, usedIdx.littleEndian)
    }

    /// What a starting ring must resubmit: the heads still marked in flight,
    /// oldest first, after repairing the last batch if the used index moved
    /// past what the buffer says (the old back-end died between the two
    /// stores). A buffer never initialised is initialised and yields nothing.
    /// Heads are checked against the queue size; the chains themselves are
    /// walked and checked like any other.
    public func takeResubmits(usedRingIdx: UInt16) -> (heads: [UInt16], nextCounter: UInt64) {
        if UInt16(littleEndian: versionPtr.loadUnaligned(as: UInt16.self)) == 0 {
            for h in 0..<size { pvz_store_release_u8(desc(h), 0) }
            descNumPtr.storeBytes(of: size.littleEndian, as: UInt16.self)
            usedIdxPtr.storeBytes(of: usedRingIdx.littleEndian, as: UInt16.self)
            pvz_store_release_u16(versionPtr, InflightRegion.version.littleEndian)
            return ([], 0)
        }
        descNumPtr.storeBytes(of: size.littleEndian, as: UInt16.self)
        let recorded = UInt16(littleEndian: pvz_load_acquire_u16(usedIdxPtr))
        if recorded != usedRingIdx {
            let last = UInt16(littleEndian: lastBatchHeadPtr.loadUnaligned(as: UInt16.self))
            if last < size { pvz_store_release_u8(desc(last), 0) }
            pvz_store_release_u16(usedIdxPtr, usedRingIdx.littleEndian)
        }
        var found: [(UInt64, UInt16)] = []
        for h in 0..<size where pvz_load_acquire_u8(desc(h)) != 0 {
            found.append((UInt64(littleEndian: desc(h).loadUnaligned(fromByteOffset: 8, as: UInt64.self)), h))
        }
        found.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        let next = (found.last?.0).map { $0 &+ 1 } ?? 0
        return (found.map(\.1), next)
    }
}
