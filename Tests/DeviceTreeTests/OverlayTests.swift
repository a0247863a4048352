import Testing
@testable import DeviceTree

@Suite struct OverlayTests {
    @Test(arguments: [(UInt32(2), UInt32(2)), (1, 1), (2, 1)])
    func overlayParsesBackWithLibfdt(ac: UInt32, sc: UInt32) throws {
        let d = guest()
        let bytes = try makeOverlay(d, addressCells: ac, sizeCells: sc)
        try emit("overlay-\(ac)-\(sc).dtbo", bytes)
        let o = try FlattenedDeviceTree(validating: bytes, label: "overlay")

        let f0 = try #require(try o.node(at: "/fragment@0"))
        #expect(try o.strings("target-path", of: f0) == ["/reserved-memory"])
        let rm = try #require(try o.node(at: "/fragment@0/__overlay__"))
        #expect(try o.u32("#address-cells", of: rm) == ac)
        #expect(try o.u32("#size-cells", of: rm) == sc)
        let kids = try o.subnodes(of: rm)
        #expect(try kids.map { try o.name(of: $0) } ==
                ["pvz-carveout@58000000", "pvz-fw-heap@58100000", "pvz-gpu-heap@5a100000", "pvz-carveout-1@5b100000"])
        #expect(kids.count == d.reservedPieces.count)
        for (k, r) in zip(kids, d.reservedPieces) {
            #expect(try o.reg(of: k, addressCells: ac, sizeCells: sc) == [r.range])
            #expect(try o.property("reg", of: k)?.count == Int(ac + sc) * 4)
            #expect(try o.property("no-map", of: k) == [])
        }
        #expect(try kids.map { try o.phandle(of: $0)?.rawValue } == [1, 2, 3, 4])

        let f1 = try #require(try o.node(at: "/fragment@1"))
        #expect(try o.strings("target-path", of: f1) == ["/"])
        let gpu = try #require(try o.node(at: "/fragment@1/__overlay__/gpu@58000000"))
        #expect(try o.strings("compatible", of: gpu) == ["img,pvz-vgpu", "img,img-rogue"])
        #expect(try o.reg(of: gpu, addressCells: ac, sizeCells: sc) == [AddressRange(base: 0x5800_0000, size: 0x10000)])
        #expect(try o.cells("interrupts", of: gpu) == [0, 100, 4])
        #expect(try o.cells("memory-region", of: gpu) == [1, 2, 3, 4])
        #expect(try o.strings("memory-region-names", of: gpu) == ["pvz-carveout", "pvz-fw-heap", "pvz-gpu-heap", "pvz-carveout-1"])
        #expect(try o.u32("img,osid", of: gpu) == 1)

        let fix = try #require(try o.node(at: "/__local_fixups__/fragment@1/__overlay__/gpu@58000000"))
        #expect(try o.cells("memory-region", of: fix) == [0, 4, 8, 12])
    }

    @Test func interruptFormsFollowTheControllersCells() throws {
        for (n, want) in [(UInt32(1), [UInt32(100)]), (2, [100, 4]), (3, [0, 100, 4])] {
            let o = try FlattenedDeviceTree(validating: try makeOverlay(guest(), interruptCells: n))
            let gpu = try #require(try o.node(at: "/fragment@1/__overlay__/gpu@58000000"))
            #expect(try o.cells("interrupts", of: gpu) == want)
        }
        #expect(throws: DeviceTreeError.self) { try makeOverlay(guest(), interruptCells: 4) }
    }

    @Test func carveoutWithoutHeapsHasOneRegion() throws {
        var d = guest(); d.heaps = []
        let o = try FlattenedDeviceTree(validating: try makeOverlay(d))
        let gpu = try #require(try o.node(at: "/fragment@1/__overlay__/gpu@58000000"))
        #expect(try o.cells("memory-region", of: gpu) == [1])
        let rm = try #require(try o.node(at: "/fragment@0/__overlay__"))
        #expect(try o.subnodes(of: rm).count == 1)
    }

    @Test func reservedPiecesTileTheCarveoutWithoutOverlap() throws {
        let d = guest()
        #expect(d.reservedPieces.map(\.range) == [
            AddressRange(base: 0x5800_0000, size: 0x10_0000),    // register bank + gap before the FW heap
            AddressRange(base: 0x5810_0000, size: 0x200_0000),
            AddressRange(base: 0x5a10_0000, size: 0x100_0000),
            AddressRange(base: 0x5b10_0000, size: 0xf0_0000),    // rest of the carve-out
        ])
        // Heaps given out of order, one flush with the carve-out's end: still tiled in address order.
        var e = guest()
        e.heaps = [ReservedRegion(name: "tail", base: 0x5bf0_0000, size: 0x10_0000),
                   ReservedRegion(name: "mid", base: 0x5801_0000, size: 0x1000)]
        try e.validate(addressCells: 2, sizeCells: 2, interruptCells: 3)
        #expect(e.reservedPieces.map(\.name) == ["pvz-carveout", "mid", "pvz-carveout-1", "tail"])
        #expect(e.reservedPieces.map(\.base) == [0x5800_0000, 0x5801_0000, 0x5801_1000, 0x5bf0_0000])
        #expect(e.reservedPieces.reduce(0) { $0 + $1.size } == e.carveout.size)
        for (i, a) in e.reservedPieces.enumerated() {
            for b in e.reservedPieces[(i + 1)...] { #expect(!a.range.overlaps(b.range)) }
        }
    }

    @Test func x86MemmapCoversTheCarveout() {
        #expect(x86MemmapArguments(guest()) == "memmap=64M$0x58000000")
        #expect(x86MemmapArguments(guest(carveBase: 0x1_0000_0000, carveSize: 0x4000_0000)) == "memmap=1G$0x100000000")
        #expect(x86MemmapArguments(guest(carveSize: 0x1_1000)) == "memmap=68K$0x58000000")
        #expect(x86MemmapArguments(guest(carveSize: 0x1800)) == "memmap=6K$0x58000000")
    }
}

/// The descriptions behind devicetree/examples/*.dtso; dt-test compiles those
/// with dtc and compares them with these libfdt-built overlays.
@Suite struct ExampleOverlays {
    @Test func os1TwoCells() throws {
        let bytes = try makeOverlay(guest())
        try emit("example-os1.dtbo", bytes)
        #expect(try FlattenedDeviceTree(validating: bytes).node(at: "/fragment@1/__overlay__/gpu@58000000") != nil)
    }

    @Test func os2OneCellNoHeaps() throws {
        var d = guest(osid: 2); d.irq = 101; d.heaps = []
        let bytes = try makeOverlay(d, addressCells: 1, sizeCells: 1)
        try emit("example-os2-1cell.dtbo", bytes)
        let o = try FlattenedDeviceTree(validating: bytes)
        let gpu = try #require(try o.node(at: "/fragment@1/__overlay__/gpu@58000000"))
        #expect(try o.u32("img,osid", of: gpu) == 2)
    }
}
