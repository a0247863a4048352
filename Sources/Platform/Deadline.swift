#if canImport(Glibc)
import Glibc
#endif

/// A point in time a blocking wait must not pass.
public struct Deadline: Sendable {
    public let end: ContinuousClock.Instant
    public init(ms: Int) { end = .now + .milliseconds(ms) }
    public var expired: Bool { ContinuousClock.now >= end }

    /// Waits for `events` on `fd` until the deadline; false when it passed or poll failed.
    public func wait(_ fd: Int32, events: Int16) -> Bool {
        while true {
            let left = ContinuousClock.now.duration(to: end)
            if left <= .zero { return false }
            let ms = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            var p = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&p, 1, ms)
            if r > 0 { return true }
            if r == 0 { return false }
            if errno != EINTR { return false }
        }
    }
}
