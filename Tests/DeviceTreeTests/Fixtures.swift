import DeviceTree
#if canImport(Glibc)
import Glibc
#endif

/// Base trees shaped like QEMU's virt DTB (GIC with phandle, root interrupt-parent,
/// one memory node, a UART on SPI 1), built with libfdt through the module itself.
struct BaseSpec {
    var addressCells: UInt32 = 2
    var sizeCells: UInt32 = 2
    var ramBase: UInt64 = 0x4000_0000
    var ramSize: UInt64 = 0x2000_0000   // 512 MiB
    var withReservedMemory = false
    var existingReserved: (UInt64, UInt64)? = nil
    var withRootCells = true
    var withInterruptParent = true
}

func cells(_ v: UInt64, _ n: UInt32) -> [UInt32] {
    n == 1 ? [UInt32(truncatingIfNeeded: v)] : [UInt32(v >> 32), UInt32(v & 0xffff_ffff)]
}

func makeBase(_ s: BaseSpec = BaseSpec()) throws -> [UInt8] {
    var t = try FlattenedDeviceTree.empty(label: "test base")
    try t.setProperty("compatible", strings: ["linux,dummy-virt"], at: "/")
    try t.setProperty("model", strings: ["test virt"], at: "/")
    if s.withRootCells {
        try t.setProperty("#address-cells", cells: [s.addressCells], at: "/")
        try t.setProperty("#size-cells", cells: [s.sizeCells], at: "/")
    }
    if s.withInterruptParent { try t.setProperty("interrupt-parent", cells: [0x8002], at: "/") }
    let mem = try t.addSubnode("memory@\(String(s.ramBase, radix: 16))", at: "/")
    try t.setProperty("device_type", strings: ["memory"], at: mem)
    try t.setProperty("reg", cells: cells(s.ramBase, s.addressCells) + cells(s.ramSize, s.sizeCells), at: mem)
    let gic = try t.addSubnode("intc@8000000", at: "/")
    try t.setProperty("compatible", strings: ["arm,cortex-a15-gic"], at: gic)
    try t.setProperty("interrupt-controller", at: gic)
    try t.setProperty("#interrupt-cells", cells: [3], at: gic)
    try t.setProperty("reg", cells: cells(0x800_0000, s.addressCells) + cells(0x1_0000, s.sizeCells), at: gic)
    try t.setProperty("phandle", cells: [0x8002], at: gic)
    let uart = try t.addSubnode("pl011@9000000", at: "/")
    try t.setProperty("compatible", strings: ["arm,pl011", "arm,primecell"], at: uart)
    try t.setProperty("reg", cells: cells(0x900_0000, s.addressCells) + cells(0x1000, s.sizeCells), at: uart)
    try t.setProperty("interrupts", cells: [0, 1, 4], at: uart)
    if s.withReservedMemory {
        let rm = try t.addSubnode("reserved-memory", at: "/")
        try t.setProperty("#address-cells", cells: [s.addressCells], at: rm)
        try t.setProperty("#size-cells", cells: [s.sizeCells], at: rm)
        try t.setProperty("ranges", at: rm)
        if let (b, sz) = s.existingReserved {
            let r = try t.addSubnode("firmware@\(String(b, radix: 16))", at: rm)
            try t.setProperty("reg", cells: cells(b, s.addressCells) + cells(sz, s.sizeCells), at: r)
            try t.setProperty("no-map", at: r)
            try t.setProperty("phandle", cells: [0x8003], at: r)
        }
    }
    try t.addSubnode("chosen", at: "/")
    return try t.bytes()
}

/// The description the daemon would give for OSID 1 with a 64 MiB carve-out at
/// 0x58000000 (inside 512 MiB of RAM from 0x40000000), two host-origin heaps.
func guest(osid: UInt32 = 1, carveBase: UInt64 = 0x5800_0000, carveSize: UInt64 = 0x400_0000) -> GuestGPUDescription {
    GuestGPUDescription(
        osid: osid, regsBase: carveBase, regsSize: 0x10000, irq: 100,
        carveout: ReservedRegion(name: "pvz-carveout", base: carveBase, size: carveSize),
        heaps: [
            ReservedRegion(name: "pvz-fw-heap", base: carveBase &+ 0x10_0000, size: 0x200_0000),
            ReservedRegion(name: "pvz-gpu-heap", base: carveBase &+ 0x210_0000, size: 0x100_0000),
        ])
}

/// Writes test artefacts for scripts/dt-test to check with dtc and dt-schema.
func emit(_ name: String, _ bytes: [UInt8]) throws {
    guard let dir = getenv("PVZ_DT_OUT").map({ String(cString: $0) }), !dir.isEmpty else { return }
    try writeDeviceTreeFile(bytes, to: dir + "/" + name)
}

func be32(_ b: [UInt8], _ i: Int) -> UInt32 {
    UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
}
