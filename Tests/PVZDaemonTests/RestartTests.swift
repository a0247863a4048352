import Testing
import Foundation
import PVZContract
import PVZDaemon
import PVZServer
import TestFrontEnd
import VMManager

@Suite("a daemon restart keeps the ledger", .serialized)
struct RestartTests {
    @Test func heapsOnlineAndPrioritySurviveARestart() throws {
        var policy = GuestPolicy()
        policy.fwHeapOrigin = .guest
        var dir = ""
        do {
            let h = try Harness(guests: [(1, false, policy), (2, false, GuestPolicy())], stateFile: true)
            h.keepDir = true
            dir = h.dir
            try h.daemon.vmOnline(OSID(1), priority: 7)
            let g = try h.connect(1)
            #expect(g.call(.createDevConfig)?.status == .ok)
            #expect(g.call(.createDevPhysHeaps)?.status == .ok)
            #expect(g.mapFirmwareHeap() == .ok)
            // The firmware ran a command before the restart.
            g.initRing()
            g.command(0, op: 1, seq: 1, arg0: 0x2000, arg1: 11)
            #expect(g.kick(writeOffset: 32))
            h.daemon.stop()
            usleep(50_000)
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let h2 = try Harness(guests: [(1, false, policy), (2, false, GuestPolicy())], dir: dir, stateFile: true)
        let s = h2.daemon.status().guests.first { $0.osid == 1 }!
        #expect(s.online)
        #expect(s.priority == 7)
        #expect(s.heaps.count == 2)
        #expect(h2.daemon.status().guests.first { $0.osid == 2 }!.online == false)
        let g = try h2.connect(1)
        #expect(g.call(.createDevConfig)?.status == .alreadyExists)
        #expect(g.mapFirmwareHeap() == .alreadyExists)
        #expect(g.call(.createDevPhysHeaps)?.status == .alreadyExists)
        // The firmware resumes after the command it already ran (same memfd? no: a
        // new front-end with fresh RAM, so the ring is re-initialised here).
        g.initRing()
        g.command(0, op: 1, seq: 1, arg0: 0x2000, arg1: 12)
        #expect(g.kick(writeOffset: 32))
        #expect(g.fe.load(Guest.fwHeap + 0x2000, as: UInt64.self) == 12)
    }

    @Test func aStateFileForAnotherConfigurationIsDroppedNotTrusted() throws {
        var dir = ""
        do {
            let h = try Harness(guests: [(1, true, GuestPolicy())], stateFile: true)
            h.keepDir = true
            dir = h.dir
            let g = try h.connect(1)
            #expect(g.mapFirmwareHeap() == .ok)
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Same directory, but the guest is now OSID 3: the saved OSID 1 entry is dropped.
        let h2 = try Harness(guests: [(3, false, GuestPolicy())], dir: dir, stateFile: true)
        #expect(h2.daemon.status().guests[0].heaps.isEmpty)
        #expect(h2.daemon.status().guests[0].online == false)
    }

    @Test func aCorruptStateFileStopsTheDaemonWithAClearError() throws {
        let dir = "/tmp/pvz-corrupt-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "not json".write(toFile: "\(dir)/state.json", atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.self) { _ = try Harness(dir: dir, stateFile: true) }
    }
}
