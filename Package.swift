// swift-tools-version: 6.1
// vhost-user-pvz: a vhost-user back-end that gives QEMU guests a
// para-virtualized PowerVR-style GPU (PVZ). One module per concern; see docs/architecture.md.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "vhost-user-pvz",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vhost-user-pvz", targets: ["vhost-user-pvz"]),
        .executable(name: "pvzctl", targets: ["pvzctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // C where Swift cannot reach: SCM_RIGHTS cmsg, memfd, eventfd, fences.
        .target(name: "CPVZShim"),
        // The platform layer: an owned file descriptor, the errno error, eventfd,
        // epoll, the one thread type, the one condition variable.
        .target(name: "Platform", dependencies: ["CPVZShim"], swiftSettings: swiftSettings),
        // libfdt from Debian's libfdt-dev (no pkg-config file there).
        .systemLibrary(name: "CLibFDT", providers: [.apt(["libfdt-dev"])]),
        // libvirt's C API from libvirt-dev: its types and constants only. No pkgConfig, no link:
        // VMManager opens libvirt.so.0 when a listener starts (LibvirtLibrary.swift).
        .systemLibrary(name: "CLibvirt", providers: [.apt(["libvirt-dev"])]),

        // Listening Unix sockets that never take over another's, socket activation, peer checks.
        .target(name: "CSafeSockets"),
        .target(name: "SafeSockets", dependencies: ["CSafeSockets"], swiftSettings: swiftSettings),
        // The sandbox: privilege drop, no_new_privs, a seccomp allow-list (libseccomp-dev).
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .target(name: "CSandbox"),
        .target(name: "Sandbox", dependencies: ["CSeccomp", "CSandbox"], swiftSettings: swiftSettings),

        // Guest memory (vhost-user memory table) and the split virtqueue.
        .target(name: "Virtqueue", dependencies: ["CPVZShim"], swiftSettings: swiftSettings),
        // The vhost-user back-end engine: socket, messages, vrings, event loop. Knows no PVZ.
        .target(name: "VhostUser", dependencies: [
            "CPVZShim", "Platform", "Virtqueue", "SafeSockets",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        // The device contract (virtio-pvz.md) in one place: identity, queues, features,
        // config space, hypercall wire structs and codes, registers, events, firmware ring.
        .target(name: "PVZContract", swiftSettings: swiftSettings),
        // Host PVZ server: the 10 functions, OSIDs, heap ledger, config policy.
        .target(name: "PVZServer", dependencies: ["PVZContract"], swiftSettings: swiftSettings),
        // Emulated GPU: register bank, events, firmware command ring, scheduler.
        .target(name: "GPUModel", dependencies: ["CPVZShim", "PVZContract", "PVZServer"], swiftSettings: swiftSettings),
        // Device-tree overlays over libfdt.
        .target(name: "DeviceTree", dependencies: ["CLibFDT", "PVZContract"], swiftSettings: swiftSettings),
        // VM manager control plane: control-socket protocol, libvirt listener.
        .target(name: "VMManager", dependencies: [
            "CPVZShim", "CLibvirt", "Platform", "PVZContract", "PVZServer", "SafeSockets",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        // The PVZ device on the engine plus daemon wiring (config, guests, control).
        .target(name: "PVZDaemon", dependencies: [
            "VhostUser", "Virtqueue", "PVZContract", "PVZServer", "GPUModel", "DeviceTree", "VMManager", "CPVZShim",
            "Platform", "SafeSockets", "Sandbox",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        // A vhost-user front-end that plays QEMU for tests and benchmarks.
        .target(name: "TestFrontEnd", dependencies: ["CPVZShim", "Platform"], swiftSettings: swiftSettings),
        .executableTarget(name: "vhost-user-pvz", dependencies: [
            "PVZDaemon", "SafeSockets", "Sandbox", "VMManager",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings,
           // The release daemon links the Swift runtime statically (what `--static-swift-stdlib` does), so
           // every build of it (scripts/run, install, bench, tests) is the one measured: the process maps
           // only the pages it uses instead of ~10 shared Swift libraries (docs/benchmarks.md, memory).
           // The modules import the shared runtime's FoundationEssentials, which does not name its static C shims.
           linkerSettings: [
               .unsafeFlags(["-static-stdlib"], .when(platforms: [.linux], configuration: .release)),
               .linkedLibrary("_FoundationCShims", .when(platforms: [.linux], configuration: .release)),
               .linkedLibrary("_FoundationCollections", .when(platforms: [.linux], configuration: .release)),
           ]),
        // scripts/bench: the hot path's figures (a benchmark, not a test).
        .target(name: "CMallocCounter"),
        .executableTarget(name: "pvz-bench", dependencies: [
            "PVZDaemon", "PVZContract", "PVZServer", "TestFrontEnd", "CPVZShim", "CMallocCounter", "Platform",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .executableTarget(name: "pvzctl", dependencies: [
            "VMManager", "DeviceTree", "PVZContract",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: swiftSettings),

        // Fuzzing (scripts/fuzz, docs/fuzzing.md): every fuzz target in one executable.
        // A normal build makes a replayer (pvz-fuzz TARGET FILE...); scripts/fuzz
        // rebuilds it in its own scratch path with -DFUZZING and libFuzzer.
        .target(name: "CFuzzDriver"),
        .executableTarget(name: "pvz-fuzz", dependencies: [
            "CFuzzDriver", "CPVZShim", "Virtqueue", "VhostUser", "PVZContract", "PVZServer", "GPUModel", "VMManager", "PVZDaemon",
            .product(name: "Logging", package: "swift-log"),
        ], path: "Sources/PVZFuzz", swiftSettings: swiftSettings),

        .testTarget(name: "VirtqueueTests", dependencies: ["Virtqueue", "CPVZShim", "Platform"], swiftSettings: swiftSettings),
        .testTarget(name: "VhostUserTests", dependencies: ["VhostUser", "Virtqueue", "CPVZShim", "Platform", "TestFrontEnd"], swiftSettings: swiftSettings),
        .testTarget(name: "PVZContractTests", dependencies: ["PVZContract"], swiftSettings: swiftSettings),
        .testTarget(name: "PVZServerTests", dependencies: ["PVZContract", "PVZServer"], swiftSettings: swiftSettings),
        .testTarget(name: "GPUModelTests", dependencies: ["GPUModel", "PVZContract", "PVZServer"], swiftSettings: swiftSettings),
        .testTarget(name: "DeviceTreeTests", dependencies: ["DeviceTree", "CLibFDT", "PVZContract"], swiftSettings: swiftSettings),
        .testTarget(name: "VMManagerTests", dependencies: ["VMManager", "CLibvirt", "Platform", "PVZContract"], swiftSettings: swiftSettings,
                    // The daemon opens libvirt.so.0 itself (LibvirtLibrary); the tests drive libvirt directly.
                    linkerSettings: [.linkedLibrary("virt")]),
        .testTarget(name: "DeployTests", dependencies: [
            "SafeSockets", "CSafeSockets", "Sandbox", "PVZDaemon", "PVZContract", "PVZServer", "VhostUser", "VMManager", "CPVZShim", "Platform", "TestFrontEnd",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .testTarget(name: "PVZDaemonTests", dependencies: [
            "PVZDaemon", "VhostUser", "Virtqueue", "PVZContract", "PVZServer", "GPUModel", "VMManager", "CPVZShim", "Platform", "TestFrontEnd", "DeviceTree",
        ], swiftSettings: swiftSettings),
    ]
)
