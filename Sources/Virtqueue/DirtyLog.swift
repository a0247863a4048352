import CPVZShim
import Synchronization

/// The front-end's dirty-page log for a live migration (vhost-user
/// `LOG_SHMFD` with `VHOST_F_LOG_ALL`): a bitmap in shared memory, one bit per
/// 4 KiB page of guest physical address space, that QEMU reads and clears at
/// every pass over guest RAM. Every page the daemon writes while the
/// front-end logs must be marked, after the write: a page written and not
/// marked reaches the destination stale.
///
/// One per connection, shared by its writers on any thread (the guest thread
/// for used rings, answers and events; the firmware thread for its ring and
/// targets; the register mirror). While nothing is logged a write costs one
/// relaxed load; while logging, one lock per mark, held by this guest's own
/// threads only.
public final class DirtyLog: @unchecked Sendable {
    /// VHOST_LOG_PAGE.
    public static let pageSize: UInt64 = 0x1000
    /// Largest log mapped: 1 GiB of bitmap covers 32 TiB of guest physical space.
    public static let maxBytes: UInt64 = 1 << 30

    private struct Log: @unchecked Sendable {
        var region: MappedRegion?
        var bytes: UInt64 = 0
        var failure: String?
    }
    private let log = Mutex<Log>(Log())
    /// VHOST_F_LOG_ALL negotiated: every write is to be marked.
    private let logging = Atomic<Bool>(false)

    public init() {}

    /// Whether VHOST_F_LOG_ALL is on.
    public var logAll: Bool { logging.load(ordering: .relaxed) }
    /// Bytes of the mapped log (0: none).
    public var size: UInt64 { log.withLock { $0.bytes } }
    /// Why a write may be missing from the front-end's log (a log that could
    /// not be mapped, a write while logging with none): the copy of guest RAM
    /// cannot be trusted, so the state save refuses. Cleared by the next log
    /// mapped and at reset.
    public var failure: String? { log.withLock { $0.failure } }

    /// SET_LOG_BASE: maps `size` bytes of `fd` from `offset` (the fd is not
    /// taken) in place of any earlier log.
    public func install(fd: Int32, size: UInt64, offset: UInt64) throws(DirtyLogError) {
        var made: Result<MappedRegion, DirtyLogError>
        if size == 0 || size > Self.maxBytes {
            made = .failure(.badSize(size, limit: Self.maxBytes))
        } else {
            do {
                made = .success(try MappedRegion(fd: fd, MemoryRegionDescriptor(guestPhysAddr: 0, size: size, userAddr: 0, mmapOffset: offset),
                                                 index: 0))
            } catch {
                made = .failure(.mapFailed(error.description))
            }
        }
        // The front-end now reads the new log only: on failure nothing marks the old one either.
        let old = log.withLock { l -> MappedRegion? in
            defer {
                switch made {
                case .success(let r): l.region = r; l.bytes = size; l.failure = nil
                case .failure(let e): l.region = nil; l.bytes = 0; l.failure = e.description
                }
            }
            return l.region
        }
        withExtendedLifetime(old) {}   // unmapped here, outside the lock
        if case .failure(let e) = made { throw e }
    }

    /// SET_FEATURES: whether VHOST_F_LOG_ALL is on.
    public func setLogAll(_ on: Bool) {
        logging.store(on, ordering: .releasing)
    }

    /// The connection ends: no more logging, the log is unmapped.
    public func reset() {
        logging.store(false, ordering: .releasing)
        let old = log.withLock { l -> MappedRegion? in
            defer { l.region = nil; l.bytes = 0; l.failure = nil }
            return l.region
        }
        withExtendedLifetime(old) {}
    }

    /// Marks the pages of `[gpa, gpa + length)` dirty. Call after the write.
    /// Pages beyond the log (the front-end sizes it to cover guest RAM) are
    /// not marked.
    @inline(__always)
    public func mark(gpa: UInt64, length: UInt64) {
        guard length > 0, logging.load(ordering: .relaxed) else { return }
        markPages(gpa, length)
    }

    private func markPages(_ gpa: UInt64, _ length: UInt64) {
        let first = gpa / Self.pageSize
        let (end, wraps) = gpa.addingReportingOverflow(length - 1)
        let last = wraps ? UInt64.max / Self.pageSize : end / Self.pageSize
        log.withLock { l in
            guard let r = l.region else {
                if l.failure == nil { l.failure = "guest memory written at 0x\(String(gpa, radix: 16)) while VHOST_F_LOG_ALL was on and no dirty log was mapped" }
                return
            }
            let pages = l.bytes * 8
            guard first < pages else { return }
            var page = first
            let stop = min(last, pages - 1)
            while page <= stop {
                pvz_or_release_u8(r.host + Int(page / 8), UInt8(1) << UInt8(page % 8))
                page += 1
            }
        }
    }
}

public enum DirtyLogError: Error, Equatable, CustomStringConvertible {
    case badSize(UInt64, limit: UInt64)
    case mapFailed(String)

    public var description: String {
        switch self {
        case .badSize(let s, let l): return "dirty log of \(s) bytes (must be 1...\(l))"
        case .mapFailed(let why): return "dirty log could not be mapped: \(why)"
        }
    }
}
