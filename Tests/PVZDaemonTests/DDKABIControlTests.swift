import Testing
import PVZContract
import PVZDaemon
import PVZServer
import VMManager

/// The VM manager's side of the DDK ABIs: parameters by name, numbers only
/// with their ABI, OnVmOnline's priority as a 1.15 VM manager sets it.
@Suite("DDK ABIs through the control plane", .serialized)
struct DDKABIControlTests {
    let root = PeerCredentials(pid: 0, uid: 0, gid: 0)

    @Test func aDDK115DaemonTakesNamesAndRefusesOtherABIsNumbers() throws {
        let h = try Harness(guests: [(1, false, GuestPolicy())], ddkABI: .v1_15)
        let st = h.daemon.status()
        #expect(st.ddkAbi == "1.15")
        #expect(st.parameters.map(\.name).contains("VMM_CONF_HCS_DEADLINE"))
        #expect(!st.parameters.map(\.name).contains("VMM_CONF_ISOL_THRES"))
        let ok = h.daemon.handle(.configure(param: .name("hcs_deadline"), value: 5), peer: root)
        #expect(ok.ok && ok.parameter?.param == 8 && ok.parameter?.name == "VMM_CONF_HCS_DEADLINE")
        #expect(h.daemon.hostServer.vmmParameters.hcsDeadline == 5)
        // 1.10's 8 (ISOL_THRES) is not this daemon's 8.
        let other = h.daemon.handle(.configure(param: .number(8, abi: "1.10"), value: 1), peer: root)
        #expect(!other.ok && other.error?.contains("DDK 1.10") == true && other.error?.contains("DDK 1.15") == true)
        let isol = h.daemon.handle(.configure(param: .name("ISOL_THRES"), value: 1), peer: root)
        #expect(!isol.ok && isol.error?.contains("DDK 1.15") == true)
        #expect(h.daemon.handle(.configure(param: .number(8, abi: "1.15"), value: 7), peer: root).ok)
        #expect(h.daemon.hostServer.vmmParameters.hcsDeadline == 7)
    }

    @Test func onlineWithAPriorityUnderDDK115SetsPRIOFirst() throws {
        let h = try Harness(guests: [(1, false, GuestPolicy())], ddkABI: .v1_15)
        let r = h.daemon.handle(.online(osid: OSID(1), priority: 6), peer: root)
        #expect(r.ok)
        #expect(h.daemon.hostServer.snapshot(osid: OSID(1))?.priority == 6)
        #expect(h.daemon.hostServer.vmmParameters.value(of: .priority(1)) == 6)
    }

    @Test func ddk23NamesDriversAndChecksTimeSlices() throws {
        let h = try Harness(guests: [(1, false, GuestPolicy())], ddkABI: .v23)
        #expect(h.daemon.handle(.configure(param: .name("VMM_CONF_TIME_SLICE_DRV0"), value: 70), peer: root).ok)
        let over = h.daemon.handle(.configure(param: .name("TIME_SLICE_DRV1"), value: 31), peer: root)
        #expect(!over.ok && over.error?.contains("101") == true)
        let p = h.daemon.handle(.configure(param: .name("PRIO_DRV1"), value: 3), peer: root)
        #expect(p.ok && p.parameter?.name == "VMM_CONF_PRIO_DRV1")
    }
}
