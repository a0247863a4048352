import CPVZShim

/// Virtio ring feature bits the split queue understands.
public enum RingFeature {
    public static let indirectDesc: UInt64 = 1 << 28
    public static let eventIdx: UInt64 = 1 << 29
}

/// Where the three parts of a split ring live, in guest-physical terms as
/// resolved by the transport (vhost-user gives front-end addresses; the engine
/// translates them before building the queue).
public struct VringLayout {
    public var desc: UnsafeMutableRawPointer
    public var avail: UnsafeMutableRawPointer
    public var used: UnsafeMutableRawPointer
    public init(desc: UnsafeMutableRawPointer, avail: UnsafeMutableRawPointer, used: UnsafeMutableRawPointer) {
        self.desc = desc
        self.avail = avail
        self.used = used
    }

    public static func descTableBytes(_ size: UInt16) -> UInt64 { UInt64(Descriptor.size) * UInt64(size) }
    /// flags, idx, ring[size], used_event
    public static func availBytes(_ size: UInt16) -> UInt64 { 6 + 2 * UInt64(size) }
    /// flags, idx, ring[size] of {id, len}, avail_event
    public static func usedBytes(_ size: UInt16) -> UInt64 { 6 + 8 * UInt64(size) }
}

public enum QueueSetupError: Error, Equatable, CustomStringConvertible {
    case badSize(UInt16, max: UInt16)
    case misaligned(part: String, address: UInt64, alignment: UInt64)
    case notInMemory(part: String, address: UInt64, length: UInt64)

    public var description: String {
        switch self {
        case .badSize(let s, let m): return "queue size \(s) is not a power of two in 1...\(m)"
        case .misaligned(let p, let a, let al): return "\(p) ring address 0x\(String(a, radix: 16)) is not \(al)-byte aligned"
        case .notInMemory(let p, let a, let l):
            return "\(p) ring at 0x\(String(a, radix: 16)) (\(l) bytes) is not inside one guest memory region"
        }
    }
}

/// The device side of a split virtqueue (virtio 1.x section 2.7): the avail
/// and used rings. A popped head is walked by `DescriptorChain.walk`.
/// Owned by one thread (the guest's event loop); the guest is the only other
/// writer, so ordering is by acquire/release on the ring indices.
public struct SplitQueue {
    public let size: UInt16
    public let layout: VringLayout
    public var eventIdx: Bool
    public var indirect: Bool
    public private(set) var lastAvailIdx: UInt16
    public private(set) var usedIdx: UInt16
    /// Where writes to the used ring are logged during a migration: the
    /// front-end's `log_guest_addr` for this ring (VHOST_VRING_F_LOG), nil
    /// while it does not ask.
    public var usedLog: (log: DirtyLog, gpa: UInt64)?
    private var signalledUsed: UInt16 = 0
    private var signalledUsedValid = false

    static let availFNoInterrupt: UInt16 = 1

    public static func validSize(_ size: UInt16, max: UInt16) -> Bool {
        size > 0 && size <= max && (size & (size - 1)) == 0
    }

    /// `base` is the index to resume from (SET_VRING_BASE): the next avail
    /// entry to read and, unless `usedIdx` says otherwise, the used index.
    public init(size: UInt16, layout: VringLayout, base: UInt16, usedIdx: UInt16? = nil, eventIdx: Bool, indirect: Bool) {
        self.size = size
        self.layout = layout
        self.lastAvailIdx = base
        self.usedIdx = usedIdx ?? base
        self.eventIdx = eventIdx
        self.indirect = indirect
    }

    /// Translates and checks the front-end ring addresses of a queue.
    public static func layout(size: UInt16, desc: UInt64, avail: UInt64, used: UInt64,
                              translate: (UInt64, UInt64) -> UnsafeMutableRawPointer?) throws(QueueSetupError) -> VringLayout {
        let parts: [(String, UInt64, UInt64, UInt64)] = [
            ("descriptor", desc, 16, VringLayout.descTableBytes(size)),
            ("avail", avail, 2, VringLayout.availBytes(size)),
            ("used", used, 4, VringLayout.usedBytes(size)),
        ]
        var ptrs: [UnsafeMutableRawPointer] = []
        for (name, addr, align, len) in parts {
            if addr % align != 0 { throw .misaligned(part: name, address: addr, alignment: align) }
            guard let p = translate(addr, len) else { throw .notInMemory(part: name, address: addr, length: len) }
            ptrs.append(p)
        }
        return VringLayout(desc: ptrs[0], avail: ptrs[1], used: ptrs[2])
    }

