import GPUModel
import PVZServer
import Synchronization
import VhostUser
import Virtqueue

/// One guest's emulated GPU as the device glue sees it: its register bank
/// (with the live mirror in the carve-out), its events on eventq, and its
/// firmware fed by kickq through the shared firmware scheduler. Kicks run on
/// the scheduler's thread; their completion comes back to the guest thread
/// through the guest's waker, so vrings are only ever touched by the guest thread.
///
/// Lifetimes: the mirror writes the bank only while holding the memory table
/// it was resolved in (under `mapping`'s lock), and the firmware holds the
/// memory object its heap lives in (FirmwareInstance), so a memory-table
/// change, a disconnect or an unmap can never pull pages from under either.
public final class GuestGPU: @unchecked Sendable {
    /// Kicks one OSID may have queued or running; a kick beyond it is returned
    /// at once with a `kickQueueFull` fault event (counted).
    public static let maxQueuedKicks = 32
    /// How long a ring stop (pause, migration, reset) lets queued kicks finish
    /// before it cancels the rest (returned unrun, `kickCancelled` event).
    public static let stopDrainMilliseconds = 1000

    public let osid: OSID
    public let bank: RegisterBank
    public let firmware: FirmwareInstance
    let scheduler: FirmwareScheduler
    /// Rings the guest thread's doorbell (set by the daemon once the vhost-user server exists).
    var wake: @Sendable () -> Void = {}

    private struct Mapping: @unchecked Sendable {
        /// The memory table the bank's mirror address was resolved in; held
        /// so that address stays mapped while `mirror` writes through it.
        var memory: GuestMemory?
        var regs: UnsafeMutableRawPointer?
        /// The firmware heap the firmware is attached to.
        var fwHeap: IPARange?
        let carveout: IPARange
    }
    private let mapping: Mutex<Mapping>

    /// Kick chains the firmware finished, for the guest thread to return.
    /// `generation` names the kickq ring they belong to: a stopped or reset
    /// ring's completions are dropped under the same lock that bumps it.
    private struct Completions {
        var generation = 0
        var heads: [UInt16] = []
    }
    private let completions = Mutex<Completions>(Completions())
    private let ringGeneration = Atomic<Int>(0)
    /// Bumped when queued kicks must come back without running (the guest
    /// unmapped its firmware heap, the VM went offline).
    private let cancelEpoch = Atomic<Int>(0)
    /// Heads handed to the scheduler and not yet returned, oldest first
    /// (the firmware finishes one OSID's kicks in order). Guest thread only.
    private var inflight = HeadQueue(capacity: GuestGPU.maxQueuedKicks)
    private let preemptions = Atomic<UInt64>(0)
    private let request = UnsafeMutableRawBufferPointer.allocate(byteCount: KickRequest.size, alignment: 8)

    public init(osid: OSID, carveout: IPARange, scheduler: FirmwareScheduler, bvnc: UInt64 = RegisterBank.defaultBVNC) {
        self.osid = osid
        self.scheduler = scheduler
        bank = RegisterBank(osid: osid, bvnc: bvnc)
        firmware = FirmwareInstance(bank: bank)
        mapping = Mutex(Mapping(carveout: carveout))
    }

    deinit { request.deallocate() }

    public var registers: RegisterBank { bank }
    public var bvnc: UInt64 { bank.bvnc }
    public var firmwareRunning: Bool { firmware.isAttached }
    public var firmwareState: String { firmware.isAttached ? "running" : "stopped" }

    public struct Counters: Sendable {
        public var kicks: UInt64 = 0, commands: UInt64 = 0, faults: UInt64 = 0, events: UInt64 = 0, eventsDropped: UInt64 = 0
    }
    public var counters: Counters {
        func r(_ o: UInt32) -> UInt64 { (try? bank.read(offset: o).get()).map(UInt64.init) ?? 0 }
        return Counters(kicks: r(Reg.kicks), commands: r(Reg.commands), faults: r(Reg.faults),
                        events: r(Reg.eventsRaised), eventsDropped: bank.droppedEvents)
    }

    // MARK: memory

