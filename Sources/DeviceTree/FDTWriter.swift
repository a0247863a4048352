import CLibFDT

/// libfdt's sequential-write API (`fdt_create` ... `fdt_finish`): nodes and
/// properties come out in the order they are written, as in a .dts, which the
/// read-write API (it inserts new nodes before older siblings) does not give.
struct FDTWriter {
    private var buffer: [UInt8]
    private var depth = 0

    init(capacity: Int = 4096) throws(DeviceTreeError) {
        buffer = [UInt8](repeating: 0, count: capacity)
        let rc = buffer.withUnsafeMutableBytes { fdt_create($0.baseAddress, Int32($0.count)) }
        guard rc == 0 else { throw .fdt("fdt_create", rc) }
        try call("fdt_finish_reservemap") { fdt_finish_reservemap($0) }
    }

    /// Runs one libfdt call, doubling the buffer with `fdt_resize` while it reports no space.
    private mutating func call(_ operation: String, _ body: (UnsafeMutableRawPointer) -> Int32) throws(DeviceTreeError) {
        while true {
            let rc = buffer.withUnsafeMutableBytes { body($0.baseAddress!) }
            if rc == -FDT_ERR_NOSPACE, buffer.count * 2 <= FlattenedDeviceTree.maxSize {
                var bigger = [UInt8](repeating: 0, count: buffer.count * 2)
                let r = buffer.withUnsafeBytes { old in
                    bigger.withUnsafeMutableBytes { fdt_resize(UnsafeMutableRawPointer(mutating: old.baseAddress), $0.baseAddress, Int32($0.count)) }
                }
                guard r == 0 else { throw .fdt("fdt_resize", r) }
                buffer = bigger
                continue
            }
            guard rc == 0 else { throw .fdt(operation, rc) }
            return
        }
    }

    mutating func beginNode(_ name: String) throws(DeviceTreeError) {
        try call("fdt_begin_node(\(name))") { fdt_begin_node($0, name) }
        depth += 1
    }

    mutating func endNode() throws(DeviceTreeError) {
        try call("fdt_end_node") { fdt_end_node($0) }
        depth -= 1
    }

    mutating func property(_ name: String, bytes: [UInt8]) throws(DeviceTreeError) {
        try call("fdt_property(\(name))") { fdt in
            bytes.withUnsafeBytes { fdt_property(fdt, name, $0.baseAddress, Int32($0.count)) }
        }
    }

    mutating func property(_ name: String, cells: [UInt32]) throws(DeviceTreeError) {
        try property(name, bytes: cells.flatMap(bigEndianBytes))
    }

    mutating func property(_ name: String, strings: [String]) throws(DeviceTreeError) {
        try property(name, bytes: strings.flatMap { Array($0.utf8) + [0] })
    }

    /// A boolean (empty) property such as `no-map`.
    mutating func property(_ name: String) throws(DeviceTreeError) {
        try property(name, bytes: [])
    }

    /// Finishes the tree and returns it packed.
    consuming func finish() throws(DeviceTreeError) -> [UInt8] {
        precondition(depth == 0, "FDTWriter.finish with \(depth) nodes still open")
        try call("fdt_finish") { fdt_finish($0) }
        let total = Int(FlattenedDeviceTree.be32(buffer, 4))
        return Array(buffer[0..<total])
    }
}
