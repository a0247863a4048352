import CLibvirt
import Glibc

// libvirt's client library is opened (dlopen) when a libvirt listener first
// starts, not linked: libvirt.so.0 pulls in about 50 libraries (gnutls, libcrypto,
// glib, libxml2, ICU, krb5, curl, ssh, ...), ~8 MiB resident in every daemon,
// most of which never talk to libvirt (docs/benchmarks.md, memory).
//
// The functions below carry libvirt's own names and signatures: declarations
// of this module shadow the C ones CLibvirt imports (which has no `link`), so
// the listener reads as libvirt's API. A call this file lacks does not link.

/// libvirt.so.0, opened once per process; the failure says why (dlerror).
public struct LibvirtLibrary: @unchecked Sendable {
    static let soname = "libvirt.so.0"
    static let shared: Result<LibvirtLibrary, LibvirtError> = {
        do throws(LibvirtError) { return .success(try LibvirtLibrary()) } catch { return .failure(error) }
    }()

    /// Opens the library now. The daemon calls this before entering the sandbox: loading
    /// ~50 libraries needs syscalls the seccomp allow-list drops. The listener's start
    /// calls it too, so a missing library is a clear error there.
    public static func load() throws(LibvirtError) { _ = try shared.get() }

    let connectOpen: @convention(c) (UnsafePointer<CChar>?) -> virConnectPtr?
    let connectClose: @convention(c) (virConnectPtr?) -> Int32
    let connectSetKeepAlive: @convention(c) (virConnectPtr?, Int32, UInt32) -> Int32
    let connectListAllDomains: @convention(c) (virConnectPtr?, UnsafeMutablePointer<UnsafeMutablePointer<virDomainPtr?>?>?, UInt32) -> Int32
    let connectDomainEventRegisterAny: @convention(c) (virConnectPtr?, virDomainPtr?, Int32, virConnectDomainEventGenericCallback?,
                                                       UnsafeMutableRawPointer?, virFreeCallback?) -> Int32
    let connectDomainEventDeregisterAny: @convention(c) (virConnectPtr?, Int32) -> Int32
    let connectRegisterCloseCallback: @convention(c) (virConnectPtr?, virConnectCloseFunc?, UnsafeMutableRawPointer?, virFreeCallback?) -> Int32
    let connectUnregisterCloseCallback: @convention(c) (virConnectPtr?, virConnectCloseFunc?) -> Int32
    let domainFree: @convention(c) (virDomainPtr?) -> Int32
    let domainGetName: @convention(c) (virDomainPtr?) -> UnsafePointer<CChar>?
    let domainGetUUIDString: @convention(c) (virDomainPtr?, UnsafeMutablePointer<CChar>?) -> Int32
    let domainGetMetadata: @convention(c) (virDomainPtr?, Int32, UnsafePointer<CChar>?, UInt32) -> UnsafeMutablePointer<CChar>?
    let eventRegisterDefaultImpl: @convention(c) () -> Int32
    let eventRunDefaultImpl: @convention(c) () -> Int32
    let getLastError: @convention(c) () -> virErrorPtr?
    let getLastErrorMessage: @convention(c) () -> UnsafePointer<CChar>?
    let setErrorFunc: @convention(c) (UnsafeMutableRawPointer?, virErrorFunc?) -> Void

    private init() throws(LibvirtError) {
        guard let h = dlopen(Self.soname, RTLD_NOW | RTLD_LOCAL) else {
            throw LibvirtError(message: "cannot load \(Self.soname) (libvirt's client library, package libvirt0): \(Self.dlerrorText())")
        }
        func sym<T>(_ name: String, _: T.Type = T.self) throws(LibvirtError) -> T {
            guard let p = dlsym(h, name) else {
                throw LibvirtError(message: "\(Self.soname) has no \(name): \(Self.dlerrorText())")
            }
            return unsafeBitCast(p, to: T.self)
        }
        connectOpen = try sym("virConnectOpen")
        connectClose = try sym("virConnectClose")
        connectSetKeepAlive = try sym("virConnectSetKeepAlive")
        connectListAllDomains = try sym("virConnectListAllDomains")
        connectDomainEventRegisterAny = try sym("virConnectDomainEventRegisterAny")
        connectDomainEventDeregisterAny = try sym("virConnectDomainEventDeregisterAny")
        connectRegisterCloseCallback = try sym("virConnectRegisterCloseCallback")
        connectUnregisterCloseCallback = try sym("virConnectUnregisterCloseCallback")
        domainFree = try sym("virDomainFree")
        domainGetName = try sym("virDomainGetName")
        domainGetUUIDString = try sym("virDomainGetUUIDString")
        domainGetMetadata = try sym("virDomainGetMetadata")
        eventRegisterDefaultImpl = try sym("virEventRegisterDefaultImpl")
        eventRunDefaultImpl = try sym("virEventRunDefaultImpl")
        getLastError = try sym("virGetLastError")
        getLastErrorMessage = try sym("virGetLastErrorMessage")
        setErrorFunc = try sym("virSetErrorFunc")
    }

