import CFuzzDriver
import Foundation

/// One fuzz target: `setUp` runs once per process and returns the function
/// that runs one input. A failed invariant is a `preconditionFailure` (a crash
/// libFuzzer reports), never a silent skip.
struct FuzzTarget: Sendable {
    let name: String
    let summary: String
    let setUp: @Sendable () -> (UnsafeRawBufferPointer) -> Void
}

enum Targets {
    static let all: [FuzzTarget] = [
        chainTarget, firmwareTarget, hypercallTarget, vhostUserTarget, controlTarget, stateTarget, configTarget,
        deviceStateTarget,
    ]
    nonisolated(unsafe) static var current: ((UnsafeRawBufferPointer) -> Void)?
    nonisolated(unsafe) static var chosen: FuzzTarget?
    /// The chosen target, set up on first use: under libFuzzer that is after
    /// the fuzzer installed its signal handlers, so the guest-memory SIGBUS
    /// guard installs on top of them and passes any other SIGBUS down to them.
    static func run(_ data: UnsafeRawBufferPointer) {
        if current == nil { current = chosen!.setUp() }
        current!(data)
    }
}

/// `pvz-fuzz TARGET [libFuzzer options] [CORPUS...]` when built by scripts/fuzz
/// (-DFUZZING, libFuzzer linked); `pvz-fuzz TARGET FILE...` runs each file once
/// otherwise (replaying a crash or a corpus in a normal build).
@main struct PVZFuzz {
    static func main() {
        let args = CommandLine.arguments
        guard args.count >= 2, let target = Targets.all.first(where: { $0.name == args[1] }) else {
            FileHandle.standardError.write(Data("usage: pvz-fuzz TARGET [options] [corpus or files]\ntargets:\n".utf8))
            for t in Targets.all { FileHandle.standardError.write(Data("  \(t.name)\t\(t.summary)\n".utf8)) }
            exit(2)
        }
        Targets.chosen = target
        // As the daemon's main does: a write to a pipe whose reader is gone (a
        // front-end's call fd, a device-state fd) is EPIPE there, not a death.
        // Left at its default, SIGPIPE killed long runs without a word (no
        // libFuzzer handler for it, exit 141).
        signal(SIGPIPE, SIG_IGN)
#if FUZZING
        var cargs: [UnsafeMutablePointer<CChar>?] = ([args[0]] + args.dropFirst(2)).map { strdup($0) } + [nil]
        var argc = Int32(cargs.count - 1)
        let rc = cargs.withUnsafeMutableBufferPointer { b -> Int32 in
            var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = b.baseAddress
            return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
                Targets.run(UnsafeRawBufferPointer(start: data, count: size))
                return 0
            }
        }
        exit(rc)
#else
        var n = 0
        for path in args.dropFirst(2) {
            var files = [path]
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
                files = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 }
            }
            for f in files {
                guard let d = FileManager.default.contents(atPath: f) else { continue }
                d.withUnsafeBytes { Targets.run($0) }
                n += 1
            }
        }
        print("pvz-fuzz \(target.name): \(n) inputs ran without a crash")
#endif
    }
}

/// Reads a fuzz input front to back; past the end every read is 0, so any
/// input is a valid program.
struct FuzzInput {
    let data: UnsafeRawBufferPointer
    var pos = 0
    init(_ d: UnsafeRawBufferPointer) { data = d }
    var isEmpty: Bool { pos >= data.count }
    var remaining: Int { max(0, data.count - pos) }
    mutating func u8() -> UInt8 {
        guard pos < data.count else { return 0 }
        defer { pos += 1 }
        return data[pos]
    }
    mutating func u16() -> UInt16 { UInt16(u8()) | UInt16(u8()) << 8 }
    mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
    mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }
    mutating func bool() -> Bool { u8() & 1 != 0 }
    /// Up to `n` bytes (fewer at the end of the input).
    mutating func bytes(_ n: Int) -> UnsafeRawBufferPointer {
        let k = min(n, remaining)
        defer { pos += k }
        return UnsafeRawBufferPointer(rebasing: data[pos ..< pos + k])
    }
    /// The rest of the input up to the next `separator` byte (which is consumed).
    mutating func line(separator: UInt8 = 0x0A) -> [UInt8] {
        var out: [UInt8] = []
        while pos < data.count {
            let b = data[pos]; pos += 1
            if b == separator { break }
            out.append(b)
        }
        return out
    }
}

/// PVZ_FUZZ_DEBUG=1: targets print what an input reached (for checking seeds).
let debugFuzz = ProcessInfo.processInfo.environment["PVZ_FUZZ_DEBUG"] != nil

/// A logger that writes nothing (a fuzzer runs millions of inputs).
import Logging
func quietLogger() -> Logger {
    var l = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })
    l.logLevel = .critical
    return l
}
