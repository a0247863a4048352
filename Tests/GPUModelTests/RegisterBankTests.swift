import Testing
import PVZContract
import PVZServer
@testable import GPUModel

@Suite struct RegisterBankTests {
    func read(_ b: RegisterBank, _ o: UInt32) -> UInt32? { try? b.read(offset: o).get() }

    @Test func identityRegisters() {
        let b = RegisterBank(osid: OSID(3), bvnc: 0x0024_0034_0068_00B6)
        #expect(read(b, PVZRegister.coreID) == 0x505A_0001)
        #expect(read(b, PVZRegister.bvncLo) == 0x0068_00B6)
        #expect(read(b, PVZRegister.bvncHi) == 0x0024_0034)
        #expect(read(b, PVZRegister.osid) == 3)
        #expect(read(b, 0xFFFC) == 0)   // reserved reads as zero
        #expect(VirtioPVZ.defaultBVNC == 0x0024_0034_0068_00B6)
    }

    @Test func badOffsets() {
        let b = RegisterBank(osid: OSID(1))
        for o: UInt32 in [1, 2, 3, 0x10000, 0xFFFF_FFFC] {
            #expect(throws: PVZStatus.invalidParams) { try b.read(offset: o).get() }
            #expect(b.write(offset: o, value: 0) == .invalidParams)
        }
    }

