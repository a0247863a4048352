import CLibFDT

/// A phandle: the 32-bit handle one node uses to refer to another.
/// 0 and 0xffffffff are not valid phandles in the DT spec.
public struct Phandle: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init?(rawValue: UInt32) {
        guard rawValue != 0, rawValue != UInt32.max else { return nil }
        self.rawValue = rawValue
    }
    public var description: String { "<\(rawValue)>" }
}

/// A flattened device tree (DTB or DTBO) held in memory and read and changed
/// only through libfdt. Owns its bytes; nothing here encodes the format by hand.
///
/// libfdt addresses nodes by structure-block offsets that move when the tree is
/// changed, so a `Node` remembers the tree generation it came from and using it
/// after a change throws `.staleNode` instead of touching the wrong node.
public struct FlattenedDeviceTree: Sendable {
    /// A node of this tree at one generation of it.
    public struct Node: Equatable, Sendable {
        public let offset: Int32
        let generation: UInt64
    }

    private(set) var buffer: [UInt8]
    private var generation: UInt64 = 0
    /// What this tree is called in error messages ("base DTB", "overlay").
    public var label: String

    /// Smallest possible FDT: the 40-byte header.
    static let headerSize = 40
    /// Largest tree we accept; libfdt offsets are Int32, and no guest DT is near this.
    public static let maxSize = 64 << 20

    /// Parses `bytes` as a DTB after libfdt's full structural check.
    public init(validating bytes: [UInt8], label: String = "device tree") throws(DeviceTreeError) {
        self.label = label
        guard bytes.count >= Self.headerSize else {
            throw .notADeviceTree(what: label, reason: "\(bytes.count) bytes is shorter than the \(Self.headerSize)-byte FDT header")
        }
        guard bytes.count <= Self.maxSize else {
            throw .notADeviceTree(what: label, reason: "\(bytes.count) bytes is larger than the \(Self.maxSize)-byte limit")
        }
        let magic = Self.be32(bytes, 0)
        guard magic == 0xd00d_feed else {
            throw .notADeviceTree(what: label, reason: "magic is \(hex(magic)), expected 0xd00dfeed")
        }
        let total = Int(Self.be32(bytes, 4))
        guard total <= bytes.count else {
            throw .notADeviceTree(what: label, reason: "header totalsize is \(total) bytes but only \(bytes.count) are present (truncated)")
        }
        let rc = bytes.withUnsafeBytes { fdt_check_header($0.baseAddress) }
        guard rc == 0 else {
            throw .notADeviceTree(what: label, reason: "fdt_check_header: \(libfdtMessage(rc))")
        }
        let full = bytes.withUnsafeBytes { fdt_check_full($0.baseAddress, total) }
        guard full == 0 else {
            throw .notADeviceTree(what: label, reason: "fdt_check_full: \(libfdtMessage(full))")
        }
        buffer = Array(bytes[0..<total])
    }

    /// An empty tree (just a root node) made by `fdt_create_empty_tree`.
    public static func empty(label: String, capacity: Int = 4096) throws(DeviceTreeError) -> FlattenedDeviceTree {
        var buf = [UInt8](repeating: 0, count: capacity)
        let rc = buf.withUnsafeMutableBytes { fdt_create_empty_tree($0.baseAddress, Int32($0.count)) }
        guard rc == 0 else { throw .fdt("fdt_create_empty_tree", rc) }
        return FlattenedDeviceTree(raw: buf, label: label)
    }

    private init(raw: [UInt8], label: String) {
        buffer = raw
        self.label = label
    }

    /// The DTB bytes, packed (no free space), exactly `totalsize` long.
    public func bytes() throws(DeviceTreeError) -> [UInt8] {
        var copy = buffer
        let rc = copy.withUnsafeMutableBytes { fdt_pack($0.baseAddress) }
        guard rc == 0 else { throw .fdt("fdt_pack", rc) }
        let total = Int(Self.be32(copy, 4))
        return Array(copy[0..<total])
    }