    /// The front-end's memory table changed (or arrived after a reconnect):
    /// find the register bank again and, if a firmware heap is in the ledger,
    /// (re)attach the firmware to its mapping in the new table.
    public func attachMemory(_ memory: GuestMemory, fwHeap: IPARange?) {
        enum Step { case none, attach(UnsafeMutableRawBufferPointer, keepRing: Bool), detach }
        let (step, old) = mapping.withLock { m -> (Step, GuestMemory?) in
            let old = m.memory
            m.memory = memory
            m.regs = memory.translate(gpa: m.carveout.start.rawValue, length: PVZLayout.registerBankSize)
            guard let h = fwHeap else { return (.none, old) }
            guard let p = memory.translate(gpa: h.start.rawValue, length: h.size) else {
                // The heap's memory left the table: the firmware must not keep the old mapping.
                m.fwHeap = nil
                return (.detach, old)
            }
            let keep = m.fwHeap == h
            m.fwHeap = h
            return (.attach(UnsafeMutableRawBufferPointer(start: p, count: Int(h.size)), keepRing: keep), old)
        }
        switch step {
        case .none: break
        case .attach(let heap, let keep):
            // What the firmware stores in its heap is marked in the connection's dirty log.
            let wrote: (@Sendable (Int, Int) -> Void)? = memory.dirtyLog.flatMap { log in
                let gpa = fwHeap?.start.rawValue ?? 0
                return { off, len in log.mark(gpa: gpa &+ UInt64(off), length: UInt64(len)) }
            }
            firmware.attach(heap: heap, owner: memory, keepRing: keep && firmware.isAttached, wrote: wrote)
        case .detach: firmware.detach()
        }
        withExtendedLifetime(old) {}   // an old table is unmapped here, outside the lock
        mirror()
    }

    /// Writes the registers into the guest's view of the bank. Under the
    /// mapping lock: the memory table the address belongs to cannot go away meanwhile.
    public func mirror() {
        mapping.withLock { m in
            guard let p = m.regs else { return }
            bank.mirror(into: p)
            m.memory?.dirtyLog?.mark(gpa: m.carveout.start.rawValue, length: Self.mirrorBytes)
        }
    }

    /// The part of the bank `mirror` writes (every defined register).
    private static let mirrorBytes = UInt64((Reg.all.max() ?? 0) + 4)

    // MARK: hypercall effects

    public func apply(_ effect: CallEffect, memory: GuestMemory) {
        switch effect {
        case .devConfigCreated: bank.setStatus(.devConfigCreated, true)
        case .devConfigDestroyed: bank.setStatus(.devConfigCreated, false)
        case .fwHeapMapped(let h): attachMemory(memory, fwHeap: h.ipa)
        case .heapsCreated(let fw, _): if let fw { attachMemory(memory, fwHeap: fw.ipa) }
        // The firmware was released (FirmwareControl) before the ledger let go.
        case .fwHeapUnmapped, .heapsDestroyed, .registerWritten, .none: break
        }
    }

    /// The guest takes its firmware heap back (UNMAP, DESTROY, offline):
    /// queued kicks come back without running, a running one stops at its
    /// next command boundary, the firmware detaches. Any thread.
    public func releaseFirmware() {
        cancelEpoch.add(1, ordering: .releasing)
        firmware.detach()
        mapping.withLock { $0.fwHeap = nil }
    }

    // MARK: VM manager

    public func vmOnline(priority: UInt32) {
        scheduler.setPriority(osid: osid, priority: priority)
        bank.setStatus(.online, true)
        mirror()
    }

    /// OnVmOffline's firmware stop: queued kicks are cancelled (returned
    /// unrun), a running one stops at a command boundary, the firmware
    /// detaches. Always succeeds, bounded by one command.
    @discardableResult
    public func stopFirmware() -> Bool {
        releaseFirmware()
        return true
    }

    /// After OnVmOffline freed the heaps: reset the bank and tell a connected guest.
    public func vmOffline() {
        // A MAP that raced with the offline may have attached after the stop.
        releaseFirmware()
        bank.resetDevice()
        bank.setStatus(.online, false)
        bank.raise(GPUEvent(type: .vmManager, code: GPUEvent.codeVmOffline, value: UInt64(osid.rawValue)))
        mirror()
        wake()
    }

    public func parametersChanged(_ p: VMMParameters) {
        for (i, prio) in p.priorities.enumerated() { scheduler.setPriority(osid: OSID(UInt32(i)), priority: prio) }
        scheduler.setParameters(isolationThreshold: p.isolationThreshold, hcsDeadlineMs: p.hcsDeadline)
        bank.raise(GPUEvent(type: .vmManager, code: GPUEvent.codeVmmConfigure, value: 0))
        wake()
    }

    /// Device reset (a new boot) or a front-end gone: the old ring's kicks are
    /// dropped, the firmware detaches, the bank returns to its reset state.
    /// `dropMemory` also forgets the memory table (the connection is over).
    /// Guest thread.
    public func resetDevice(online: Bool, dropMemory: Bool) {
        newRingGeneration()
        cancelEpoch.add(1, ordering: .releasing)
        scheduler.cancel(osid: osid)
        firmware.detach()
        inflight.removeAll()
        let old = mapping.withLock { m -> GuestMemory? in
            m.fwHeap = nil
            guard dropMemory else { return nil }
            defer { m.memory = nil; m.regs = nil }
            return m.memory
        }
        withExtendedLifetime(old) {}
        bank.resetDevice()
        bank.setStatus(.online, online)
        mirror()
    }