    @inline(__always) private var availIdxPtr: UnsafeMutableRawPointer { layout.avail + 2 }
    @inline(__always) private var usedIdxPtr: UnsafeMutableRawPointer { layout.used + 2 }
    @inline(__always) private var usedEventPtr: UnsafeMutableRawPointer { layout.avail + 4 + 2 * Int(size) }
    @inline(__always) private var availEventPtr: UnsafeMutableRawPointer { layout.used + 4 + 8 * Int(size) }

    /// The used index as it stands in the ring (what the driver has seen).
    public func usedIdxInRing() -> UInt16 { UInt16(littleEndian: pvz_load_acquire_u16(usedIdxPtr)) }

    /// The driver's current avail index (acquire: entries before it are visible).
    @inline(__always) public func availIdx() -> UInt16 { pvz_load_acquire_u16(availIdxPtr) }

    /// Next available chain head, or nil when the ring is empty.
    @inline(__always)
    public mutating func popHead() throws(ChainError) -> UInt16? {
        let avail = availIdx()
        if avail == lastAvailIdx { return nil }
        if avail &- lastAvailIdx > size {
            throw .availIndexJump(availIdx: avail, lastAvailIdx: lastAvailIdx, queueSize: size)
        }
        let slot = Int(lastAvailIdx & (size - 1))
        let head = (layout.avail + 4 + 2 * slot).loadUnaligned(as: UInt16.self).littleEndian
        lastAvailIdx &+= 1
        if head >= size { throw .headOutOfRange(head: head, queueSize: size) }
        return head
    }

    /// Publishes one used element (release: the buffer contents are written first).
    @inline(__always)
    public mutating func addUsed(head: UInt16, length: UInt32) {
        let slot = Int(usedIdx & (size - 1))
        let e = layout.used + 4 + 8 * slot
        e.storeBytes(of: UInt32(head).littleEndian, as: UInt32.self)
        e.storeBytes(of: length.littleEndian, toByteOffset: 4, as: UInt32.self)
        usedIdx &+= 1
        pvz_store_release_u16(usedIdxPtr, usedIdx.littleEndian)
        // flags, idx and the ring up to this element
        if let l = usedLog { l.log.mark(gpa: l.gpa, length: UInt64(4 + 8 * (slot + 1))) }
    }

    /// Whether the driver wants an interrupt for what was used since the last
    /// notification (EVENT_IDX's vring_need_event, or the avail NO_INTERRUPT flag).
    @inline(__always)
    public mutating func needsNotification() -> Bool {
        pvz_fence_seq_cst()  // order the used idx store before reading the driver's event index
        if !eventIdx {
            return pvz_load_acquire_u16(layout.avail) & Self.availFNoInterrupt == 0
        }
        let new = usedIdx
        let old = signalledUsed
        let valid = signalledUsedValid
        signalledUsed = new
        signalledUsedValid = true
        if !valid { return true }
        let usedEvent = pvz_load_acquire_u16(usedEventPtr)
        return (new &- usedEvent &- 1) < (new &- old)
    }

    /// After draining the ring: ask the driver to kick on the next buffer
    /// (EVENT_IDX avail_event), then re-check to close the race with a buffer
    /// added meanwhile. Returns true when more work arrived.
    @inline(__always)
    public func armAndRecheck() -> Bool {
        if eventIdx {
            pvz_store_release_u16(availEventPtr, lastAvailIdx.littleEndian)
            if let l = usedLog { l.log.mark(gpa: l.gpa + 4 + 8 * UInt64(size), length: 2) }
        }
        pvz_fence_seq_cst()
        return availIdx() != lastAvailIdx
    }
}
