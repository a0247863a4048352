import CPVZShim
#if canImport(Glibc)
import Glibc
#endif

/// A named OS thread: the daemon's one way to start a thread (guest event
/// loops, the firmware processor, control clients, libvirt, state transfers,
/// the bench). Threads, not tasks: the kick → call path must not hop through
/// an executor, and these threads block in syscalls. Join it, or let it go:
/// a thread nobody joined is detached when its handle goes away.
public final class OSThread: @unchecked Sendable {
    private var handle = pthread_t()
    private var joined = false

    private final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(_ name: String, _ body: @escaping @Sendable () -> Void) { self.name = name; self.body = body }
    }

    /// Starts `body` on a new thread named `name` (15 bytes show in ps/top).
    public init(name: String, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let start = Unmanaged.passRetained(Start(name, body)).toOpaque()
        let rc = pthread_create(&handle, nil, { arg in
            let s = Unmanaged<Start>.fromOpaque(arg!).takeRetainedValue()
            pvz_set_thread_name(s.name)
            s.body()
            return nil
        }, start)
        guard rc == 0 else {
            Unmanaged<Start>.fromOpaque(start).release()
            joined = true
            throw SystemError("pthread_create", errno: rc, context: name)
        }
    }

    /// Waits for the thread to end. Once.
    public func join() {
        guard !joined else { return }
        joined = true
        pthread_join(handle, nil)
    }

    deinit { if !joined { pthread_detach(handle) } }
}
