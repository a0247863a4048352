import Testing
import Synchronization
import PVZContract
@testable import PVZServer

/// A state file is outside input: restoring it must leave the ledger exactly right.
@Suite struct RestoreTests {
    func entry(_ osid: UInt32) -> PersistedGuest {
        PersistedGuest(osid: osid, carveoutIPA: carve().start.rawValue, carveoutSize: carve().size, online: true,
                       priority: 1, devConfigCreated: false, hostHeapsCreated: true, guestFwHeapIPA: nil)
    }

    /// Before the fix a repeated entry overwrote the first one half-way:
    /// OSID 1 came back offline while still holding its host heaps.
    @Test func repeatedEntryIsCountedOnce() throws {
        let policy = GuestPolicy()
        let server = try makeServer(policy, osids: [1, 2], pool: 2 * policy.hostHeapBytes, online: false)
        var offline = entry(1)
        offline.online = false
        let state = PersistedState(version: PersistedState.currentVersion, guests: [entry(1), offline, entry(2)],
                                   priorities: [], isolationThreshold: 0, hcsDeadline: 0)
        let notes = server.restore(state)
        #expect(notes == ["OSID 1: listed again; only the first entry is used"])
        let saved = server.persistedState().guests
        #expect(saved.count == 2 && saved.allSatisfy { $0.hostHeapsCreated && $0.online })
        #expect(server.shared.withLock { $0.hostPoolUsed } == 2 * policy.hostHeapBytes)
    }

    @Test func hostileNumbersAreDroppedNotTrusted() throws {
        let server = try makeServer(osids: [1], online: false)
        var e = entry(UInt32.max)
        var f = entry(1)
        f.guestFwHeapIPA = UInt64.max & ~0xFFF  // wraps with the policy's size
        e.carveoutSize = UInt64.max
        let notes = server.restore(PersistedState(version: PersistedState.currentVersion, guests: [e, f],
                                                  priorities: Array(repeating: UInt32.max, count: 1000),
                                                  isolationThreshold: .max, hcsDeadline: .max))
        #expect(notes.count == 2)
        #expect(server.persistedState().guests.first?.guestFwHeapIPA == nil)
    }
}
