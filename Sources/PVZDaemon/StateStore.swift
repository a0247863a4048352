// FoundationEssentials, not Foundation: keeps libFoundation and ICU out of the daemon (docs/benchmarks.md, memory).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import PVZContract
import PVZServer
import Synchronization

/// Keeps the ledger on disk so a daemon restart finds the heaps, online VMs
/// and priorities it had (QEMU reconnects; the guest never knows). Written
/// only when the ledger changes (never on the trivial-call path), atomically
/// and durably: temp file (mode 0600), fsync, rename, fsync of the directory,
/// so a SIGKILL or a power cut leaves the old or the new state, never half.
public final class StateStore: Sendable {
    public let path: String
    private let writing = Mutex<Void>(())
    /// A saved ledger is a few KiB; anything far larger is not one of ours.
    public static let maxFileBytes = 16 << 20

    public init(path: String) { self.path = path }

    public func load() throws(ConfigError) -> PersistedState? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError("cannot read state file \(path)") }
        return try Self.decode(data, source: path)
    }

    /// The state file's contents as a ledger (what `load` and the fuzzer run).
    public static func decode(_ data: Data, source: String = "state file") throws(ConfigError) -> PersistedState {
        guard data.count <= maxFileBytes else {
            throw ConfigError("state file \(source) is \(data.count) bytes, limit \(maxFileBytes): not a saved ledger")
        }
        do { return try JSONDecoder().decode(PersistedState.self, from: data) } catch {
            throw ConfigError("state file \(source) is not a saved ledger: \(error)")
        }
    }

    /// Returns an error text instead of throwing: a failed save is logged, the guest's call stands.
    @discardableResult
    public func save(_ s: PersistedState) -> String? {
        writing.withLock { _ -> String? in
            let data: Data
            do {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                data = try enc.encode(s)
            } catch {
                return "saving state to \(path): \(error)"
            }
            let dir = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? ""
            if !dir.isEmpty {
                do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                    return "saving state to \(path): \(error)"
                }
            }
            let tmp = path + ".tmp"
            if let e = Self.writeDurably(data, to: tmp) { return e }
            if rename(tmp, path) != 0 { return "rename \(tmp) -> \(path): \(String(cString: strerror(errno))) (errno \(errno))" }
            // The rename itself is durable only once the directory is.
            let d = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if d < 0 { return "open \(dir) to fsync: errno \(errno)" }
            defer { close(d) }
            if fsync(d) != 0 { return "fsync \(dir): \(String(cString: strerror(errno))) (errno \(errno))" }
            return nil
        }
    }

    /// Writes `data` to a fresh file readable by the daemon's user only, and fsyncs it.
    private static func writeDurably(_ data: Data, to file: String) -> String? {
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd < 0 { return "cannot write \(file): \(String(cString: strerror(errno))) (errno \(errno))" }
        defer { close(fd) }
        // The ledger says which VMs run where: not for other users, whatever the umask or an older file's mode.
        if fchmod(fd, 0o600) != 0 { return "chmod 0600 \(file): errno \(errno)" }
        let err: String? = data.withUnsafeBytes { b in
            var off = 0
            while off < b.count {
                let r = write(fd, b.baseAddress! + off, b.count - off)
                if r < 0 { if errno == EINTR { continue }; return "write \(file): \(String(cString: strerror(errno))) (errno \(errno))" }
                off += r
            }
            return nil
        }
        if let err { return err }
        if fsync(fd) != 0 { return "fsync \(file): \(String(cString: strerror(errno))) (errno \(errno))" }
        return nil
    }
}
