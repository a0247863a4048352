import PVZContract
import GPUModel
import PVZServer
import Synchronization
import VhostUser
import Virtqueue

/// One guest's emulated GPU as the device glue sees it: its register bank
/// (with the live mirror in the carve-out), its events on eventq, and its
/// firmware, fed from kickq by the one firmware processor (FirmwareProcessor),
/// which serves kickq on its own thread. Events reach eventq through the
/// guest thread.
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
    let processor: FirmwareProcessor
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

    /// Bumped when queued kicks must come back without running (the guest
    /// unmapped its firmware heap, the VM went offline): a kick carries the
    /// epoch it was queued under.
    private let cancelEpoch = Atomic<UInt32>(0)
    /// kickq broke on the firmware thread: the guest thread reports it.
    private let brokenKickq = Mutex<String?>(nil)
    private let preemptions = Atomic<UInt64>(0)

    public init(osid: OSID, carveout: IPARange, processor: FirmwareProcessor, bvnc: UInt64 = VirtioPVZ.defaultBVNC) {
        self.osid = osid
        self.processor = processor
        bank = RegisterBank(osid: osid, bvnc: bvnc)
        firmware = FirmwareInstance(bank: bank)
        mapping = Mutex(Mapping(carveout: carveout))
        processor.register(self)
    }

    public var registers: RegisterBank { bank }
    public var bvnc: UInt64 { bank.bvnc }
    public var firmwareRunning: Bool { firmware.isAttached }
    public var firmwareState: String { firmware.isAttached ? "running" : "stopped" }

    public struct Counters: Sendable {
        public var kicks: UInt64 = 0, commands: UInt64 = 0, faults: UInt64 = 0, events: UInt64 = 0, eventsDropped: UInt64 = 0
    }
    public var counters: Counters {
        func r(_ o: UInt32) -> UInt64 { (try? bank.read(offset: o).get()).map(UInt64.init) ?? 0 }
        return Counters(kicks: r(PVZRegister.kicks), commands: r(PVZRegister.commands), faults: r(PVZRegister.faults),
                        events: r(PVZRegister.eventsRaised), eventsDropped: bank.droppedEvents)
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
            m.regs = memory.translate(gpa: m.carveout.start.rawValue, length: PVZRegister.bankSize)
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
    private static let mirrorBytes = UInt64((PVZRegister.all.max() ?? 0) + 4)

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
        processor.setPriority(osid: osid, priority: priority)
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
        for (i, prio) in p.priorities.enumerated() { processor.setPriority(osid: OSID(UInt32(i)), priority: prio) }
        processor.setHCSDeadline(ms: p.hcsDeadline)
        bank.raise(GPUEvent(type: .vmManager, code: GPUEvent.codeVmmConfigure, value: 0))
        wake()
    }

    /// Device reset (a new boot) or a front-end gone: the old ring's kicks are
    /// dropped, the firmware detaches, the bank returns to its reset state.
    /// `dropMemory` also forgets the memory table (the connection is over).
    /// Guest thread.
    public func resetDevice(online: Bool, dropMemory: Bool) {
        cancelEpoch.add(1, ordering: .releasing)
        takeBackKickq(.broken)
        // A break the firmware thread reported and the guest thread has not
        // taken was about the ring just taken back; the next ring (a reset
        // device, the next front-end) must not be marked broken for it. The
        // firmware thread no longer touches that ring, so none arrives later.
        brokenKickq.withLock { $0 = nil }
        firmware.detach()
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

    // MARK: kickq on the firmware processor

    /// kickq started (or came back after a change): the firmware thread serves it.
    func handOverKickq(_ v: Vring, _ memory: GuestMemory) {
        processor.attach(osid: osid, ring: v, memory: memory)
    }

    /// Returns once the firmware thread no longer touches kickq. Stopping
    /// (GET_VRING_BASE): queued kicks run for up to `stopDrainMilliseconds`,
    /// the rest come back unrun with a kickCancelled fault each, so every
    /// chain popped from the ring is on its used ring before the front-end
    /// reads the ring's base. Changing: they wait for the ring to come back.
    /// Broken: they are dropped with the ring.
    /// Returns what was in flight: kicks run to completion by the drain and
    /// those cancelled.
    @discardableResult
    func takeBackKickq(_ why: TakeBack) -> (finished: Int, cancelled: Int) {
        let found: (finished: Int, cancelled: Int)
        switch why {
        case .stopping:
            found = processor.detach(osid: osid, .drain(ms: Self.stopDrainMilliseconds))
        case .changing:
            found = processor.detach(osid: osid, .keep, interrupting: firmware)
        case .broken:
            found = processor.detach(osid: osid, .drop, interrupting: firmware)
        }
        mirror()
        return found
    }

    /// Firmware thread: kickq broke (a bad chain); the guest thread reports it.
    func kickqBroken(_ reason: String) {
        brokenKickq.withLock { $0 = reason }
        wake()
    }

    /// Guest thread: the reason kickq broke, once.
    func takeKickqBreak() -> String? {
        brokenKickq.withLock { r in defer { r = nil }; return r }
    }

    var cancelEpochNow: UInt32 { cancelEpoch.load(ordering: .acquiring) }

    /// Whether eventq had a buffer waiting when the guest thread last looked
    /// (it arms the driver's next kick when there was none).
    private let eventBuffers = Atomic<Bool>(false)

    /// The store and the firmware thread's load pair with the other side's
    /// look at the event backlog (a store-then-load on each side): sequentially
    /// consistent, or both could miss the other.
    func eventBuffersPosted(_ waiting: Bool) {
        eventBuffers.store(waiting, ordering: .sequentiallyConsistent)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
    }

    /// Firmware thread, after a kick or a refusal: an event goes to eventq on
    /// the guest thread, woken only if a buffer waits for it (otherwise the
    /// driver's next buffer kicks that thread); a fault on guest memory wakes
    /// it too, to end that connection.
    func firmwareRaisedEvents() {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if (bank.pendingEvents > 0 && eventBuffers.load(ordering: .sequentiallyConsistent))
            || mapping.withLock({ $0.memory?.faulted ?? false }) { wake() }
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

    // MARK: running a kick (firmware thread)

    /// Runs one kick (or the rest of a pre-empted one) on this OSID's
    /// firmware; true when it stopped early and must be queued again. With an
    /// HCS deadline (VMM_CONF_HCS_DEADLINE, ms) a kick past it stops at a
    /// command boundary when `yield` says more important work waits. A kick
    /// of a cancelled epoch (unmap, offline) comes back unrun.
    func run(_ t: KickTicket, hcsDeadlineMs: UInt32, yield: () -> Bool) -> Bool {
        guard t.epoch == cancelEpoch.load(ordering: .acquiring) else { return false }
        if t.raw == UInt64.max {
            bank.raiseFault(.badKick, detail: t.length)
        } else if !firmware.isAttached {
            // No firmware heap: nothing to run; say so rather than stay silent.
            bank.raise(GPUEvent(type: .firmware, code: GPUEvent.codeFirmwareFault, value: 0))
        } else {
            let kick = KickRequest(writeOffset: UInt32(truncatingIfNeeded: t.raw), flags: UInt32(truncatingIfNeeded: t.raw >> 32))
            if kick.flags != 0 {
                withUnsafeBytes(of: t.raw.littleEndian) { _ = firmware.kick($0) }  // raises the bad-kick fault
            } else {
                let ms = UInt64(hcsDeadlineMs)
                let deadline = ms == 0 ? 0 : bank.clockNs &+ ms * 1_000_000
                if let r = firmware.kick(writeOffset: kick.writeOffset, deadlineNs: deadline, yield: yield), r.preempted,
                   t.epoch == cancelEpoch.load(ordering: .acquiring), firmware.isAttached {
                    // Past the deadline for more important work (or interrupted by a
                    // ring change): the rest runs when this OSID's turn comes again.
                    preemptions.add(1, ordering: .relaxed)
                    return true
                }
            }
        }
        // Registers first: a guest that sees its kick returned sees the counters too.
        mirror()
        return false
    }

    /// Kicks cut short by the HCS deadline or a ring change (each resumed later).
    public var preemptedKicks: UInt64 { preemptions.load(ordering: .relaxed) }
}
