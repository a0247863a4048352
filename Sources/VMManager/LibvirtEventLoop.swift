import CLibvirt
import Glibc

/// libvirt's default event loop, run on one thread for the whole process.
/// libvirt wants virEventRegisterDefaultImpl before the first virConnectOpen
/// and one thread iterating it; several listeners share that thread.
enum LibvirtEventLoop {
    private static let started = Locked(false)

    static func ensureRunning() throws {
        try started.withLock { running in
            if running { return }
            try LibvirtLibrary.load()
            // libvirt's default error handler prints every error to stderr;
            // the listener reports errors itself, through the logger.
            virSetErrorFunc(nil, { _, _ in })
            guard virEventRegisterDefaultImpl() == 0 else {
                throw LibvirtError(message: "virEventRegisterDefaultImpl failed: \(lastLibvirtError())")
            }
            _ = try JoinableThread(name: "pvz-libvirt-ev") {
                while true {
                    if virEventRunDefaultImpl() != 0 { usleep(10_000) }
                }
            }
            running = true
        }
    }
}

public struct LibvirtError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var description: String { message }
}

/// The calling thread's last libvirt error.
func lastLibvirtError() -> String {
    if case .failure(let e) = LibvirtLibrary.shared { return e.message }
    guard let m = virGetLastErrorMessage() else { return "unknown libvirt error" }
    return String(cString: m)
}

/// A mutex and condition for a thread that sleeps until woken or a deadline.
final class Wakeup: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var signalled = false

    init() {
        pthread_mutex_init(mutex, nil)
        let attr = UnsafeMutablePointer<pthread_condattr_t>.allocate(capacity: 1)
        pthread_condattr_init(attr)
        pthread_condattr_setclock(attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, attr)
        pthread_condattr_destroy(attr)
        attr.deallocate()
    }
    deinit {
        pthread_cond_destroy(cond); pthread_mutex_destroy(mutex)
        cond.deallocate(); mutex.deallocate()
    }

    func signal() {
        pthread_mutex_lock(mutex)
        signalled = true
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    /// Waits until signalled or `seconds` pass (nil: no limit).
    func wait(seconds: Double?) {
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
