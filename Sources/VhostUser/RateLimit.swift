#if canImport(Glibc)
import Glibc
#endif

/// Limits how many log lines a guest or front-end can cause: a burst of
/// `burst` lines, then `perSecond` a second; what is held back is counted and
/// reported with the next line that passes. A hostile peer must not be able
/// to flood the log of a daemon that serves every guest.
public struct RateLimit: Sendable {
    public let burst: Double
    public let perSecond: Double
    private var tokens: Double
    private var last: UInt64 = 0
    public private(set) var suppressed: UInt64 = 0

    public init(burst: Int = 10, perSecond: Double = 1) {
        self.burst = Double(burst)
        self.perSecond = perSecond
        tokens = Double(burst)
    }

    /// Nil when this line must be dropped; otherwise how many were dropped
    /// since the last line that passed (0 usually).
    public mutating func admit() -> UInt64? {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let now = UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
        if last != 0 { tokens = min(burst, tokens + Double(now &- last) / 1e9 * perSecond) }
        last = now
        guard tokens >= 1 else { suppressed &+= 1; return nil }
        tokens -= 1
        defer { suppressed = 0 }
        return suppressed
    }
}
