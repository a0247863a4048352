import ArgumentParser
import DeviceTree
import Foundation
import PVZContract
import PVZServer
import VMManager

enum CLIExit: Int32, Error {
    case ok = 0
    case refused = 1
    case usage = 2
    case unreachable = 3
}

struct Pvzctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pvzctl",
        abstract: "Admin CLI of the vhost-user-pvz daemon's control socket.",
        discussion: """
        Exit codes: 0 ok; 1 the daemon refused the request (its error and code are printed);
        2 usage error; 3 the daemon is unreachable or gave no usable answer.
        The socket is --control-socket, else $PVZ_CONTROL_SOCKET, else \(ControlServer.defaultPath).
        Only root and the daemon's own uid may use it.
        """,
        version: PVZVersion.string,
        subcommands: [Status.self, Guests.self, Heaps.self, Online.self, Offline.self, Configure.self, DT.self, Metrics.self])
}

struct Common: ParsableArguments {
    @Option(name: .customLong("control-socket"), help: "Control socket path.")
    var controlSocket: String = ProcessInfo.processInfo.environment["PVZ_CONTROL_SOCKET"] ?? ControlServer.defaultPath

    @Option(help: "Seconds to wait for the daemon's answer.")
    var timeout: Double = 5

    @Flag(help: "Print the daemon's response as JSON instead of a table.")
    var json = false

    func validate() throws {
        guard timeout > 0, timeout <= 600 else { throw ValidationError("--timeout must be in (0, 600] seconds, got \(timeout)") }
    }

    /// Sends the request; prints and exits for every failure, returns the
    /// successful response.
    func send(_ request: ControlRequest) throws -> ControlResponse {
        let response: ControlResponse
        do {
            response = try ControlClient(path: controlSocket, timeoutSeconds: timeout).send(request)
        } catch {
            printError("pvzctl: \(error)")
            throw CLIExit.unreachable
        }
        if json { print(ControlCodec.prettyJSON(response)) }
        guard response.ok else {
            if !json { printError("pvzctl: \(request.command) refused: \(response.error ?? "no reason given") [\(response.code ?? "no code")]") }
            throw CLIExit.refused
        }
        return response
    }
}

func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Daemon state and one line per guest.")
    @OptionGroup var common: Common

    func run() throws {
        let r = try common.send(.status)
        guard !common.json else { return }
        guard let s = r.status else { printError("pvzctl: status answer without a status"); throw CLIExit.unreachable }
        print("daemon      vhost-user-pvz \(s.version) (pid \(s.pid)), up \(String(format: "%.1f", s.uptimeSeconds)) s")
        print("control     \(s.controlSocket)")
        if let l = s.libvirtConnected { print("libvirt     \(l ? "connected" : "not connected")") }
        print("max OSIDs   \(s.maxOsids)")
        if !s.parameters.isEmpty {
            print("parameters  " + s.parameters.map { "\($0.name)=\($0.value)" }.joined(separator: " "))
        }
        print("")
        print(Tables.guestSummary(s.guests))
    }
}

struct Guests: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Every guest: socket, device and firmware state, counters.")
    @OptionGroup var common: Common

    func run() throws {
        let r = try common.send(.guests)
        guard !common.json else { return }
        print(Tables.guestDetail(r.guests ?? []))
    }
}

struct Heaps: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Physical heaps (IPA, PA, size) of one guest or all.")
    @OptionGroup var common: Common
    @Option(help: "Only this OSID.") var osid: UInt32?

    func run() throws {
        let r = try common.send(.heaps(osid: osid.map { OSID($0) }))
        guard !common.json else { return }
        print(Tables.heaps(r.heaps ?? []))
    }
}

struct Online: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "OnVmOnline: bring a guest's OSID online.")
    @OptionGroup var common: Common
    @Option(help: "Guest OSID.") var osid: UInt32
    @Option(help: "Scheduling priority (default: the daemon's configured one).") var priority: UInt32?

    func run() throws {
        let r = try common.send(.online(osid: OSID(osid), priority: priority))
        guard !common.json else { return }
        print("OSID \(osid) online" + (r.guest.map { " with priority \($0.priority)" } ?? "") + (r.message.map { " (\($0))" } ?? ""))
    }
}

struct Offline: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "OnVmOffline: stop a guest's firmware and free its heaps.")
    @OptionGroup var common: Common
    @Option(help: "Guest OSID.") var osid: UInt32

    func run() throws {
        let r = try common.send(.offline(osid: OSID(osid)))
        guard !common.json else { return }
        print("OSID \(osid) offline" + (r.message.map { " (\($0))" } ?? ""))
    }
}

