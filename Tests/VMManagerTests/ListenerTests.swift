import CLibvirt
import Foundation
import Glibc
import PVZContract
import PVZServer
import Testing
@testable import VMManager

/// The listener against libvirt's real test driver (test:///default, shared
/// by every connection in this process, events delivered in-process).
/// Domain names are unique per test so tests can run side by side.
final class ListenerFixture: @unchecked Sendable {
    let events = Locked([VMEvent]())
    let names: Set<String>
    var listener: LibvirtListener!
    let conn: OpaquePointer

    init(names: Set<String>, start: Bool = true) throws {
        self.names = names
        try LibvirtEventLoop.ensureRunning()
        guard let c = virConnectOpen("test:///default") else { throw LibvirtError(message: lastLibvirtError()) }
        conn = c
        listener = LibvirtListener(uri: "test:///default") { [events, names] e in
            // Other tests' domains share the driver: keep our own.
            let name: String
            switch e {
            case .online(_, _, let d), .offline(_, let d), .invalid(let d, _): name = d
            }
            if names.contains(name) { events.withLock { $0.append(e) } }
        }
        if start { try listener.start() }
    }

    deinit {
        listener.stop()
        virConnectClose(conn)
    }

    static func xml(_ name: String, metadata: String?) -> String {
        """
        <domain type='test'><name>\(name)</name><memory>65536</memory><os><type>hvm</type></os>\
        \(metadata.map { "<metadata>\($0)</metadata>" } ?? "")</domain>
        """
    }

    static func pvz(osid: String, priority: String? = nil) -> String {
        "<pvz:guest xmlns:pvz='urn:vhost-user-pvz:1' osid='\(osid)'" + (priority.map { " priority='\($0)'" } ?? "") + "/>"
    }

    @discardableResult
    func create(_ name: String, metadata: String?) throws -> OpaquePointer {
        guard let d = virDomainCreateXML(conn, Self.xml(name, metadata: metadata), 0) else {
            throw LibvirtError(message: lastLibvirtError())
        }
        return d
    }

    func destroy(_ d: OpaquePointer) {
        virDomainDestroy(d)
        virDomainFree(d)
    }

    /// Waits until `count` events arrived (or 5 s), returns them all.
    func waitFor(_ count: Int, settle: Double = 0.2, timeout: Double = 5) -> [VMEvent] {
        let deadline = Date().addingTimeInterval(timeout)
        while events.withLock({ $0.count }) < count, Date() < deadline { usleep(10_000) }
        usleep(UInt32(settle * 1_000_000))  // let any unwanted extra event show up
        return events.withLock { $0 }
    }
}

/// Every test that talks to libvirt's shared test driver, one at a time: a
/// test's flood of events must not make another's wait time out.
@Suite(.serialized) struct LibvirtTests {}

extension LibvirtTests {
    @Suite struct ListenerTests {
        @Test func startAndDestroyMapToOnlineAndOffline() throws {
            let f = try ListenerFixture(names: ["pvz-l1"])
            let d = try f.create("pvz-l1", metadata: ListenerFixture.pvz(osid: "3", priority: "5"))
            #expect(f.waitFor(1) == [.online(osid: OSID(3), priority: 5, domain: "pvz-l1")])
            f.destroy(d)
            #expect(f.waitFor(2) == [.online(osid: OSID(3), priority: 5, domain: "pvz-l1"), .offline(osid: OSID(3), domain: "pvz-l1")])
        }

        @Test func missingPriorityMeansDaemonDefault() throws {
            let f = try ListenerFixture(names: ["pvz-l2"])
            let d = try f.create("pvz-l2", metadata: ListenerFixture.pvz(osid: "2"))
            defer { f.destroy(d) }
            #expect(f.waitFor(1) == [.online(osid: OSID(2), priority: nil, domain: "pvz-l2")])
        }

        @Test func domainWithoutTheDeviceIsIgnored() throws {
            let f = try ListenerFixture(names: ["pvz-plain", "pvz-other-ns", "pvz-l3"])
            let plain = try f.create("pvz-plain", metadata: nil)
            let other = try f.create("pvz-other-ns", metadata: "<x:guest xmlns:x='urn:someone-else' osid='1'/>")
            // A domain with the device after them: once its event is in, theirs would be too.
            let marked = try f.create("pvz-l3", metadata: ListenerFixture.pvz(osid: "1"))
            #expect(f.waitFor(1) == [.online(osid: OSID(1), priority: nil, domain: "pvz-l3")])
            f.destroy(plain)
            f.destroy(other)
            f.destroy(marked)
            #expect(f.waitFor(2) == [.online(osid: OSID(1), priority: nil, domain: "pvz-l3"), .offline(osid: OSID(1), domain: "pvz-l3")])
        }

