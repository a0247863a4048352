import CPVZShim
#if canImport(Glibc)
import Glibc
#endif

/// One region of the front-end's memory table, as the vhost-user message gives it.
public struct MemoryRegionDescriptor: Equatable, Sendable {
    /// Guest physical address of the region's first byte.
    public var guestPhysAddr: UInt64
    public var size: UInt64
    /// The front-end's own virtual address of the region (vring addresses use it).
    public var userAddr: UInt64
    /// Offset of the region inside the passed file descriptor.
    public var mmapOffset: UInt64
    public init(guestPhysAddr: UInt64, size: UInt64, userAddr: UInt64, mmapOffset: UInt64) {
        self.guestPhysAddr = guestPhysAddr
        self.size = size
        self.userAddr = userAddr
        self.mmapOffset = mmapOffset
    }
}

public enum GuestMemoryError: Error, Equatable, CustomStringConvertible {
    case tooManyRegions(count: Int, limit: Int)
    case emptyRegion(index: Int)
    case wraps(index: Int, what: String, start: UInt64, size: UInt64)
    case overlap(index: Int, other: Int, what: String)
    case fileTooSmall(index: Int, needed: UInt64, actual: UInt64)
    case mmapFailed(index: Int, size: UInt64, errno: Int32)
    case badFileDescriptor(index: Int, errno: Int32)
    case noSuchRegion(guestPhysAddr: UInt64, size: UInt64)
    case offsetTooLarge(index: Int, offset: UInt64, limit: UInt64)
    case tooManyMappings(index: Int, limit: Int)

    public var description: String {
        switch self {
        case .tooManyRegions(let c, let l): return "memory table has \(c) regions, limit is \(l)"
        case .emptyRegion(let i): return "memory region \(i) has size 0"
        case .wraps(let i, let w, let s, let z):
            return "memory region \(i): \(w) 0x\(String(s, radix: 16)) + size 0x\(String(z, radix: 16)) wraps past 2^64"
        case .overlap(let i, let o, let w): return "memory region \(i) overlaps region \(o) in \(w) space"
        case .fileTooSmall(let i, let n, let a):
            return "memory region \(i): fd holds \(a) bytes, region needs offset+size = \(n)"
        case .mmapFailed(let i, let s, let e): return "memory region \(i): mmap of \(s) bytes failed: errno \(e) (\(String(cString: strerror(e))))"
        case .badFileDescriptor(let i, let e): return "memory region \(i): fd unusable: errno \(e) (\(String(cString: strerror(e))))"
        case .noSuchRegion(let g, let s):
            return "no memory region with guest address 0x\(String(g, radix: 16)) size 0x\(String(s, radix: 16))"
        case .offsetTooLarge(let i, let o, let l):
            return "memory region \(i): mmap offset 0x\(String(o, radix: 16)) exceeds the largest file offset 0x\(String(l, radix: 16))"
        case .tooManyMappings(let i, let l):
            return "memory region \(i): the daemon already guards \(l) guest-memory mappings (all guests together)"
        }
    }
}

/// A region mapped into this process. Unmapped when the last reference goes:
/// a firmware thread that still holds an old memory table keeps its mapping
/// alive until it lets go, so a memory-table change can never pull pages out
/// from under it.
public final class MappedRegion: @unchecked Sendable {
    public let descriptor: MemoryRegionDescriptor
    /// Host address of the region's first byte (mapping base + page remainder of the offset).
    public let host: UnsafeMutableRawPointer
    private let mappingBase: UnsafeMutableRawPointer
    private let mappingLength: Int

    /// The SIGBUS guard's slot for this mapping (CPVZShim guard.c).
    private let guardSlot: Int32

