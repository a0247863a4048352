import Platform
import Testing
import Foundation
import PVZContract
import PVZDaemon
import PVZServer
import TestFrontEnd
import VhostUser
import Virtqueue
import VMManager

/// A broken descriptor chain the driver puts on hypercallq.
struct BadChain: CustomTestStringConvertible, Sendable {
    let name: String
    /// Writes descriptors and returns the head to publish.
    let build: @Sendable (Guest) -> UInt16
    var testDescription: String { name }
}

let badChains: [BadChain] = [
    .init(name: "descriptor loop") { g in
        let q = g.hypercallq
        q.writeDesc(0, .init(addr: g.req, len: 16, flags: DriverQueue.fNext, next: 1))
        q.writeDesc(1, .init(addr: g.req, len: 16, flags: DriverQueue.fNext, next: 0))
        return 0 },
    .init(name: "buffer outside guest memory") { g in
        g.hypercallq.writeDesc(0, .init(addr: 0x1_0000_0000, len: 16, flags: 0, next: 0)); return 0 },
    .init(name: "buffer straddling the end of RAM") { g in
        g.hypercallq.writeDesc(0, .init(addr: g.fe.ramSize - 8, len: 16, flags: 0, next: 0)); return 0 },
    .init(name: "next index outside the table") { g in
        g.hypercallq.writeDesc(0, .init(addr: g.req, len: 16, flags: DriverQueue.fNext, next: 500)); return 0 },
    .init(name: "head outside the queue") { _ in 300 },
    .init(name: "readable after writable") { g in
        let q = g.hypercallq
        q.writeDesc(0, .init(addr: g.resp, len: 16, flags: DriverQueue.fWrite | DriverQueue.fNext, next: 1))
        q.writeDesc(1, .init(addr: g.req, len: 16, flags: 0, next: 0))
        return 0 },
    .init(name: "indirect table of 17 bytes") { g in
        let t = g.fe.alloc(64, align: 16)
        g.hypercallq.writeDesc(0, .init(addr: t, len: 17, flags: DriverQueue.fIndirect, next: 0)); return 0 },
    .init(name: "indirect table outside memory") { g in
        g.hypercallq.writeDesc(0, .init(addr: 0x2_0000_0000, len: 32, flags: DriverQueue.fIndirect, next: 0)); return 0 },
    .init(name: "indirect inside indirect") { g in
        let t = g.fe.alloc(64, align: 16)
        g.hypercallq.writeDesc(0, .init(addr: t, len: 16, flags: DriverQueue.fIndirect, next: 0), table: t)
        g.hypercallq.writeDesc(0, .init(addr: t, len: 16, flags: DriverQueue.fIndirect, next: 0)); return 0 },
    .init(name: "indirect with NEXT") { g in
        let t = g.fe.alloc(64, align: 16)
        g.hypercallq.writeDesc(0, .init(addr: t, len: 16, flags: DriverQueue.fIndirect | DriverQueue.fNext, next: 1)); return 0 },
    .init(name: "indirect table longer than the queue") { g in
        let t = g.fe.alloc(16 * 128, align: 16)
        g.hypercallq.writeDesc(0, .init(addr: t, len: 16 * 128, flags: DriverQueue.fIndirect, next: 0)); return 0 },
    .init(name: "loop inside an indirect table") { g in
        let t = g.fe.alloc(64, align: 16)
        g.hypercallq.writeDesc(0, .init(addr: g.req, len: 16, flags: DriverQueue.fNext, next: 1), table: t)
        g.hypercallq.writeDesc(1, .init(addr: g.req, len: 16, flags: DriverQueue.fNext, next: 0), table: t)
        g.hypercallq.writeDesc(0, .init(addr: t, len: 32, flags: DriverQueue.fIndirect, next: 0)); return 0 },
    .init(name: "chain of every descriptor plus one") { g in
        let q = g.hypercallq
        for i in 0..<q.size { q.writeDesc(i, .init(addr: g.req, len: 1, flags: DriverQueue.fNext, next: (i + 1) % q.size)) }
        return 0 },
]

func guestStatus(_ fe: TestFrontEnd) throws -> UInt64 { try fe.getU64(.getStatus) }

@Suite("a hostile guest breaks only its own device")
struct MalformedGuestTests {
    @Test(arguments: badChains)
    func brokenChainNeedsReset(_ bad: BadChain) throws {
        let h = try Harness(guests: [(1, true, GuestPolicy()), (2, true, GuestPolicy())])
        let g1 = try h.connect(1), g2 = try h.connect(2)
        #expect(g1.call(.createDevConfig)?.status == .ok)
        let head = bad.build(g1)
        g1.hypercallq.publish(head: head)
        var n = 0
        while !(h.daemon.status().guests.first { $0.osid == 1 }!.needsReset) && n < 200 { usleep(5_000); n += 1 }
        #expect(h.daemon.status().guests.first { $0.osid == 1 }!.needsReset, "\(bad.name) did not break the device")
        #expect(try guestStatus(g1.fe) & 0x40 != 0)
        // The other guest is untouched and the daemon runs on.
        #expect(g2.call(.createDevConfig)?.status == .ok)
        #expect(h.daemon.status().guests.first { $0.osid == 2 }!.needsReset == false)
        // A device reset (what the guest driver does on NEEDS_RESET) recovers
        // guest 1 as a new boot: its old device config is gone, a new one works.
        #expect(try g1.fe.sendAcked(.resetDevice) == 0)
        g1.fe.forgetQueues()
        try g1.fe.start()
        let g1b = Guest(fe: g1.fe)
        #expect(g1b.call(.createDevConfig)?.status == .ok)
        #expect(try guestStatus(g1.fe) & 0x40 == 0)
    }

