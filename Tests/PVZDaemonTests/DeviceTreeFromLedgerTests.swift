import Testing
import DeviceTree
import PVZContract
import PVZDaemon
import PVZServer
import VMManager

@Suite("device-tree overlays from the live ledger")
struct DeviceTreeFromLedgerTests {
    let root = PeerCredentials(pid: 0, uid: 0, gid: 0)

    @Test func overlayFollowsTheHeaps() throws {
        let h = try Harness(guests: [(2, true, GuestPolicy())])
        let before = try #require(h.daemon.handle(.dt(osid: OSID(2)), peer: root).dtboBytes)
        let t0 = try FlattenedDeviceTree(validating: before)
        let frag0 = try #require(try t0.node(at: "/fragment@0/__overlay__"))
        #expect(try t0.subnodes(of: frag0).count == 1)  // the carve-out only
        let g = try h.connect(2)
        #expect(g.call(.createDevPhysHeaps)?.status == .ok)
        let after = try #require(h.daemon.handle(.dt(osid: OSID(2)), peer: root).dtboBytes)
        let t = try FlattenedDeviceTree(validating: after)
        let frag = try #require(try t.node(at: "/fragment@0/__overlay__"))
        let pieces = try t.subnodes(of: frag)
        let names = try pieces.map { try t.name(of: $0) }
        #expect(names.contains { $0.hasPrefix("pvz-gpu-heap@") })
        // The carve-out is reserved as non-overlapping pieces that cover it exactly.
        let sizes = try pieces.map { try #require(try t.cells("reg", of: $0)) }.map { UInt64($0[2]) << 32 | UInt64($0[3]) }
        #expect(sizes.reduce(0, +) == 0x0400_0000)
        let gpu = try #require(try t.allNodes().first { try t.name(of: $0).hasPrefix("gpu@") })
        #expect(try t.cells("img,osid", of: gpu) == [2])
        #expect(try t.cells("reg", of: gpu) == [0, 0x0800_0000, 0, 0x10000])
        // Offline frees the heap: the overlay follows.
        #expect(h.daemon.handle(.offline(osid: OSID(2)), peer: root).ok)
        let off = try #require(h.daemon.handle(.dt(osid: OSID(2)), peer: root).dtboBytes)
        let t2 = try FlattenedDeviceTree(validating: off)
        #expect(try t2.subnodes(of: try #require(try t2.node(at: "/fragment@0/__overlay__"))).count == 1)
    }

    /// Before: the device tree had an OSID limit of its own (1...7), so a
    /// daemon run with --max-osids 16 --osid 9 served the guest but refused
    /// its overlay (pvzctl dt --osid 9). One limit now: the contract's.
    @Test func overlayOfAnOSIDAboveSevenWithSixteenOSIDs() throws {
        let h = try Harness(guests: [(9, true, GuestPolicy())], maxOSIDs: VirtioPVZ.maxOSIDsLimit)
        let r = h.daemon.handle(.dt(osid: OSID(9)), peer: root)
        let dtbo = try #require(r.dtboBytes, "dt --osid 9 refused: \(r.error ?? "") \(r.message ?? "")")
        let t = try FlattenedDeviceTree(validating: dtbo)
        let gpu = try #require(try t.allNodes().first { try t.name(of: $0).hasPrefix("gpu@") })
        #expect(try t.cells("img,osid", of: gpu) == [9])
        #expect(try t.cells("reg", of: gpu) == [0, 0x0800_0000, 0, UInt32(PVZRegister.bankSize)])
    }

    @Test func unknownOSIDIsRefused() throws {
        let h = try Harness()
        let r = h.daemon.handle(.dt(osid: OSID(5)), peer: root)
        #expect(!r.ok && r.code == ControlErrorCode.invalidOSID)
    }
}

@Suite("the libvirt hook's prepare")
struct PrepareTests {
    let root = PeerCredentials(pid: 0, uid: 0, gid: 0)

    @Test func prepareRecordsTheDomainAndRefusesASecondOneWhileConnected() throws {
        let h = try Harness()
        #expect(h.daemon.handle(.prepare(osid: OSID(1), domain: "vm-a"), peer: root).ok)
        #expect(h.daemon.status().guests[0].domain == "vm-a")
        let g = try h.connect(1)
        _ = g.call(.readReg, Guest.u32(0))
        let r = h.daemon.handle(.prepare(osid: OSID(1), domain: "vm-b"), peer: root)
        #expect(!r.ok && r.code == ControlErrorCode.notReady)
        #expect(r.error?.contains("vm-a") == true)
        #expect(h.daemon.handle(.prepare(osid: OSID(1), domain: "vm-a"), peer: root).ok)
        #expect(!h.daemon.handle(.prepare(osid: OSID(6), domain: "vm-a"), peer: root).ok)
    }
}
