import Testing
import PVZContract
import PVZServer
@testable import GPUModel

/// A firmware heap in (test-owned) memory, page aligned like a real mapping.
final class Heap {
    let buf: UnsafeMutableRawBufferPointer
    init(size: Int = 64 * 1024, ringSize: UInt32 = 4096, magic: UInt32 = FirmwareRing.magic) {
        buf = .allocate(byteCount: size, alignment: 4096)
        buf.initializeMemory(as: UInt8.self, repeating: 0)
        put32(0, magic)
        put32(4, ringSize)
    }
    deinit { buf.deallocate() }
    func put32(_ off: Int, _ v: UInt32) { buf.storeBytes(of: v.littleEndian, toByteOffset: off, as: UInt32.self) }
    func put64(_ off: Int, _ v: UInt64) { buf.storeBytes(of: v.littleEndian, toByteOffset: off, as: UInt64.self) }
    func get32(_ off: Int) -> UInt32 { UInt32(littleEndian: buf.load(fromByteOffset: off, as: UInt32.self)) }
    func get64(_ off: Int) -> UInt64 { UInt64(littleEndian: buf.load(fromByteOffset: off, as: UInt64.self)) }
    /// Writes a command at ring offset `at`.
    func command(at: Int, op: UInt32, flags: UInt32 = 0, seq: UInt64, arg0: UInt64 = 0, arg1: UInt64 = 0) {
        let b = FirmwareRing.headerSize + at
        put32(b, op); put32(b + 4, flags); put64(b + 8, seq); put64(b + 16, arg0); put64(b + 24, arg1)
    }
}

struct Run {
    var result: FirmwareRunResult
    var events: [GPUEvent]
    var faults: [GPUEvent] { events.filter { $0.code == GPUEvent.codeFirmwareFault } }
}

func run(_ fw: inout Firmware, _ h: Heap, upTo w: UInt32, clock: UInt64 = 1000) -> Run {
    var ev: [GPUEvent] = []
    let r = fw.run(heap: h.buf, upTo: w, clockNs: clock) { ev.append($0) }
    return Run(result: r, events: ev)
}