    /// kickq stops (GET_VRING_BASE: pause, migration, the first half of a
    /// reset). Queued kicks get `stopDrainMilliseconds` to finish; the rest
    /// are cancelled and returned unrun with a `kickCancelled` event each, so
    /// every chain popped from this ring is on its used ring before the
    /// front-end reads the ring's base. Guest thread. Returns what was in
    /// flight: the kicks returned finished and those cancelled.
    @discardableResult
    public func kickQueueStopping(_ v: Vring) -> (finished: Int, cancelled: Int) {
        let wasInFlight = inflight.count
        if !inflight.isEmpty {
            _ = scheduler.waitIdle(osid: osid, timeout: .milliseconds(Self.stopDrainMilliseconds))
        }
        // One step: a kick finishes either before (returned now) or after (dropped).
        let finished = completions.withLock { c -> [UInt16] in
            c.generation += 1
            ringGeneration.store(c.generation, ordering: .releasing)
            defer { c.heads.removeAll(keepingCapacity: true) }
            return c.heads
        }
        for h in finished { returnKick(h, v) }
        let cancelled = inflight.count
        if !inflight.isEmpty {
            scheduler.cancel(osid: osid)
            firmware.interrupt()
            while let h = inflight.popFirst() {
                bank.raiseFault(.kickCancelled, detail: UInt32(h))
                v.complete(head: h, written: 0)
            }
        }
        v.notifyIfNeeded()
        mirror()
        return (wasInFlight - cancelled, cancelled)
    }

    private func newRingGeneration() {
        completions.withLock { c in
            c.generation += 1
            c.heads.removeAll(keepingCapacity: true)
            ringGeneration.store(c.generation, ordering: .releasing)
        }
    }

    // MARK: eventq

    /// Fills posted eventq buffers with pending events; true when any was used.
    public func deliverEvents(_ v: Vring, _ memory: GuestMemory) throws(ChainError) -> Bool {
        var used = false
        var e16 = (UInt64(0), UInt64(0))
        while bank.pendingEvents > 0 {
            guard let c = try v.nextChain(memory) else { break }
            guard let e = bank.nextEvent() else { v.complete(head: c.head, written: 0); used = true; break }
            let n = withUnsafeMutableBytes(of: &e16) { b -> Int in
                _ = e.encode(into: b)
                return c.scatter(UnsafeRawBufferPointer(b))
            }
            // A buffer shorter than an event gets what fits; the driver sees len < 16.
            v.complete(head: c.head, written: UInt32(n))
            used = true
        }
        if used { mirror() }
        return used
    }

    // MARK: kickq

    /// Takes the guest's doorbells off kickq and queues them on the firmware
    /// scheduler; their chains return when the firmware has run them. Beyond
    /// `maxQueuedKicks` a kick is returned at once with a fault event.
    public func acceptKicks(_ v: Vring, _ memory: GuestMemory) throws(ChainError) {
        var refused = false
        repeat {
            while let c = try v.nextChain(memory) {
                let n = c.gather(into: request)
                let raw = n == KickRequest.size ? UInt64(littleEndian: request.load(as: UInt64.self)) : UInt64.max
                let head = c.head
                if inflight.isFull {
                    bank.raiseFault(.kickQueueFull, detail: UInt32(truncatingIfNeeded: raw))
                    v.complete(head: head, written: 0)
                    refused = true
                    continue
                }
                let gen = ringGeneration.load(ordering: .acquiring)
                let epoch = cancelEpoch.load(ordering: .acquiring)
                let work: @Sendable () -> Void = { [weak self] in
                    self?.runKick(raw: raw, length: n, head: head, generation: gen, epoch: epoch)
                }
                if scheduler.submit(osid: osid, work: work) {
                    inflight.append(head)
                } else {
                    v.complete(head: head, written: 0)
                }
            }
        } while v.armAndRecheck()
        if refused { mirror() }
        v.notifyIfNeeded()
    }

