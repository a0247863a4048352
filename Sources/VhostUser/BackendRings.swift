import CPVZShim
import Logging
import Platform
import Synchronization
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

// Ring lifecycle: start, hand over to a device thread, take back, re-resolve
// after a memory change, stop, reset.
extension Backend {
    /// Swaps the memory table and re-resolves every started ring against it.
    func installMemory(_ m: GuestMemory) {
        retiredRegions.removeAll { $0.region == nil }
        for r in memory.regions where !m.regions.contains(where: { $0 === r }) { retiredRegions.append(WeakRegion(r)) }
        // Rings served on the device's own thread are taken back while their
        // addresses move, and handed over again after.
        for v in vrings where v.started && v.handedOver { takeBack(v, .changing) }
        memory = m
        for v in vrings where v.started {
            if !buildQueue(v) { needsReset(queue: v.index, reason: "ring addresses no longer inside the memory table") }
        }
        device.memoryChanged(self)
        for v in vrings where v.started && v.queue != nil && v.brokenReason == nil && device.servesQueueItself(v.index) {
            handOver(v)
        }
    }

    func startRing(_ v: Vring) -> Outcome {
        v.kickSet = true
        // A kick before the ring's size or addresses: start once they arrive.
        guard v.size > 0, v.addr != nil else {
            logger.debug("queue \(v.index): kick fd before SET_VRING_NUM/ADDR; the ring starts when both are set")
            return .ok
        }
        guard buildQueue(v) else {
            return .failed("queue \(v.index) ring addresses (desc 0x\(String(v.addr!.desc, radix: 16)), avail 0x\(String(v.addr!.avail, radix: 16)), used 0x\(String(v.addr!.used, radix: 16))) are not inside the memory table, or misaligned")
        }
        v.started = true
        v.brokenReason = nil
        v.inflight = inflight?.queue(v.index)
        let resubmitted = v.resumeFromInflight()
        if resubmitted > 0 {
            logger.info("queue \(v.index): resubmitting \(resubmitted) chains left in flight by the previous back-end")
        }
        if device.servesQueueItself(v.index) {
            device.queueStarted(v.index, self)
            handOver(v)
            return .ok
        }
        if let fd = v.kick?.rawValue {
            do { try epoll.add(fd, tag: kickTagBase + UInt64(v.index)) } catch {
                v.started = false
                return .failed("queue \(v.index): \(error)")
            }
        } else {
            logger.warning("queue \(v.index) started without a kick fd: it is served only when enabled or woken")
        }
        device.queueStarted(v.index, self)
        if v.isLive { device.queueKicked(v.index, self) }
        return .ok
    }

    func handOver(_ v: Vring) {
        v.handedOver = true
        device.queueHandOver(v.index, self)
    }

    func takeBack(_ v: Vring, _ why: TakeBack) {
        guard v.handedOver else { return }
        device.queueTakeBack(v.index, why, self)
        v.handedOver = false
    }

    /// Runs `change` on a ring the device may be serving on its own thread:
    /// the guest thread touches it only once it is taken back, and it is
    /// handed over again after if it can still run. Every change of a started
    /// ring from a front-end message goes through here (or `installMemory`).
    func changing<T>(_ v: Vring, _ change: () -> T) -> T {
        let wasHandedOver = v.handedOver
        takeBack(v, .changing)
        defer {
            if wasHandedOver, v.started, v.queue != nil, v.brokenReason == nil, device.servesQueueItself(v.index) { handOver(v) }
        }
        return change()
    }

    @discardableResult
    func buildQueue(_ v: Vring) -> Bool {
        guard let a = v.addr, let q = makeQueue(v, a) else {
            v.queue = nil
            return false
        }
        v.queue = q
        return true
    }

    /// The ring at `a`, resolved against the current memory table; nil (with a
    /// warning) when it is not inside it. Resumes from the live indices when
    /// the ring runs.
    func makeQueue(_ v: Vring, _ a: VringAddrPayload) -> SplitQueue? {
        guard v.size > 0 else { return nil }
        do {
            let layout = try SplitQueue.layout(size: v.size, desc: a.desc, avail: a.avail, used: a.used) { memory.translate(userAddr: $0, length: $1) }
            var q = SplitQueue(size: v.size, layout: layout,
                               base: v.queue?.lastAvailIdx ?? v.base, usedIdx: v.queue?.usedIdx,
                               eventIdx: ackedFeatures & RingFeature.eventIdx != 0,
                               indirect: ackedFeatures & RingFeature.indirectDesc != 0)
            q.usedLog = a.flags & VringAddrPayload.logFlag != 0 ? (dirtyLog, a.log) : nil
            return q
        } catch {
            logger.warning("queue \(v.index): \(error)")
            return nil
        }
    }

    func stopRing(_ v: Vring) {
        if v.handedOver {
            takeBack(v, .stopping)
        } else if let fd = v.kick?.rawValue {
            epoll.remove(fd)
        }
        // The device returns what it popped while the ring is still there.
        device.queueStopping(v.index, self)
        if let q = v.queue { v.base = q.lastAvailIdx }
        v.started = false
        v.queue = nil
        v.inflight = nil
        v.forgetResubmits()
        device.queueStopped(v.index, self)
    }

    /// Kick eventfd of queue `index` fired.
    public func kicked(_ index: Int) {
        guard index >= 0, index < vrings.count else { return }
        let v = vrings[index]
        if let fd = v.kick?.rawValue { EventFD.drain(fd) }
        if v.isLive { device.queueKicked(index, self) }
    }

    /// RESET_DEVICE / RESET_OWNER: the rings stop and the device forgets
    /// everything it held for this front-end's guest (a new boot follows).
    func resetAll() {
        resetRings()
        device.reset(self)
    }

    func resetRings() {
        for v in vrings {
            if v.started { stopRing(v) }
            // QEMU sets the error eventfd once, at init (vhost_virtqueue_init),
            // and kick/call at every start: a reset must keep the first.
            v.closeKickAndCall()
            v.enabled = false
            v.size = 0
            v.addr = nil
            v.base = 0
            v.kickSet = false
            v.brokenReason = nil
        }
        deviceStatus = 0
        stats.deviceStatus.store(0, ordering: .relaxed)
        stats.needsReset.store(false, ordering: .relaxed)
    }
}
