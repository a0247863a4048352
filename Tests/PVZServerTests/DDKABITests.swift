import Testing
import PVZContract
@testable import PVZServer

/// The host follows the DDK ABI it is told to (`--ddk-abi`): which calls
/// exist, their ui32FuncID, OnVmOnline's priority, VMMConfigure's numbering,
/// firmware heap sizes. Facts in docs/pvz-server.md "DDK ABIs".
@Suite("DDK ABIs on the host")
struct DDKABITests {
    func server(_ abi: DDKABI, _ policy: GuestPolicy = GuestPolicy()) throws -> PVZHostServer {
        let s = try PVZHostServer(guests: [GuestSpec(osid: OSID(1), carveout: carve(), policy: policy)], ddkABI: abi)
        try s.onVmOnline(osid: OSID(1), priority: 1)
        return s
    }

    func request(_ f: PVZFunction, funcID: UInt32, input: [UInt8] = []) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 16)
        b.withUnsafeMutableBytes { _ = HypercallRequestHeader(function: f.rawValue, funcID: funcID, requestID: 1).encode(into: $0) }
        return b + input
    }

    @Test func ddk113HasMapAndUnmapOnlyWithTheirOwnIDs() throws {
        let s = try server(.v1_13)
        #expect(call(s, request(.createDevConfig, funcID: 1)).status == .notImplemented)
        #expect(call(s, request(.createDevPhysHeaps, funcID: 0)).status == .notImplemented)
        let map = u64(32 * MiB) + u64(0x400_0000)
        #expect(call(s, request(.mapDevPhysHeap, funcID: 5, input: map)).status == .invalidParams)  // 1.10's id
        #expect(call(s, request(.mapDevPhysHeap, funcID: 1, input: map)).status == .ok)
        #expect(call(s, request(.unmapDevPhysHeap, funcID: 1)).status == .invalidParams)
        #expect(call(s, request(.unmapDevPhysHeap, funcID: 2)).status == .ok)
        // The project's own queries exist in every ABI.
        #expect(call(s, request(.getDevPhysHeapOrigin, funcID: 0, input: u32(2))).status == .ok)
    }

    @Test func ddk110PassesFuncIDThroughAndHasEveryCall() throws {
        let s = try server(.v1_10)
        #expect(call(s, request(.createDevConfig, funcID: 1)).status == .ok)
        #expect(call(s, request(.destroyDevConfig, funcID: 99)).status == .ok)   // asserted only in a debug DDK
    }

    @Test func guestOriginHeapsAnswerZeroZeroInCreateDevPhysHeaps() throws {
        let s = try server(.v1_10)
        let r = call(s, request(.createDevPhysHeaps, funcID: 3))
        let o = try #require(r.output.withUnsafeBytes { CreateDevPhysHeapsOutput.decode(from: $0) })
        #expect(o.fwSize == 0 && o.fwIPA == IPA(0))
        #expect(o.gpuSize == 16 * MiB)
    }

    @Test func onlinePriorityFollowsTheABI() throws {
        let s15 = try PVZHostServer(guests: [GuestSpec(osid: OSID(1), carveout: carve())], ddkABI: .v1_15)
        #expect(throws: PVZError.onlinePriorityNotInABI(OSID(1), abi: .v1_15)) { try s15.onVmOnline(osid: OSID(1), abiPriority: 3) }
        try s15.vmmConfigure(knob: .priority(1), value: 6)
        try s15.onVmOnline(osid: OSID(1), abiPriority: nil)
        #expect(s15.snapshot(osid: OSID(1))?.priority == 6)
        let s10 = try PVZHostServer(guests: [GuestSpec(osid: OSID(1), carveout: carve())], ddkABI: .v1_10)
        try s10.onVmOnline(osid: OSID(1), abiPriority: 3)
        #expect(s10.snapshot(osid: OSID(1))?.priority == 3)
    }

    @Test func parameterNumbersAndNamesPerABI() throws {
        #expect(DDKABI.v1_10.knob(number: 8) == .isolationThreshold)
        #expect(DDKABI.v1_10.knob(number: 9) == .hcsDeadline)
        #expect(DDKABI.v1_15.knob(number: 8) == .hcsDeadline)
        #expect(DDKABI.v1_15.knob(number: 9) == nil)
        #expect(DDKABI.v23.knob(number: 11) == .isolationGroup(2))
        #expect(DDKABI.v23.knob(number: 17) == .timeSlice(0))
        #expect(DDKABI.v23.knob(number: 26) == .connectionCooldown)
        #expect(DDKABI.v23.name(of: .priority(3)) == "VMM_CONF_PRIO_DRV3")
        #expect(DDKABI.v1_13.name(of: .priority(3)) == "VMM_CONF_PRIO_OSID3")
        #expect(try DDKABI.v1_15.knob(named: "hcs_deadline") == .hcsDeadline)
        #expect(try DDKABI.v23.knob(named: "VMM_CONF_ISOLATION_GROUP_DRV2") == .isolationGroup(2))
        #expect(throws: PVZError.confParamNotInABI("VMM_CONF_ISOL_THRES", abi: .v1_15)) { try DDKABI.v1_15.knob(named: "ISOL_THRES") }
        #expect(throws: PVZError.self) { try DDKABI.v1_10.knob(named: "TIME_SLICE_DRV0") }
        #expect(throws: PVZError.self) { try DDKABI.v1_10.knob(named: "PRIO_OSID8") }
        // The same number means different things: a refusal names the ABI.
        let s15 = try server(.v1_15)
        try s15.vmmConfigure(param: 8, value: 5)
        #expect(s15.vmmParameters.hcsDeadline == 5 && s15.vmmParameters.isolationThreshold == 0)
        let s10 = try server(.v1_10)
        try s10.vmmConfigure(param: 8, value: 5)
        #expect(s10.vmmParameters.isolationThreshold == 5 && s10.vmmParameters.hcsDeadline == 0)
        do { _ = try s15.vmmConfigure(name: "ISOL_THRES", value: 1); Issue.record("accepted") } catch {
            #expect(error.description.contains("DDK 1.15"))
        }
    }

    @Test func ddk23ValueChecks() throws {
        let s = try server(.v23)
        try s.vmmConfigure(knob: .timeSlice(0), value: 60)
        #expect(throws: PVZError.self) { try s.vmmConfigure(knob: .timeSlice(1), value: 41) }   // 101 %
        try s.vmmConfigure(knob: .timeSlice(1), value: 40)
        #expect(throws: PVZError.self) { try s.vmmConfigure(knob: .timeSlice(2), value: 101) }
        #expect(throws: PVZError.self) { try s.vmmConfigure(knob: .priority(1), value: 1 << 30) }
        try s.vmmConfigure(knob: .isolationGroup(3), value: 2)
        #expect(s.vmmParameters.value(of: .isolationGroup(3)) == 2)
        #expect(s.vmmParameters.value(of: .timeSlice(1)) == 40)
    }

    @Test func firmwareHeapSizesAreTheDDKs() {
        #expect(PVZHostServer.ddkFirmwareHeapSizes(.v1_10, maxOSIDs: 8) == [4, 8, 16, 32].map { $0 * MiB })
        #expect(PVZHostServer.ddkFirmwareHeapSizes(.v1_15, maxOSIDs: 8).max() == 32 * MiB)
        #expect(PVZHostServer.ddkFirmwareHeapSizes(.v23, maxOSIDs: 2).contains(128 * MiB))
        #expect(!PVZHostServer.ddkFirmwareHeapSizes(.v23, maxOSIDs: 8).contains(64 * MiB))
    }
}
