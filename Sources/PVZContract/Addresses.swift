// Typed addresses and identifiers (spec 3 and 9). An IPA (guest physical
// address), a PA (an address in the emulated GPU's physical space) and a host
// virtual address are all 64-bit integers; mixing them up is the classic
// para-virtualization bug, so each has its own type and conversions are explicit.

/// The OS identifier the VM manager gives a guest: 0 is the host (driver
/// domain), guests are 1..<maxOSIDs. Never taken from guest input.
public struct OSID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ value: UInt32) { self.rawValue = value }
    public static let host = OSID(0)
    public static func < (a: OSID, b: OSID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "OSID \(rawValue)" }
}

/// A guest physical address (intermediate physical address in Arm terms).
public struct IPA: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    public static func < (a: IPA, b: IPA) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "IPA 0x" + String(rawValue, radix: 16) }
}

/// An address in the emulated GPU's physical address space.
public struct PA: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    public static func < (a: PA, b: PA) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "PA 0x" + String(rawValue, radix: 16) }
}

/// A non-empty, non-wrapping range of guest physical addresses.
public struct IPARange: Hashable, Sendable, CustomStringConvertible {
    public let start: IPA
    public let size: UInt64
    /// nil when the range is empty or wraps past 2^64.
    public init?(start: IPA, size: UInt64) {
        guard size > 0 else { return nil }
        let (_, o) = start.rawValue.addingReportingOverflow(size - 1)
        if o { return nil }
        self.start = start
        self.size = size
    }
    /// Last byte, inclusive (never overflows).
    public var last: UInt64 { start.rawValue + (size - 1) }
    public func contains(_ other: IPARange) -> Bool {
        other.start.rawValue >= start.rawValue && other.last <= last
    }
    public func overlaps(_ other: IPARange) -> Bool {
        start.rawValue <= other.last && other.start.rawValue <= last
    }
    public var description: String {
        "[0x\(String(start.rawValue, radix: 16)), +0x\(String(size, radix: 16)))"
    }
}
