import ArgumentParser
// FoundationEssentials, not Foundation: keeps libFoundation and ICU out of the daemon (docs/benchmarks.md, memory).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import PVZContract
import PVZDaemon
import PVZServer
import SafeSockets
import Sandbox
import VMManager
#if canImport(Glibc)
import Glibc
#endif

struct VhostUserPVZ: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-pvz",
        abstract: "vhost-user back-end for virtio-pvz: a para-virtualized PowerVR-style GPU (PVZ) for QEMU guests.",
        discussion: """
        One daemon serves one or many guests, one vhost-user socket each. The OSID of a guest is \
        decided here, from the socket it is on: never from anything the guest sends.

        One guest:
          vhost-user-pvz --socket-path /run/vhost-user-pvz/vm1.sock --osid 1 --carveout 0x10000000:64M --online-on-connect
        and in QEMU:
          -object memory-backend-memfd,id=mem,size=512M,share=on -machine q35,memory-backend=mem
          -chardev socket,id=pvz0,path=/run/vhost-user-pvz/vm1.sock -device vhost-user-pvz-pci,chardev=pvz0
        Many guests: --config guests.json (docs/configuration.md). Under systemd socket activation \
        (LISTEN_FDS) no socket flag is needed (docs/deployment.md). Numbers take decimal, 0x-hex and \
        K/M/G suffixes. Once its sockets are bound the daemon drops to --user (if given), sets \
        no_new_privs, drops every capability and loads a seccomp allow-list (--seccomp). It does not \
        daemonize; SIGTERM/SIGINT stop it cleanly. Exit status 1: the configuration is unusable \
        (the message says what and where).
        """,
        version: PVZVersion.string)

    @Option(help: "Listen on this vhost-user Unix socket (QEMU connects to it).")
    var socketPath: String?

    @Option(help: "Serve an already listening Unix stream socket inherited as this file descriptor.")
    var fd: Int32?

    @Option(help: "The guest's OSID (1...max-osids-1; 0 is the host).")
    var osid: UInt32?

    @Option(help: "The guest's carve-out, IPA:SIZE: guest RAM its OS must not use; the first 64 KiB is the register bank, host heaps follow.")
    var carveout: String?

    @Flag(help: "Bring the VM online (OnVmOnline) when its front-end connects, instead of waiting for libvirt or pvzctl.")
    var onlineOnConnect = false

    @Option(help: "Priority for --online-on-connect (higher is served first by the firmware; default 0).")
    var priority: UInt32?

    @Option(help: "Who allocates the firmware heap: guest (MAP_DEV_PHYS_HEAP) or host (CREATE_DEV_PHYS_HEAPS). Default guest.")
    var fwHeapOrigin: String?

    @Option(help: "Who allocates the GPU heap: host or guest. Default host.")
    var gpuHeapOrigin: String?

    @Option(help: "Physical heap type reported to the guest: uma, lma or dma. Default uma.")
    var heapType: String?

    @Option(help: "Firmware heap size (the DDK's RGX_FIRMWARE_RAW_HEAP_SIZE). Default 32M.")
    var fwHeapSize: String?

    @Option(help: "Host-allocated GPU heap size. Default 16M.")
    var gpuHeapSize: String?

    @Flag(help: "Refuse CREATE_DEV_PHYS_HEAPS (VIRTIO_PVZ_F_HOST_HEAPS off).")
    var noHostHeaps = false

    @Option(help: "Interrupt number written to the guest's device tree (default 100+OSID).")
    var irq: UInt32?

    @Option(help: "JSON config file with many guests (replaces the per-guest flags; daemon-wide flags override it).")
    var config: String?

    @Option(help: "Control socket for pvzctl and the libvirt hook (root and the daemon's uid only).")
    var controlSocket: String?

    @Option(help: "libvirt URI to listen to for domain lifecycle events (e.g. qemu:///system).")
    var libvirtURI: String?

    @Option(help: "Keep the ledger (online VMs, heaps, priorities) in this file across restarts.")
    var stateFile: String?

    @Option(help: "Number of OSIDs, host included (2...16; default 8).")
    var maxOsids: UInt32?

    @Option(help: "The DDK PVZ ABI the guests' DDK speaks: 1.10 (default), 1.13, 1.15, 1.18 or 23 (calls, VMMConfigure numbering, OnVmOnline's priority; docs/pvz-server.md).")
    var ddkAbi: String?

    @Option(help: "Group of the guest sockets; its members (e.g. QEMU run by libvirt) may connect.")
    var socketGroup: String?

    @Option(help: "Mode of the guest sockets, octal: 0600 (default), or 0660 with --socket-group. Never world-accessible.")
    var socketMode: String?

    @Option(help: "Also let this user be a front-end (repeatable; root and the daemon's uid always may).")
    var allowUser: [String] = []

    @Option(help: "Also let members of this group be a front-end (repeatable).")
    var allowGroup: [String] = []

    @Option(help: "Run as this user once the sockets are bound (needs root to start).")
    var user: String?

    @Option(help: "Primary group for --user (default: that user's).")
    var group: String?

    @Option(help: "Seccomp allow-list: kill (default: a forbidden syscall kills the daemon), log (allow and log), off.")
    var seccomp: String?

    @Option(help: "Log level: trace, debug (every vhost-user message), info (default), notice, warning, error, critical.")
    var logLevel: String?

    @Flag(help: "Print the back-end's capabilities as JSON (QEMU's docs/interop/vhost-user.json) and exit.")
    var printCapabilities = false

    /// Flags and the config file, merged: the file's daemon-wide keys, any
    /// such flag given over them. Validated by DaemonOptions.validated().
    func options() throws(ConfigError) -> DaemonOptions {
        let guestFlags: [(String, Bool)] = [
            ("--socket-path", socketPath != nil), ("--fd", fd != nil), ("--osid", osid != nil), ("--carveout", carveout != nil),
            ("--online-on-connect", onlineOnConnect), ("--priority", priority != nil), ("--fw-heap-origin", fwHeapOrigin != nil),
            ("--gpu-heap-origin", gpuHeapOrigin != nil), ("--heap-type", heapType != nil), ("--fw-heap-size", fwHeapSize != nil),
            ("--gpu-heap-size", gpuHeapSize != nil), ("--no-host-heaps", noHostHeaps), ("--irq", irq != nil),
        ]
        var o: DaemonOptions
        if let path = config {
            let given = guestFlags.filter(\.1).map(\.0)
            guard given.isEmpty else {
                throw ConfigError("--config \(path) describes the guests; \(given.joined(separator: ", ")) cannot be combined with it")
            }
            o = try DaemonOptions.load(path: path)
        } else {
            o = DaemonOptions()
            var g = GuestOptions()
            g.socketPath = socketPath; g.fd = fd; g.osid = osid; g.carveout = carveout
            g.onlineOnConnect = onlineOnConnect; g.priority = priority; g.irq = irq
            g.fwHeapOrigin = fwHeapOrigin; g.gpuHeapOrigin = gpuHeapOrigin; g.heapType = heapType
            g.fwHeapSize = fwHeapSize; g.gpuHeapSize = gpuHeapSize; g.hostHeaps = noHostHeaps ? false : nil
            o.guests = [g]
        }
        func set<T>(_ key: String, _ value: T?, _ field: WritableKeyPath<DaemonOptions, T?>) {
            guard let value else { return }
            o[keyPath: field] = value
            o.names.fromFlags.insert(key)
        }
        set("control_socket", controlSocket, \.controlSocket)
        set("max_osids", maxOsids, \.maxOSIDs)
        set("libvirt_uri", libvirtURI, \.libvirtURI)
        set("state_file", stateFile, \.stateFile)
        set("log_level", logLevel, \.logLevel)
        set("socket_group", socketGroup, \.socketGroup)
        set("socket_mode", socketMode, \.socketMode)
        set("allow_users", allowUser.isEmpty ? nil : allowUser, \.allowUsers)
        set("allow_groups", allowGroup.isEmpty ? nil : allowGroup, \.allowGroups)
        set("user", user, \.user)
        set("group", group, \.group)
        set("seccomp", seccomp, \.seccomp)
        set("ddk_abi", ddkAbi, \.ddkABI)
        return o
    }

    func run() throws {
        if printCapabilities {
            print(BackendCapabilities.json)
            return
        }
        let config: DaemonConfig
        do { config = try options().validated() } catch {
            printError("vhost-user-pvz: \(error)")
            throw ExitCode(1)
        }
        DaemonLogging.bootstrap(level: config.logLevel, journal: DaemonLogging.stderrIsJournal(environment: ProcessInfo.processInfo.environment))
        let logger = Logger(label: "vhost-user-pvz")
        // Signals go to a dedicated sigwait; guest threads never see them.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)

        // Every guest's worst-case fds, before the sandbox (no setrlimit there) and the first socket.
        let guests = config.guests.count
        let fdLimit = FileLimit.ensure(need: FileLimit.need(guests: guests), guests: guests)
        logger.log(level: fdLimit.level, "\(fdLimit)")

        // Sockets first (they may need root), then the sandbox, then the
        // daemon and its threads: every thread is born inside the sandbox.
        let listeners: ListenerPlan
        do {
            // libvirt's library is opened here, not linked (docs/benchmarks.md, memory):
            // loading it needs syscalls the sandbox drops.
            if config.libvirtURI != nil { try LibvirtLibrary.load() }
            let inherited = try SystemdActivation.take(environment: ProcessInfo.processInfo.environment)
            listeners = try ListenerPlan.open(config, inherited: inherited)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        let daemon: Daemon
        do {
            let state = try Sandbox.enter(config.sandbox)
            logger.info("sandbox: \(state)")
            if let s = config.stateFile { try checkWritable(directoryOf: s) }
            daemon = try Daemon(config: config, logger: logger, listeners: listeners)
        } catch {
            logger.critical("cannot start: \(error)")
            listeners.discard()
            throw ExitCode(1)
        }
        do {
            try daemon.start()
        } catch {
            logger.critical("cannot start: \(error)")
            daemon.stop()
            throw ExitCode(1)
        }
        var sig: Int32 = 0
        sigwait(&set, &sig)
        logger.info("signal \(sig): stopping")
        daemon.stop()
        usleep(100_000)
    }

    /// The state file is replaced by rename: its directory must be writable
    /// by the user the daemon now runs as.
    func checkWritable(directoryOf path: String) throws(ConfigError) {
        let dir = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        guard access(dir.isEmpty ? "/" : dir, W_OK) == 0 else {
            throw ConfigError("state file \(path): its directory \(dir) is not writable by uid \(geteuid()) (the daemon's user after the privilege drop)")
        }
    }
}

func printError(_ s: String) {
    let line = Array((s + "\n").utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

do {
    var command = try VhostUserPVZ.parseAsRoot()
    try command.run()
} catch {
    // An unusable command line is a configuration error like any other: exit 1.
    if VhostUserPVZ.exitCode(for: error) == .validationFailure {
        printError(VhostUserPVZ.fullMessage(for: error))
        exit(1)
    }
    VhostUserPVZ.exit(withError: error)
}