struct Configure: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "VMMConfigure: set a VMM_CONF_PARAM by name.",
        discussion: """
        PARAM is a DDK name, the VMM_CONF_ prefix optional: PRIO_OSID0..7 (PRIO_DRV0..7 on DDK 23), \
        ISOL_THRES (1.10, 1.13), HCS_DEADLINE, and on DDK 23 ISOLATION_GROUP_DRV0..7, TIME_SLICE_DRV0..7, \
        TIME_SLICE_INTERVAL, VZ_CONNECTION_COOLDOWN_PERIOD. The daemon refuses a name its DDK ABI \
        (pvzctl status) does not have. A number is taken only with --abi: numbers differ between ABIs \
        (8 is ISOL_THRES in 1.10 and HCS_DEADLINE in 1.15).
        """)
    @OptionGroup var common: Common
    @Option(help: "Parameter name (or a number, with --abi).") var param: String
    @Option(help: "Value (unsigned 32-bit).") var value: UInt32
    @Option(help: "The DDK ABI a numeric --param is numbered in (must be the daemon's).") var abi: String?

    var request: ControlRequest {
        if let n = UInt32(param), let abi { return .configure(param: .number(n, abi: abi), value: value) }
        return .configure(param: .name(param), value: value)
    }

    func validate() throws {
        if UInt32(param) != nil, abi == nil {
            throw ValidationError("--param \(param) is a number: give the name (e.g. HCS_DEADLINE), or --abi with the DDK ABI it is numbered in")
        }
    }

    func run() throws {
        let r = try common.send(request)
        guard !common.json else { return }
        if let shown = r.parameter { print("\(shown.name) = \(shown.value)") } else { print("\(param) = \(value)") }
    }
}

struct DT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dt",
        abstract: "Write a guest's device-tree overlay (.dtbo), merge it into a base DTB, or print the x86 memmap= argument.",
        discussion: """
        The overlay comes from the daemon's live ledger: the carve-out and every host heap as \
        /reserved-memory pieces, and the gpu@ node. With --base, it is applied (libfdt \
        fdt_overlay_apply) to that DTB, e.g. one written by QEMU's -machine virt,dumpdtb=FILE, and \
        the merged DTB is written; /reserved-memory is created when the base has none. With \
        --memmap, the kernel argument that reserves the same carve-out on x86 is printed.
        """)
    @OptionGroup var common: Common
    @Option(help: "Guest OSID.") var osid: UInt32
    @Option(name: .shortAndLong, help: "Output file ('-' for stdout).") var output: String?
    @Option(help: "Merge the overlay into this base DTB and write the merged DTB.") var base: String?
    @Flag(help: "Print the x86 memmap= kernel argument for the guest's carve-out.") var memmap = false

    func validate() throws {
        if memmap && (base != nil || output != nil) { throw ValidationError("--memmap prints an argument; it takes no --base or --output") }
        if !memmap && output == nil { throw ValidationError("give --output FILE (or '-'), or --memmap") }
    }

    func run() throws {
        if memmap {
            let r = try common.send(.guests)
            guard let g = r.guests?.first(where: { $0.osid == osid }) else {
                printError("pvzctl: the daemon has no guest with OSID \(osid)")
                throw CLIExit.refused
            }
            let d = GuestGPUDescription(osid: osid, regsBase: g.carveoutIpa, regsSize: PVZRegister.bankSize, irq: 0,
                                        carveout: ReservedRegion(name: "pvz-carveout", base: g.carveoutIpa, size: g.carveoutSize),
                                        heaps: [])
            print(x86MemmapArguments(d))
            return
        }
        let r = try common.send(.dt(osid: OSID(osid)))
        guard var bytes = r.dtboBytes else {
            printError("pvzctl: dt answer has no valid base64 overlay")
            throw CLIExit.unreachable
        }
        if let base {
            do {
                bytes = try mergeOverlay(base: try readDeviceTreeFile(base), overlay: bytes)
            } catch {
                printError("pvzctl: merging OSID \(osid)'s overlay into \(base): \(error)")
                throw CLIExit.refused
            }
        }
        let output = self.output ?? "-"
        if output == "-" {
            if !common.json { FileHandle.standardOutput.write(Data(bytes)) }
            return
        }
        do {
            try writeDeviceTreeFile(bytes, to: output)
        } catch {
            printError("pvzctl: cannot write \(output): \(error)")
            throw CLIExit.usage
        }
        if !common.json { print("wrote \(bytes.count) bytes (\(base == nil ? "overlay" : "merged DTB")) to \(output)") }
    }
}
