import CLibvirt
import Glibc
import Platform
import Synchronization

/// libvirt's default event loop, run on one thread for the whole process.
/// libvirt wants virEventRegisterDefaultImpl before the first virConnectOpen
/// and one thread iterating it; several listeners share that thread.
enum LibvirtEventLoop {
    private static let started = Mutex<Bool>(false)

    static func ensureRunning() throws {
        try started.withLock { running in
            if running { return }
            try LibvirtLibrary.load()
            // libvirt's default error handler prints every error to stderr;
            // the listener reports errors itself, through the logger.
            virSetErrorFunc(nil, { _, _ in })
            guard virEventRegisterDefaultImpl() == 0 else {
                throw LibvirtError(message: "virEventRegisterDefaultImpl failed: \(lastLibvirtError())")
            }
            _ = try OSThread(name: "pvz-libvirt-ev") {
                while true {
                    if virEventRunDefaultImpl() != 0 { usleep(10_000) }
                }
            }
            running = true
        }
    }
}

public struct LibvirtError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var description: String { message }
}

/// The calling thread's last libvirt error.
func lastLibvirtError() -> String {
    if case .failure(let e) = LibvirtLibrary.shared { return e.message }
    guard let m = virGetLastErrorMessage() else { return "unknown libvirt error" }
    return String(cString: m)
}
