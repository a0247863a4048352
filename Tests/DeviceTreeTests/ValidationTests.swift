import Testing
@testable import DeviceTree

/// Every hostile description is refused with the offending value and the limit.
@Suite struct ValidationTests {
    func refused(_ d: GuestGPUDescription, ac: UInt32 = 2, sc: UInt32 = 2, mentions words: [String],
                 sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try makeOverlay(d, addressCells: ac, sizeCells: sc)
            Issue.record("accepted: \(d)", sourceLocation: sourceLocation)
        } catch {
            for w in words {
                #expect(error.description.contains(w), "\(error.description) lacks \(w)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func osidOutOfRange() {
        var d = guest(); d.osid = 0
        refused(d, mentions: ["osid = 0", "1...15", "host"])
        d.osid = 16
        refused(d, mentions: ["osid = 16", "1...15"])
    }

    @Test func heapOutsideCarveout() {
        var d = guest()
        d.heaps[1].base = 0x5800_0000 + 0x400_0000 - 0x1000   // last page inside, rest past the end
        refused(d, mentions: ["pvz-gpu-heap", "not wholly inside", "carve-out", "0x5bfff000"])
    }

    @Test func overlappingHeaps() {
        var d = guest()
        d.heaps[1].base = d.heaps[0].base + 0x1000
        refused(d, mentions: ["overlaps", "pvz-fw-heap", "pvz-gpu-heap"])
    }

    @Test func heapOverRegisterBank() {
        var d = guest()
        d.heaps[0].base = d.carveout.base
        refused(d, mentions: ["register bank", "overlaps"])
    }

    @Test func unalignedAndEmptyRanges() {
        var d = guest(); d.carveout.base += 0x800; d.regsBase = d.carveout.base
        refused(d, mentions: ["carveout.base", "0x58000800", "4096"])
        d = guest(); d.heaps[0].size = 0
        refused(d, mentions: ["heaps[0].size", "page"])
        d = guest(); d.heaps[0].size = 0x1234
        refused(d, mentions: ["heaps[0].size", "0x1234", "multiple of 4096"])
    }

    @Test func registerBankMustBeCarveoutStart() {
        var d = guest(); d.regsBase += 0x10000
        refused(d, mentions: ["regsBase", "0x58010000", "carve-out base"])
        d = guest(); d.regsSize = 0x20000
        refused(d, mentions: ["regsSize", "0x20000", "0x10000"])
    }

    @Test func rangesMustFitTheCells() {
        let high = guest(carveBase: 0x1_0000_0000)
        refused(high, ac: 1, sc: 1, mentions: ["#address-cells = 1", "0x100000000"])
        let big = guest(carveBase: 0x1_0000_0000, carveSize: 0x1_0000_0000)
        refused(big, ac: 2, sc: 1, mentions: ["#size-cells = 1", "0xffffffff"])
        let wrap = guest(carveBase: 0xffff_ffff_ffff_0000, carveSize: 0x2_0000)
        refused(wrap, mentions: ["64-bit"])
        refused(guest(), ac: 3, mentions: ["#address-cells = 3", "1 or 2"])
    }

    @Test func namesAreNodeNames() {
        var d = guest(); d.heaps[0].name = "bad name"
        refused(d, mentions: ["heaps[0].name", "\"bad name\"", "[0-9a-zA-Z,._+-]"])
        d = guest(); d.heaps[0].name = String(repeating: "a", count: 32)
        refused(d, mentions: ["1 to 31", "32"])
        d = guest(); d.heaps[1].name = d.heaps[0].name
        refused(d, mentions: ["unique"])
        d = guest(); d.carveout.name = "9lives"
        refused(d, mentions: ["starts with a letter"])
        d = guest(); d.carveout.name = ""
        refused(d, mentions: ["carveout.name", "1 to 31"])
    }

    @Test func heapNamedLikeACarveoutPiece() {
        var d = guest(); d.heaps[1].name = "pvz-carveout-1"
        refused(d, mentions: ["\"pvz-carveout-1\"", "collides", "carve-out piece"])
        d = guest(); d.carveout.name = String(repeating: "c", count: 30)
        refused(d, mentions: ["carve-out piece name", "1 to 31", "32"])
    }

    @Test func irqBeyondGIC() {
        var d = guest(); d.irq = 988
        refused(d, mentions: ["irq = 988", "0...987"])
    }

    @Test func tooManyHeaps() {
        var d = guest(carveSize: 0x1000_0000)
        d.heaps = (0..<9).map { ReservedRegion(name: "h\($0)", base: d.carveout.base + 0x10_0000 * UInt64($0 + 1), size: 0x1000) }
        refused(d, mentions: ["9 heaps", "at most 8"])
    }
}
