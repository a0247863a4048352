#if canImport(Glibc)
import Glibc
#endif
import PVZServer
import Synchronization

/// The one firmware thread serving every OSID (spec 7): the OSID with the
/// highest priority and queued work goes first, round-robin among equal
/// priorities, one batch per turn.
///
/// VMMConfigure's knobs: `hcsDeadlineMs` is the hard-context-switch
/// deadline. The scheduler itself never interrupts a batch; the kick batches
/// of the device glue read the deadline and stop at a command boundary when
/// it passes, then queue their remainder again (so other OSIDs get their turn
/// by priority). A batch that still runs longer is counted as an overrun. `isolationThreshold` is stored and reported only: in the
/// DDK it puts OSIDs at or above that priority in an isolation group that
/// runs alone on the GPU; one thread already never runs two OSIDs at once.
///
/// Threads and waits use pthreads (Glibc), not Foundation.
public final class FirmwareScheduler: @unchecked Sendable {
    public typealias Work = @Sendable () -> Void

    public struct Stats: Equatable, Sendable {
        public var queued: Int
        public var running: Bool
        public var served: UInt64
        public var cancelled: UInt64
        public var deadlineOverruns: UInt64
        public var priority: UInt32
    }

    private struct Queue {
        var items: [Work] = []
        var head = 0
        var priority: UInt32 = 0
        var running = false
        var served: UInt64 = 0
        var cancelled: UInt64 = 0
        var overruns: UInt64 = 0
        var count: Int { items.count - head }
        mutating func pop() -> Work? {
            guard head < items.count else { return nil }
            let w = items[head]
            head += 1
            if head == items.count { items.removeAll(keepingCapacity: true); head = 0 }
            return w
        }
    }

    // Guarded by `mutex`.
    private var queues: [Queue]
    private var paused = false
    private var stopping = false
    private var lastServed = -1
    private var _isolationThreshold: UInt32 = 0
    private var _hcsDeadlineMs: UInt32 = 0

    /// 1 + the highest priority among OSIDs with queued batches, 0 when none:
    /// read without the lock by a running kick deciding whether to yield.
    private let topWaiting = Atomic<UInt64>(0)

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>
    private var thread = pthread_t()
    private var started = false

