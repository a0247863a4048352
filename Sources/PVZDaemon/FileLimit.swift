import CPVZShim
import PVZContract
import Logging
import VMManager
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's file descriptors at their worst, and RLIMIT_NOFILE raised to
/// cover them at start: a guest that cannot get its kick eventfd is a broken
/// guest, and the soft limit a shell or unit hands us (often 1024) knows
/// nothing of how many guests the config holds.
public enum FileLimit {
    /// Vrings per guest: hypercallq, eventq, kickq.
    static let queues = PVZQueue.allCases.count

    /// What one guest can hold at once:
    /// - its listening socket, its server's epoll and wake-up eventfd (3);
    /// - the front-end's connection and the back-end request channel (2);
    /// - kick, call and err eventfds per vring (3 per queue);
    /// - the inflight memfd (1);
    /// - a device-state transfer: the pipe and its cancel eventfd (2);
    /// - the fds of one message being handled, at most PVZ_MAX_FDS (memory
    ///   regions' fds are closed once mapped, so never more than one message's).
    public static let perGuest = 3 + 2 + 3 * queues + 1 + 2 + Int(PVZ_MAX_FDS)

    /// What the daemon holds besides its guests: stdio (3); the control socket,
    /// each of its clients (ControlServer.Options.maxClients) and its
    /// listener's spare accept (1); the firmware processor's epoll, doorbell and
    /// one barrier eventfd (3); the state file and its directory while saving
    /// (2); the libvirt connection and the event loop's pipes and timers (8,
    /// with room to spare); the journal stream and a dlopen (2).
    public static func daemonBase(controlClients: Int = ControlServer.Options().maxClients) -> Int {
        3 + 1 + controlClients + 1 + 3 + 2 + 8 + 2
    }

    /// The worst case for `guests` configured guests.
    public static func need(guests: Int, controlClients: Int = ControlServer.Options().maxClients) -> Int {
        daemonBase(controlClients: controlClients) + guests * perGuest
    }

    public enum Outcome: Equatable, CustomStringConvertible {
        /// The soft limit already covers the need.
        case enough(need: Int, soft: UInt64)
        /// The soft limit was raised to the need (at most the hard limit).
        case raised(need: Int, from: UInt64, to: UInt64)
        /// Even the hard limit is lower than the need: the soft limit is raised to the hard one.
        case tooLow(need: Int, guests: Int, soft: UInt64, hard: UInt64)
        /// getrlimit/setrlimit failed.
        case failed(call: String, errno: Int32)

        /// How loud the daemon says it: only a limit it could not raise enough is an error.
        public var level: Logger.Level {
            switch self {
            case .enough: .debug
            case .raised: .info
            case .tooLow: .error
            case .failed: .warning
            }
        }

        public var description: String {
            switch self {
            case .enough(let need, let soft):
                return "file descriptors: need up to \(need), soft limit \(soft) is enough"
            case .raised(let need, let from, let to):
                return "file descriptors: need up to \(need), raised the soft RLIMIT_NOFILE from \(from) to \(to)"
            case .tooLow(let need, let guests, let soft, let hard):
                let base = need - guests * FileLimit.perGuest
                let why = "\(guests) guests need up to \(need) (\(FileLimit.perGuest) per guest + \(base) for the daemon)"
                return "file descriptors: \(why), but the hard RLIMIT_NOFILE is \(hard) (soft was \(soft), now \(hard)); "
                    + "guests may fail to connect or lose their eventfds: raise it (LimitNOFILE= in the unit, ulimit -Hn) or configure fewer guests"
            case .failed(let call, let e):
                return "file descriptors: \(call)(RLIMIT_NOFILE) failed: \(String(cString: strerror(e))) (errno \(e))"
            }
        }
    }

    /// Raises the soft RLIMIT_NOFILE to `need` when it is lower (never lowers
    /// it). Call before the sandbox: its seccomp allow-list has no setrlimit.
    public static func ensure(need: Int, guests: Int) -> Outcome {
        var rl = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &rl) == 0 else { return .failed(call: "getrlimit", errno: errno) }
        let want = UInt64(need)
        let soft = UInt64(rl.rlim_cur), hard = UInt64(rl.rlim_max)
        if soft >= want { return .enough(need: need, soft: soft) }
        let target = min(want, hard)
        rl.rlim_cur = rlim_t(target)
        guard setrlimit(RLIMIT_NOFILE_VALUE, &rl) == 0 else { return .failed(call: "setrlimit", errno: errno) }
        return target < want ? .tooLow(need: need, guests: guests, soft: soft, hard: hard) : .raised(need: need, from: soft, to: target)
    }

    // Glibc imports RLIMIT_NOFILE as an enum case (__rlimit_resource) that setrlimit takes as Int32.
    private static let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
}
