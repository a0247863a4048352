import CSafeSockets
#if canImport(Glibc)
import Glibc
#endif

/// The file a listening socket was bound to, so it is only removed while it
/// is still ours and status can tell whether QEMU would still find it.
public struct SocketFileIdentity: Sendable, Equatable {
    public var path: String
    public var device: UInt64
    public var inode: UInt64

    /// The path still names the socket file this identity was taken from.
    public var isInPlace: Bool {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { return false }
        return UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }

    /// Removes the socket file, but only if it is still the one we bound.
    public func unlinkIfOurs() {
        if isInPlace { unlink(path) }
    }
}

/// Listening Unix sockets that never take over or delete what is not theirs.
public enum SafeListener {
    public static let maxPathBytes = 107

    /// Binds and listens on `path`:
    /// - a path that exists and is not a socket is refused (never deleted);
    /// - a socket some process still listens on is refused, naming the process;
    /// - the socket is bound under a temporary name in the same directory,
    ///   given its mode and group, and renamed into place only when every check
    ///   passed (RENAME_NOREPLACE: a daemon that won a race keeps its socket).
    public static func bind(path: String, access: SocketAccess, backlog: Int32 = 1) throws(SocketSetupError) -> (fd: Int32, identity: SocketFileIdentity) {
        guard !path.isEmpty, path.utf8.count <= maxPathBytes else {
            throw SocketSetupError("socket path \"\(path)\" is \(path.utf8.count) bytes; a Unix socket path must be 1...\(maxPathBytes) bytes")
        }
        try SocketAccess.checkMode(access.mode)
        let dir = parentDirectory(of: path)
        try prepareDirectory(dir)
        let tempPath = try temporaryName(in: dir, for: path)
        // Two tries: a stale file is unlinked and the rename retried once; a
        // second EEXIST means another process is binding the same path now.
        for attempt in 0..<2 {
            try checkExisting(path)
            let fd = pvz_unix_bind(tempPath)
            guard fd >= 0 else { throw SocketSetupError("cannot bind a Unix socket at \(tempPath): \(errnoText())") }
            func fail(_ message: String) -> SocketSetupError {
                close(fd)
                unlink(tempPath)
                return SocketSetupError(message)
            }
            if access.owner != nil || access.group != nil,
               chown(tempPath, access.owner ?? uid_t.max, access.group ?? gid_t.max) != 0 {
                throw fail("cannot give socket \(path) owner \(access.owner.map(String.init) ?? "-") group \(access.group.map(String.init) ?? "-"): \(errnoText())")
            }
            if chmod(tempPath, access.mode) != 0 {
                throw fail("cannot set mode 0\(String(access.mode, radix: 8)) on socket \(path): \(errnoText())")
            }
            // A stale socket file (nobody listens, checked above) is replaced.
            var st = stat()
            if lstat(path, &st) == 0 { unlink(path) }
            if pvz_rename_noreplace(tempPath, path) != 0 {
                let e = errno
                if e == EEXIST && attempt == 0 { close(fd); unlink(tempPath); continue }
                throw fail("cannot move socket \(tempPath) into place at \(path): \(errnoText(e))")
            }
            guard lstat(path, &st) == 0 else {
                let e = errno
                close(fd)
                throw SocketSetupError("socket \(path) vanished right after it was bound: \(errnoText(e))")
            }
            let identity = SocketFileIdentity(path: path, device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
            guard listen(fd, backlog) == 0 else {
                let e = errno
                close(fd)
                identity.unlinkIfOurs()
                throw SocketSetupError("cannot listen on \(path): \(errnoText(e))")
            }
            return (fd, identity)
        }
        throw SocketSetupError("socket \(path) keeps reappearing while binding it: another process is binding the same path")
    }

    /// An existing file at `path` is acceptable only as a stale socket.
    static func checkExisting(_ path: String) throws(SocketSetupError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFSOCK else {
            throw SocketSetupError("\(path) exists and is \(fileKind(kind)), not a socket; not replacing it (remove it yourself or choose another path)", errno: EEXIST)
        }
        if let holder = listener(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), path: path) {
            throw SocketSetupError("\(path): \(holder) still listens on this socket; not taking it over (stop that process first, or choose another path)", errno: EADDRINUSE)
        }
    }

    /// Who listens on the socket file (device, inode), or nil if nobody does.
    static func listener(device: UInt64, inode: UInt64, path: String) -> String? {
        var sockInode: UInt64 = 0
        let r = pvz_unix_listener_of(device, inode, &sockInode)
        if r == 1 {
            let holders = processes(holdingSocketInode: sockInode)
            if holders.isEmpty { return "a process (socket inode \(sockInode), not visible in /proc here)" }
            return holders.map { "process \($0.pid) (\($0.name))" }.joined(separator: ", ")
        }
        if r == 0 { return nil }
        // The kernel could not be asked (no sock_diag): fall back to a connect probe.
        let probe = pvz_unix_probe(path) == 1
        return probe ? "a process (it accepted a connection)" : nil
    }

