import CLibFDT

/// Everything that can go wrong building, reading or merging a device tree.
/// Each case carries the offending value and the limit it broke, so that a
/// message printed by the daemon or `pvzctl` is enough to fix the input.
public enum DeviceTreeError: Error, CustomStringConvertible, Equatable, Sendable {
    /// libfdt refused an operation; `message` is `fdt_strerror(code)`.
    case libfdt(operation: String, code: Int32, message: String)
    /// The bytes are not a usable flattened device tree (`what` names the input).
    case notADeviceTree(what: String, reason: String)
    /// A node the operation needs is absent.
    case missingNode(what: String, path: String, reason: String)
    /// A property the operation needs is absent.
    case missingProperty(what: String, path: String, property: String, reason: String)
    /// A property is present but its value is unusable.
    case badProperty(what: String, path: String, property: String, found: String, expected: String)
    /// A field of the guest description is out of its range.
    case invalidValue(field: String, value: String, limit: String)
    /// Two address ranges overlap that must not.
    case overlap(first: String, firstRange: AddressRange, second: String, secondRange: AddressRange)
    /// A range lies (partly) outside the range that must contain it.
    case outside(inner: String, innerRange: AddressRange, outer: String, outerRanges: [AddressRange])
    /// Merging would overwrite something the base already has.
    case conflict(path: String, reason: String)
    /// A node handle was used after the tree changed under it.
    case staleNode(path: String)

    public var description: String {
        switch self {
        case let .libfdt(operation, code, message):
            return "\(operation) failed: \(message) (libfdt error \(code))"
        case let .notADeviceTree(what, reason):
            return "\(what) is not a usable flattened device tree: \(reason)"
        case let .missingNode(what, path, reason):
            return "\(what) has no node \(path): \(reason)"
        case let .missingProperty(what, path, property, reason):
            return "\(what): node \(path) has no property \(property): \(reason)"
        case let .badProperty(what, path, property, found, expected):
            return "\(what): \(path) property \(property) is \(found), expected \(expected)"
        case let .invalidValue(field, value, limit):
            return "\(field) = \(value) is invalid: \(limit)"
        case let .overlap(first, a, second, b):
            return "\(first) \(a) overlaps \(second) \(b)"
        case let .outside(inner, r, outer, outers):
            let list = outers.isEmpty ? "(none)" : outers.map(\.description).joined(separator: ", ")
            return "\(inner) \(r) is not wholly inside \(outer) \(list)"
        case let .conflict(path, reason):
            return "\(path): \(reason)"
        case let .staleNode(path):
            return "node handle for \(path) was used after the tree was modified; look it up again"
        }
    }

    /// Wraps a negative libfdt return value with libfdt's own message.
    static func fdt(_ operation: String, _ code: Int32) -> DeviceTreeError {
        .libfdt(operation: operation, code: code, message: libfdtMessage(code))
    }
}

/// `fdt_strerror` for a (negative) libfdt return code.
public func libfdtMessage(_ code: Int32) -> String {
    guard let p = fdt_strerror(code) else { return "unknown libfdt error" }
    return String(cString: p)
}

/// A half-open range of guest physical addresses (IPAs) `[base, base + size)`.
public struct AddressRange: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var base: UInt64
    public var size: UInt64
    public init(base: UInt64, size: UInt64) { self.base = base; self.size = size }

    /// One past the last byte; nil when `base + size` does not fit 64 bits.
    public var end: UInt64? {
        let (e, o) = base.addingReportingOverflow(size)
        return o ? nil : e
    }
    public func overlaps(_ o: AddressRange) -> Bool {
        guard size > 0, o.size > 0 else { return false }
        let myEnd = end ?? .max, oEnd = o.end ?? .max
        return base < oEnd && o.base < myEnd
    }
    public func contains(_ o: AddressRange) -> Bool {
        guard let myEnd = end, let oEnd = o.end else { return false }
        return o.base >= base && oEnd <= myEnd
    }
    public var description: String {
        let last = end.map { hex($0 &- 1) } ?? "overflow"
        return "[\(hex(base))..\(last)] (\(hex(size)) bytes)"
    }
}

func hex(_ v: some BinaryInteger) -> String { "0x" + String(v, radix: 16) }