    static func be32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }

    // MARK: - reading

    public var root: Node { Node(offset: 0, generation: generation) }

    private func check(_ n: Node) throws(DeviceTreeError) -> Int32 {
        guard n.generation == generation else { throw .staleNode(path: "offset \(n.offset)") }
        return n.offset
    }

    /// The node at an absolute path, or nil when there is none.
    public func node(at path: String) throws(DeviceTreeError) -> Node? {
        let off = buffer.withUnsafeBytes { fdt_path_offset($0.baseAddress, path) }
        if off == -FDT_ERR_NOTFOUND { return nil }
        guard off >= 0 else { throw .fdt("fdt_path_offset(\(path))", off) }
        return Node(offset: off, generation: generation)
    }

    /// The direct child of `parent` named `name` (with unit address), or nil.
    public func subnode(_ name: String, of parent: Node) throws(DeviceTreeError) -> Node? {
        let p = try check(parent)
        let off = buffer.withUnsafeBytes { fdt_subnode_offset($0.baseAddress, p, name) }
        if off == -FDT_ERR_NOTFOUND { return nil }
        guard off >= 0 else { throw .fdt("fdt_subnode_offset(\(name))", off) }
        return Node(offset: off, generation: generation)
    }

    public func subnodes(of parent: Node) throws(DeviceTreeError) -> [Node] {
        let p = try check(parent)
        var out: [Node] = []
        var off = buffer.withUnsafeBytes { fdt_first_subnode($0.baseAddress, p) }
        while off >= 0 {
            out.append(Node(offset: off, generation: generation))
            let cur = off
            off = buffer.withUnsafeBytes { fdt_next_subnode($0.baseAddress, cur) }
        }
        guard off == -FDT_ERR_NOTFOUND else { throw .fdt("fdt_next_subnode", off) }
        return out
    }

    /// Every node of the tree, depth first, root included.
    public func allNodes() throws(DeviceTreeError) -> [Node] {
        var out: [Node] = []
        var off: Int32 = 0
        while off >= 0 {
            out.append(Node(offset: off, generation: generation))
            let cur = off
            off = buffer.withUnsafeBytes { fdt_next_node($0.baseAddress, cur, nil) }
        }
        guard off == -FDT_ERR_NOTFOUND else { throw .fdt("fdt_next_node", off) }
        return out
    }

    public func parent(of n: Node) throws(DeviceTreeError) -> Node? {
        let o = try check(n)
        if o == 0 { return nil }
        let p = buffer.withUnsafeBytes { fdt_parent_offset($0.baseAddress, o) }
        guard p >= 0 else { throw .fdt("fdt_parent_offset", p) }
        return Node(offset: p, generation: generation)
    }

    public func name(of n: Node) throws(DeviceTreeError) -> String {
        let o = try check(n)
        var err: Int32 = 0
        let s: String? = buffer.withUnsafeBytes { raw in
            var len: Int32 = 0
            guard let p = fdt_get_name(raw.baseAddress, o, &len) else { err = len; return nil }
            return String(decoding: UnsafeRawBufferPointer(start: p, count: Int(len)), as: UTF8.self)
        }
        guard let s else { throw .fdt("fdt_get_name", err) }
        return s
    }

    public func path(of n: Node) throws(DeviceTreeError) -> String {
        let o = try check(n)
        var buf = [CChar](repeating: 0, count: 1024)
        let rc = buffer.withUnsafeBytes { raw in
            buf.withUnsafeMutableBufferPointer { fdt_get_path(raw.baseAddress, o, $0.baseAddress, Int32($0.count)) }
        }
        guard rc == 0 else { throw .fdt("fdt_get_path", rc) }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Raw bytes of a property, or nil when the node has no such property.
    public func property(_ name: String, of n: Node) throws(DeviceTreeError) -> [UInt8]? {
        let o = try check(n)
        var err: Int32 = 0
        let value: [UInt8]? = buffer.withUnsafeBytes { raw in
            var len: Int32 = 0
            guard let p = fdt_getprop(raw.baseAddress, o, name, &len) else { err = len; return nil }
            return Array(UnsafeRawBufferPointer(start: p, count: Int(len)))
        }
        if value == nil {
            if err == -FDT_ERR_NOTFOUND { return nil }
            throw .fdt("fdt_getprop(\(name))", err)
        }
        return value
    }

    /// A property as big-endian 32-bit cells; throws when its length is not a multiple of 4.
    public func cells(_ name: String, of n: Node) throws(DeviceTreeError) -> [UInt32]? {
        guard let raw = try property(name, of: n) else { return nil }
        guard raw.count % 4 == 0 else {
            throw .badProperty(what: label, path: try path(of: n), property: name,
                               found: "\(raw.count) bytes", expected: "a multiple of 4 bytes (32-bit cells)")
        }
        return stride(from: 0, to: raw.count, by: 4).map { Self.be32(raw, $0) }
    }

    /// A single-cell property.
    public func u32(_ name: String, of n: Node) throws(DeviceTreeError) -> UInt32? {
        guard let c = try cells(name, of: n) else { return nil }
        guard c.count == 1 else {
            throw .badProperty(what: label, path: try path(of: n), property: name,
                               found: "\(c.count) cells", expected: "exactly 1 cell")
        }
        return c[0]
    }

    /// A NUL-separated string list property.
    public func strings(_ name: String, of n: Node) throws(DeviceTreeError) -> [String]? {
        guard let raw = try property(name, of: n) else { return nil }
        guard raw.last == 0 else {
            throw .badProperty(what: label, path: try path(of: n), property: name,
                               found: "\(raw.count) bytes without a final NUL", expected: "NUL-terminated strings")
        }
        return raw.dropLast().split(separator: 0, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
    }

    public func phandle(of n: Node) throws(DeviceTreeError) -> Phandle? {
        let o = try check(n)
        let v = buffer.withUnsafeBytes { fdt_get_phandle($0.baseAddress, o) }
        return Phandle(rawValue: v)
    }

    public func node(withPhandle ph: Phandle) throws(DeviceTreeError) -> Node? {
        let off = buffer.withUnsafeBytes { fdt_node_offset_by_phandle($0.baseAddress, ph.rawValue) }
        if off == -FDT_ERR_NOTFOUND { return nil }
        guard off >= 0 else { throw .fdt("fdt_node_offset_by_phandle(\(ph.rawValue))", off) }
        return Node(offset: off, generation: generation)
    }

    /// The highest phandle used in the tree (0 when none).
    public func maxPhandle() throws(DeviceTreeError) -> UInt32 {
        var ph: UInt32 = 0
        let rc = buffer.withUnsafeBytes { fdt_find_max_phandle($0.baseAddress, &ph) }
        guard rc == 0 else { throw .fdt("fdt_find_max_phandle", rc) }
        return ph
    }

    /// `/memreserve/` entries of the header's memory reservation block.
    public func memoryReservations() throws(DeviceTreeError) -> [AddressRange] {
        let n = buffer.withUnsafeBytes { fdt_num_mem_rsv($0.baseAddress) }
        guard n >= 0 else { throw .fdt("fdt_num_mem_rsv", n) }
        var out: [AddressRange] = []
        for i in 0..<n {
            var a: UInt64 = 0, s: UInt64 = 0
            let rc = buffer.withUnsafeBytes { fdt_get_mem_rsv($0.baseAddress, i, &a, &s) }
            guard rc == 0 else { throw .fdt("fdt_get_mem_rsv(\(i))", rc) }
            out.append(AddressRange(base: a, size: s))
        }
        return out
    }

    /// `#address-cells`/`#size-cells` of a node as written, not libfdt's defaults:
    /// a guest's layout must come from its tree, never be assumed.
    public func declaredCells(of n: Node) throws(DeviceTreeError) -> (address: UInt32, size: UInt32) {
        let p = try path(of: n)
        guard let ac = try u32("#address-cells", of: n) else {
            throw .missingProperty(what: label, path: p, property: "#address-cells",
                                   reason: "needed to encode reg; it is never assumed")
        }
        guard let sc = try u32("#size-cells", of: n) else {
            throw .missingProperty(what: label, path: p, property: "#size-cells",
                                   reason: "needed to encode reg; it is never assumed")
        }
        guard (1...2).contains(ac) else {
            throw .badProperty(what: label, path: p, property: "#address-cells", found: "\(ac)", expected: "1 or 2")
        }
        guard (1...2).contains(sc) else {
            throw .badProperty(what: label, path: p, property: "#size-cells", found: "\(sc)", expected: "1 or 2")
        }
        return (ac, sc)
    }

    /// Decodes a `reg` property with the given cell counts.
    public func reg(of n: Node, addressCells: UInt32, sizeCells: UInt32) throws(DeviceTreeError) -> [AddressRange]? {
        guard let c = try cells("reg", of: n) else { return nil }
        let per = Int(addressCells + sizeCells)
        guard per > 0, c.count % per == 0, !c.isEmpty else {
            throw .badProperty(what: label, path: try path(of: n), property: "reg",
                               found: "\(c.count) cells",
                               expected: "a non-empty multiple of \(per) (#address-cells \(addressCells) + #size-cells \(sizeCells))")
        }
        func join(_ s: ArraySlice<UInt32>) -> UInt64 { s.reduce(0) { $0 << 32 | UInt64($1) } }
        return stride(from: 0, to: c.count, by: per).map { i in
            AddressRange(base: join(c[i..<i + Int(addressCells)]),
                         size: join(c[i + Int(addressCells)..<i + per]))
        }
    }

    // MARK: - changing

    /// Runs a libfdt write, growing the buffer and retrying while libfdt reports no space.
    private mutating func write(_ operation: String, _ body: (UnsafeMutableRawPointer) -> Int32) throws(DeviceTreeError) -> Int32 {
        while true {
            let rc = buffer.withUnsafeMutableBytes { body($0.baseAddress!) }
            if rc == -FDT_ERR_NOSPACE {
                try grow(by: max(buffer.count, 4096))
                continue
            }
            guard rc >= 0 else { throw .fdt(operation, rc) }
            generation &+= 1
            return rc
        }
    }

    /// Reopens the tree in a larger buffer (`fdt_open_into`), keeping its contents.
    mutating func grow(by extra: Int) throws(DeviceTreeError) {
        let newSize = buffer.count + extra
        guard newSize <= Self.maxSize else {
            throw .invalidValue(field: "\(label) size", value: "\(newSize) bytes", limit: "at most \(Self.maxSize) bytes")
        }
        var bigger = [UInt8](repeating: 0, count: newSize)
        let rc = buffer.withUnsafeBytes { src in
            bigger.withUnsafeMutableBytes { fdt_open_into(src.baseAddress, $0.baseAddress, Int32(newSize)) }
        }
        guard rc == 0 else { throw .fdt("fdt_open_into", rc) }
        buffer = bigger
        generation &+= 1
    }

    /// Adds a child node; returns it (older `Node` values become stale).
    @discardableResult
    public mutating func addSubnode(_ name: String, to parent: Node) throws(DeviceTreeError) -> Node {
        let p = try check(parent)
        let parentPath = try path(of: parent)
        let off = try write("fdt_add_subnode(\(parentPath), \(name))") { fdt_add_subnode($0, p, name) }
        return Node(offset: off, generation: generation)
    }

    /// Sets a property to raw bytes. Takes the node's path because growing the
    /// buffer moves offsets between the lookup and the write.
    public mutating func setProperty(_ name: String, bytes value: [UInt8], at nodePath: String) throws(DeviceTreeError) {
        _ = try write("fdt_setprop(\(nodePath), \(name))") { fdt in
            let off = fdt_path_offset(fdt, nodePath)
            guard off >= 0 else { return off }
            return value.withUnsafeBytes { fdt_setprop(fdt, off, name, $0.baseAddress, Int32($0.count)) }
        }
    }

    public mutating func setProperty(_ name: String, cells: [UInt32], at nodePath: String) throws(DeviceTreeError) {
        try setProperty(name, bytes: cells.flatMap(bigEndianBytes), at: nodePath)
    }

    public mutating func setProperty(_ name: String, strings: [String], at nodePath: String) throws(DeviceTreeError) {
        try setProperty(name, bytes: strings.flatMap { Array($0.utf8) + [0] }, at: nodePath)
    }

    /// A boolean (empty) property such as `no-map`.
    public mutating func setProperty(_ name: String, at nodePath: String) throws(DeviceTreeError) {
        try setProperty(name, bytes: [], at: nodePath)
    }

    /// Adds a child node by parent path; returns the child's path.
    @discardableResult
    public mutating func addSubnode(_ name: String, at parentPath: String) throws(DeviceTreeError) -> String {
        _ = try write("fdt_add_subnode(\(parentPath), \(name))") { fdt in
            let p = fdt_path_offset(fdt, parentPath)
            guard p >= 0 else { return p }
            return fdt_add_subnode(fdt, p, name)
        }
        return parentPath == "/" ? "/" + name : parentPath + "/" + name
    }

    /// Applies `overlay` to this tree with `fdt_overlay_apply`. libfdt consumes
    /// (and on failure may damage) both buffers, so it works on copies and this
    /// tree changes only on success.
    public mutating func apply(overlay: FlattenedDeviceTree) throws(DeviceTreeError) {
        var ov = overlay.buffer
        var base = [UInt8](repeating: 0, count: buffer.count + ov.count + 4096)
        let open = buffer.withUnsafeBytes { src in
            base.withUnsafeMutableBytes { fdt_open_into(src.baseAddress, $0.baseAddress, Int32($0.count)) }
        }
        guard open == 0 else { throw .fdt("fdt_open_into", open) }
        let rc = base.withUnsafeMutableBytes { b in
            ov.withUnsafeMutableBytes { fdt_overlay_apply(b.baseAddress, $0.baseAddress) }
        }
        guard rc == 0 else { throw .fdt("fdt_overlay_apply", rc) }
        buffer = base
        generation &+= 1
    }
}

func bigEndianBytes(_ v: UInt32) -> [UInt8] {
    [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
}

/// Splits a value into `count` big-endian 32-bit cells, or nil if it does not fit.
func encodeCells(_ v: UInt64, count: UInt32) -> [UInt32]? {
    switch count {
    case 1: return v <= UInt64(UInt32.max) ? [UInt32(v)] : nil
    case 2: return [UInt32(v >> 32), UInt32(v & 0xffff_ffff)]
    default: return nil
    }
}
