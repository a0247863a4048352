import ArgumentParser
import Foundation
import Logging
import PVZDaemon
import PVZServer
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
          vhost-user-pvz --socket-path /run/pvz/vm1.sock --osid 1 --carveout 0x10000000:64M --online-on-connect
        and in QEMU:
          -object memory-backend-memfd,id=mem,size=512M,share=on -machine q35,memory-backend=mem
          -chardev socket,id=pvz0,path=/run/pvz/vm1.sock -device vhost-user-pvz-pci,chardev=pvz0
        Many guests: --config guests.json (docs/configuration.md). Numbers take decimal, 0x-hex \
        and K/M/G suffixes. The daemon does not daemonize; SIGTERM/SIGINT stop it cleanly.
        """)

    @Option(help: "Listen on this vhost-user Unix socket (QEMU connects to it).")
    var socketPath: String?

    @Option(help: "Serve an already listening Unix socket inherited as this file descriptor.")
    var fd: Int32?

    @Option(help: "The guest's OSID (1..max-osids-1; 0 is the host).")
    var osid: UInt32?

    @Option(help: "The guest's carve-out, IPA:SIZE: guest RAM its OS must not use; the first 64 KiB is the register bank, host heaps follow.")
    var carveout: String?

    @Flag(help: "Bring the VM online (OnVmOnline) when its front-end connects, instead of waiting for libvirt or pvzctl.")
    var onlineOnConnect = false

    @Option(help: "Priority for --online-on-connect (higher is served first by the firmware).")
    var priority: UInt32 = 0

    @Option(help: "Who allocates the firmware heap: guest (MAP_DEV_PHYS_HEAP) or host (CREATE_DEV_PHYS_HEAPS).")
    var fwHeapOrigin: String = "guest"

    @Option(help: "Who allocates the GPU heap: host or guest.")
    var gpuHeapOrigin: String = "host"

    @Option(help: "Physical heap type reported to the guest: uma, lma or dma.")
    var heapType: String = "uma"

    @Option(help: "Firmware heap size (the DDK's RGX_FIRMWARE_RAW_HEAP_SIZE).")
    var fwHeapSize: String = "32M"

    @Option(help: "Host-allocated GPU heap size.")
    var gpuHeapSize: String = "16M"

    @Flag(help: "Refuse CREATE_DEV_PHYS_HEAPS (VIRTIO_PVZ_F_HOST_HEAPS off).")
    var noHostHeaps = false

    @Option(help: "Interrupt number written to the guest's device tree (default 100+OSID).")
    var irq: UInt32?

    @Option(help: "JSON config file with many guests (replaces the per-guest flags).")
    var config: String?

    @Option(help: "Control socket for pvzctl and the libvirt hook (root and this uid only).")
    var controlSocket: String?

    @Option(help: "libvirt URI to listen to for domain lifecycle events (e.g. qemu:///system).")
    var libvirtURI: String?

    @Option(help: "Keep the ledger (online VMs, heaps, priorities) in this file across restarts.")
    var stateFile: String?

    @Option(help: "Number of OSIDs, host included.")
    var maxOsids: UInt32 = 8

    @Option(help: "Virtio device ID reported by --print-capabilities.")
    var virtioID: UInt32 = PVZDaemon.PVZIdentity.defaultVirtioID

    @Option(help: "Log level: trace, debug (every vhost-user message), info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Flag(help: "Print the back-end's capabilities as JSON (vhost-user.rst back-end conventions) and exit.")
    var printCapabilities = false

    func validate() throws {
        if printCapabilities { return }
        if config != nil {
            if socketPath != nil || fd != nil || osid != nil || carveout != nil {
                throw ValidationError("--config replaces --socket-path/--fd/--osid/--carveout; give one or the other")
            }
            return
        }
        if (socketPath == nil) == (fd == nil) { throw ValidationError("give exactly one of --socket-path or --fd (or --config)") }
        if osid == nil { throw ValidationError("--osid is required (1..\(maxOsids - 1))") }
        if carveout == nil { throw ValidationError("--carveout IPA:SIZE is required, e.g. 0x10000000:64M") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical") }
    }

    func buildConfig() throws -> DaemonConfig {
        if let path = config {
            var c = try DaemonConfig.load(path: path)
            if let cs = controlSocket { c.controlSocket = cs }
            if let u = libvirtURI { c.libvirtURI = u }
            if let f = stateFile { c.stateFile = f }
            return c
        }
        var policy = GuestPolicy()
        policy.fwHeapOrigin = try DaemonConfig.origin(fwHeapOrigin, "--fw-heap-origin")
        policy.gpuHeapOrigin = try DaemonConfig.origin(gpuHeapOrigin, "--gpu-heap-origin")
        policy.heapType = try DaemonConfig.heapType(heapType, "--heap-type")
        guard let fws = NumberParser.parse(fwHeapSize) else { throw ValidationError("--fw-heap-size '\(fwHeapSize)' is not a number") }
        guard let gps = NumberParser.parse(gpuHeapSize) else { throw ValidationError("--gpu-heap-size '\(gpuHeapSize)' is not a number") }
        policy.fwHeapSize = fws
        policy.gpuHeapSize = gps
        policy.hostHeapsAllowed = !noHostHeaps
        policy.irq = irq ?? DaemonConfig.defaultIRQ(osid: osid!)
        let carve = try NumberParser.carveout(carveout!)
        let g = GuestConfig(socketPath: socketPath, listenFD: fd,
                            spec: GuestSpec(osid: OSID(osid!), carveout: carve, policy: policy),
                            settings: GuestSettings(onlineOnConnect: onlineOnConnect, priority: priority))
        return DaemonConfig(guests: [g], controlSocket: controlSocket, maxOSIDs: maxOsids, libvirtURI: libvirtURI,
                            stateFile: stateFile)
    }

    func run() throws {
        if printCapabilities {
            print("{\n  \"type\": \"pvz\",\n  \"virtio-id\": \(virtioID),\n  \"features\": []\n}")
            return
        }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "vhost-user-pvz")
        // Signals go to a dedicated sigwait; guest threads never see them.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)

        let daemon: Daemon
        do {
            daemon = try Daemon(config: try buildConfig(), logger: logger)
            try daemon.start()
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        var sig: Int32 = 0
        sigwait(&set, &sig)
        logger.info("signal \(sig): stopping")
        daemon.stop()
        usleep(100_000)
    }
}

do {
    var command = try VhostUserPVZ.parseAsRoot()
    try command.run()
} catch {
    VhostUserPVZ.exit(withError: error)
}
