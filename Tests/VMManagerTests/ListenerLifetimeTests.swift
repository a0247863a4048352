import CLibvirt
import Foundation
import Glibc
import Platform
import Synchronization
import Testing
@testable import VMManager

extension LibvirtTests {
    /// A stopped listener may be released at once, while libvirt's event
    /// thread is about to deliver another domain's event to it
    /// (test:///default is shared: every listener hears every domain).
    /// libvirt must hold the listener until it has let go of the callback.
    /// The window is a few instructions wide, so this is a stress test: many
    /// listeners start and stop under a flood of domain events (serialized
    /// with the other libvirt tests, whose events it would delay). It crashed
    /// in about one run in three before the fix.
    @Suite struct ListenerLifetime {
        final class Churn: @unchecked Sendable {
            let conn: OpaquePointer
            let done = Atomic<Bool>(false)
            init(_ c: OpaquePointer) { conn = c }
        }

        @Test func listenersStoppedUnderAFloodOfEventsAreNeverCalledAfterTheyAreGone() throws {
            try LibvirtEventLoop.ensureRunning()
            guard let conn = virConnectOpen("test:///default") else { throw LibvirtError(message: lastLibvirtError()) }
            defer { virConnectClose(conn) }
            let churn = Churn(conn)
            let thread = try OSThread(name: "pvz-test-churn") {
                let xml = "<domain type='test'><name>pvz-lifetime</name><memory>65536</memory><os><type>hvm</type></os></domain>"
                while !churn.done.load(ordering: .relaxed) {
                    if let d = virDomainCreateXML(churn.conn, xml, 0) { virDomainDestroy(d); virDomainFree(d) }
                }
            }
            defer { churn.done.store(true, ordering: .relaxed); thread.join() }
            var connected = 0
            for _ in 0..<1000 {
                let l = LibvirtListener(uri: "test:///default") { _ in }
                try l.start()
                let deadline = Date().addingTimeInterval(5)
                while !l.isConnected, Date() < deadline { usleep(1_000) }
                if l.isConnected { connected += 1 }
                usleep(2_000)
                l.stop()
                // `l` is released here: only libvirt's own hold may keep it.
            }
            #expect(connected == 1000)
        }

        /// libvirt's hold ends with the registration: a stopped listener is freed.
        @Test func aStoppedListenerIsReleased() throws {
            weak var gone: LibvirtListener?
            do {
                let l = LibvirtListener(uri: "test:///default") { _ in }
                gone = l
                try l.start()
                let deadline = Date().addingTimeInterval(5)
                while !l.isConnected, Date() < deadline { usleep(1_000) }
                #expect(l.isConnected)
                l.stop()
            }
            let deadline = Date().addingTimeInterval(2)
            while gone != nil, Date() < deadline { usleep(1_000) }
            #expect(gone == nil, "a stopped listener is still held (libvirt never released it)")
        }
    }
}
