import Testing
import PVZContract

/// Hand-written byte fixtures: the contract is the bytes, not the Swift structs.
@Suite struct WireFixtureTests {
    func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    func decode<T>(_ bytes: [UInt8], _ f: (UnsafeRawBufferPointer) -> T?) -> T? { bytes.withUnsafeBytes(f) }
    func encode(_ n: Int, _ f: (UnsafeMutableRawBufferPointer) -> Bool) -> [UInt8] {
        var b = [UInt8](repeating: 0xEE, count: n)
        let ok = b.withUnsafeMutableBytes(f)
        #expect(ok)
        return b
    }

    @Test func requestHeader() {
        let bytes: [UInt8] = [0x05, 0, 0, 0,  0x11, 0x22, 0x33, 0x44,  0, 0, 0, 0,  0xEF, 0xBE, 0xAD, 0xDE]
        let h = decode(bytes, HypercallRequestHeader.decode)
        #expect(h == HypercallRequestHeader(function: 5, funcID: 0x4433_2211, devID: 0, requestID: 0xDEAD_BEEF))
        #expect(encode(16) { h!.encode(into: $0) } == bytes)
        #expect(decode(Array(bytes[0..<15]), HypercallRequestHeader.decode) == nil)
        var small = [UInt8](repeating: 0, count: 15)
        #expect(small.withUnsafeMutableBytes { h!.encode(into: $0) } == false)
        #expect(small == [UInt8](repeating: 0, count: 15))
    }

    @Test func responseHeader() {
        let bytes: [UInt8] = [0x07, 0, 0, 0,  0x08, 0, 0, 0,  0x78, 0x56, 0x34, 0x12,  0, 0, 0, 0]
        let h = decode(bytes, HypercallResponseHeader.decode)
        #expect(h == HypercallResponseHeader(status: 7, function: 8, requestID: 0x1234_5678))
        #expect(encode(16) { h!.encode(into: $0) } == bytes)
    }

    @Test func mapInput() {
        let bytes: [UInt8] = [0, 0, 0, 2, 0, 0, 0, 0,   0, 0x10, 0, 0x40, 0x01, 0, 0, 0]
        let v = decode(bytes, MapDevPhysHeapInput.decode)
        #expect(v == MapDevPhysHeapInput(size: 0x0200_0000, ipa: IPA(0x1_4000_1000)))
        #expect(encode(16) { v!.encode(into: $0) } == bytes)
        #expect(decode(Array(bytes[0..<15]), MapDevPhysHeapInput.decode) == nil)
    }

    @Test func heapQueryAndRegInputs() {
        #expect(decode([2, 0, 0, 0], HeapQueryInput.decode) == HeapQueryInput(heap: 2))
        #expect(encode(4) { HeapQueryInput(heap: 4).encode(into: $0) } == [4, 0, 0, 0])
        #expect(decode([0x10, 0x01, 0, 0], ReadRegInput.decode) == ReadRegInput(offset: 0x110))
        #expect(encode(4) { ReadRegInput(offset: 0xFFFC).encode(into: $0) } == [0xFC, 0xFF, 0, 0])
        let w: [UInt8] = [0x0C, 0, 0, 0, 0x01, 0x02, 0x03, 0x04]
        #expect(decode(w, WriteRegInput.decode) == WriteRegInput(offset: 0xC, value: 0x0403_0201))
        #expect(encode(8) { WriteRegInput(offset: 0xC, value: 0x0403_0201).encode(into: $0) } == w)
        #expect(decode([1, 2, 3], HeapQueryInput.decode) == nil)
        #expect(decode([1, 2, 3, 4, 5, 6, 7], WriteRegInput.decode) == nil)
    }

    @Test func createDevConfigOutput() {
        let bytes: [UInt8] = [0x2A, 0, 0, 0,  0, 0, 1, 0,  0, 0, 0, 0x20, 0, 0, 0, 0]
        let v = CreateDevConfigOutput(irq: 42, regsSize: 0x10000, regsIPA: IPA(0x2000_0000))
        #expect(encode(16) { v.encode(into: $0) } == bytes)
        #expect(decode(bytes, CreateDevConfigOutput.decode) == v)
    }

