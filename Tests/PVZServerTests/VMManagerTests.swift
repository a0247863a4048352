import Testing
import PVZContract
@testable import PVZServer

@Suite struct VMManagerTests {
    let fw32: UInt64 = 32 << 20

    @Test func onlineTwiceRefused() throws {
        let s = try makeServer(online: false)
        try s.onVmOnline(osid: OSID(1), priority: 3)
        #expect(throws: PVZError.osidIsOnline(OSID(1))) { try s.onVmOnline(osid: OSID(1), priority: 3) }
        #expect(PVZError.osidIsOnline(OSID(1)).description.contains("PVZ_OSID_IS_ONLINE"))
        #expect(s.snapshot(osid: OSID(1))!.priority == 3)
        #expect(s.vmmParameters.priorities[1] == 3)
    }

    @Test func offlineWhenOffline() throws {
        let s = try makeServer(online: false)
        #expect(throws: PVZError.osidIsOffline(OSID(1))) { try s.onVmOffline(osid: OSID(1)) }
        try s.onVmOnline(osid: OSID(1), priority: 0)
        try s.onVmOffline(osid: OSID(1))
        #expect(throws: PVZError.osidIsOffline(OSID(1))) { try s.onVmOffline(osid: OSID(1)) }
    }

    @Test func unknownOSIDRefused() throws {
        let s = try makeServer()
        for o: UInt32 in [0, 3, 8, 99] {
            #expect(throws: PVZError.invalidOSID(OSID(o), maxOSIDs: 8)) { try s.onVmOnline(osid: OSID(o), priority: 0) }
            #expect(throws: PVZError.invalidOSID(OSID(o), maxOSIDs: 8)) { try s.onVmOffline(osid: OSID(o)) }
        }
    }

    @Test func offlineFreesEverything() throws {
        let s = try makeServer(GuestPolicy(fwHeapOrigin: .host))
        #expect(call(s, .createDevConfig).status == .ok)
        let c = call(s, .createDevPhysHeaps)
        #expect(c.status == .ok)
        #expect(s.hostPoolUsed == fw32 + 16 * MiB)
        let r = try s.onVmOffline(osid: OSID(1))
        #expect(r.devConfigDestroyed)
        #expect(r.freedHeaps.map(\.heap) == [.fwLocal, .gpuLocal])
        #expect(s.hostPoolUsed == 0)
        let g = s.snapshot(osid: OSID(1))!
        #expect(!g.online && !g.devConfigCreated && g.heaps.isEmpty)
        #expect(call(s, .createDevConfig).status == .vmOffline)
        // Back online: a clean slate.
        try s.onVmOnline(osid: OSID(1), priority: 2)
        #expect(call(s, .createDevConfig).status == .ok)
        #expect(call(s, .createDevPhysHeaps).status == .ok)
    }

    @Test func offlineUnmapsGuestHeap() throws {
        let s = try makeServer()
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0x100_0000)).status == .ok)
        let r = try s.onVmOffline(osid: OSID(1))
        #expect(r.freedHeaps.count == 1 && r.freedHeaps[0].origin == .guest)
        #expect(!r.devConfigDestroyed)
    }

    @Test func offlineWaitsForFirmware() throws {
        let s = try makeServer()
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0x100_0000)).status == .ok)
        var asked: [OSID] = []
        #expect(throws: PVZError.firmwareNotIdle(OSID(1))) {
            try s.onVmOffline(osid: OSID(1)) { asked.append($0); return false }
        }
        #expect(asked == [OSID(1)])
        // Nothing freed under a busy firmware.
        let g = s.snapshot(osid: OSID(1))!
        #expect(g.online && g.heaps.count == 1)
        #expect(try s.onVmOffline(osid: OSID(1)) { _ in true }.freedHeaps.count == 1)
    }

    @Test func configure() throws {
        let s = try makeServer(osids: [1, 2])
        try s.vmmConfigure(param: 2, value: 9)
        try s.vmmConfigure(param: 2, value: 11)   // twice: last value wins
        try s.vmmConfigure(param: 0, value: 5)    // the host's own priority
        try s.vmmConfigure(param: 8, value: 1000)
        try s.vmmConfigure(param: 9, value: 250)
        let p = s.vmmParameters
        #expect(p.priorities[2] == 11 && p.priorities[0] == 5)
        #expect(p.isolationThreshold == 1000 && p.hcsDeadline == 250)
        #expect(s.snapshot(osid: OSID(2))!.priority == 11)
        #expect(throws: PVZError.unknownConfParam(10, validRange: 0...9)) { try s.vmmConfigure(param: 10, value: 0) }
        #expect(throws: PVZError.unknownConfParam(.max, validRange: 0...9)) { try s.vmmConfigure(param: .max, value: 0) }
        let e = PVZError.unknownConfParam(10, validRange: 0...9).description
        #expect(e.contains("10") && e.contains("0...9"))
    }

    @Test func configurePriorityBeyondMaxOSIDs() throws {
        let s = try PVZHostServer(maxOSIDs: 4, guests: [GuestSpec(osid: OSID(1), carveout: carve())])
        #expect(throws: PVZError.priorityOSIDOutOfRange(OSID(5), maxOSIDs: 4)) { try s.vmmConfigure(knob: .priority(5), value: 1) }
    }

    @Test func disconnectKeepsLedger() throws {
        let s = try makeServer()
        try s.guestConnected(osid: OSID(1))
        #expect(call(s, .createDevConfig).status == .ok)
        #expect(call(s, .createDevPhysHeaps).status == .ok)
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0x100_0000)).status == .ok)
        let before = s.snapshot(osid: OSID(1))!
        try s.guestDisconnected(osid: OSID(1))
        #expect(!s.snapshot(osid: OSID(1))!.frontEndConnected)
        let after = try s.guestConnected(osid: OSID(1))
        #expect(after.heaps == before.heaps && after.online && after.devConfigCreated)
        #expect(after.disconnects == 1 && after.frontEndConnected)
        // The reconnected guest sees its heaps as already there.
        #expect(call(s, .createDevPhysHeaps).status == .alreadyExists)
        #expect(call(s, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0x100_0000)).status == .alreadyExists)
    }
}