    /// Firmware thread: runs one kick (or what is left of it after a hard
    /// context switch). With an HCS deadline set (VMM_CONF_HCS_DEADLINE, ms), a
    /// kick that runs past it is pre-empted at a command boundary and queued
    /// again ahead of the OSID's later kicks, so the scheduler can serve other
    /// OSIDs by priority first.
    private func runKick(raw: UInt64, length: Int, head: UInt16, generation gen: Int, epoch: Int) {
        // A stopped or reset ring: its chains are gone, nothing to run or return.
        guard ringGeneration.load(ordering: .acquiring) == gen else { return }
        if cancelEpoch.load(ordering: .acquiring) != epoch {
            // Cancelled (unmap, offline): returned without running.
            finishKick(head, generation: gen)
            return
        }
        if raw == UInt64.max {
            bank.raiseFault(.badKick, detail: UInt32(truncatingIfNeeded: length))
        } else if !firmware.isAttached {
            // No firmware heap: nothing to run; say so rather than stay silent.
            bank.raise(GPUEvent(type: .firmware, code: GPUEvent.codeFirmwareFault, value: 0))
        } else {
            let kick = KickRequest(writeOffset: UInt32(truncatingIfNeeded: raw), flags: UInt32(truncatingIfNeeded: raw >> 32))
            if kick.flags != 0 {
                withUnsafeBytes(of: raw.littleEndian) { _ = firmware.kick($0) }  // raises the bad-kick fault
            } else {
                let ms = UInt64(scheduler.hcsDeadlineMs)
                let deadline = ms == 0 ? 0 : bank.clockNs &+ ms * 1_000_000
                let scheduler = self.scheduler
                let priority = ms == 0 ? 0 : scheduler.priority(of: osid)
                if let r = firmware.kick(writeOffset: kick.writeOffset, deadlineNs: deadline,
                                         yield: { scheduler.higherPriorityWaiting(than: priority) }), r.preempted {
                    // Stopped early: by the HCS deadline (run the rest later), or by a
                    // ring stop / release (then the generation or epoch moved on).
                    guard ringGeneration.load(ordering: .acquiring) == gen else { return }
                    if cancelEpoch.load(ordering: .acquiring) == epoch, firmware.isAttached {
                        preemptions.add(1, ordering: .relaxed)
                        let again: @Sendable () -> Void = { [weak self] in
                            self?.runKick(raw: raw, length: length, head: head, generation: gen, epoch: epoch)
                        }
                        if scheduler.submit(osid: osid, first: true, work: again) { return }
                    }
                }
            }
        }
        finishKick(head, generation: gen)
    }

    private func finishKick(_ head: UInt16, generation gen: Int) {
        let queued = completions.withLock { c -> Bool in
            guard c.generation == gen else { return false }
            c.heads.append(head)
            return true
        }
        if queued { wake() }
    }

    /// Kicks cut short by the HCS deadline (each resumed later).
    public var preemptedKicks: UInt64 { preemptions.load(ordering: .relaxed) }

    private func takeCompletions() -> [UInt16] {
        completions.withLock { c -> [UInt16] in
            defer { c.heads.removeAll(keepingCapacity: true) }
            return c.heads
        }
    }

    private func returnKick(_ head: UInt16, _ v: Vring) {
        // FIFO per OSID: the finished kick is the oldest in flight.
        if inflight.first == head { _ = inflight.popFirst() } else { inflight.remove(head) }
        v.complete(head: head, written: 0)
    }

    /// Returns kick chains the firmware has finished (guest thread, on wake).
    public func completeKicks(_ v: Vring) {
        let heads = takeCompletions()
        guard !heads.isEmpty, v.isLive else { return }
        // Registers first: a guest that sees its kick returned sees the counters too.
        mirror()
        for h in heads { returnKick(h, v) }
        v.notifyIfNeeded()
    }
}

/// A bounded FIFO of chain heads, allocated once.
struct HeadQueue {
    private var storage: [UInt16]
    private var start = 0
    private(set) var count = 0
    init(capacity: Int) { storage = Array(repeating: 0, count: capacity) }
    var isEmpty: Bool { count == 0 }
    var isFull: Bool { count == storage.count }
    var first: UInt16? { count > 0 ? storage[start] : nil }
    mutating func append(_ h: UInt16) {
        guard !isFull else { return }
        storage[(start + count) % storage.count] = h
        count += 1
    }
    mutating func popFirst() -> UInt16? {
        guard count > 0 else { return nil }
        let h = storage[start]
        start = (start + 1) % storage.count
        count -= 1
        return h
    }
    /// Removes one occurrence of `h` wherever it is (not expected: kicks finish in order).
    mutating func remove(_ h: UInt16) {
        var rest: [UInt16] = []
        var removed = false
        while let x = popFirst() {
            if !removed && x == h { removed = true } else { rest.append(x) }
        }
        for x in rest { append(x) }
    }
    mutating func removeAll() { start = 0; count = 0 }
}