    public init(maxOSIDs: UInt32 = 8) {
        queues = Array(repeating: Queue(), count: Int(maxOSIDs))
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        cond = .allocate(capacity: 1)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
        let me = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let s = Unmanaged<FirmwareScheduler>.fromOpaque(arg!).takeRetainedValue()
            s.loop()
            return nil
        }, me)
        precondition(rc == 0, "firmware scheduler: pthread_create failed with error \(rc)")
        started = true
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Under the mutex, after any change to the queues.
    private func updateTopWaiting() {
        var top: UInt64 = 0
        for q in queues where q.count > 0 { top = max(top, UInt64(q.priority) + 1) }
        topWaiting.store(top, ordering: .releasing)
    }

    /// True when an OSID with a priority above `priority` has work queued:
    /// the hard context switch (VMM_CONF_HCS_DEADLINE) only pre-empts a run
    /// that is past its deadline for more important work, as the DDK's does.
    public func higherPriorityWaiting(than priority: UInt32) -> Bool {
        topWaiting.load(ordering: .acquiring) > UInt64(priority) + 1
    }

    public func priority(of osid: OSID) -> UInt32 {
        locked { index(osid).map { queues[$0].priority } ?? 0 }
    }

    private func index(_ osid: OSID) -> Int? {
        Int(osid.rawValue) < queues.count ? Int(osid.rawValue) : nil
    }

    // MARK: control

    /// Queues a batch for `osid`. False if the OSID is out of range or the
    /// scheduler is shut down. `first` puts it before the OSID's other
    /// batches: the rest of a pre-empted kick must run before later kicks of
    /// the same ring.
    @discardableResult
    public func submit(osid: OSID, first: Bool = false, work: @escaping Work) -> Bool {
        locked {
            guard !stopping, let i = index(osid) else { return false }
            if first {
                if queues[i].head > 0 {
                    queues[i].head -= 1
                    queues[i].items[queues[i].head] = work
                } else {
                    queues[i].items.insert(work, at: 0)
                }
            } else {
                queues[i].items.append(work)
            }
            updateTopWaiting()
            pthread_cond_broadcast(cond)
            return true
        }
    }

    public func setPriority(osid: OSID, priority: UInt32) {
        locked { if let i = index(osid) { queues[i].priority = priority; updateTopWaiting() } }
    }

    /// Stops taking new batches (the running one finishes).
    public func pause() { locked { paused = true } }
    public func resume() { locked { paused = false; pthread_cond_broadcast(cond) } }

    /// Drops the OSID's queued batches (a running one finishes); returns how many.
    @discardableResult
    public func cancel(osid: OSID) -> Int {
        locked {
            guard let i = index(osid) else { return 0 }
            let n = queues[i].count
            queues[i].items.removeAll()
            queues[i].head = 0
            queues[i].cancelled &+= UInt64(n)
            updateTopWaiting()
            pthread_cond_broadcast(cond)
            return n
        }
    }

    /// Waits until the OSID has nothing queued or running; false on timeout.
    public func waitIdle(osid: OSID, timeout: Duration) -> Bool {
        guard let i = index(osid) else { return true }
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let (s, atto) = timeout.components
        var ns = Int(deadline.tv_nsec) + Int(atto / 1_000_000_000)
        var sec = Int(deadline.tv_sec) + Int(s) + ns / 1_000_000_000
        ns %= 1_000_000_000
        if sec < 0 { sec = 0 }
        deadline.tv_sec = time_t(sec)
        deadline.tv_nsec = ns
        return locked {
            while queues[i].count > 0 || queues[i].running {
                if pthread_cond_timedwait(cond, mutex, &deadline) == ETIMEDOUT {
                    return queues[i].count == 0 && !queues[i].running
                }
            }
            return true
        }
    }

    public func setParameters(isolationThreshold: UInt32, hcsDeadlineMs: UInt32) {
        locked { _isolationThreshold = isolationThreshold; _hcsDeadlineMs = hcsDeadlineMs }
    }
    public var isolationThreshold: UInt32 { locked { _isolationThreshold } }
    public var hcsDeadlineMs: UInt32 { locked { _hcsDeadlineMs } }

    public func stats(osid: OSID) -> Stats? {
        locked {
            guard let i = index(osid) else { return nil }
            let q = queues[i]
            return Stats(queued: q.count, running: q.running, served: q.served, cancelled: q.cancelled,
                         deadlineOverruns: q.overruns, priority: q.priority)
        }
    }

    /// Stops the thread after the running batch; queued batches are dropped.
    public func shutdown() {
        let join = locked { () -> Bool in
            guard started, !stopping else { return false }
            stopping = true
            pthread_cond_broadcast(cond)
            return true
        }
        if join { pthread_join(thread, nil) }
    }

    // MARK: the thread

    /// Highest priority with work; among equals, the first after the last served.
    private func pick() -> Int? {
        var best: Int?
        let n = queues.count
        for k in 1...n {
            let i = (lastServed + k + n) % n
            guard queues[i].count > 0 else { continue }
            if best == nil || queues[i].priority > queues[best!].priority { best = i }
        }
        return best
    }

    private func loop() {
        pthread_mutex_lock(mutex)
        while !stopping {
            guard !paused, let i = pick(), let work = queues[i].pop() else {
                pthread_cond_wait(cond, mutex)
                continue
            }
            queues[i].running = true
            lastServed = i
            updateTopWaiting()
            let deadlineMs = _hcsDeadlineMs
            pthread_mutex_unlock(mutex)
            let t0 = ContinuousClock.now
            work()
            let took = ContinuousClock.now - t0
            pthread_mutex_lock(mutex)
            queues[i].running = false
            queues[i].served &+= 1
            if deadlineMs > 0, took > .milliseconds(Int(deadlineMs)) { queues[i].overruns &+= 1 }
            pthread_cond_broadcast(cond)
        }
        for i in queues.indices { queues[i].cancelled &+= UInt64(queues[i].count); queues[i].items.removeAll(); queues[i].head = 0 }
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }
}