@Suite struct ConfigValidationTests {
    @Test func rejectsBadConfigurations() {
        let c = carve()
        #expect(throws: PVZConfigError.maxOSIDsOutOfRange(1, limit: 16)) { try PVZHostServer(maxOSIDs: 1, guests: []) }
        #expect(throws: PVZConfigError.maxOSIDsOutOfRange(17, limit: 16)) { try PVZHostServer(maxOSIDs: 17, guests: []) }
        #expect(throws: PVZConfigError.osidOutOfRange(OSID(0), maxOSIDs: 8)) {
            try PVZHostServer(guests: [GuestSpec(osid: OSID(0), carveout: c)])
        }
        #expect(throws: PVZConfigError.osidOutOfRange(OSID(8), maxOSIDs: 8)) {
            try PVZHostServer(guests: [GuestSpec(osid: OSID(8), carveout: c)])
        }
        #expect(throws: PVZConfigError.duplicateOSID(OSID(2))) {
            try PVZHostServer(guests: [GuestSpec(osid: OSID(2), carveout: c), GuestSpec(osid: OSID(2), carveout: c)])
        }
        let odd = IPARange(start: IPA(0x2000_0800), size: 64 * MiB)!
        #expect(throws: PVZConfigError.carveoutUnaligned(OSID(1), odd, alignment: 0x1000)) {
            try PVZHostServer(guests: [GuestSpec(osid: OSID(1), carveout: odd)])
        }
        // Default policy needs bank + 16 MiB GPU heap.
        let small = IPARange(start: IPA(0x2000_0000), size: 16 * MiB)!
        #expect(throws: PVZConfigError.carveoutTooSmall(OSID(1), size: 16 * MiB, needed: 16 * MiB + 0x10000)) {
            try PVZHostServer(guests: [GuestSpec(osid: OSID(1), carveout: small)])
        }
        // Guest-only heaps: the register bank alone is enough...
        let bank = IPARange(start: IPA(0x2000_0000), size: 0x10000)!
        #expect(throws: Never.self) {
            try PVZHostServer(guests: [GuestSpec(osid: OSID(1), carveout: bank, policy: GuestPolicy(gpuHeapOrigin: .guest))])
        }
        // ...but not less.
        let tiny = IPARange(start: IPA(0x2000_0000), size: 0x8000)!
        #expect(throws: PVZConfigError.carveoutTooSmall(OSID(1), size: 0x8000, needed: 0x10000)) {
            try PVZHostServer(guests: [GuestSpec(osid: OSID(1), carveout: tiny, policy: GuestPolicy(gpuHeapOrigin: .guest))])
        }
        #expect(throws: PVZConfigError.lmaNeedsHostGPUHeap(OSID(1))) {
            try PVZHostServer(guests: [GuestSpec(osid: OSID(1), carveout: c, policy: GuestPolicy(gpuHeapOrigin: .guest, heapType: .lma))])
        }
        #expect(throws: PVZConfigError.self) {
            try PVZHostServer(guests: [GuestSpec(osid: OSID(1), carveout: c, policy: GuestPolicy(fwHeapSize: 0x1000))])
        }
        #expect(throws: PVZConfigError.self) {
            try PVZHostServer(guests: [GuestSpec(osid: OSID(1), carveout: c, policy: GuestPolicy(gpuHeapSize: 0x1800))])
        }
        let huge = IPARange(start: IPA(1 << 40), size: 1 << 36)!
        #expect(throws: PVZConfigError.carveoutTooLarge(OSID(1), size: 1 << 36, limit: 1 << 35)) {
            try PVZHostServer(guests: [GuestSpec(osid: OSID(1), carveout: huge)])
        }
        #expect(PVZConfigError.carveoutTooSmall(OSID(1), size: 0x8000, needed: 0x10000).description.contains("0x10000"))
    }
}

