import CPVZShim
import PVZContract
import GPUModel
import Platform
import PVZServer
import Synchronization
import VhostUser
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

/// The emulated GPU's one firmware processor: a thread that serves every
/// guest's kickq itself. A guest's doorbell wakes it directly (the kickq kick
/// eventfd is in its epoll), it pops the kick, runs it by priority on the
/// OSID's firmware, returns the chain on the used ring and signals the guest:
/// no thread hand-off on the kick path. Events go to eventq through the
/// guest thread (woken only when an event was raised).
///
/// The vhost-user engine hands a started kickq over (`attach`) and takes it
/// back before it changes or stops it (`detach`); in between only this thread
/// touches the ring. Other threads talk to it with commands (a queue and a
/// doorbell); those that must know it was done wait for it.
public final class FirmwareProcessor: @unchecked Sendable {
    /// How a taken-back ring's queued kicks end.
    enum Release {
        /// The ring stops (GET_VRING_BASE): run them for up to `ms`, then
        /// return the rest unrun with a kickCancelled fault each.
        case drain(ms: Int)
        /// The ring changes (memory table, enable): keep them for the next attach.
        case keep
        /// The ring is gone (reset, disconnect, broken): forget them.
        case drop
    }

    private enum Command: @unchecked Sendable {
        case register(OSID, GuestGPU)
        case attach(OSID, Vring, GuestMemory)
        case detach(OSID, Release, Waiter?)
        case priority(OSID, UInt32)
        case hcsDeadline(UInt32)
        case barrier(Waiter)
        case pause(Bool)
        case stop
    }

    /// Lets a thread wait until the firmware thread got to a command.
    final class Waiter: @unchecked Sendable {
        private let done = Atomic<Bool>(false)
        /// A blocking eventfd; -1 when the process is out of descriptors (the waiter then spins).
        private let doorbell = FileDescriptor(taking: eventfd(0, Int32(EFD_CLOEXEC)))
        /// What a detach found in flight, set before `signal` (the release
        /// store of `done` orders it before `wait` returns).
        var found: (finished: Int, cancelled: Int) = (0, 0)
        func signal() {
            done.store(true, ordering: .releasing)
            if doorbell.rawValue >= 0 { EventFD.signal(doorbell.rawValue) }
        }
        func wait() {
            if doorbell.rawValue >= 0 { var v: UInt64 = 0; while read(doorbell.rawValue, &v, 8) != 8 && errno == EINTR {} }
            while !done.load(ordering: .acquiring) { sched_yield() }
        }
    }

    private struct Slot {
        unowned(unsafe) var gpu: GuestGPU
        var ring: Vring?
        var memory: GuestMemory?
        var kickFD: Int32 = -1
    }

    public let maxOSIDs: UInt32
    // Owned by the firmware thread.
    private var queues: KickQueues
    private var slots: [Slot?]
    private var hcsDeadline: UInt32 = 0
    /// Kicks are taken and queued but none runs (the whole GPU held).
    private var paused = false
    private let request = UnsafeMutableRawBufferPointer.allocate(byteCount: KickRequest.size, alignment: 8)
    /// Commands taken off the shared queue (swapped, so neither side allocates).
    private var taken: [Command] = []
    // Shared.
    private let commands = Mutex<[Command]>([])
    /// Commands posted and not yet taken: the kick path takes no lock when 0.
    private let posted = Atomic<Int>(0)
    private let doorbell: EventFD
    private let epoll: Epoll
    private var thread: OSThread?
    private let running = Atomic<Bool>(false)
    /// The HCS deadline for readers off the thread (status).
    private let deadlineMirror = Atomic<UInt32>(0)

    private static let tagDoorbell: UInt64 = 1 << 40

    /// Starts the firmware thread. Fails only when the process is out of
    /// descriptors or threads at start-up: then nothing could run.
    public init(maxOSIDs: UInt32 = VirtioPVZ.defaultMaxOSIDs) throws(SystemError) {
        self.maxOSIDs = maxOSIDs
        queues = KickQueues(osids: Int(maxOSIDs), capacity: GuestGPU.maxQueuedKicks)
        slots = Array(repeating: nil, count: Int(maxOSIDs))
        doorbell = try EventFD()
        epoll = try Epoll()
        try epoll.add(doorbell.fd, tag: Self.tagDoorbell)
        running.store(true, ordering: .relaxed)
        // The thread keeps the processor alive until it ends (shutdown joins it).
        thread = try OSThread(name: "pvz-firmware") { [self] in loop() }
    }

