import Testing
import VhostUser

/// Byte fixtures for every vhost-user payload shape, written out by hand from
/// vhost-user.rst (little-endian, packed).
@Suite("vhost-user wire structs against byte fixtures")
struct VhostUserWireFixtureTests {
    func encoded(_ size: Int, _ f: (UnsafeMutableRawBufferPointer) -> Void) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: size)
        b.withUnsafeMutableBytes(f)
        return b
    }

    @Test func header() {
        let bytes: [UInt8] = [0x05, 0, 0, 0, 0x09, 0, 0, 0, 0x28, 0, 0, 0]
        let h = bytes.withUnsafeBytes { MessageHeader.decode($0) }
        #expect(h == MessageHeader(request: 5, flags: 0x9, size: 40))
        #expect(h?.needsReply == true)
        #expect(encoded(12) { h!.encode(into: $0) } == bytes)
        #expect([UInt8](repeating: 0, count: 11).withUnsafeBytes { MessageHeader.decode($0) } == nil)
    }

    @Test func vringState() {
        let bytes: [UInt8] = [2, 0, 0, 0, 0x40, 0, 0, 0]
        let s = bytes.withUnsafeBytes { VringStatePayload.decode($0) }
        #expect(s == VringStatePayload(index: 2, num: 64))
        #expect(encoded(8) { s!.encode(into: $0) } == bytes)
        #expect([UInt8](repeating: 0, count: 9).withUnsafeBytes { VringStatePayload.decode($0) } == nil)
    }

    @Test func vringAddr() {
        let bytes: [UInt8] = [1, 0, 0, 0, 1, 0, 0, 0,
                              0x00, 0x10, 0, 0, 0, 0x7f, 0, 0,
                              0x00, 0x30, 0, 0, 0, 0x7f, 0, 0,
                              0x00, 0x20, 0, 0, 0, 0x7f, 0, 0,
                              0, 0, 0, 0, 0, 0, 0, 0]
        let a = bytes.withUnsafeBytes { VringAddrPayload.decode($0) }
        #expect(a == VringAddrPayload(index: 1, flags: 1, desc: 0x7f00_0000_1000, used: 0x7f00_0000_3000, avail: 0x7f00_0000_2000, log: 0))
        #expect(encoded(40) { a!.encode(into: $0) } == bytes)
    }

    @Test func memoryTable() {
        var bytes: [UInt8] = [1, 0, 0, 0, 0, 0, 0, 0]
        bytes += [0, 0, 0, 0, 0, 0, 0, 0]                 // guest_phys_addr 0
        bytes += [0, 0, 0, 0x20, 0, 0, 0, 0]              // size 512 MiB
        bytes += [0, 0, 0, 0x40, 0x7f, 0, 0, 0]           // userspace_addr
        bytes += [0, 0x10, 0, 0, 0, 0, 0, 0]              // mmap_offset 0x1000
        let t = bytes.withUnsafeBytes { MemoryTablePayload.decode($0) }
        #expect(t?.regions == [MemoryRegionWire(guestPhysAddr: 0, memorySize: 0x2000_0000, userAddr: 0x7f_4000_0000, mmapOffset: 0x1000)])
        #expect(encoded(t!.encodedSize) { t!.encode(into: $0) } == bytes)
        // A count that disagrees with the size is refused.
        var bad = bytes; bad[0] = 2
        #expect(bad.withUnsafeBytes { MemoryTablePayload.decode($0) } == nil)
        var nine = bytes; nine[0] = 9
        #expect(nine.withUnsafeBytes { MemoryTablePayload.decode($0) } == nil)
    }

    @Test func singleRegion() {
        var bytes = [UInt8](repeating: 0, count: 8)
        bytes += [0, 0, 0, 0, 1, 0, 0, 0] + [0, 0, 0x10, 0, 0, 0, 0, 0] + [0, 0, 0, 0, 0x7e, 0, 0, 0] + [0, 0, 0, 0, 0, 0, 0, 0]
        let r = bytes.withUnsafeBytes { SingleRegionPayload.decode($0) }
        #expect(r?.region == MemoryRegionWire(guestPhysAddr: 0x1_0000_0000, memorySize: 0x10_0000, userAddr: 0x7e_0000_0000, mmapOffset: 0))
        #expect(encoded(40) { r!.encode(into: $0) } == bytes)
    }

    @Test func config() {
        let bytes: [UInt8] = [8, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0xAA, 0xBB, 0xCC, 0xDD]
        let c = bytes.withUnsafeBytes { ConfigPayload.decode($0) }
        #expect(c == ConfigPayload(offset: 8, size: 4, flags: 0))
        #expect(encoded(12) { c!.encodeHeader(into: $0) } == Array(bytes[0..<12]))
        #expect(Array(bytes[0..<15]).withUnsafeBytes { ConfigPayload.decode($0) } == nil)
        let huge: [UInt8] = [0, 0, 0, 0, 0x01, 0x01, 0, 0, 0, 0, 0, 0]  // size 257
        #expect(huge.withUnsafeBytes { ConfigPayload.decode($0) } == nil)
    }

    @Test func vringFD() {
        #expect(VringFDPayload(0x102) == VringFDPayload(index: 2, noFD: true))
        #expect(VringFDPayload(index: 1, noFD: false).rawValue == 1)
    }

    @Test func everyRequestHasAName() {
        #expect(FrontEndRequest.allCases.count == 43)
        #expect(Set(FrontEndRequest.allCases.map(\.name)).count == 43)
        #expect(FrontEndRequest(rawValue: 24)?.name == "GET_CONFIG")
    }
}