    private static func dlerrorText() -> String { dlerror().map { String(cString: $0) } ?? "unknown dlerror" }
}

// Until the library loads these return libvirt's own failure values
// (NULL, -1): only a started listener calls them, after LibvirtLibrary.load().
private var lib: LibvirtLibrary? { try? LibvirtLibrary.shared.get() }

func virConnectOpen(_ name: UnsafePointer<CChar>?) -> virConnectPtr? { lib?.connectOpen(name) }
@discardableResult
func virConnectClose(_ conn: virConnectPtr?) -> Int32 { lib?.connectClose(conn) ?? -1 }
func virConnectSetKeepAlive(_ conn: virConnectPtr?, _ interval: Int32, _ count: UInt32) -> Int32 {
    lib?.connectSetKeepAlive(conn, interval, count) ?? -1
}
func virConnectListAllDomains(_ conn: virConnectPtr?, _ domains: UnsafeMutablePointer<UnsafeMutablePointer<virDomainPtr?>?>?,
                              _ flags: UInt32) -> Int32 {
    lib?.connectListAllDomains(conn, domains, flags) ?? -1
}
func virConnectDomainEventRegisterAny(_ conn: virConnectPtr?, _ dom: virDomainPtr?, _ eventID: Int32,
                                      _ cb: virConnectDomainEventGenericCallback?, _ opaque: UnsafeMutableRawPointer?,
                                      _ freecb: virFreeCallback?) -> Int32 {
    lib?.connectDomainEventRegisterAny(conn, dom, eventID, cb, opaque, freecb) ?? -1
}
func virConnectDomainEventDeregisterAny(_ conn: virConnectPtr?, _ callbackID: Int32) -> Int32 {
    lib?.connectDomainEventDeregisterAny(conn, callbackID) ?? -1
}
func virConnectRegisterCloseCallback(_ conn: virConnectPtr?, _ cb: virConnectCloseFunc?, _ opaque: UnsafeMutableRawPointer?,
                                     _ freecb: virFreeCallback?) -> Int32 {
    lib?.connectRegisterCloseCallback(conn, cb, opaque, freecb) ?? -1
}
func virConnectUnregisterCloseCallback(_ conn: virConnectPtr?, _ cb: virConnectCloseFunc?) -> Int32 {
    lib?.connectUnregisterCloseCallback(conn, cb) ?? -1
}
@discardableResult
func virDomainFree(_ domain: virDomainPtr?) -> Int32 { lib?.domainFree(domain) ?? -1 }
func virDomainGetName(_ domain: virDomainPtr?) -> UnsafePointer<CChar>? { lib?.domainGetName(domain) }
func virDomainGetUUIDString(_ domain: virDomainPtr?, _ buf: UnsafeMutablePointer<CChar>?) -> Int32 {
    lib?.domainGetUUIDString(domain, buf) ?? -1
}
func virDomainGetMetadata(_ domain: virDomainPtr?, _ type: Int32, _ uri: UnsafePointer<CChar>?, _ flags: UInt32) -> UnsafeMutablePointer<CChar>? {
    lib?.domainGetMetadata(domain, type, uri, flags)
}
func virEventRegisterDefaultImpl() -> Int32 { lib?.eventRegisterDefaultImpl() ?? -1 }
func virEventRunDefaultImpl() -> Int32 { lib?.eventRunDefaultImpl() ?? -1 }
func virGetLastError() -> virErrorPtr? { lib?.getLastError() }
func virGetLastErrorMessage() -> UnsafePointer<CChar>? { lib?.getLastErrorMessage() }
func virSetErrorFunc(_ userData: UnsafeMutableRawPointer?, _ handler: virErrorFunc?) { lib?.setErrorFunc(userData, handler) }
