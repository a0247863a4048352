#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension DeviceTreeError {
    static func io(_ what: String, _ path: String) -> DeviceTreeError {
        .invalidValue(field: what, value: path, limit: String(cString: strerror(errno)))
    }
}

/// Reads a DTB/DTBO file, refusing anything larger than a device tree can be.
public func readDeviceTreeFile(_ path: String) throws(DeviceTreeError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .io("cannot open device tree file", path) }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw .io("cannot read device tree file", path)
        }
        if n == 0 { break }
        out += chunk[0..<n]
        guard out.count <= FlattenedDeviceTree.maxSize else {
            throw .notADeviceTree(what: path, reason: "file is larger than the \(FlattenedDeviceTree.maxSize)-byte limit")
        }
    }
    return out
}

/// Writes `bytes` to `path` through a temporary file and rename, so a failed
/// or interrupted write never leaves a partial device tree behind.
public func writeDeviceTreeFile(_ bytes: [UInt8], to path: String) throws(DeviceTreeError) {
    let tmp = path + ".tmp.\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw .io("cannot create", tmp) }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 {
            if errno == EINTR { continue }
            let e = DeviceTreeError.io("cannot write", tmp)
            close(fd); unlink(tmp)
            throw e
        }
        done += n
    }
    let synced = fsync(fd) == 0
    let closed = close(fd) == 0
    guard synced, closed else {
        let e = DeviceTreeError.io("cannot flush", tmp)
        unlink(tmp)
        throw e
    }
    guard rename(tmp, path) == 0 else {
        let e = DeviceTreeError.io("cannot rename into place", path)
        unlink(tmp)
        throw e
    }
}
