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
public final class GuestGPU: @unchecked Sendable {
    public let osid: OSID
    public let bank: RegisterBank
    public let firmware: FirmwareInstance
    let scheduler: FirmwareScheduler
    /// Rings the guest thread's doorbell (set by the daemon once the vhost-user server exists).
    var wake: @Sendable () -> Void = {}

    private struct Mapping {
        /// Keeps the firmware heap's pages mapped while the firmware may touch them.
        var memory: GuestMemory?
        var fwHeap: IPARange?
        var carveout: IPARange
        var regs: UInt = 0
    }
    private let mapping: Mutex<Mapping>
    /// Kick chains done by the firmware, waiting for the guest thread to return them.
    private let completedKicks = Mutex<[UInt16]>([])
    /// Kick chains handed to the scheduler and not yet returned (guest thread only).
    private var inflightKicks = 0
    private var kickGeneration = 0
    private let generation = Atomic<Int>(0)
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
    /// start the firmware on it.
    public func attachMemory(_ memory: GuestMemory, fwHeap: IPARange?) {
        let attach: UnsafeMutableRawBufferPointer? = mapping.withLock { m in
            let regs = memory.translate(gpa: m.carveout.start.rawValue, length: PVZLayout.registerBankSize)
            m.regs = regs.map { UInt(bitPattern: $0) } ?? 0
            guard let h = fwHeap, !firmware.isAttached || m.fwHeap != h,
                  let p = memory.translate(gpa: h.start.rawValue, length: h.size) else { return nil }
            m.memory = memory
            m.fwHeap = h
            return UnsafeMutableRawBufferPointer(start: p, count: Int(h.size))
        }
        if let heap = attach { firmware.attach(heap: heap) }
        mirror()
    }

    /// Stops the firmware and forgets guest memory (disconnect, unmap, offline).
    /// Returns once no kick can touch the heap any more.
    public func detachMemory() {
        stopFirmware(timeoutSeconds: 2)
        mapping.withLock { m in
            m.memory = nil
            m.fwHeap = nil
            m.regs = 0
        }
    }

    /// Writes the registers into the guest's view of the bank.
    public func mirror() {
        let regs = mapping.withLock { $0.regs }
        if let p = UnsafeMutableRawPointer(bitPattern: regs) { bank.mirror(into: p) }
    }

    // MARK: hypercall effects

    public func apply(_ effect: CallEffect, memory: GuestMemory) {
        switch effect {
        case .devConfigCreated: bank.setStatus(.devConfigCreated, true)
        case .devConfigDestroyed: bank.setStatus(.devConfigCreated, false)
        case .fwHeapMapped(let h): attachMemory(memory, fwHeap: h.ipa)
        case .heapsCreated(let fw, _): if let fw { attachMemory(memory, fwHeap: fw.ipa) }
        case .fwHeapUnmapped, .heapsDestroyed(fw: .some, gpu: _): stopFirmware(timeoutSeconds: 2); mapping.withLock { $0.memory = nil; $0.fwHeap = nil }
        case .heapsDestroyed, .registerWritten, .none: break
        }
    }

    // MARK: VM manager

    public func vmOnline(priority: UInt32) {
        scheduler.setPriority(osid: osid, priority: priority)
        bank.setStatus(.online, true)
        mirror()
    }

    /// OnVmOffline's firmware stop: waits (bounded) for queued and running
    /// kicks, then detaches. False when the firmware did not go idle in time.
    @discardableResult
    public func stopFirmware(timeoutSeconds: Double) -> Bool {
        let idle = scheduler.waitIdle(osid: osid, timeout: .milliseconds(Int(timeoutSeconds * 1000)))
        if !idle { return false }
        firmware.detach()
        return true
    }

    /// After OnVmOffline freed the heaps: reset the bank and tell a connected guest.
    public func vmOffline() {
        // A MAP that raced with the offline may have attached after the idle wait.
        firmware.detach()
        mapping.withLock { $0.memory = nil; $0.fwHeap = nil }
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

    public func deviceReset() {
        scheduler.cancel(osid: osid)
        inflightKicks = 0
        completedKicks.withLock { $0.removeAll() }
        generation.add(1, ordering: .releasing)
    }

    public func kickQueueStopped() {
        // Chains in flight belong to the old ring: their completions are dropped.
        generation.add(1, ordering: .releasing)
        inflightKicks = 0
        completedKicks.withLock { $0.removeAll() }
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
    /// scheduler; their chains return when the firmware has run them.
    public func acceptKicks(_ v: Vring, _ memory: GuestMemory) throws(ChainError) {
        repeat {
            while let c = try v.nextChain(memory) {
                let n = c.gather(into: request)
                let raw = n == KickRequest.size ? UInt64(littleEndian: request.load(as: UInt64.self)) : UInt64.max
                let head = c.head
                let gen = generation.load(ordering: .acquiring)
                inflightKicks += 1
                let done: @Sendable () -> Void = { [weak self] in
                    self?.runKick(raw: raw, length: n, head: head, generation: gen)
                }
                if !scheduler.submit(osid: osid, work: done) {
                    inflightKicks -= 1
                    v.complete(head: head, written: 0)
                }
            }
        } while v.armAndRecheck()
        v.notifyIfNeeded()
    }

    /// Firmware thread: runs one kick (or what is left of it after a hard
    /// context switch). With an HCS deadline set (VMM_CONF_HCS_DEADLINE, ms), a
    /// kick that runs past it is pre-empted at a command boundary and queued
    /// again, so the scheduler can serve other OSIDs by priority first.
    private func runKick(raw: UInt64, length: Int, head: UInt16, generation gen: Int) {
        if raw == UInt64.max {
            bank.raise(GPUEvent(type: .firmware, code: GPUEvent.codeFirmwareFault,
                                value: UInt64(FirmwareFault.badKick.rawValue) << 32 | UInt64(length)))
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
                if let r = firmware.kick(writeOffset: kick.writeOffset, deadlineNs: deadline), r.preempted,
                   generation.load(ordering: .acquiring) == gen {
                    preemptions.add(1, ordering: .relaxed)
                    let again: @Sendable () -> Void = { [weak self] in
                        self?.runKick(raw: raw, length: length, head: head, generation: gen)
                    }
                    if scheduler.submit(osid: osid, work: again) { return }
                }
            }
        }
        if generation.load(ordering: .acquiring) == gen {
            completedKicks.withLock { $0.append(head) }
        }
        wake()
    }

    /// Kicks cut short by the HCS deadline (each resumed later).
    public var preemptedKicks: UInt64 { preemptions.load(ordering: .relaxed) }

    /// Returns kick chains the firmware has finished (guest thread, on wake).
    public func completeKicks(_ v: Vring) {
        let heads = completedKicks.withLock { h -> [UInt16] in
            defer { h.removeAll(keepingCapacity: true) }
            return h
        }
        guard !heads.isEmpty, v.isLive else { return }
        // Registers first: a guest that sees its kick returned sees the counters too.
        mirror()
        for h in heads { v.complete(head: h, written: 0) }
        inflightKicks -= heads.count
        v.notifyIfNeeded()
    }
}
