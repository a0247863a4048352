import PVZContract

/// A named range of a guest's IPA space that its OS must not use.
public struct ReservedRegion: Equatable, Hashable, Sendable {
    /// Node name (before the `@unit-address`), e.g. "pvz-carveout" or "pvz-gpu-local".
    public var name: String
    public var base: UInt64
    public var size: UInt64
    public init(name: String, base: UInt64, size: UInt64) {
        self.name = name; self.base = base; self.size = size
    }
    public var range: AddressRange { AddressRange(base: base, size: size) }
}

/// What one guest's device tree must say about its PVZ GPU (spec sections 9, 10).
public struct GuestGPUDescription: Equatable, Sendable {
    public var osid: UInt32
    /// IPA of this OSID's register bank (the carve-out's first 64 KiB).
    public var regsBase: UInt64
    public var regsSize: UInt64
    /// Interrupt number the daemon assigned; for a GIC it is the SPI number.
    public var irq: UInt32
    public var carveout: ReservedRegion
    /// Host-origin heaps, each a slice of the carve-out after the register bank.
    public var heaps: [ReservedRegion]

    public init(osid: UInt32, regsBase: UInt64, regsSize: UInt64, irq: UInt32,
                carveout: ReservedRegion, heaps: [ReservedRegion] = []) {
        self.osid = osid; self.regsBase = regsBase; self.regsSize = regsSize
        self.irq = irq; self.carveout = carveout; self.heaps = heaps
    }
}

/// Limits a description must respect; each names where it comes from.
public enum DeviceTreeLimits {
    /// Guest OSIDs: 0 is the host (driver domain); the contract's limit, as the daemon's.
    public static let osids: ClosedRange<UInt32> = 1...(VirtioPVZ.maxOSIDsLimit - 1)
    /// Linux maps reserved-memory no-map regions by page; the smallest arm64/x86 page.
    public static let pageSize: UInt64 = 4096
    /// Spec section 9: the register bank.
    public static let regsSize: UInt64 = PVZRegister.bankSize
    /// GIC SPIs are INTIDs 32..1019, so SPI numbers 0..987.
    public static let gicSPIs: ClosedRange<UInt32> = 0...987
    /// One heap per PVRSRV_DEVICE_PHYS_HEAP id (5) with room to spare.
    public static let maxHeaps = 8
    /// DT spec: node names are 1 to 31 characters.
    public static let nodeNameLength: ClosedRange<Int> = 1...31
}

extension GuestGPUDescription {
    /// The named regions of the description, carve-out first (used for validation).
    public var regions: [ReservedRegion] { [carveout] + heaps }

    /// What the overlay reserves, in address order: each heap, and the parts of
    /// the carve-out no heap covers (the first, which holds the register bank,
    /// named like the carve-out, later ones `<name>-1`, `<name>-2`, ...: dt-schema
    /// wants `memory-region-names` unique). Together they cover the carve-out exactly and never
    /// overlap: Linux reports overlapping reserved-memory nodes as an error
    /// ("OF: reserved mem: OVERLAP DETECTED!") and dt-schema allows one `reg`
    /// entry per reserved-memory node. Assumes a validated description.
    public var reservedPieces: [ReservedRegion] {
        var out: [ReservedRegion] = []
        var cursor = carveout.base
        var gaps = 0
        func gap(_ base: UInt64, _ size: UInt64) {
            out.append(ReservedRegion(name: gaps == 0 ? carveout.name : "\(carveout.name)-\(gaps)", base: base, size: size))
            gaps += 1
        }
        let end = carveout.base &+ carveout.size
        for h in heaps.sorted(by: { $0.base < $1.base }) {
            if h.base > cursor { gap(cursor, h.base - cursor) }
            out.append(h)
            cursor = max(cursor, h.base &+ h.size)
        }
        if cursor < end { gap(cursor, end - cursor) }
        return out
    }

