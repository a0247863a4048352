import Foundation
import PVZServer
import Synchronization

/// Keeps the ledger on disk so a daemon restart finds the heaps, online VMs
/// and priorities it had (QEMU reconnects; the guest never knows). Written
/// only when the ledger changes (never on the trivial-call path), atomically
/// (temp file + rename), so a SIGKILL leaves the old or the new state, never half.
public final class StateStore: Sendable {
    public let path: String
    private let writing = Mutex<Void>(())

    public init(path: String) { self.path = path }

    public func load() throws(ConfigError) -> PersistedState? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError("cannot read state file \(path)") }
        do { return try JSONDecoder().decode(PersistedState.self, from: data) } catch {
            throw ConfigError("state file \(path) is not a saved ledger: \(error)")
        }
    }

    /// Returns an error text instead of throwing: a failed save is logged, the guest's call stands.
    @discardableResult
    public func save(_ s: PersistedState) -> String? {
        writing.withLock { _ -> String? in
            do {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                let data = try enc.encode(s)
                let dir = (path as NSString).deletingLastPathComponent
                if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
                let tmp = path + ".tmp"
                guard FileManager.default.createFile(atPath: tmp, contents: data) else { return "cannot write \(tmp)" }
                if rename(tmp, path) != 0 { return "rename \(tmp) -> \(path): errno \(errno)" }
                return nil
            } catch {
                return "saving state to \(path): \(error)"
            }
        }
    }
}