@Suite struct FirmwareTests {
    @Test func ringFillsFencesTimestampsIRQs() {
        let h = Heap()
        var fw = Firmware(osid: OSID(1))
        h.command(at: 0, op: 1, seq: 1, arg0: 0x8000, arg1: 0xABCD_EF01_2345_6789)
        h.command(at: 32, op: 2, seq: 2, arg0: 0x8008)
        h.command(at: 64, op: 2, seq: 3, arg0: 0x8010)
        h.command(at: 96, op: 3, seq: 4, arg0: 0x55)
        h.command(at: 128, op: 0, seq: 5)
        let r = run(&fw, h, upTo: 160, clock: 5000)
        #expect(r.result.kickError == nil && r.result.faults == 0)
        #expect(r.result.commandsRun == 5 && r.result.irqsRaised == 1)
        #expect(h.get64(0x8000) == 0xABCD_EF01_2345_6789)
        let t1 = h.get64(0x8008), t2 = h.get64(0x8010)
        #expect(t1 >= 5000 && t2 > t1)
        #expect(h.get32(FirmwareRing.readOffsetField) == 160)
        #expect(h.get64(FirmwareRing.completedSeqField) == 5)
        #expect(r.events == [GPUEvent(type: .firmware, code: 0x55, value: 4),
                             GPUEvent(type: .firmware, code: GPUEvent.codeKickDone, value: 5)])
        // Next kick: a timestamp with the clock going backwards still moves forward.
        h.command(at: 160, op: 2, seq: 6, arg0: 0x8018)
        let r2 = run(&fw, h, upTo: 192, clock: 10)
        #expect(r2.result.commandsRun == 1)
        #expect(h.get64(0x8018) > t2)
        #expect(h.get64(FirmwareRing.completedSeqField) == 6)
    }

    @Test func ringWrapsAround() {
        let h = Heap(ringSize: 128)   // four slots
        var fw = Firmware(osid: OSID(1))
        for (i, s) in [(0, 1), (32, 2), (64, 3)] { h.command(at: i, op: 1, seq: UInt64(s), arg0: 0x2000 + UInt64(s) * 8, arg1: UInt64(s)) }
        #expect(run(&fw, h, upTo: 96).result.commandsRun == 3)
        for (i, s) in [(96, 4), (0, 5), (32, 6)] { h.command(at: i, op: 1, seq: UInt64(s), arg0: 0x2000 + UInt64(s) * 8, arg1: UInt64(s)) }
        let r = run(&fw, h, upTo: 64)
        #expect(r.result.commandsRun == 3 && r.result.readOffset == 64)
        #expect((1...6).allSatisfy { h.get64(0x2000 + $0 * 8) == UInt64($0) })
        #expect(h.get64(FirmwareRing.completedSeqField) == 6)
    }

    @Test func emptyKickStillReports() {
        let h = Heap()
        var fw = Firmware(osid: OSID(1))
        let r = run(&fw, h, upTo: 0)
        #expect(r.result.commandsRun == 0 && r.result.kickError == nil)
        #expect(r.events == [GPUEvent(type: .firmware, code: 0, value: 0)])
    }

    @Test func badMagicFailsKick() {
        let h = Heap(magic: 0x474E_4953)
        h.command(at: 0, op: 1, seq: 1, arg0: 0x8000, arg1: 7)
        h.put32(FirmwareRing.readOffsetField, 0x1234)
        var fw = Firmware(osid: OSID(1))
        let r = run(&fw, h, upTo: 32)
        #expect(r.result.kickError == .badMagic)
        #expect(r.result.commandsRun == 0)
        #expect(h.get64(0x8000) == 0)
        #expect(h.get32(FirmwareRing.readOffsetField) == 0x1234)   // nothing written
        #expect(r.events == [GPUEvent(type: .firmware, code: 0xE000_0001, value: UInt64(FirmwareFault.badMagic.rawValue) << 32 | 0x474E_4953)])
    }

    @Test func badRingSizes() {
        var fw = Firmware(osid: OSID(1))
        for (size, fault) in [(UInt32(3000), FirmwareFault.ringSizeNotPowerOfTwo), (0, .ringSizeNotPowerOfTwo),
                              (16, .ringSizeNotPowerOfTwo), (65536, .ringTooLarge), (1 << 31, .ringTooLarge)] {
            let h = Heap(ringSize: size)
            let r = run(&fw, h, upTo: 0)
            #expect(r.result.kickError == fault, "ring_size \(size)")
            #expect(r.faults.count == 1)
        }
        // Largest allowed: heap size - 4 KiB rounded down to a power of two.
        #expect(run(&fw, Heap(size: 0x11000, ringSize: 0x10000), upTo: 0).result.kickError == nil)
    }

    @Test func badWriteOffsets() {
        let h = Heap(ringSize: 4096)
        var fw = Firmware(osid: OSID(1))
        #expect(run(&fw, h, upTo: 4096).result.kickError == .writeOffsetOutOfRing)
        #expect(run(&fw, h, upTo: .max).result.kickError == .writeOffsetOutOfRing)
        #expect(run(&fw, h, upTo: 33).result.kickError == .writeOffsetUnaligned)
        #expect(run(&fw, h, upTo: 16).result.kickError == .writeOffsetUnaligned)
        #expect(fw.readOffset == 0)
    }

    @Test func heapTooSmallOrMisaligned() {
        var fw = Firmware(osid: OSID(1))
        let small = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { small.deallocate() }
        #expect(fw.run(heap: small, upTo: 0, clockNs: 0) { _ in }.kickError == .heapTooSmall)
        let h = Heap()
        let odd = UnsafeMutableRawBufferPointer(rebasing: h.buf[4...])
        #expect(fw.run(heap: odd, upTo: 0, clockNs: 0) { _ in }.kickError == .heapMisaligned)
    }

    @Test func badCommandsFailAlone() {
        let heapSize = 64 * 1024
        let h = Heap(size: heapSize, ringSize: 1024)
        var fw = Firmware(osid: OSID(1))
        let bad: [(UInt32, UInt32, UInt64, FirmwareFault)] = [
            (1, 0, UInt64(heapSize - 4), .targetOutsideHeap),   // straddles the end
            (1, 0, UInt64(heapSize), .targetOutsideHeap),
            (2, 0, .max, .targetOutsideHeap),                   // would wrap
            (1, 0, 0x2004, .targetUnaligned),
            (1, 0, 0x0008, .targetInRingArea),                  // read_offset field
            (2, 0, 0x1000 + 64, .targetInRingArea),             // command area
            (9, 0, 0, .unknownOp),
            (0, 1, 0, .reservedFlags),
            (3, 0, 1 << 32, .irqCodeTooLarge),
        ]
        var at = 0
        for (i, b) in bad.enumerated() {
            h.command(at: at, op: b.0, flags: b.1, seq: UInt64(i + 1), arg0: b.2, arg1: 0xFFFF)
            at += 32
        }
        // A good fence after all of them still runs.
        h.command(at: at, op: 1, seq: 100, arg0: 0x3000, arg1: 42)
        at += 32
        let r = run(&fw, h, upTo: UInt32(at))
        #expect(r.result.faults == bad.count && r.result.commandsRun == 1)
        #expect(r.faults.map { FirmwareFault(rawValue: UInt32($0.value >> 32)) } == bad.map(\.3))
        #expect(r.faults.map { $0.value & 0xFFFF_FFFF } == (0..<bad.count).map { UInt64($0 * 32) })
        #expect(h.get64(0x3000) == 42)
        #expect(h.get64(FirmwareRing.completedSeqField) == 100)
        #expect(h.get32(FirmwareRing.readOffsetField) == UInt32(at))
        // The header fields were not the fences' victims.
        #expect(h.get32(0) == FirmwareRing.magic && h.get32(4) == 1024)
        // A fence into the header page past the ring fields is allowed.
        h.command(at: at, op: 1, seq: 101, arg0: 0x40, arg1: 9)
        #expect(run(&fw, h, upTo: UInt32(at + 32)).result.faults == 0)
        #expect(h.get64(0x40) == 9)
    }

    @Test func guestScribblingOverFirmwareFieldsIsIgnored() {
        let h = Heap(ringSize: 256)
        var fw = Firmware(osid: OSID(1))
        h.command(at: 0, op: 1, seq: 1, arg0: 0x2000, arg1: 1)
        #expect(run(&fw, h, upTo: 32).result.commandsRun == 1)
        h.put32(FirmwareRing.readOffsetField, 0)          // the guest rewinds "our" read offset
        h.put64(FirmwareRing.completedSeqField, 999)
        h.command(at: 32, op: 1, seq: 2, arg0: 0x2008, arg1: 2)
        let r = run(&fw, h, upTo: 64)
        #expect(r.result.commandsRun == 1)         // only the new command
        #expect(h.get32(FirmwareRing.readOffsetField) == 64 && h.get64(FirmwareRing.completedSeqField) == 2)
    }

    @Test func ringReinitialisedRestartsAtZero() {
        let h = Heap(ringSize: 256)
        var fw = Firmware(osid: OSID(1))
        h.command(at: 0, op: 0, seq: 1)
        #expect(run(&fw, h, upTo: 32).result.commandsRun == 1)
        h.put32(4, 512)
        h.command(at: 0, op: 0, seq: 2)
        h.command(at: 32, op: 0, seq: 3)
        let r = run(&fw, h, upTo: 64)
        #expect(r.result.commandsRun == 2 && r.result.completedSeq == 3)
    }
}

