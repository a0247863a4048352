import CPVZShim
import Platform
import Virtqueue

/// One vring's vhost-user state (size, addresses, base, eventfds) and, while
/// started, its live split queue. Touched only by the guest's thread.
public final class Vring {
    public let index: Int
    public internal(set) var size: UInt16 = 0
    var addr: VringAddrPayload?
    public internal(set) var base: UInt16 = 0
    /// The eventfds the front-end gave (SET_VRING_KICK/CALL/ERR); owned here.
    var kick: FileDescriptor?
    var call: FileDescriptor?
    var err: FileDescriptor?
    public internal(set) var enabled = false
    /// SET_VRING_KICK arrived (fd or NOFD) since the last stop.
    var kickSet = false
    public internal(set) var started = false
    public internal(set) var queue: SplitQueue?
    public internal(set) var brokenReason: String?
    public let chain: DescriptorChain

    init(index: Int, maxSize: UInt16) {
        self.index = index
        self.chain = DescriptorChain(capacity: Int(maxSize))
    }

    /// This queue's part of the in-flight buffer (INFLIGHT_SHMFD), if any.
    var inflight: InflightQueue?
    private var inflightCounter: UInt64 = 0
    /// Chains in flight when the previous back-end died, oldest first: served
    /// before anything new on the avail ring.
    private var resubmits: [UInt16] = []
    private var resubmitNext = 0
    /// The chain `nextChain` last returned was a resubmitted one: it may
    /// already have taken effect (the device answers it exactly once).
    public private(set) var lastChainReplayed = false

    /// The kick eventfd, for a device that serves this ring on its own thread.
    public var kickFileDescriptor: Int32? { kick?.rawValue }
    /// Handed over to the device's own thread (`VhostUserDevice.servesQueueItself`).
    var handedOver = false

    /// Started, enabled and not broken: the device may pop and push.
    public var isLive: Bool { started && enabled && brokenReason == nil && queue != nil }

    /// The next available chain, walked and checked, or nil when empty/not live.
    @inline(__always)
    public func nextChain(_ memory: GuestMemory) throws(ChainError) -> DescriptorChain? {
        guard isLive else { return nil }
        if resubmitNext < resubmits.count {
            let head = resubmits[resubmitNext]
            resubmitNext += 1
            if resubmitNext == resubmits.count { resubmits.removeAll(); resubmitNext = 0 }
            lastChainReplayed = true
            try chain.walk(head: head, of: queue!, memory: memory)
            return chain
        }
        guard let head = try queue!.popHead() else { return nil }
        lastChainReplayed = false
        if let f = inflight {
            f.popped(head: head, counter: inflightCounter)
            inflightCounter &+= 1
        }
        try chain.walk(head: head, of: queue!, memory: memory)
        return chain
    }

    /// Returns a chain to the driver with `written` bytes in its writable part.
    @inline(__always)
    public func complete(head: UInt16, written: UInt32) {
        guard queue != nil else { return }
        if let f = inflight {
            f.willReturn(head: head)
            queue!.addUsed(head: head, length: written)
            f.returned(head: head, usedIdx: queue!.usedIdx)
        } else {
            queue!.addUsed(head: head, length: written)
        }
    }

    /// A ring starting with an in-flight buffer: resume after what the old
    /// back-end popped (used + still in flight) and queue the in-flight ones
    /// for resubmission. Returns how many there are.
    func resumeFromInflight() -> Int {
        guard let f = inflight, let q = queue else { return 0 }
        let used = q.usedIdxInRing()
        let (heads, next) = f.takeResubmits(usedRingIdx: used)
        // More in flight than the ring holds is a corrupt buffer: resubmit none.
        let kept = heads.count <= Int(size) ? heads : []
        resubmits = kept
        resubmitNext = 0
        inflightCounter = next
        queue = SplitQueue(size: q.size, layout: q.layout, base: used &+ UInt16(kept.count), usedIdx: used,
                           eventIdx: q.eventIdx, indirect: q.indirect)
        queue!.usedLog = q.usedLog  // a ring started while QEMU migrates stays logged
        return kept.count
    }

    func forgetResubmits() {
        resubmits.removeAll()
        resubmitNext = 0
    }

    /// Signals the call eventfd if the driver wants an interrupt.
    @inline(__always)
    public func notifyIfNeeded() {
        guard queue != nil, let fd = call?.rawValue else { return }
        if queue!.needsNotification() { EventFD.signal(fd) }
    }

    /// After draining: re-arm kicks, true when more arrived meanwhile.
    @inline(__always)
    public func armAndRecheck() -> Bool {
        guard isLive else { return false }
        return queue!.armAndRecheck()
    }

    /// Chains the driver has made available that we have not popped.
    public var pending: Bool {
        guard let q = queue, isLive else { return false }
        return resubmitNext < resubmits.count || q.availIdx() != q.lastAvailIdx
    }

    func closeFDs() {
        closeKickAndCall()
        err = nil
    }

    func closeKickAndCall() {
        kick = nil
        call = nil
    }
}