        @Test func badMetadataIsReportedNotApplied() throws {
            let f = try ListenerFixture(names: ["pvz-bad-prio", "pvz-bad-osid"])
            let a = try f.create("pvz-bad-prio", metadata: ListenerFixture.pvz(osid: "1", priority: "high"))
            let b = try f.create("pvz-bad-osid", metadata: ListenerFixture.pvz(osid: "0"))
            let events = f.waitFor(2)
            #expect(events.count == 2)
            for e in events {
                guard case .invalid(let domain, let reason) = e else { Issue.record("expected invalid, got \(e)"); continue }
                if domain == "pvz-bad-prio" { #expect(reason.contains("priority \"high\"")) }
                else { #expect(reason.contains("osid \"0\"")) }
            }
            // Stopping them undoes nothing: they never came online.
            f.destroy(a)
            f.destroy(b)
            #expect(f.waitFor(3, settle: 0, timeout: 0.5).count == 2)
        }

        @Test func runningDomainsAreFoundAtStartAndNotRepeated() throws {
            let f = try ListenerFixture(names: ["pvz-early"], start: false)
            let d = try f.create("pvz-early", metadata: ListenerFixture.pvz(osid: "4", priority: "9"))
            try f.listener.start()
            #expect(f.waitFor(1) == [.online(osid: OSID(4), priority: 9, domain: "pvz-early")])
            // Suspend/resume are no VM-manager events.
            virDomainSuspend(d)
            virDomainResume(d)
            #expect(f.waitFor(2, settle: 0, timeout: 0.5).count == 1)
            f.destroy(d)
            #expect(f.waitFor(2) == [.online(osid: OSID(4), priority: 9, domain: "pvz-early"), .offline(osid: OSID(4), domain: "pvz-early")])
            #expect(f.listener.isConnected)
            #expect(f.listener.connectCount == 1)
        }

        @Test func unreachableLibvirtIsRetriedNotFatal() throws {
            let l = LibvirtListener(uri: "qemu+unix:///system?socket=/nonexistent/libvirt-sock") { _ in }
            try l.start()
            usleep(300_000)
            #expect(!l.isConnected)
            let t0 = Date()
            l.stop()
            #expect(Date().timeIntervalSince(t0) < 1, "stop must not wait out the backoff")
        }

        @Test func listenerAndHookTogetherHaveOneEffect() throws {
            let vmm = TestVMManager(defaultPriority: 1)
            let root = PeerCredentials(pid: getpid(), uid: 0, gid: 0)
            let f = try ListenerFixture(names: ["pvz-both"])
            let d = try f.create("pvz-both", metadata: ListenerFixture.pvz(osid: "2", priority: "6"))
            let online = f.waitFor(1)
            #expect(online.count == 1)
            // The hook got there first (its "started" runs before the event).
            #expect(vmm.handle(.online(osid: OSID(2), priority: 6), peer: root).ok)
            #expect(VMEventApplier.apply(online[0], to: vmm, peer: root) == .alreadyDone("OSID 2 already online with priority 6"))
            #expect(vmm.guests.withLock { $0[2]!.online && $0[2]!.priority == 6 })
            // The same OSID online with another priority is a conflict, reported.
            let clash = VMEventApplier.apply(.online(osid: OSID(2), priority: 7, domain: "x"), to: vmm, peer: root)
            guard case .failed(let code, let message) = clash else { Issue.record("clash accepted"); return }
            #expect(code == ControlErrorCode.osidIsOnline && message.contains("priority 6, not 7"))
            f.destroy(d)
            let all = f.waitFor(2)
            try #require(all.count == 2)
            #expect(VMEventApplier.apply(all[1], to: vmm, peer: root) == .applied)
            // The hook's "stopped" comes second and changes nothing.
            #expect(VMEventApplier.apply(.offline(osid: OSID(2), domain: "pvz-both"), to: vmm, peer: root) == .alreadyDone("OSID 2 already offline"))
            #expect(vmm.guests.withLock { !$0[2]!.online })
            #expect(VMEventApplier.apply(.invalid(domain: "x", reason: "y"), to: vmm, peer: root) == .ignored)
            #expect(VMEventApplier.apply(.online(osid: OSID(6), priority: nil, domain: "x"), to: vmm, peer: root)
                    == .failed(code: ControlErrorCode.invalidOSID, message: "OSID 6 is not a configured guest"))
        }
    }
}
