import Foundation
import PVZContract
import PVZDaemon
import PVZServer

/// The state file loader: bytes as `StateStore.load` reads them, restored into
/// a fresh server configured like the daemon. Oracle: what restores, saves,
/// and that saved ledger restores into another server to the same ledger.
let stateTarget = FuzzTarget(name: "state", summary: "state file: StateStore.decode + PVZHostServer.restore") {
    let specs = fuzzGuestSpecs()
    return { data in
        guard let state = try? StateStore.decode(Data(data)) else { return }
        let server = try! PVZHostServer(maxOSIDs: 4, guests: specs, hostPoolSize: 0x40_0000 + 0x6000)
        _ = server.restore(state)
        let saved = server.persistedState()
        let again = try! PVZHostServer(maxOSIDs: 4, guests: specs, hostPoolSize: 0x40_0000 + 0x6000)
        let notes = again.restore(saved)
        precondition(notes.isEmpty, "a saved ledger did not restore whole: \(notes)")
        precondition(again.persistedState() == saved, "restored ledger saves differently")
        // The guests the ledger says are online must be serviceable.
        _ = again.snapshot()
    }
}

/// The config file loader: bytes as `DaemonConfig.load` reads them, then the
/// server built from the guests as the daemon builds it.
let configTarget = FuzzTarget(name: "config", summary: "config file: DaemonConfig.parse + PVZHostServer(guests:)") {
    return { data in
        guard let config = try? DaemonConfig.parse(Data(data)) else { return }
        guard let server = try? PVZHostServer(maxOSIDs: config.maxOSIDs, guests: config.guests.map(\.spec)) else { return }
        for g in config.guests { _ = server.configView(osid: g.spec.osid) }
    }
}
