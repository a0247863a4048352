import PVZContract
// The heap ledger's record type and the GPU PA windows.
//
// PA layout: OSID n owns [n << 36, (n + 1) << 36). Its lower half maps the
// carve-out 1:1 (PA = window + (IPA - carve-out start)), so the register bank
// and host-origin heaps have fixed PAs; its upper half holds guest-origin
// heaps (the mapped firmware heap), so a guest's RAM outside the carve-out
// never aliases another OSID's window.

public struct HeapRecord: Equatable, Sendable, CustomStringConvertible {
    public var osid: OSID
    public var heap: PhysHeap
    public var origin: HeapOrigin
    public var ipa: IPARange
    public var pa: PA
    public init(osid: OSID, heap: PhysHeap, origin: HeapOrigin, ipa: IPARange, pa: PA) {
        self.osid = osid; self.heap = heap; self.origin = origin; self.ipa = ipa; self.pa = pa
    }
    public var size: UInt64 { ipa.size }
    /// PA of an IPA inside this heap.
    public func pa(of address: IPA) -> PA? {
        guard address.rawValue >= ipa.start.rawValue, address.rawValue <= ipa.last else { return nil }
        return PA(pa.rawValue + (address.rawValue - ipa.start.rawValue))
    }
    /// IPA of a PA inside this heap.
    public func ipa(of address: PA) -> IPA? {
        guard address.rawValue >= pa.rawValue, address.rawValue - pa.rawValue < ipa.size else { return nil }
        return IPA(ipa.start.rawValue + (address.rawValue - pa.rawValue))
    }
    public var description: String {
        "\(osid) \(heap) origin \(origin) IPA \(ipa) \(pa)"
    }
}

public enum PAWindow {
    /// First PA of an OSID's window.
    public static func base(_ osid: OSID) -> PA { PA(UInt64(osid.rawValue) << PVZLayout.paWindowShift) }
    /// PA of a byte at `offset` in the OSID's carve-out.
    public static func carveout(_ osid: OSID, offset: UInt64) -> PA { PA(base(osid).rawValue + offset) }
    /// PA where the OSID's guest-origin firmware heap starts.
    public static func guestHeap(_ osid: OSID) -> PA { PA(base(osid).rawValue + PVZLayout.paGuestHalf) }
    /// The OSID whose window holds a PA.
    public static func osid(of pa: PA) -> OSID { OSID(UInt32(truncatingIfNeeded: pa.rawValue >> PVZLayout.paWindowShift)) }
}

extension IPA {
    public var isPageAligned: Bool { rawValue & (PVZLayout.pageSize - 1) == 0 }
}

extension IPARange {
    public var isPageAligned: Bool { start.isPageAligned && size & (PVZLayout.pageSize - 1) == 0 }
    /// The sub-range at `offset` bytes from the start; nil if it does not fit.
    public func slice(offset: UInt64, size: UInt64) -> IPARange? {
        guard offset < self.size, size <= self.size - offset else { return nil }
        return IPARange(start: IPA(start.rawValue + offset), size: size)
    }
}