    @Test func readOnlyRegistersRefuseWrites() {
        let b = RegisterBank(osid: OSID(1))
        let writable: Set<UInt32> = [PVZRegister.irqStatus, PVZRegister.irqEnable, PVZRegister.scratch]
        for o in PVZRegister.all where !writable.contains(o) {
            let before = read(b, o)
            #expect(b.write(offset: o, value: 0xDEAD_BEEF) == .invalidParams, "offset \(o)")
            if o != PVZRegister.clockLo && o != PVZRegister.clockHi { #expect(read(b, o) == before) }
        }
        #expect(b.write(offset: 0x100, value: 1) == .invalidParams)   // reserved
        #expect(b.write(offset: PVZRegister.scratch, value: 0x1234_5678) == .ok)
        #expect(read(b, PVZRegister.scratch) == 0x1234_5678)
    }

    @Test func irqStatusIsWriteOneToClear() {
        let b = RegisterBank(osid: OSID(1))
        b.raise(GPUEvent(type: .firmware, code: 1, value: 0))
        b.raise(GPUEvent(type: .vmManager, code: 2, value: 0))
        #expect(read(b, PVZRegister.irqStatus) == 3)
        #expect(b.write(offset: PVZRegister.irqStatus, value: 1) == .ok)
        #expect(read(b, PVZRegister.irqStatus) == 2)
        #expect(b.write(offset: PVZRegister.irqStatus, value: 0) == .ok)   // writing 0 clears nothing
        #expect(read(b, PVZRegister.irqStatus) == 2)
        #expect(b.write(offset: PVZRegister.irqStatus, value: 4) == .invalidParams)
        #expect(b.write(offset: PVZRegister.irqStatus, value: 2) == .ok)
        #expect(read(b, PVZRegister.irqStatus) == 0)
    }

    @Test func irqEnableMasksDelivery() {
        let b = RegisterBank(osid: OSID(1))
        #expect(read(b, PVZRegister.irqEnable) == 3)
        #expect(b.write(offset: PVZRegister.irqEnable, value: 2) == .ok)
        #expect(b.raise(GPUEvent(type: .firmware, code: 7, value: 0)) == false)
        #expect(read(b, PVZRegister.irqStatus) == 1)   // latched even when masked
        #expect(b.pendingEvents == 0)
        #expect(b.raise(GPUEvent(type: .vmManager, code: 8, value: 0)) == true)
        #expect(b.nextEvent() == GPUEvent(type: .vmManager, code: 8, value: 0))
        #expect(b.write(offset: PVZRegister.irqEnable, value: 0x10) == .invalidParams)
        #expect(read(b, PVZRegister.eventsRaised) == 2)
    }

    @Test func backlogOverflowDropsOldest() {
        let b = RegisterBank(osid: OSID(1), backlogCapacity: 4)
        for i in 0..<10 { b.raise(GPUEvent(type: .firmware, code: 0, value: UInt64(i))) }
        #expect(b.pendingEvents == 4)
        #expect(b.droppedEvents == 6)
        #expect(read(b, PVZRegister.eventsDropped) == 6)
        #expect(read(b, PVZRegister.eventsPending) == 4)
        #expect((0..<4).map { _ in b.nextEvent()!.value } == [6, 7, 8, 9])
        #expect(b.nextEvent() == nil)
    }

    @Test func backlogUnit() {
        var q = EventBacklog(capacity: 2)
        #expect(q.pop() == nil && q.isEmpty)
        q.push(GPUEvent(type: .firmware, code: 1, value: 1))
        q.push(GPUEvent(type: .firmware, code: 2, value: 2))
        q.push(GPUEvent(type: .firmware, code: 3, value: 3))
        #expect(q.count == 2 && q.dropped == 1)
        #expect(q.peek()?.code == 2)
        #expect(q.pop()?.code == 2 && q.pop()?.code == 3 && q.pop() == nil)
    }

    @Test func eventEncodeFixture() {
        var bytes = [UInt8](repeating: 0xEE, count: 16)
        let e = GPUEvent(type: .vmManager, code: 0xE000_0001, value: 0x0102_0304_0506_0708)
        #expect(bytes.withUnsafeMutableBytes { e.encode(into: $0) })
        #expect(bytes == [2, 0, 0, 0, 0x01, 0, 0, 0xE0, 8, 7, 6, 5, 4, 3, 2, 1])
        #expect(bytes.withUnsafeBytes { GPUEvent.decode(from: $0) } == e)
        var small = [UInt8](repeating: 0, count: 15)
        #expect(small.withUnsafeMutableBytes { e.encode(into: $0) } == false)
        let badType: [UInt8] = [3, 0, 0, 0] + [UInt8](repeating: 0, count: 12)
        #expect(badType.withUnsafeBytes { GPUEvent.decode(from: $0) } == nil)
    }

    @Test func mirrorOverwritesGuestStores() {
        let b = RegisterBank(osid: OSID(2))
        _ = b.write(offset: PVZRegister.scratch, value: 0x55AA)
        b.setStatus([.online, .heapMapped], true)
        b.raise(GPUEvent(type: .firmware, code: 0, value: 0))
        let bank = UnsafeMutableRawBufferPointer.allocate(byteCount: 0x10000, alignment: 4096)
        defer { bank.deallocate() }
        bank.initializeMemory(as: UInt8.self, repeating: 0xFF)   // the guest's own stores
        b.mirror(into: bank.baseAddress!)
        func at(_ o: UInt32) -> UInt32 { bank.load(fromByteOffset: Int(o), as: UInt32.self) }
        #expect(at(PVZRegister.coreID) == PVZRegister.coreIDValue)
        #expect(at(PVZRegister.osid) == 2)
        #expect(at(PVZRegister.scratch) == 0x55AA)
        #expect(at(PVZRegister.fwStatus) == FirmwareStatus([.online, .heapMapped]).rawValue)
        #expect(at(PVZRegister.irqStatus) == 1)
        #expect(at(PVZRegister.eventsPending) == 1)
        #expect(at(PVZRegister.calls) == 0)
        #expect(at(0x100) == 0xFFFF_FFFF)   // reserved space untouched
        for o in PVZRegister.all where o != PVZRegister.clockLo && o != PVZRegister.clockHi { #expect(at(o) == read(b, o), "offset \(o)") }
    }

    @Test func clockRuns() async throws {
        let b = RegisterBank(osid: OSID(1))
        let a = b.clockNs
        try await Task.sleep(for: .milliseconds(5))
        let c = b.clockNs
        #expect(c - a >= 5_000_000)
        let lo = read(b, PVZRegister.clockLo)!
        let hi = read(b, PVZRegister.clockHi)!
        #expect(UInt64(hi) << 32 | UInt64(lo) >= c)
    }

    @Test func firmwareProgressMirrored() {
        let b = RegisterBank(osid: OSID(1))
        let h = Heap(ringSize: 256)
        var fw = Firmware(osid: OSID(1))
        h.command(at: 0, op: 3, seq: 0x1_0000_0007, arg0: 9)
        h.command(at: 32, op: 9, seq: 0x1_0000_0008)
        let r = fw.run(heap: h.buf, upTo: 64, clockNs: b.clockNs) { b.raise($0) }
        b.recordKick(r)
        #expect(read(b, PVZRegister.kicks) == 1 && read(b, PVZRegister.commands) == 1 && read(b, PVZRegister.faults) == 1)
        #expect(read(b, PVZRegister.fwReadOffset) == 64)
        #expect(read(b, PVZRegister.fwCompletedSeqLo) == 8 && read(b, PVZRegister.fwCompletedSeqHi) == 1)
        #expect(b.pendingEvents == 3)   // IRQ, fault, kick done
        #expect(read(b, PVZRegister.irqStatus) == 1)
        let zero = Heap(magic: 0)
        let bad = withExtendedLifetime(zero) { fw.run(heap: zero.buf, upTo: 0, clockNs: 0) { b.raise($0) } }
        b.recordKick(bad)
        #expect(b.status.contains(.lastKickFailed))
        #expect(read(b, PVZRegister.faults) == 2)
    }

    @Test func throughTheServer() throws {
        // The real bank behind PVZHostServer's READ_REG / WRITE_REG.
        let carve = IPARange(start: IPA(0x2000_0000), size: 64 << 20)!
        let s = try PVZHostServer(guests: [GuestSpec(osid: OSID(1), carveout: carve)])
        try s.onVmOnline(osid: OSID(1), priority: 0)
        let b = RegisterBank(osid: OSID(1))
        struct AllRAM: GuestRAM { func contains(_ r: IPARange) -> Bool { true } }
        func call(_ f: PVZFunction, _ input: [UInt8]) -> (PVZStatus, UInt32) {
            var req = [UInt8](repeating: 0, count: 16) + input
            req.withUnsafeMutableBytes { _ = HypercallRequestHeader(function: f.rawValue).encode(into: $0) }
            var resp = [UInt8](repeating: 0, count: 32)
            let o = req.withUnsafeBytes { rq in resp.withUnsafeMutableBytes { s.handleCall(osid: OSID(1), request: rq, response: $0, ram: AllRAM(), registers: b) } }
            return (o.status, resp.withUnsafeBytes { $0.load(fromByteOffset: 16, as: UInt32.self) })
        }
        func le(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
        #expect(call(.readReg, le(PVZRegister.bvncHi)) == (.ok, 0x0024_0034))
        b.raise(GPUEvent(type: .firmware, code: 0, value: 0))
        #expect(call(.writeReg, le(PVZRegister.irqStatus) + le(1)).0 == .ok)
        #expect(read(b, PVZRegister.irqStatus) == 0)
        #expect(call(.writeReg, le(PVZRegister.coreID) + le(1)).0 == .invalidParams)
        #expect(call(.readReg, le(0x10000)).0 == .invalidParams)
        #expect(read(b, PVZRegister.calls) == 4)
    }
}
