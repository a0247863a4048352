import ArgumentParser
import Foundation
import VMManager

// Entry point with the documented exit codes (docs/cli.md):
// 0 ok, 1 refused by the daemon, 2 usage, 3 daemon unreachable.
// ArgumentParser's own usage code (64) is folded into 2, and a global
// `--control-socket PATH` before the subcommand is moved after it, since
// ArgumentParser only reads options after the subcommand that declares them.
var args = Array(CommandLine.arguments.dropFirst())
var moved: [String] = []
while let first = args.first, first.hasPrefix("--control-socket") || first == "--timeout" {
    args.removeFirst()
    moved.append(first)
    if !first.contains("="), let value = args.first {
        args.removeFirst()
        moved.append(value)
    }
}
if !moved.isEmpty {
    // After the subcommand name (the first non-option word), if there is one.
    if let i = args.firstIndex(where: { !$0.hasPrefix("-") }) {
        args.insert(contentsOf: moved, at: i + 1)
    } else {
        args.append(contentsOf: moved)
    }
}

do {
    var command = try Pvzctl.parseAsRoot(args)
    try command.run()
    exit(CLIExit.ok.rawValue)
} catch let e as CLIExit {
    exit(e.rawValue)
} catch {
    let code = Pvzctl.exitCode(for: error)
    let text = Pvzctl.fullMessage(for: error)
    if code == .success {
        print(text)
        exit(0)
    }
    FileHandle.standardError.write(Data((text + "\n").utf8))
    exit(CLIExit.usage.rawValue)
}