    @Test func availIndexJumpNeedsReset() throws {
        let h = try Harness()
        let g = try h.connect(1)
        g.hypercallq.forceAvailIdx(200)
        g.hypercallq.kick.signal()
        var n = 0
        while !h.daemon.status().guests[0].needsReset && n < 200 { usleep(5_000); n += 1 }
        #expect(h.daemon.status().guests[0].needsReset)
    }

    @Test func indirectWithoutTheFeatureNeedsReset() throws {
        let h = try Harness()
        let fe = try TestFrontEnd(path: h.socket(1))
        let offered = try fe.getU64(.getFeatures)
        fe.queues.removeAll()
        let fe2 = try TestFrontEnd(path: h.socket(1))  // refused: one front-end at a time
        #expect(fe2.backendClosed())
        try fe.start(wantFeatures: offered & ~RingFeature.indirectDesc)
        let g = Guest(fe: fe)
        let t = fe.alloc(32, align: 16)
        g.hypercallq.writeDesc(0, .init(addr: g.req, len: 16, flags: 0, next: 0), table: t)
        g.hypercallq.writeDesc(0, .init(addr: t, len: 16, flags: DriverQueue.fIndirect, next: 0))
        g.hypercallq.publish(head: 0)
        var n = 0
        while !h.daemon.status().guests[0].needsReset && n < 200 { usleep(5_000); n += 1 }
        #expect(h.daemon.status().guests[0].needsReset)
    }
}

/// Bad PVZ requests get a status code; the device stays healthy.
@Suite("bad hypercalls get status codes")
struct BadHypercallTests {
    let h: Harness
    let g: Guest
    init() throws {
        h = try Harness()
        g = try h.connect(1)
    }

    @Test func shortRequest() {
        let r = g.raw([1, 0, 0, 0, 0, 0])
        #expect(r?.status == .malformedRequest)
        #expect(r?.len == 16)
    }
    @Test func emptyRequest() { #expect(g.raw([])?.status == .malformedRequest) }
    @Test func unknownFunction() {
        let r = g.raw(Guest.header(77, requestID: 9))
        #expect(r?.status == .malformedRequest)
        #expect(r?.function == 77)
        #expect(r?.requestID == 9)
    }
    @Test func oversizedRequest() {
        #expect(g.raw(Guest.header(1, requestID: 1) + [UInt8](repeating: 0, count: 600))?.status == .malformedRequest)
    }
    @Test func requestWithTrailingBytes() {
        #expect(g.raw(Guest.header(1, requestID: 1) + [0, 0, 0, 0])?.status == .malformedRequest)
    }
    @Test func responseTooSmallGetsLengthZero() {
        let r = g.raw(Guest.header(1, requestID: 1), responseLength: 8)
        #expect(r?.len == 0)
    }
    @Test func noResponseBufferAtAll() {
        let r = g.raw(Guest.header(1, requestID: 1), responseLength: 0)
        #expect(r?.len == 0)
        // A call whose answer cannot be delivered is not executed.
        #expect(g.call(.createDevConfig)?.status == .ok)
    }
    @Test func devIDOtherThanZero() { #expect(g.call(.createDevConfig, devID: 1)?.status == .invalidParams) }
    @Test func mapOutsideRAM() {
        #expect(g.call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(0x4000_0000))?.status == .addressOutOfRange)
    }
    @Test func mapStraddlingEndOfRAM() {
        #expect(g.call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(0x1000_0000 - 0x100_0000))?.status == .addressOutOfRange)
    }
    @Test func mapOverlappingCarveout() {
        #expect(g.call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(0x0700_0000))?.status == .addressOutOfRange)
    }
    @Test func mapUnaligned() {
        #expect(g.call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(0x0100_0010))?.status == .invalidParams)
    }
    @Test func mapZeroAddress() {
        #expect(g.call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(0))?.status == .invalidParams)
    }
    @Test func mapWrongSize() {
        #expect(g.call(.mapDevPhysHeap, Guest.u64(16 << 20) + Guest.u64(0x0100_0000))?.status == .invalidParams)
    }
    @Test func mapWrapping() {
        #expect(g.call(.mapDevPhysHeap, Guest.u64(32 << 20) + Guest.u64(UInt64.max - 0xfff))?.status != .ok)
    }
    @Test func heapIDOutOfRange() { #expect(g.call(.getDevPhysHeapOrigin, Guest.u32(9))?.status == .invalidParams) }
    @Test func destroyOfNothing() {
        #expect(g.call(.destroyDevConfig)?.status == .notFound)
        #expect(g.call(.destroyDevPhysHeaps)?.status == .notFound)
        #expect(g.call(.unmapDevPhysHeap)?.status == .notFound)
    }
    @Test func deviceStaysHealthy() {
        _ = g.raw([1])
        _ = g.raw(Guest.header(99, requestID: 1))
        #expect(g.call(.createDevConfig)?.status == .ok)
        #expect(h.daemon.status().guests[0].needsReset == false)
    }
}
