import Testing
import Foundation
import PVZContract
import TestFrontEnd
import VhostUser
#if canImport(Glibc)
import Glibc
#endif

/// A front-end may hand over a call fd that is a pipe whose reader is gone.
/// Signalling it is EPIPE; left at its default, SIGPIPE would kill the
/// daemon and every guest with it (the fuzzer, which did not ignore it as the
/// daemon's main does, died so: exit 141). The real binary, because the
/// signal disposition is set in its main.
@Suite("a call fd without a reader", .serialized)
struct BrokenPipeTests {
    @Test func theDaemonAnswersAndLivesOn() throws {
        let dir = try ExactlyOnceTests.makeDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try ExactlyOnceTests.DaemonProcess(dir: dir, crash: nil)
        let fe = try TestFrontEnd(path: "\(dir)/g1.sock")
        try fe.start()
        let g = Guest(fe: fe)
        #expect(g.call(.createDevConfig)?.status == .ok)

        var p: [Int32] = [-1, -1]
        try #require(pipe(&p) == 0)
        close(p[0])
        let hypercallq = UInt64(PVZQueue.hypercallq.rawValue)
        #expect(try fe.sendAcked(.setVringCall, payload: withUnsafeBytes(of: hypercallq.littleEndian) { Array($0) }, fds: [p[1]]) == 0)
        close(p[1])

        // Answered (the test reads the used ring; no signal reaches it), and
        // the signal's EPIPE did not end the daemon.
        for _ in 0..<3 {
            let reply = g.call(.getDevPhysHeapOrigin, Guest.u32(PhysHeap.fwLocal.rawValue))
            #expect(reply?.status == .ok, "no answer: daemon \(daemon.process.isRunning ? "running" : "exited with \(daemon.process.terminationStatus), reason \(daemon.process.terminationReason.rawValue)")")
        }
        #expect(daemon.waitExit(seconds: 0.3) == nil, "the daemon died on the call fd's EPIPE (status \(daemon.process.terminationStatus))")
        withExtendedLifetime(daemon) {}
    }
}
