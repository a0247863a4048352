/// One `fragment@N` of an overlay: where it goes and what it carries.
struct OverlayFragment {
    var fragmentPath: String
    /// The target's path in the base, when the fragment names one we can resolve.
    var targetPath: String?
    var overlayNode: FlattenedDeviceTree.Node
}

func fragments(of o: FlattenedDeviceTree, in base: FlattenedDeviceTree) throws(DeviceTreeError) -> [OverlayFragment] {
    var out: [OverlayFragment] = []
    for f in try o.subnodes(of: o.root) {
        guard let body = try o.subnode("__overlay__", of: f) else { continue }
        let fp = try o.path(of: f)
        var target: String?
        if let tp = try o.strings("target-path", of: f) {
            guard tp.count == 1, tp[0].hasPrefix("/") else {
                throw .badProperty(what: "overlay", path: fp, property: "target-path",
                                   found: "\(tp)", expected: "one absolute path")
            }
            target = tp[0]
        } else if let t = try o.u32("target", of: f) {
            // 0xffffffff is dtc's placeholder for a phandle resolved through __fixups__;
            // libfdt resolves those itself, so only direct phandles are checked here.
            if let ph = Phandle(rawValue: t) {
                guard let n = try base.node(withPhandle: ph) else {
                    throw .missingNode(what: "base DTB", path: "phandle \(t)", reason: "overlay \(fp) targets it")
                }
                target = try base.path(of: n)
            }
        } else {
            throw .missingProperty(what: "overlay", path: fp, property: "target-path",
                                   reason: "a fragment needs target-path or target")
        }
        out.append(OverlayFragment(fragmentPath: fp, targetPath: target, overlayNode: body))
    }
    guard !out.isEmpty else {
        throw .notADeviceTree(what: "overlay", reason: "it has no fragment with an __overlay__ node")
    }
    return out
}

/// Applies a DT overlay to a base DTB and returns the merged DTB.
///
/// Before libfdt touches anything it checks what `fdt_overlay_apply` does not:
/// the cell sizes the overlay was encoded with match its targets; no node of the
/// overlay replaces one of the base; every new reserved-memory range lies inside
/// a `/memory` node of the base and clear of the base's reserved ranges and
/// `/memreserve/` entries. A base without `/reserved-memory` (QEMU's virt DTB
/// has none) gets one, with the root's cells and an empty `ranges`.
/// On any error nothing is returned, so callers write no file.
public func mergeOverlay(base: [UInt8], overlay: [UInt8]) throws(DeviceTreeError) -> [UInt8] {
    var b = try FlattenedDeviceTree(validating: base, label: "base DTB")
    let o = try FlattenedDeviceTree(validating: overlay, label: "overlay")
    let rootCells = try b.declaredCells(of: b.root)
    var frags = try fragments(of: o, in: b)

    if frags.contains(where: { $0.targetPath == OverlayLayout.reservedTarget }),
       try b.node(at: OverlayLayout.reservedTarget) == nil {
        try addReservedMemory(&b, cells: rootCells)
        frags = try fragments(of: o, in: b)
    }

    for f in frags {
        guard let tp = f.targetPath else { continue }
        guard let target = try b.node(at: tp) else {
            throw .missingNode(what: "base DTB", path: tp, reason: "overlay \(f.fragmentPath) targets it")
        }
        try checkCells(overlay: o, f, base: b, target: target, targetPath: tp)
        for child in try o.subnodes(of: f.overlayNode) {
            let name = try o.name(of: child)
            if try b.subnode(name, of: target) != nil {
                throw .conflict(path: (tp == "/" ? "" : tp) + "/" + name,
                                reason: "the base DTB already has this node; merging \(f.fragmentPath) would overwrite it")
            }
        }
        if tp == OverlayLayout.reservedTarget {
            try checkReservedRanges(overlay: o, f, base: b, rootCells: rootCells)
        }
    }

    try b.apply(overlay: o)
    let out = try b.bytes()
    _ = try FlattenedDeviceTree(validating: out, label: "merged DTB")
    return out
}

/// Makes the guest's overlay with the base's own cell sizes and interrupt
/// specifier form, and merges it into the base.
public func mergeGuest(base: [UInt8], _ d: GuestGPUDescription) throws(DeviceTreeError) -> [UInt8] {
    let b = try FlattenedDeviceTree(validating: base, label: "base DTB")
    let cells = try b.declaredCells(of: b.root)
    if let rm = try b.node(at: OverlayLayout.reservedTarget) {
        let rmCells = try b.declaredCells(of: rm)
        guard rmCells == cells else {
            throw .badProperty(what: "base DTB", path: OverlayLayout.reservedTarget, property: "#address-cells/#size-cells",
                               found: "\(rmCells.address)/\(rmCells.size)",
                               expected: "the root's \(cells.address)/\(cells.size) (reserved-memory binding)")
        }
    }
    let controller = try rootInterruptController(b)
    try checkIRQFree(b, irq: d.irq, controller: controller)
    let ov = try makeOverlay(d, addressCells: cells.address, sizeCells: cells.size,
                             interruptCells: controller.cells)
    return try mergeOverlay(base: base, overlay: ov)
}

func addReservedMemory(_ b: inout FlattenedDeviceTree, cells: (address: UInt32, size: UInt32)) throws(DeviceTreeError) {
    let rm = try b.addSubnode("reserved-memory", at: "/")
    try b.setProperty("#address-cells", cells: [cells.address], at: rm)
    try b.setProperty("#size-cells", cells: [cells.size], at: rm)
    try b.setProperty("ranges", at: rm)
}

