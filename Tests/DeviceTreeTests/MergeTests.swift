import Testing
@testable import DeviceTree
#if canImport(Glibc)
import Glibc
#endif

@Suite struct MergeTests {
    /// Checks a merged tree: GPU node, reserved children, phandles resolved.
    func checkMerged(_ m: [UInt8], ac: UInt32, sc: UInt32, baseMaxPhandle: UInt32) throws {
        let t = try FlattenedDeviceTree(validating: m, label: "merged")
        #expect(try t.u32("#address-cells", of: t.root) == ac)
        #expect(try t.u32("#size-cells", of: t.root) == sc)
        let rm = try #require(try t.node(at: "/reserved-memory"))
        #expect(try t.u32("#address-cells", of: rm) == ac)
        #expect(try t.property("ranges", of: rm) == [])
        let gpu = try #require(try t.node(at: "/gpu@58000000"))
        #expect(try t.strings("compatible", of: gpu) == ["img,pvz-vgpu", "img,img-rogue"])
        #expect(try t.reg(of: gpu, addressCells: ac, sizeCells: sc) == [AddressRange(base: 0x5800_0000, size: 0x10000)])
        #expect(try t.cells("interrupts", of: gpu) == [0, 100, 4])
        #expect(try t.u32("img,osid", of: gpu) == 1)
        let refs = try #require(try t.cells("memory-region", of: gpu))
        let d = guest()
        #expect(refs.count == d.reservedPieces.count)
        for (ref, r) in zip(refs, d.reservedPieces) {
            #expect(ref > baseMaxPhandle, "overlay phandle \(ref) was not moved past the base's \(baseMaxPhandle)")
            let ph = try #require(Phandle(rawValue: ref))
            let n = try #require(try t.node(withPhandle: ph))
            #expect(try t.path(of: n) == "/reserved-memory/\(r.name)@\(String(r.base, radix: 16))")
            #expect(try t.reg(of: n, addressCells: ac, sizeCells: sc) == [r.range])
            #expect(try t.property("no-map", of: n) == [])
        }
        // The overlay's scaffolding does not leak into the guest's tree.
        #expect(try t.node(at: "/fragment@0") == nil)
        #expect(try t.node(at: "/__local_fixups__") == nil)
    }

    @Test func mergeIntoBaseWithoutReservedMemoryCreatesIt() throws {
        let base = try makeBase()
        #expect(try FlattenedDeviceTree(validating: base).node(at: "/reserved-memory") == nil)
        let m = try mergeGuest(base: base, guest())
        try emit("merged-2-2.dtb", m)
        try checkMerged(m, ac: 2, sc: 2, baseMaxPhandle: 0x8002)
    }

    @Test func mergeIntoOneCellBaseWithReservedMemory() throws {
        let base = try makeBase(BaseSpec(addressCells: 1, sizeCells: 1, withReservedMemory: true,
                                         existingReserved: (0x4800_0000, 0x10_0000)))
        try emit("base-1-1.dtb", base)
        let m = try mergeGuest(base: base, guest())
        try emit("merged-1-1.dtb", m)
        try checkMerged(m, ac: 1, sc: 1, baseMaxPhandle: 0x8003)
        let t = try FlattenedDeviceTree(validating: m)
        #expect(try t.node(at: "/reserved-memory/firmware@48000000") != nil)
        let gpu = try #require(try t.node(at: "/gpu@58000000"))
        #expect(try t.property("reg", of: gpu)?.count == 8)
    }

    @Test func mergeOverlayOfMakeOverlayMatchesMergeGuest() throws {
        let base = try makeBase()
        try emit("base-2-2.dtb", base)
        let a = try mergeOverlay(base: base, overlay: try makeOverlay(guest()))
        let b = try mergeGuest(base: base, guest())
        #expect(a == b)
    }

    // MARK: malformed inputs