    /// Maps `size` bytes of `fd` at `mmapOffset`. Does not take ownership of `fd`.
    /// Every number comes from the front-end: nothing here may trap on it.
    public init(fd: Int32, _ d: MemoryRegionDescriptor, index: Int) throws(GuestMemoryError) {
        if d.size == 0 { throw .emptyRegion(index: index) }
        let (needed, wraps) = d.mmapOffset.addingReportingOverflow(d.size)
        if wraps { throw .wraps(index: index, what: "mmap offset", start: d.mmapOffset, size: d.size) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw .badFileDescriptor(index: index, errno: errno) }
        // A regular file (memfd) shorter than the region would SIGBUS us on access.
        // (A file that shrinks later is the SIGBUS guard's job.)
        if (st.st_mode & S_IFMT) == S_IFREG, let size = UInt64(exactly: st.st_size), size < needed {
            throw .fileTooSmall(index: index, needed: needed, actual: size)
        }
        let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        let alignedOffset = d.mmapOffset & ~(page - 1)
        let delta = d.mmapOffset - alignedOffset
        let (length, o) = d.size.addingReportingOverflow(delta)
        guard !o, let mapLength = Int(exactly: length) else { throw .mmapFailed(index: index, size: d.size, errno: EINVAL) }
        // off_t is signed: an offset of 2^63 or more is no file offset at all
        // (and, for a non-regular fd such as an eventfd, nothing checked it above).
        guard let fileOffset = off_t(exactly: alignedOffset) else {
            throw .offsetTooLarge(index: index, offset: d.mmapOffset, limit: UInt64(off_t.max))
        }
        let p = mmap(nil, mapLength, PROT_READ | PROT_WRITE, MAP_SHARED, fd, fileOffset)
        guard let p, p != MAP_FAILED else { throw .mmapFailed(index: index, size: d.size, errno: errno) }
        let slot = pvz_guard_register(p, mapLength)
        if slot < 0 {
            munmap(p, mapLength)
            throw .tooManyMappings(index: index, limit: Int(PVZ_GUARD_SLOTS))
        }
        self.guardSlot = slot
        self.descriptor = d
        self.mappingBase = p
        self.mappingLength = mapLength
        self.host = p + Int(delta)
    }

    /// True once an access to this region raised SIGBUS (the front-end shrank
    /// the file behind it): its pages now read as zeros and the guest is broken.
    public var faulted: Bool { pvz_guard_faults(guardSlot) != 0 }

    deinit {
        // Out of the guard's table first: a fault after this would be a daemon bug, not the guest's.
        pvz_guard_unregister(guardSlot)
        munmap(mappingBase, mappingLength)
    }
}

/// The guest's RAM as the front-end's memory table describes it. Immutable:
/// a table change builds a new `GuestMemory`, so readers on other threads hold
/// a consistent snapshot without locks.
public final class GuestMemory: @unchecked Sendable {
    /// Limit on regions: QEMU sends at most 8 with SET_MEM_TABLE and we
    /// advertise this many slots for ADD_MEM_REG.
    public static let maxRegions = 32

    public let regions: [MappedRegion]  // sorted by guest physical address
    /// The connection's dirty-page log: whoever writes through this table
    /// marks what it wrote (a migration copies those pages again).
    public let dirtyLog: DirtyLog?

    public static let empty = GuestMemory(validated: [], dirtyLog: nil)

    /// A table with no regions yet whose writers will log to `dirtyLog`.
    public static func empty(dirtyLog: DirtyLog?) -> GuestMemory { GuestMemory(validated: [], dirtyLog: dirtyLog) }

    private init(validated: [MappedRegion], dirtyLog: DirtyLog?) {
        self.regions = validated
        self.dirtyLog = dirtyLog
    }

    /// Validates descriptors (no wrap, no overlap in guest-physical or front-end
    /// address space) before mapping anything.
    public static func validate(_ ds: [MemoryRegionDescriptor]) throws(GuestMemoryError) {
        if ds.count > maxRegions { throw .tooManyRegions(count: ds.count, limit: maxRegions) }
        for (i, d) in ds.enumerated() {
            if d.size == 0 { throw .emptyRegion(index: i) }
            if d.guestPhysAddr.addingReportingOverflow(d.size - 1).overflow {
                throw .wraps(index: i, what: "guest address", start: d.guestPhysAddr, size: d.size)
            }
            if d.userAddr.addingReportingOverflow(d.size - 1).overflow {
                throw .wraps(index: i, what: "front-end address", start: d.userAddr, size: d.size)
            }
            if d.mmapOffset.addingReportingOverflow(d.size).overflow {
                throw .wraps(index: i, what: "mmap offset", start: d.mmapOffset, size: d.size)
            }
        }
        for i in 0..<ds.count {
            for j in 0..<i {
                let a = ds[i], b = ds[j]
                if a.guestPhysAddr <= b.guestPhysAddr + (b.size - 1) && b.guestPhysAddr <= a.guestPhysAddr + (a.size - 1) {
                    throw .overlap(index: i, other: j, what: "guest physical")
                }
                if a.userAddr <= b.userAddr + (b.size - 1) && b.userAddr <= a.userAddr + (a.size - 1) {
                    throw .overlap(index: i, other: j, what: "front-end virtual")
                }
            }
        }
    }