func checkCells(overlay o: FlattenedDeviceTree, _ f: OverlayFragment, base b: FlattenedDeviceTree,
                target: FlattenedDeviceTree.Node, targetPath tp: String) throws(DeviceTreeError) {
    for prop in ["#address-cells", "#size-cells"] {
        guard let want = try o.u32(prop, of: f.overlayNode) else { continue }
        let have = try b.u32(prop, of: target)
        guard have == want else {
            throw .badProperty(what: "base DTB", path: tp, property: prop,
                               found: have.map { "\($0)" } ?? "absent",
                               expected: "\(want), the value overlay \(f.fragmentPath) was encoded with")
        }
    }
}

func checkReservedRanges(overlay o: FlattenedDeviceTree, _ f: OverlayFragment, base b: FlattenedDeviceTree,
                         rootCells: (address: UInt32, size: UInt32)) throws(DeviceTreeError) {
    guard let rm = try b.node(at: OverlayLayout.reservedTarget) else { return }
    let cells = try b.declaredCells(of: rm)
    guard try b.property("ranges", of: rm) != nil else {
        throw .missingProperty(what: "base DTB", path: OverlayLayout.reservedTarget, property: "ranges",
                               reason: "the reserved-memory binding requires it")
    }

    var ram: [AddressRange] = []
    for n in try b.subnodes(of: b.root) where try b.strings("device_type", of: n) == ["memory"] {
        ram += try b.reg(of: n, addressCells: rootCells.address, sizeCells: rootCells.size) ?? []
    }
    var taken: [(String, AddressRange)] = try b.memoryReservations().map { ("/memreserve/ entry", $0) }
    for n in try b.subnodes(of: rm) {
        let p = try b.path(of: n)
        for r in try b.reg(of: n, addressCells: cells.address, sizeCells: cells.size) ?? [] {
            taken.append(("base reserved-memory node \(p)", r))
        }
    }

    for child in try o.subnodes(of: f.overlayNode) {
        let name = try o.name(of: child)
        guard let regs = try o.reg(of: child, addressCells: cells.address, sizeCells: cells.size) else {
            throw .missingProperty(what: "overlay", path: try o.path(of: child), property: "reg",
                                   reason: "a reserved-memory range needs one")
        }
        for r in regs {
            guard ram.contains(where: { $0.contains(r) }) else {
                throw .outside(inner: "reserved region \(name)", innerRange: r, outer: "the base's memory", outerRanges: ram)
            }
            for (what, t) in taken where t.overlaps(r) {
                throw .overlap(first: "reserved region \(name)", firstRange: r, second: what, secondRange: t)
            }
        }
    }
}

/// The controller the root's `interrupt-parent` points at, which the GPU node inherits.
struct InterruptController {
    var phandle: Phandle
    var path: String
    var cells: UInt32
}

func rootInterruptController(_ b: FlattenedDeviceTree) throws(DeviceTreeError) -> InterruptController {
    guard let raw = try b.u32("interrupt-parent", of: b.root) else {
        throw .missingProperty(what: "base DTB", path: "/", property: "interrupt-parent",
                               reason: "the GPU node inherits its interrupt controller from the root")
    }
    guard let ph = Phandle(rawValue: raw), let ic = try b.node(withPhandle: ph) else {
        throw .badProperty(what: "base DTB", path: "/", property: "interrupt-parent",
                           found: "\(raw)", expected: "the phandle of a node in the tree")
    }
    let p = try b.path(of: ic)
    guard let cells = try b.u32("#interrupt-cells", of: ic) else {
        throw .missingProperty(what: "base DTB", path: p, property: "#interrupt-cells",
                               reason: "needed to encode the GPU's interrupts")
    }
    guard (1...3).contains(cells) else {
        throw .badProperty(what: "base DTB", path: p, property: "#interrupt-cells", found: "\(cells)",
                           expected: "1, 2 or 3 (the specifier forms the GPU node can use)")
    }
    return InterruptController(phandle: ph, path: p, cells: cells)
}

/// Refuses an irq another device of the same controller already has: two devices
/// on one level-triggered line would each see the other's interrupts.
func checkIRQFree(_ b: FlattenedDeviceTree, irq: UInt32, controller ic: InterruptController) throws(DeviceTreeError) {
    let mine = interruptSpecifier(irq: irq, cells: ic.cells)
    let key = ic.cells > 1 ? Array(mine.dropLast()) : mine
    for n in try b.allNodes() {
        guard let spec = try b.cells("interrupts", of: n), !spec.isEmpty else { continue }
        guard try effectiveInterruptParent(b, n) == ic.phandle.rawValue else { continue }
        guard spec.count % Int(ic.cells) == 0 else { continue }
        for i in stride(from: 0, to: spec.count, by: Int(ic.cells)) {
            let s = Array(spec[i..<i + Int(ic.cells)])
            let k = ic.cells > 1 ? Array(s.dropLast()) : s
            if k == key {
                throw .conflict(path: try b.path(of: n),
                                reason: "already uses interrupt \(s) of \(ic.path); pick another irq than \(irq)")
            }
        }
    }
}

func effectiveInterruptParent(_ b: FlattenedDeviceTree, _ n: FlattenedDeviceTree.Node) throws(DeviceTreeError) -> UInt32? {
    var cur: FlattenedDeviceTree.Node? = n
    while let c = cur {
        if let ip = try b.u32("interrupt-parent", of: c) { return ip }
        cur = try b.parent(of: c)
    }
    return nil
}