    func refused(_ body: () throws -> [UInt8], mentions words: [String],
                 sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try body()
            Issue.record("accepted", sourceLocation: sourceLocation)
        } catch let error as DeviceTreeError {
            for w in words {
                #expect(error.description.contains(w), "\(error.description) lacks \(w)", sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func truncatedAndForeignBases() throws {
        let base = try makeBase()
        refused({ try mergeGuest(base: Array(base.prefix(base.count / 2)), guest()) },
                mentions: ["base DTB", "truncated", "\(base.count)"])
        refused({ try mergeGuest(base: Array(base.prefix(20)), guest()) },
                mentions: ["20 bytes", "40-byte"])
        refused({ try mergeGuest(base: Array("not a dtb at all, just some text here...".utf8), guest()) },
                mentions: ["magic", "0xd00dfeed"])
        var corrupt = base
        corrupt[Int(be32(base, 8)) + 3] = 0x77   // first structure token becomes garbage
        refused({ try mergeGuest(base: corrupt, guest()) },
                mentions: ["base DTB", "fdt_check_full"])
        refused({ try mergeOverlay(base: base, overlay: [0xd0, 0x0d, 0xfe, 0xed] + [UInt8](repeating: 0, count: 60)) },
                mentions: ["overlay", "not a usable"])
    }

    @Test func cellsAreTakenFromTheBaseNotAssumed() throws {
        let base = try makeBase(BaseSpec(withRootCells: false))
        refused({ try mergeGuest(base: base, guest()) },
                mentions: ["#address-cells", "never assumed"])
        let oneCell = try makeBase(BaseSpec(addressCells: 1, sizeCells: 1))
        refused({ try mergeOverlay(base: oneCell, overlay: try makeOverlay(guest(), addressCells: 2, sizeCells: 2)) },
                mentions: ["#address-cells", "is 1", "expected 2"])
    }

    @Test func carveoutOverlappingBaseReservation() throws {
        let base = try makeBase(BaseSpec(withReservedMemory: true, existingReserved: (0x5bf0_0000, 0x20_0000)))
        refused({ try mergeGuest(base: base, guest()) },
                mentions: ["pvz-carveout", "overlaps", "firmware@5bf00000"])
    }

    @Test func carveoutOutsideGuestRAM() throws {
        let base = try makeBase(BaseSpec(ramSize: 0x1000_0000))   // RAM ends at 0x50000000
        refused({ try mergeGuest(base: base, guest()) },
                mentions: ["pvz-carveout", "not wholly inside", "memory", "0x4fffffff"])
    }

    @Test func gpuNodeAlreadyInBase() throws {
        let once = try mergeGuest(base: try makeBase(), guest())
        refused({ try mergeGuest(base: once, guest()) },
                mentions: ["already"])
    }

    @Test func irqAlreadyUsed() throws {
        var d = guest(); d.irq = 1   // the base's UART is SPI 1
        refused({ try mergeGuest(base: try makeBase(), d) },
                mentions: ["/pl011@9000000", "pick another irq than 1"])
    }

    @Test func baseWithoutInterruptParent() throws {
        refused({ try mergeGuest(base: try makeBase(BaseSpec(withInterruptParent: false)), guest()) },
                mentions: ["interrupt-parent"])
    }

    @Test func hostileInterruptCells() throws {
        for bad: UInt32 in [0, 4, 0xffff_ffff] {
            var t = try FlattenedDeviceTree(validating: try makeBase())
            try t.setProperty("#interrupt-cells", cells: [bad], at: "/intc@8000000")
            let base = try t.bytes()
            refused({ try mergeGuest(base: base, guest()) },
                    mentions: ["/intc@8000000", "#interrupt-cells", "\(bad)", "1, 2 or 3"])
        }
    }

    @Test func reservedMemoryWithOtherCellsThanRoot() throws {
        var t = try FlattenedDeviceTree(validating: try makeBase())
        let rm = try t.addSubnode("reserved-memory", at: "/")
        try t.setProperty("#address-cells", cells: [1], at: rm)
        try t.setProperty("#size-cells", cells: [1], at: rm)
        try t.setProperty("ranges", at: rm)
        let base = try t.bytes()
        refused({ try mergeGuest(base: base, guest()) },
                mentions: ["/reserved-memory", "1/1", "2/2"])
    }

    @Test func failedMergeWritesNoFile() throws {
        let dir = "/tmp/pvz-dt-test-\(getpid())"
        mkdir(dir, 0o755)
        defer { rmdir(dir) }
        let out = dir + "/merged.dtb"
        let base = try makeBase()
        do {
            let m = try mergeGuest(base: Array(base.prefix(100)), guest())
            try writeDeviceTreeFile(m, to: out)
            Issue.record("truncated base accepted")
        } catch {}
        #expect(access(out, F_OK) != 0)
        // And a good merge does write, atomically.
        try writeDeviceTreeFile(try mergeGuest(base: base, guest()), to: out)
        #expect(try readDeviceTreeFile(out) == (try mergeGuest(base: base, guest())))
        unlink(out)
    }

    @Test func staleNodeHandlesAreRefused() throws {
        var t = try FlattenedDeviceTree(validating: try makeBase())
        let chosen = try #require(try t.node(at: "/chosen"))
        try t.setProperty("bootargs", strings: ["console=ttyAMA0"], at: "/chosen")
        #expect(throws: DeviceTreeError.self) { try t.name(of: chosen) }
        let again = try #require(try t.node(at: "/chosen"))
        #expect(try t.strings("bootargs", of: again) == ["console=ttyAMA0"])
    }

    @Test func libfdtErrorsCarryLibfdtsMessage() throws {
        var t = try FlattenedDeviceTree(validating: try makeBase())
        do {
            try t.setProperty("x", cells: [1], at: "/no/such/node")
            Issue.record("set on a missing node")
        } catch {
            #expect(error.description.contains("FDT_ERR_NOTFOUND"))
            #expect(error.description.contains("/no/such/node"))
        }
    }

    /// Merges an overlay dtc compiled with -@ (labels in __symbols__), which
    /// scripts/dt-test passes in PVZ_DT_DTC_OVERLAY: mergeOverlay is not tied to
    /// overlays made by makeOverlay, and the labels reach the merged tree.
    @Test(.enabled(if: getenv("PVZ_DT_DTC_OVERLAY") != nil))
    func mergeADtcCompiledOverlay() throws {
        let ov = try readDeviceTreeFile(String(cString: getenv("PVZ_DT_DTC_OVERLAY")!))
        let m = try mergeOverlay(base: try makeBase(), overlay: ov)
        try emit("merged-dtc-overlay.dtb", m)
        try checkMerged(m, ac: 2, sc: 2, baseMaxPhandle: 0x8002)
        let t = try FlattenedDeviceTree(validating: m)
        let sym = try #require(try t.node(at: "/__symbols__"))
        #expect(try t.strings("pvz_carveout", of: sym) == ["/reserved-memory/pvz-carveout@58000000"])
    }

    /// Merges into a DTB QEMU dumped (scripts/dt-test sets PVZ_DT_QEMU_BASE).
    @Test(.enabled(if: getenv("PVZ_DT_QEMU_BASE") != nil))
    func mergeIntoQEMUVirtDTB() throws {
        let path = String(cString: getenv("PVZ_DT_QEMU_BASE")!)
        let base = try readDeviceTreeFile(path)
        let b = try FlattenedDeviceTree(validating: base)
        let m = try mergeGuest(base: base, guest())
        try emit("merged-qemu.dtb", m)
        try checkMerged(m, ac: 2, sc: 2, baseMaxPhandle: try b.maxPhandle())
    }
}