    @Test func createDevPhysHeapsOutput() {
        let bytes: [UInt8] = [
            0x02, 0, 0, 0,  0, 0, 0, 0,                    // type LMA, pad
            0, 0, 0, 0x02, 0, 0, 0, 0,                     // fw_size 32 MiB
            0, 0, 0x01, 0x20, 0, 0, 0, 0,                  // fw_paddr 0x2001_0000
            0, 0, 0, 0x01, 0, 0, 0, 0,                     // gpu_size 16 MiB
            0, 0, 0x01, 0x22, 0, 0, 0, 0,                  // gpu_paddr 0x2201_0000
        ]
        let v = CreateDevPhysHeapsOutput(type: 2, fwSize: 32 << 20, fwIPA: IPA(0x2001_0000),
                                         gpuSize: 16 << 20, gpuIPA: IPA(0x2201_0000))
        #expect(encode(40) { v.encode(into: $0) } == bytes)
        #expect(decode(bytes, CreateDevPhysHeapsOutput.decode) == v)
        #expect(decode(Array(bytes[0..<39]), CreateDevPhysHeapsOutput.decode) == nil)
    }

    @Test func heapOutputs() {
        #expect(encode(4) { HeapOriginOutput(origin: 1).encode(into: $0) } == [1, 0, 0, 0])
        #expect(decode([0, 0, 0, 0], HeapOriginOutput.decode) == HeapOriginOutput(origin: 0))
        let b: [UInt8] = [0, 0, 0, 0x02, 0, 0, 0, 0,  0, 0x30, 0, 0, 0x01, 0, 0, 0]
        #expect(encode(16) { HeapAddrSizeOutput(size: 32 << 20, ipa: IPA(0x1_0000_3000)).encode(into: $0) } == b)
        #expect(decode(b, HeapAddrSizeOutput.decode) == HeapAddrSizeOutput(size: 32 << 20, ipa: IPA(0x1_0000_3000)))
        #expect(encode(4) { ReadRegOutput(value: 0xA1B2_C3D4).encode(into: $0) } == [0xD4, 0xC3, 0xB2, 0xA1])
        #expect(decode([0xD4, 0xC3, 0xB2, 0xA1], ReadRegOutput.decode) == ReadRegOutput(value: 0xA1B2_C3D4))
    }

    @Test func unalignedBuffersDecode() {
        // The glue's buffer may start at any byte: decode must not assume alignment.
        let bytes: [UInt8] = [0xFF] + u64(0x1234_5678_9ABC_DEF0) + u64(7)
        let v = bytes.withUnsafeBytes { MapDevPhysHeapInput.decode(from: UnsafeRawBufferPointer(rebasing: $0[1...])) }
        #expect(v == MapDevPhysHeapInput(size: 0x1234_5678_9ABC_DEF0, ipa: IPA(7)))
    }

    @Test func enumValuesAndNames() {
        #expect(PVZFunction.allCases.map(\.rawValue) == Array(1...10))
        #expect(PVZStatus.allCases.map(\.rawValue) == Array(0...10))
        #expect(PVZStatus.vmOffline.pvrsrvError == "PVRSRV_ERROR_PVZ_OSID_IS_OFFLINE")
        for s in PVZStatus.allCases { #expect(PVZStatus(pvrsrvError: s.pvrsrvError) == s) }
        #expect(PVZStatus(pvrsrvError: "PVRSRV_ERROR_BOGUS") == nil)
        #expect(PhysHeap.external.rawValue == 4 && PhysHeap.fwLocal.rawValue == 2)
        #expect(HeapOrigin.guest.rawValue == 1)
        #expect(PhysHeapType.dma.rawValue == 3)
    }
}
