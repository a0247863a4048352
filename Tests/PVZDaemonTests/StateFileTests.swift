import Testing
import Foundation
import PVZContract
import PVZDaemon
import PVZServer

/// The state file (issue 10): mode 0600 whatever the umask or an older
/// file's mode, no temp file left behind, and junk refused with a reason.
@Suite struct StateFileTests {
    let dir = "/tmp/pvz-state-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    var path: String { dir + "/sub/state.json" }
    let sample = try! StateStore.decode(Data(#"{"version":1,"guests":[],"priorities":[1,2],"isolationThreshold":3,"hcsDeadline":4}"#.utf8))

    func mode(_ p: String) -> mode_t {
        var st = stat()
        return stat(p, &st) == 0 ? st.st_mode & 0o777 : 0
    }

    @Test func savedFileIsPrivateAndWhole() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let old = umask(0)
        defer { umask(old) }
        let store = StateStore(path: path)
        #expect(store.save(sample) == nil)
        #expect(mode(path) == 0o600)
        #expect(try store.load() == sample)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
    }

    @Test func olderWorldReadableFileBecomesPrivate() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: path + ".tmp", contents: Data("x".utf8), attributes: [.posixPermissions: 0o644]))
        #expect(FileManager.default.createFile(atPath: path, contents: Data("{}".utf8), attributes: [.posixPermissions: 0o644]))
        #expect(StateStore(path: path).save(sample) == nil)
        #expect(mode(path) == 0o600)
    }

    @Test(arguments: ["", "null", "[]", "{\"version\": 1e400}", "{\"version\":1,\"guests\":[{\"osid\":-1}]}"])
    func junkIsRefused(_ text: String) {
        #expect(throws: ConfigError.self) { try StateStore.decode(Data(text.utf8)) }
    }
}