    /// Maps a whole table. `fds[i]` backs `descriptors[i]`; fds are not closed here.
    public convenience init(descriptors: [MemoryRegionDescriptor], fds: [Int32], dirtyLog: DirtyLog? = nil) throws(GuestMemoryError) {
        try GuestMemory.validate(descriptors)
        var mapped: [MappedRegion] = []
        mapped.reserveCapacity(descriptors.count)
        for (i, d) in descriptors.enumerated() {
            mapped.append(try MappedRegion(fd: fds[i], d, index: i))
        }
        self.init(validated: mapped.sorted { $0.descriptor.guestPhysAddr < $1.descriptor.guestPhysAddr }, dirtyLog: dirtyLog)
    }

    /// A new table with one more region (ADD_MEM_REG).
    public func adding(_ region: MappedRegion) throws(GuestMemoryError) -> GuestMemory {
        let all = regions.map(\.descriptor) + [region.descriptor]
        try GuestMemory.validate(all)
        return GuestMemory(validated: (regions + [region]).sorted { $0.descriptor.guestPhysAddr < $1.descriptor.guestPhysAddr },
                           dirtyLog: dirtyLog)
    }

    /// A new table without the region matching `d` by guest address and size (REM_MEM_REG).
    public func removing(_ d: MemoryRegionDescriptor) throws(GuestMemoryError) -> GuestMemory {
        guard let i = regions.firstIndex(where: { $0.descriptor.guestPhysAddr == d.guestPhysAddr && $0.descriptor.size == d.size }) else {
            throw .noSuchRegion(guestPhysAddr: d.guestPhysAddr, size: d.size)
        }
        var r = regions
        r.remove(at: i)
        return GuestMemory(validated: r, dirtyLog: dirtyLog)
    }

    /// Host pointer for `length` bytes at guest physical address `gpa`, only if
    /// the whole range lies inside one region. `length` 0 is treated as 1 byte.
    @inlinable
    public func translate(gpa: UInt64, length: UInt64) -> UnsafeMutableRawPointer? {
        find(gpa, length) { $0.guestPhysAddr }
    }

    /// Same, for an address in the front-end's virtual address space (vring addresses).
    public func translate(userAddr: UInt64, length: UInt64) -> UnsafeMutableRawPointer? {
        find(userAddr, length) { $0.userAddr }
    }

    /// The region whose [start(d), start(d)+size) holds the whole range; no wrap.
    @inlinable @inline(__always)
    func find(_ addr: UInt64, _ length: UInt64, _ start: (MemoryRegionDescriptor) -> UInt64) -> UnsafeMutableRawPointer? {
        let len = length == 0 ? 1 : length
        let (lastByte, o) = addr.addingReportingOverflow(len - 1)
        if o { return nil }
        for r in regions {
            let d = r.descriptor
            let base = start(d)
            if addr >= base && lastByte <= base + (d.size - 1) {
                return r.host + Int(addr - base)
            }
        }
        return nil
    }

    /// True when `[gpa, gpa+size)` lies wholly inside one region.
    public func contains(gpa: UInt64, size: UInt64) -> Bool {
        size > 0 && translate(gpa: gpa, length: size) != nil
    }

    /// True when any region of this table took a SIGBUS (see `MappedRegion.faulted`).
    public var faulted: Bool {
        for r in regions where r.faulted { return true }
        return false
    }

    /// Saturates at UInt64.max (regions that cover all 2^64 addresses).
    public var totalSize: UInt64 {
        regions.reduce(0) { t, r in
            let (sum, o) = t.addingReportingOverflow(r.descriptor.size)
            return o ? .max : sum
        }
    }
}
