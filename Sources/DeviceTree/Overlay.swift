/// Compatible strings of the GPU node: ours first, the generic Rogue family second.
public let pvzCompatible = ["img,pvz-vgpu", "img,img-rogue"]

/// Interrupt specifier for `irq` in the form the interrupt controller expects.
/// 3 cells is the GIC form: SPI, number, level-high (QEMU virt's GIC).
func interruptSpecifier(irq: UInt32, cells: UInt32) -> [UInt32] {
    let gicSPI: UInt32 = 0, levelHigh: UInt32 = 4
    switch cells {
    case 3: return [gicSPI, irq, levelHigh]
    case 2: return [irq, levelHigh]
    default: return [irq]
    }
}

/// Where the overlay puts things; the overlay writer and merge share these names.
enum OverlayLayout {
    static let reservedTarget = "/reserved-memory"
    static let gpuTarget = "/"
    static func unitName(_ name: String, _ address: UInt64) -> String {
        "\(name)@\(String(address, radix: 16))"
    }
    static func gpuNodeName(_ d: GuestGPUDescription) -> String { unitName("gpu", d.regsBase) }
}

/// Builds the guest's DT overlay (`.dtbo`) with libfdt: a `no-map`
/// reserved-memory child for every host-origin heap and for each part of the
/// carve-out outside the heaps (`reservedPieces`, address order, so the
/// register bank's piece comes first), and the GPU node at `/gpu@<regs_pbase>`
/// referring to all of them by phandle in that order.
///
/// The phandles are local to the overlay (1, 2, ...) and listed in
/// `__local_fixups__`, so `fdt_overlay_apply` renumbers them past the base's
/// highest phandle. Each `__overlay__` carries the `#address-cells`/`#size-cells`
/// its `reg` values were encoded with; merging checks them against the target.
public func makeOverlay(_ d: GuestGPUDescription, addressCells: UInt32 = 2, sizeCells: UInt32 = 2,
                        interruptCells: UInt32 = 3) throws(DeviceTreeError) -> [UInt8] {
    try d.validate(addressCells: addressCells, sizeCells: sizeCells, interruptCells: interruptCells)

    func reg(_ r: AddressRange) -> [UInt32] {
        // validate() proved both fit their cells.
        (encodeCells(r.base, count: addressCells) ?? []) + (encodeCells(r.size, count: sizeCells) ?? [])
    }
    let pieces = d.reservedPieces
    let phandles = pieces.indices.map { UInt32($0 + 1) }
    let gpuName = OverlayLayout.gpuNodeName(d)

    var w = try FDTWriter()
    try w.beginNode("")

    // Fragment 0: the carve-out and heaps under /reserved-memory.
    try w.beginNode("fragment@0")
    try w.property("target-path", strings: [OverlayLayout.reservedTarget])
    try w.beginNode("__overlay__")
    try w.property("#address-cells", cells: [addressCells])
    try w.property("#size-cells", cells: [sizeCells])
    for (r, ph) in zip(pieces, phandles) {
        try w.beginNode(OverlayLayout.unitName(r.name, r.base))
        try w.property("reg", cells: reg(r.range))
        try w.property("no-map")
        try w.property("phandle", cells: [ph])
        try w.endNode()
    }
    try w.endNode()
    try w.endNode()

    // Fragment 1: the GPU node under the root.
    try w.beginNode("fragment@1")
    try w.property("target-path", strings: [OverlayLayout.gpuTarget])
    try w.beginNode("__overlay__")
    try w.property("#address-cells", cells: [addressCells])
    try w.property("#size-cells", cells: [sizeCells])
    try w.beginNode(gpuName)
    try w.property("compatible", strings: pvzCompatible)
    try w.property("reg", cells: reg(AddressRange(base: d.regsBase, size: d.regsSize)))
    try w.property("interrupts", cells: interruptSpecifier(irq: d.irq, cells: interruptCells))
    try w.property("memory-region", cells: phandles)
    try w.property("memory-region-names", strings: pieces.map(\.name))
    try w.property("img,osid", cells: [d.osid])
    try w.endNode()
    try w.endNode()
    try w.endNode()

    // Where the overlay uses its own phandles: byte offsets into memory-region.
    try w.beginNode("__local_fixups__")
    try w.beginNode("fragment@1")
    try w.beginNode("__overlay__")
    try w.beginNode(gpuName)
    try w.property("memory-region", cells: phandles.indices.map { UInt32($0 * 4) })
    for _ in 0..<4 { try w.endNode() }

    try w.endNode()
    return try w.finish()
}

/// Kernel command-line argument that keeps an x86 guest's OS off the carve-out
/// (x86 guests have no device tree). The heaps lie inside the carve-out, so one
/// range covers them. Note: in GRUB's config the `$` must be escaped as `\$`.
public func x86MemmapArguments(_ d: GuestGPUDescription) -> String {
    "memmap=\(memmapSize(d.carveout.size))$\(hex(d.carveout.base))"
}

/// Size in the kernel's memparse form, using the largest exact suffix.
func memmapSize(_ size: UInt64) -> String {
    for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] where size != 0 && size % (1 << shift) == 0 {
        return "\(size >> shift)\(suffix)"
    }
    return "\(size)"
}
