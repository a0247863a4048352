#if canImport(Glibc)
import Glibc
#endif

/// A thread that sleeps until woken or until a deadline: the one place a
/// condition variable is needed (Synchronization's Mutex has none). Every
/// other lock in the daemon is a `Mutex`.
public final class Wakeup: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var signalled = false

    public init() {
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond); pthread_mutex_destroy(mutex)
        cond.deallocate(); mutex.deallocate()
    }

    public func signal() {
        pthread_mutex_lock(mutex)
        signalled = true
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    /// Waits until signalled or `seconds` pass (nil: no limit).
    public func wait(seconds: Double?) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if let seconds {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            let ns = Int(ts.tv_nsec) + Int(seconds.truncatingRemainder(dividingBy: 1) * 1e9)
            ts.tv_sec += Int(seconds) + ns / 1_000_000_000
            ts.tv_nsec = ns % 1_000_000_000
            while !signalled { if pthread_cond_timedwait(cond, mutex, &ts) == ETIMEDOUT { break } }
        } else {
            while !signalled { pthread_cond_wait(cond, mutex) }
        }
        signalled = false
    }
}