@Suite struct FirmwareInstanceTests {
    @Test func kickFixtureAndValidation() {
        let bytes: [UInt8] = [0x40, 0x01, 0, 0, 0, 0, 0, 0]
        #expect(bytes.withUnsafeBytes { KickRequest.decode(from: $0) } == KickRequest(writeOffset: 0x140))
        var out = [UInt8](repeating: 0xEE, count: 8)
        #expect(out.withUnsafeMutableBytes { KickRequest(writeOffset: 0x140).encode(into: $0) })
        #expect(out == bytes)
        #expect([UInt8](repeating: 0, count: 7).withUnsafeBytes { KickRequest.decode(from: $0) } == nil)
        #expect([UInt8](repeating: 0, count: 9).withUnsafeBytes { KickRequest.decode(from: $0) } == nil)
    }

    @Test func attachKickDetach() {
        let bank = RegisterBank(osid: OSID(2))
        let fw = FirmwareInstance(bank: bank)
        let h = Heap(ringSize: 256)
        h.command(at: 0, op: 1, seq: 7, arg0: 0x2000, arg1: 99)
        let kick: [UInt8] = [32, 0, 0, 0, 0, 0, 0, 0]
        #expect(kick.withUnsafeBytes { fw.kick($0) } == nil)   // not attached yet
        fw.attach(heap: h.buf, owner: h)
        #expect(bank.status.contains([.running, .heapMapped]))
        let r = kick.withUnsafeBytes { fw.kick($0) }
        #expect(r?.completedSeq == 7 && h.get64(0x2000) == 99)
        #expect(bank.nextEvent() == GPUEvent(type: .firmware, code: 0, value: 7))
        // Flags set: refused with a fault event, nothing run.
        let bad: [UInt8] = [64, 0, 0, 0, 1, 0, 0, 0]
        #expect(bad.withUnsafeBytes { fw.kick($0) } == nil)
        #expect(bank.nextEvent()?.value == UInt64(FirmwareFault.badKick.rawValue) << 32 | 8)
        fw.detach()
        #expect(!fw.isAttached && !bank.status.contains(.running))
        #expect(fw.kick(writeOffset: 64) == nil)
    }
}