    /// Processes with the socket open, from /proc/PID/fd links "socket:[INODE]".
    public static func processes(holdingSocketInode inode: UInt64) -> [(pid: Int32, name: String)] {
        let want = "socket:[\(inode)]"
        var out: [(Int32, String)] = []
        guard let proc = opendir("/proc") else { return [] }
        defer { closedir(proc) }
        while let e = readdir(proc) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = Int32(name) else { continue }
            guard let fds = opendir("/proc/\(pid)/fd") else { continue }
            var holds = false
            while let f = readdir(fds) {
                let fname = withUnsafeBytes(of: f.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard fname.first?.isNumber == true else { continue }
                var buf = [CChar](repeating: 0, count: 64)
                let n = readlink("/proc/\(pid)/fd/\(fname)", &buf, buf.count - 1)
                if n > 0, String(decoding: buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self) == want { holds = true; break }
            }
            closedir(fds)
            if holds { out.append((pid, commandName(pid))) }
        }
        return out
    }

    static func commandName(_ pid: Int32) -> String {
        guard let f = fopen("/proc/\(pid)/comm", "r") else { return "?" }
        defer { fclose(f) }
        var buf = [CChar](repeating: 0, count: 64)
        guard fgets(&buf, Int32(buf.count), f) != nil else { return "?" }
        return String(decoding: buf.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func fileKind(_ kind: mode_t) -> String {
        switch kind {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFLNK: return "a symbolic link"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        default: return "a special file"
        }
    }

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Creates a missing directory (0755, like /run/vhost-user-pvz) and refuses
    /// one where others could rename or delete the socket.
    static func prepareDirectory(_ dir: String) throws(SocketSetupError) {
        var st = stat()
        if stat(dir, &st) != 0 {
            let parent = parentDirectory(of: dir)
            if parent != dir { try prepareDirectory(parent) }
            if mkdir(dir, 0o755) != 0 && errno != EEXIST {
                throw SocketSetupError("cannot create socket directory \(dir): \(errnoText())")
            }
            guard stat(dir, &st) == 0 else { throw SocketSetupError("socket directory \(dir): \(errnoText())") }
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw SocketSetupError("\(dir) is not a directory") }
        if st.st_mode & 0o002 != 0 && st.st_mode & mode_t(S_ISVTX) == 0 {
            throw SocketSetupError("socket directory \(dir) is writable by everyone without the sticky bit: anyone could replace the socket; use a directory like /run/vhost-user-pvz")
        }
    }

    static func temporaryName(in dir: String, for path: String) throws(SocketSetupError) -> String {
        let r = UInt32.random(in: 0...UInt32.max)
        let t = "\(dir)/.pvz-\(getpid())-\(String(r, radix: 16)).tmp"
        guard t.utf8.count <= maxPathBytes else {
            throw SocketSetupError("socket directory \(dir) is too long for a temporary socket name (\(t.utf8.count) bytes, limit \(maxPathBytes)); use a shorter path than \(path)")
        }
        return t
    }

    // MARK: inherited sockets

    /// What an inherited descriptor must be: an open, listening Unix stream socket.
    public static func checkListening(fd: Int32, what: String) throws(SocketSetupError) {
        guard fd >= 0 else { throw SocketSetupError("\(what): \(fd) is not a file descriptor") }
        guard fd > 2 else {
            throw SocketSetupError("\(what): fd \(fd) is standard \(["input", "output", "error"][Int(fd)]), not a listening socket")
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SocketSetupError("\(what): fd \(fd) is not open: \(errnoText())") }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw SocketSetupError("\(what): fd \(fd) is \(fileKind(st.st_mode & S_IFMT)), not a socket")
        }
        guard let domain = intOption(fd, SO_DOMAIN), domain == AF_UNIX else {
            throw SocketSetupError("\(what): fd \(fd) is not a Unix-domain socket")
        }
        guard let type = intOption(fd, SO_TYPE), type == Int32(SOCK_STREAM.rawValue) else {
            throw SocketSetupError("\(what): fd \(fd) is not a stream socket (vhost-user needs SOCK_STREAM)")
        }
        guard isListening(fd) else {
            throw SocketSetupError("\(what): fd \(fd) is a Unix stream socket but not listening (call listen() before handing it over)")
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }

    public static func isListening(_ fd: Int32) -> Bool { intOption(fd, SO_ACCEPTCONN) == 1 }

    /// The path an inherited socket is bound to, nil if unnamed or abstract.
    public static func boundPath(_ fd: Int32) -> String? {
        var buf = [CChar](repeating: 0, count: 110)
        let n = pvz_unix_bound_path(fd, &buf, buf.count)
        guard n > 0 else { return nil }
        return String(decoding: buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The identity of an inherited socket's file, when its bound path still names it.
    public static func identity(ofInherited fd: Int32) -> SocketFileIdentity? {
        guard let p = boundPath(fd) else { return nil }
        var st = stat()
        guard lstat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { return nil }
        return SocketFileIdentity(path: p, device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    static func intOption(_ fd: Int32, _ name: Int32) -> Int32? {
        var v: Int32 = 0
        var len = socklen_t(4)
        return getsockopt(fd, SOL_SOCKET, name, &v, &len) == 0 ? v : nil
    }
}