    /// Checks the description against the spec and against what `addressCells`/
    /// `sizeCells` can encode. Throws on the first problem, naming value and limit.
    public func validate(addressCells: UInt32, sizeCells: UInt32, interruptCells: UInt32) throws(DeviceTreeError) {
        guard (1...2).contains(addressCells) else {
            throw .invalidValue(field: "#address-cells", value: "\(addressCells)", limit: "must be 1 or 2")
        }
        guard (1...2).contains(sizeCells) else {
            throw .invalidValue(field: "#size-cells", value: "\(sizeCells)", limit: "must be 1 or 2")
        }
        guard DeviceTreeLimits.osids.contains(osid) else {
            throw .invalidValue(field: "osid", value: "\(osid)",
                                limit: "guest OSIDs are \(DeviceTreeLimits.osids.lowerBound)...\(DeviceTreeLimits.osids.upperBound) (0 is the host)")
        }
        switch interruptCells {
        case 3:
            guard DeviceTreeLimits.gicSPIs.contains(irq) else {
                throw .invalidValue(field: "irq", value: "\(irq)",
                                    limit: "a GIC SPI number is \(DeviceTreeLimits.gicSPIs.lowerBound)...\(DeviceTreeLimits.gicSPIs.upperBound)")
            }
        case 1, 2:
            break
        default:
            throw .invalidValue(field: "#interrupt-cells", value: "\(interruptCells)",
                                limit: "1 (irq), 2 (irq, flags) or 3 (GIC: type, irq, flags) are supported")
        }
        guard heaps.count <= DeviceTreeLimits.maxHeaps else {
            throw .invalidValue(field: "heaps", value: "\(heaps.count) heaps", limit: "at most \(DeviceTreeLimits.maxHeaps)")
        }
        var names = Set<String>()
        for (i, r) in regions.enumerated() {
            let field = i == 0 ? "carveout" : "heaps[\(i - 1)]"
            try Self.checkName(r.name, field: field + ".name")
            guard names.insert(r.name).inserted else {
                throw .invalidValue(field: field + ".name", value: "\"\(r.name)\"", limit: "region names must be unique")
            }
            try Self.checkRange(r.range, field: field, addressCells: addressCells, sizeCells: sizeCells)
        }
        let regs = AddressRange(base: regsBase, size: regsSize)
        guard regsSize == DeviceTreeLimits.regsSize else {
            throw .invalidValue(field: "regsSize", value: hex(regsSize), limit: "the register bank is \(hex(DeviceTreeLimits.regsSize)) bytes (spec section 9)")
        }
        try Self.checkRange(regs, field: "regs", addressCells: addressCells, sizeCells: sizeCells)
        guard regsBase == carveout.base else {
            throw .invalidValue(field: "regsBase", value: hex(regsBase),
                                limit: "must equal the carve-out base \(hex(carveout.base)) (the bank is the carve-out's first 64 KiB)")
        }
        guard carveout.range.contains(regs) else {
            throw .outside(inner: "register bank", innerRange: regs, outer: "carve-out", outerRanges: [carveout.range])
        }
        for (i, h) in heaps.enumerated() {
            guard carveout.range.contains(h.range) else {
                throw .outside(inner: "heap \(h.name) (heaps[\(i)])", innerRange: h.range,
                               outer: "carve-out \(carveout.name)", outerRanges: [carveout.range])
            }
            guard !h.range.overlaps(regs) else {
                throw .overlap(first: "heap \(h.name)", firstRange: h.range, second: "register bank", secondRange: regs)
            }
            for o in heaps[..<i] where o.range.overlaps(h.range) {
                throw .overlap(first: "heap \(o.name)", firstRange: o.range, second: "heap \(h.name)", secondRange: h.range)
            }
        }
        var pieceNames = Set<String>()
        for p in reservedPieces where p.name != carveout.name && !heaps.contains(p) {
            try Self.checkName(p.name, field: "carve-out piece name (carveout.name + \"-N\")")
        }
        for p in reservedPieces {
            guard pieceNames.insert(p.name).inserted else {
                throw .invalidValue(field: "heap name", value: "\"\(p.name)\"",
                                    limit: "collides with the name of a carve-out piece; carve-out pieces are named \(carveout.name), \(carveout.name)-1, ...")
            }
        }
    }

    static func checkName(_ name: String, field: String) throws(DeviceTreeError) {
        let u = Array(name.utf8)
        guard DeviceTreeLimits.nodeNameLength.contains(u.count) else {
            throw .invalidValue(field: field, value: "\"\(name)\"",
                                limit: "a node name is \(DeviceTreeLimits.nodeNameLength.lowerBound) to \(DeviceTreeLimits.nodeNameLength.upperBound) characters, this is \(u.count)")
        }
        func ok(_ c: UInt8) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
                || c == UInt8(ascii: ",") || c == UInt8(ascii: ".") || c == UInt8(ascii: "_")
                || c == UInt8(ascii: "+") || c == UInt8(ascii: "-")
        }
        let firstIsLetter = (u[0] >= 0x41 && u[0] <= 0x5a) || (u[0] >= 0x61 && u[0] <= 0x7a)
        guard firstIsLetter, u.allSatisfy(ok) else {
            throw .invalidValue(field: field, value: "\"\(name)\"",
                                limit: "a node name starts with a letter and uses only [0-9a-zA-Z,._+-]")
        }
    }

    static func checkRange(_ r: AddressRange, field: String, addressCells: UInt32, sizeCells: UInt32) throws(DeviceTreeError) {
        let page = DeviceTreeLimits.pageSize
        guard r.size > 0 else {
            throw .invalidValue(field: field + ".size", value: "0", limit: "must be at least one \(page)-byte page")
        }
        guard r.base % page == 0 else {
            throw .invalidValue(field: field + ".base", value: hex(r.base), limit: "must be \(page)-byte (page) aligned")
        }
        guard r.size % page == 0 else {
            throw .invalidValue(field: field + ".size", value: hex(r.size), limit: "must be a multiple of \(page) bytes (a page)")
        }
        guard let end = r.end else {
            throw .invalidValue(field: field, value: r.description, limit: "base + size exceeds the 64-bit address space")
        }
        if addressCells == 1, end > 1 << 32 {
            throw .invalidValue(field: field, value: r.description,
                                limit: "with #address-cells = 1 the range must end at or below 0x100000000")
        }
        if sizeCells == 1, r.size > UInt64(UInt32.max) {
            throw .invalidValue(field: field + ".size", value: hex(r.size),
                                limit: "with #size-cells = 1 a size is at most 0xffffffff")
        }
    }
}
