import Foundation
import PVZContract
import PVZDaemon
import PVZServer
import Testing

/// `Daemon.stop()` returns once every guest thread has ended and closed its
/// socket, so a new daemon (a restart) can take the same paths at once.
@Suite("stop ends every guest thread")
struct StopTests {
    @Test func aStoppedDaemonsSocketsAreFreeWhenStopReturns() throws {
        let first = try Harness(guests: [(1, false, GuestPolicy()), (2, false, GuestPolicy())])
        first.keepDir = true
        let dir = first.dir
        defer { try? FileManager.default.removeItem(atPath: dir) }
        first.daemon.stop()
        for _ in 0..<40 {
            // No pause: the previous daemon's guest threads must already be gone.
            let next = try Harness(guests: [(1, false, GuestPolicy()), (2, false, GuestPolicy())], dir: dir)
            next.keepDir = true
            next.daemon.stop()
        }
    }
}