    deinit { request.deallocate() }

    // MARK: commands (any thread)

    private func post(_ c: Command) {
        commands.withLock { $0.append(c) }
        posted.add(1, ordering: .releasing)
        doorbell.signal()
    }

    func register(_ gpu: GuestGPU) { post(.register(gpu.osid, gpu)) }

    /// kickq started (or changed back): serve it from now on.
    func attach(osid: OSID, ring: Vring, memory: GuestMemory) { post(.attach(osid, ring, memory)) }

    /// Returns once the firmware thread no longer touches the OSID's kickq.
    /// `interrupting`: that OSID's running kick stops at its next command
    /// boundary first (its rest waits in the queue), so the wait is short.
    @discardableResult
    func detach(osid: OSID, _ release: Release, interrupting firmware: FirmwareInstance? = nil) -> (finished: Int, cancelled: Int) {
        guard running.load(ordering: .acquiring) else { return (0, 0) }
        let w = Waiter()
        post(.detach(osid, release, w))
        firmware?.interrupt()
        w.wait()
        return w.found
    }

    public func setPriority(osid: OSID, priority: UInt32) { post(.priority(osid, priority)) }
    public func setHCSDeadline(ms: UInt32) { deadlineMirror.store(ms, ordering: .relaxed); post(.hcsDeadline(ms)) }
    public var hcsDeadlineMs: UInt32 { deadlineMirror.load(ordering: .relaxed) }

    /// Holds every kick in its queue (none runs) until `resume`; new kicks
    /// are still taken (and refused beyond the bound).
    public func pause() { post(.pause(true)); sync() }
    public func resume() { post(.pause(false)) }

    /// Returns once every command posted before it was carried out.
    public func sync() {
        guard running.load(ordering: .acquiring) else { return }
        let w = Waiter()
        post(.barrier(w))
        w.wait()
    }

