import Foundation
import CPVZShim
#if canImport(Glibc)
import Glibc
#endif

/// A private directory under /tmp for one test.
final class TempDir {
    let path: String
    init(_ name: String = #function) {
        path = "/tmp/pvz-deploy-\(getpid())-\(name.filter { $0.isLetter || $0.isNumber }.prefix(24))-\(UInt32.random(in: 0...UInt32.max))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chmod(path, 0o755)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { "\(path)/\(name)" }
}

func fileMode(_ path: String) -> (mode: mode_t, uid: uid_t, gid: gid_t, kind: mode_t)? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return nil }
    return (st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_mode & S_IFMT)
}

/// Runs a program and returns its exit status and combined output.
@discardableResult
func run(_ argv: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: argv[0])
    p.arguments = Array(argv.dropFirst())
    if let environment { p.environment = environment }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Connects as another user (setpriv) and reports whether the server kept the
/// connection open: a refused front-end is closed at once (EOF within 1 s).
func connectionKeptOpen(path: String, uid: UInt32, gid: UInt32, groups: [UInt32] = []) throws -> Bool {
    let script = """
    import socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sys.argv[1])
    except OSError as e:
        print("connect-failed", e); sys.exit(0)
    s.settimeout(1.0)
    try:
        d = s.recv(1)
        print("closed" if d == b"" else "data")
    except socket.timeout:
        print("open")
    """
    let groupArgs = groups.isEmpty ? ["--clear-groups"] : ["--groups=\(groups.map(String.init).joined(separator: ","))"]
    let r = try run(["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(gid)"] + groupArgs + ["/usr/bin/python3", "-c", script, path])
    return r.output.contains("open")
}
