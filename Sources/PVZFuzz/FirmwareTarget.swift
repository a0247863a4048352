import PVZContract
import GPUModel
import PVZServer
#if canImport(Glibc)
import Glibc
#endif

/// The firmware ring: `Firmware.run` over a fuzzed heap (header, commands,
/// fence targets) and a fuzzed sequence of kicks, with and without a deadline.
/// The heap ends where its malloc'd block ends, so the address sanitizer sees
/// any access past it.
let firmwareTarget = FuzzTarget(name: "firmware", summary: "Firmware.run over a fuzzed heap and kick sequence") {
    let sizes = [0, 0x20, 0x1000, 0x1020, 0x1040, 0x1100, 0x2000, 0x3000, 0x4000, 0x8000]
    // One block for every input; each heap is its last `heapSize` bytes, so a
    // write past a heap's end lands in the sanitizer's red zone.
    let block = UnsafeMutableRawBufferPointer.allocate(byteCount: sizes.max()!, alignment: 8)
    return { data in
        var input = FuzzInput(data)
        let heapSize = sizes[Int(input.u8()) % sizes.count]
        let view = UnsafeMutableRawBufferPointer(rebasing: block[(block.count - heapSize)...])
        view.initializeMemory(as: UInt8.self, repeating: 0)
        // A valid-looking header most of the time: the fuzzer then mutates commands.
        if heapSize >= 0x40, input.bool() {
            view.storeBytes(of: FirmwareRing.magic.littleEndian, toByteOffset: FirmwareRing.magicOffset, as: UInt32.self)
            let ring = UInt32(1) << (5 + input.u8() % 10)
            view.storeBytes(of: ring.littleEndian, toByteOffset: FirmwareRing.sizeOffset, as: UInt32.self)
        }
        // Then raw bytes at a chosen place (commands, or over the header), kicks, resets.
        var fw = Firmware(osid: OSID(1))
        var clock: UInt64 = 0
        var events = 0
        while !input.isEmpty {
            switch input.u8() % 4 {
            case 0, 1:
                guard heapSize > 0 else { break }
                let at = Int(input.u16()) % heapSize
                let b = input.bytes(min(Int(input.u8()), heapSize - at))
                if b.count > 0 { (view.baseAddress! + at).copyMemory(from: b.baseAddress!, byteCount: b.count) }
            case 2:
                let write = input.bool() ? input.u32() : UInt32(input.u8()) * 32
                clock &+= UInt64(input.u16())
                let budget = Int(input.u8())
                var checks = 0
                let r = fw.run(heap: view, upTo: write, clockNs: clock,
                               deadline: { guard budget != 0 else { return false }; checks += 1; return checks > budget }) { _ in events += 1 }
                precondition(r.readOffset % 32 == 0, "read offset \(r.readOffset) not on a command")
            default:
                fw.reset()
            }
        }
    }
}