    /// Stops the thread after the running kick; queued kicks are dropped.
    public func shutdown() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        post(.stop)
        thread?.join()
    }

    // MARK: the thread

    private func loop() {
        var stopping = false
        while !stopping {
            epoll.wait(timeoutMs: queues.isEmpty || paused ? -1 : 0) { tag in
                if tag == Self.tagDoorbell {
                    doorbell.drain()
                } else if tag < UInt64(slots.count) {
                    pullKicks(OSID(UInt32(tag)))
                }
            }
            stopping = carryOutCommands()
            if !stopping, !paused, let (osid, t) = queues.next() { run(osid, t) }
        }
        for i in slots.indices { if let fd = slots[i]?.kickFD, fd >= 0 { epoll.remove(fd) } }
    }

    /// True when told to stop.
    private func carryOutCommands() -> Bool {
        guard posted.exchange(0, ordering: .acquiringAndReleasing) > 0 else { return false }
        commands.withLock { swap(&$0, &taken) }
        defer { taken.removeAll(keepingCapacity: true) }
        for c in taken {
            switch c {
            case .register(let osid, let gpu):
                guard Int(osid.rawValue) < slots.count else { continue }
                slots[Int(osid.rawValue)] = Slot(gpu: gpu)
            case .attach(let osid, let ring, let memory):
                guard Int(osid.rawValue) < slots.count, slots[Int(osid.rawValue)] != nil else { continue }
                let i = Int(osid.rawValue)
                slots[i]!.ring = ring
                slots[i]!.memory = memory
                if let fd = ring.kickFileDescriptor, (try? epoll.add(fd, tag: UInt64(i))) != nil { slots[i]!.kickFD = fd }
                pullKicks(osid)
            case .detach(let osid, let how, let w):
                let found = release(osid, how)
                w?.found = found
                w?.signal()
            case .priority(let osid, let p):
                queues.setPriority(osid, p)
            case .hcsDeadline(let ms):
                hcsDeadline = ms
            case .barrier(let w):
                w.signal()
            case .pause(let p):
                paused = p
            case .stop:
                for i in slots.indices { _ = queues.removeAll(OSID(UInt32(i))) }
                return true
            }
        }
        return false
    }

    /// Returns the kicks a drain ran to completion and those cancelled.
    private func release(_ osid: OSID, _ how: Release) -> (finished: Int, cancelled: Int) {
        let i = Int(osid.rawValue)
        guard i < slots.count, let slot = slots[i] else { return (0, 0) }
        var found = (finished: 0, cancelled: 0)
        switch how {
        case .keep:
            break
        case .drop:
            _ = queues.removeAll(osid)
        case .drain(let ms):
            let end = Deadline(ms: ms)
            while slot.ring != nil, let t = queues.next(of: osid) {
                if run(osid, t, yieldAllowed: false) == .preempted { queues.pushFront(osid, t) } else { found.finished += 1 }
                if end.expired { break }
            }
            for t in queues.removeAll(osid) {
                found.cancelled += 1
                slot.gpu.bank.raiseFault(.kickCancelled, detail: UInt32(t.head))
                slot.ring?.complete(head: t.head, written: 0)
            }
            slot.ring?.notifyIfNeeded()
            slot.gpu.firmwareRaisedEvents()
        }
        if slot.kickFD >= 0 { epoll.remove(slot.kickFD) }
        slots[i]!.kickFD = -1
        slots[i]!.ring = nil
        slots[i]!.memory = nil
        return found
    }

    /// Takes the guest's doorbells off its kickq. Beyond the OSID's bound a
    /// kick is returned at once with a kickQueueFull fault.
    private func pullKicks(_ osid: OSID) {
        let i = Int(osid.rawValue)
        guard i < slots.count, let slot = slots[i], let v = slot.ring, let memory = slot.memory else { return }
        if slot.kickFD >= 0 { EventFD.drain(slot.kickFD) }
        var refused = false
        do {
            repeat {
                while let c = try v.nextChain(memory) {
                    let n = c.gather(into: request)
                    let raw = n == KickRequest.size ? UInt64(littleEndian: request.load(as: UInt64.self)) : UInt64.max
                    let t = KickTicket(head: c.head, raw: raw, length: UInt32(truncatingIfNeeded: n), epoch: slot.gpu.cancelEpochNow)
                    if !queues.append(osid, t) {
                        slot.gpu.bank.raiseFault(.kickQueueFull, detail: UInt32(truncatingIfNeeded: raw))
                        v.complete(head: c.head, written: 0)
                        refused = true
                    }
                }
            } while v.armAndRecheck()
        } catch {
            // A broken ring: stop serving it; the guest thread reports NEEDS_RESET.
            _ = release(osid, .drop)
            slot.gpu.kickqBroken(error.description)
            return
        }
        if refused {
            v.notifyIfNeeded()
            slot.gpu.firmwareRaisedEvents()
        }
    }

    private enum Ran { case done, preempted }

    @discardableResult
    private func run(_ osid: OSID, _ t: KickTicket, yieldAllowed: Bool = true) -> Ran {
        let i = Int(osid.rawValue)
        guard let slot = slots[i], let v = slot.ring else {
            // Its ring is on hold (memory change, enable): wait for it.
            queues.pushFront(osid, t)
            return .preempted
        }
        let priority = queues.priority(osid)
        let preempted = slot.gpu.run(t, hcsDeadlineMs: yieldAllowed ? hcsDeadline : 0) { [unowned self] in
            higherPriorityWaiting(than: priority)
        }
        if preempted {
            queues.pushFront(osid, t)
            return .preempted
        }
        v.complete(head: t.head, written: 0)
        v.notifyIfNeeded()
        slot.gpu.firmwareRaisedEvents()
        return .done
    }

    /// More important work waits: queued, or still on the avail ring of a
    /// higher-priority OSID's kickq (read straight from the ring: this thread
    /// cannot take kicks while a kick runs on it).
    private func higherPriorityWaiting(than p: UInt32) -> Bool {
        if queues.higherPriorityQueued(than: p) { return true }
        for i in slots.indices {
            guard let s = slots[i], let v = s.ring, queues.priority(OSID(UInt32(i))) > p else { continue }
            if v.pending { return true }
        }
        return false
    }

}