@Suite struct IsolationTests {
    let fw32: UInt64 = 32 << 20

    @Test func twoGuestsHaveSeparateLedgers() throws {
        // Both guests use the same IPAs (each has its own IPA space).
        let s = try makeServer(GuestPolicy(fwHeapOrigin: .host), osids: [1, 2])
        #expect(call(s, osid: 1, .createDevConfig).status == .ok)
        #expect(call(s, osid: 2, .createDevConfig).status == .ok)
        let a = call(s, osid: 1, .createDevPhysHeaps)
        let b = call(s, osid: 2, .createDevPhysHeaps)
        guard case let .heapsCreated(fa?, ga?) = a.outcome.effect, case let .heapsCreated(fb?, gb?) = b.outcome.effect else {
            Issue.record("heaps not created"); return
        }
        // Same IPAs, disjoint PAs.
        #expect(fa.ipa == fb.ipa)
        let pas = [fa, ga, fb, gb].map { ($0.pa.rawValue, $0.pa.rawValue + $0.size - 1) }
        for i in pas.indices { for j in pas.indices where i < j {
            #expect(pas[i].1 < pas[j].0 || pas[j].1 < pas[i].0)
        } }
        #expect(PAWindow.osid(of: fb.pa) == OSID(2))
        #expect(s.translate(pa: fb.pa).map { $0.0 } == OSID(2))
        // Guest 1 going offline does not touch guest 2.
        try s.onVmOffline(osid: OSID(1))
        let g2 = s.snapshot(osid: OSID(2))!
        #expect(g2.online && g2.devConfigCreated && g2.heaps.count == 2)
        #expect(call(s, osid: 2, .destroyDevPhysHeaps).status == .ok)
        #expect(call(s, osid: 1, .destroyDevPhysHeaps).status == .vmOffline)
    }

    @Test func mapOnOneGuestDoesNotBlockTheOther() throws {
        let s = try makeServer(osids: [1, 2])
        #expect(call(s, osid: 1, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0x100_0000)).status == .ok)
        #expect(call(s, osid: 2, .mapDevPhysHeap, input: mapInput(size: fw32, paddr: 0x100_0000)).status == .ok)
        #expect(call(s, osid: 2, .unmapDevPhysHeap).status == .ok)
        #expect(s.configView(osid: OSID(1))!.fwHeap != nil)
        #expect(s.configView(osid: OSID(2))!.fwHeap == nil)
    }

    @Test func translationCoversCarveout() throws {
        let s = try makeServer(osids: [1, 3])
        #expect(s.translate(osid: OSID(3), ipa: IPA(512 * MiB + 0x24)) == PA(3 << 36 | 0x24))
        #expect(s.translate(osid: OSID(3), ipa: IPA(0x1000)) == nil)
        #expect(s.translate(pa: PA(3 << 36 | 0x24)).map { $0.1 } == IPA(512 * MiB + 0x24))
        #expect(s.translate(pa: PA(2 << 36)) == nil)   // no guest on OSID 2
        #expect(s.translate(pa: PA(3 << 36 | 64 * MiB)) == nil)   // past the carve-out
    }

    @Test func concurrentCallsKeepCountersExact() async throws {
        let s = try makeServer(osids: [1, 2])
        await withTaskGroup(of: Void.self) { g in
            for t in 0..<4 {
                g.addTask {
                    for _ in 0..<500 { _ = call(s, osid: UInt32(1 + t % 2), .readReg, input: u32(0)) }
                }
            }
        }
        #expect(s.snapshot(osid: OSID(1))!.calls(.readReg) == 1000)
        #expect(s.snapshot(osid: OSID(2))!.calls(.readReg) == 1000)
    }
}
