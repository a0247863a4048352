import Foundation
import PVZContract
import Testing

/// The guest's C headers (qemu/guest/include/virtio_pvz_uapi.h and
/// pvz_regs.h) against PVZContract, value by value and offset by offset: a
/// small C program includes them and prints every constant and every field
/// offset the contract defines; each must equal the Swift definition. A
/// constant the headers add without a Swift counterpart fails too, so neither
/// side can change alone.
@Suite("the guest's C headers agree with PVZContract")
struct GuestHeaderTests {
    /// (C expression, what PVZContract says it is).
    static var table: [(String, UInt64)] {
        var t: [(String, UInt64)] = [
            ("VIRTIO_ID_PVZ", UInt64(VirtioPVZ.defaultDeviceID)),
            ("VIRTIO_PVZ_MAGIC", UInt64(PVZConfigSpace.magic)),
            ("VIRTIO_PVZ_VERSION", UInt64(VirtioPVZ.version)),
            ("VIRTIO_PVZ_CONFIG_SIZE", UInt64(PVZConfigSpace.size)),
            ("VIRTIO_PVZ_REGS_SIZE", PVZRegister.bankSize),
            ("1ULL << VIRTIO_PVZ_F_HOST_HEAPS", PVZFeature.hostHeaps),
            ("1ULL << VIRTIO_PVZ_F_FIRMWARE", PVZFeature.firmware),
            ("PVZ_STATUS_ONLINE", UInt64(PVZConfigSpace.Status.online.rawValue)),
            ("PVZ_STATUS_FW_RUNNING", UInt64(PVZConfigSpace.Status.firmwareRunning.rawValue)),
            ("PVZ_STATUS_FW_HEAP_MAPPED", UInt64(PVZConfigSpace.Status.firmwareHeapMapped.rawValue)),
            ("PVZ_STATUS_DEV_CONFIG", UInt64(PVZConfigSpace.Status.devConfigCreated.rawValue)),
            ("PVZ_STATUS_KNOWN_BITS", UInt64(PVZConfigSpace.Status.known.rawValue)),
            ("PVZ_FN_MAX", UInt64(PVZFunction.allCases.map(\.rawValue).max()!)),
            ("PVZ_STATUS_MAX", UInt64(PVZStatus.allCases.map(\.rawValue).max()!)),
            ("PVZ_REQ_HDR_SIZE", UInt64(HypercallRequestHeader.size)),
            ("PVZ_RESP_HDR_SIZE", UInt64(HypercallResponseHeader.size)),
            ("PVZ_EVENT_FIRMWARE", UInt64(GPUEvent.Kind.firmware.rawValue)),
            ("PVZ_EVENT_VMM", UInt64(GPUEvent.Kind.vmManager.rawValue)),
            ("PVZ_FW_FAULT_CODE", UInt64(GPUEvent.codeFirmwareFault)),
            ("PVZ_IRQ_STATUS_FW", UInt64(PVZRegister.irqFirmware)),
            ("PVZ_IRQ_STATUS_VMM", UInt64(PVZRegister.irqVMManager)),
            ("PVZ_RING_MAGIC", UInt64(FirmwareRing.magic)),
            ("PVZ_RING_HDR_SIZE", UInt64(FirmwareRing.headerSize)),
            ("PVZ_RING_OFF_MAGIC", UInt64(FirmwareRing.magicOffset)),
            ("PVZ_RING_OFF_SIZE", UInt64(FirmwareRing.sizeOffset)),
            ("PVZ_RING_OFF_WRITE", UInt64(FirmwareRing.writeOffsetField)),
            ("PVZ_RING_OFF_READ", UInt64(FirmwareRing.readOffsetField)),
            ("PVZ_RING_OFF_SEQ", UInt64(FirmwareRing.completedSeqField)),
            ("PVZ_CMD_SIZE", UInt64(FirmwareRing.commandSize)),
            ("PVZ_OP_NOP", UInt64(FirmwareOp.nop.rawValue)),
            ("PVZ_OP_FENCE", UInt64(FirmwareOp.fence.rawValue)),
            ("PVZ_OP_TIMESTAMP", UInt64(FirmwareOp.timestamp.rawValue)),
            ("PVZ_OP_IRQ", UInt64(FirmwareOp.irq.rawValue)),
            // A command, an event and a kick as the guest writes and reads them.
            ("sizeof(struct pvz_cmd)", UInt64(FirmwareRing.commandSize)),
            ("offsetof(struct pvz_cmd, op)", UInt64(FirmwareRing.CommandOffset.op)),
            ("offsetof(struct pvz_cmd, flags)", UInt64(FirmwareRing.CommandOffset.flags)),
            ("offsetof(struct pvz_cmd, seq)", UInt64(FirmwareRing.CommandOffset.seq)),
            ("offsetof(struct pvz_cmd, arg0)", UInt64(FirmwareRing.CommandOffset.arg0)),
            ("offsetof(struct pvz_cmd, arg1)", UInt64(FirmwareRing.CommandOffset.arg1)),
            ("sizeof(struct pvz_event)", UInt64(GPUEvent.size)),
            ("offsetof(struct pvz_event, type)", UInt64(GPUEvent.Offset.type)),
            ("offsetof(struct pvz_event, code)", UInt64(GPUEvent.Offset.code)),
            ("offsetof(struct pvz_event, value)", UInt64(GPUEvent.Offset.value)),
            ("sizeof(struct pvz_kick)", UInt64(KickRequest.size)),
            ("offsetof(struct pvz_kick, write_offset)", UInt64(KickRequest.Offset.writeOffset)),
            ("offsetof(struct pvz_kick, flags)", UInt64(KickRequest.Offset.flags)),
            // GET_CONFIG's struct starts with config space, field for field.
            ("offsetof(struct pvz_config, magic)", UInt64(PVZConfigSpace.Offset.magic)),
            ("offsetof(struct pvz_config, version)", UInt64(PVZConfigSpace.Offset.version)),
            ("offsetof(struct pvz_config, osid)", UInt64(PVZConfigSpace.Offset.osid)),
            ("offsetof(struct pvz_config, status)", UInt64(PVZConfigSpace.Offset.status)),
            ("offsetof(struct pvz_config, bvnc)", UInt64(PVZConfigSpace.Offset.bvnc)),
            ("offsetof(struct pvz_config, irq)", UInt64(PVZConfigSpace.Offset.irq)),
            ("offsetof(struct pvz_config, priority)", UInt64(PVZConfigSpace.Offset.priority)),
            ("offsetof(struct pvz_config, regs_ipa)", UInt64(PVZConfigSpace.Offset.regsIPA)),
            ("offsetof(struct pvz_config, regs_size)", UInt64(PVZConfigSpace.Offset.regsSize)),
            ("offsetof(struct pvz_config, max_osids)", UInt64(PVZConfigSpace.Offset.maxOSIDs)),
            ("offsetof(struct pvz_config, fw_heap_ipa)", UInt64(PVZConfigSpace.Offset.fwHeapIPA)),
            ("offsetof(struct pvz_config, fw_heap_size)", UInt64(PVZConfigSpace.Offset.fwHeapSize)),
            ("offsetof(struct pvz_config, features)", UInt64(PVZConfigSpace.size)),
            // The typed-call structs hold a function's output after the ioctl
            // header, in the wire's order and at the wire's offsets.
            ("offsetof(struct pvz_dev_config, irq) - sizeof(struct pvz_call_hdr)", UInt64(CreateDevConfigOutput.Offset.irq)),
            ("offsetof(struct pvz_dev_config, regs_size) - sizeof(struct pvz_call_hdr)", UInt64(CreateDevConfigOutput.Offset.regsSize)),
            ("offsetof(struct pvz_dev_config, regs_pbase) - sizeof(struct pvz_call_hdr)", UInt64(CreateDevConfigOutput.Offset.regsIPA)),
            ("sizeof(struct pvz_dev_config) - sizeof(struct pvz_call_hdr)", UInt64(CreateDevConfigOutput.size)),
            ("offsetof(struct pvz_phys_heaps, type) - sizeof(struct pvz_call_hdr)", UInt64(CreateDevPhysHeapsOutput.Offset.type)),
            ("offsetof(struct pvz_phys_heaps, pad) - sizeof(struct pvz_call_hdr)", UInt64(CreateDevPhysHeapsOutput.Offset.pad)),
            ("offsetof(struct pvz_phys_heaps, fw_size) - sizeof(struct pvz_call_hdr)", UInt64(CreateDevPhysHeapsOutput.Offset.fwSize)),
            ("offsetof(struct pvz_phys_heaps, fw_paddr) - sizeof(struct pvz_call_hdr)", UInt64(CreateDevPhysHeapsOutput.Offset.fwIPA)),
            ("offsetof(struct pvz_phys_heaps, gpu_size) - sizeof(struct pvz_call_hdr)", UInt64(CreateDevPhysHeapsOutput.Offset.gpuSize)),
            ("offsetof(struct pvz_phys_heaps, gpu_paddr) - sizeof(struct pvz_call_hdr)", UInt64(CreateDevPhysHeapsOutput.Offset.gpuIPA)),
            ("sizeof(struct pvz_phys_heaps) - sizeof(struct pvz_call_hdr)", UInt64(CreateDevPhysHeapsOutput.size)),
            // pvz_regs.h
            ("PVZ_REG_CORE_ID", UInt64(PVZRegister.coreID)),
            ("PVZ_REG_BVNC_LO", UInt64(PVZRegister.bvncLo)),
            ("PVZ_REG_BVNC_HI", UInt64(PVZRegister.bvncHi)),
            ("PVZ_REG_OSID", UInt64(PVZRegister.osid)),
            ("PVZ_REG_FW_STATUS", UInt64(PVZRegister.fwStatus)),
            ("PVZ_REG_IRQ_STATUS", UInt64(PVZRegister.irqStatus)),
            ("PVZ_REG_IRQ_ENABLE", UInt64(PVZRegister.irqEnable)),
            ("PVZ_REG_SCRATCH", UInt64(PVZRegister.scratch)),
            ("PVZ_REG_FW_READ_OFFSET", UInt64(PVZRegister.fwReadOffset)),
            ("PVZ_REG_FW_COMPLETED_SEQ_LO", UInt64(PVZRegister.fwCompletedSeqLo)),
            ("PVZ_REG_FW_COMPLETED_SEQ_HI", UInt64(PVZRegister.fwCompletedSeqHi)),
            ("PVZ_REG_CNT_CALLS", UInt64(PVZRegister.calls)),
            ("PVZ_REG_CNT_KICKS", UInt64(PVZRegister.kicks)),
            ("PVZ_REG_CNT_COMMANDS", UInt64(PVZRegister.commands)),
            ("PVZ_REG_CNT_FAULTS", UInt64(PVZRegister.faults)),
            ("PVZ_REG_CNT_EVENTS_RAISED", UInt64(PVZRegister.eventsRaised)),
            ("PVZ_CORE_ID_V1", UInt64(PVZRegister.coreIDValue)),
            ("PVZ_FW_EVENT_KICK_DONE", UInt64(GPUEvent.codeKickDone)),
            ("PVZ_VMM_EVENT_OFFLINE", UInt64(GPUEvent.codeVmOffline)),
        ]
        // Every enumeration case, by the name the C header must give it.
        t += PVZFunction.allCases.map { ("PVZ_FN_\($0.name)", UInt64($0.rawValue)) }
        t += PVZStatus.allCases.map { ("PVZ_\($0.name)", UInt64($0.rawValue)) }
        t += PhysHeap.allCases.map { ("PVZ_HEAP_\($0)", UInt64($0.rawValue)) }
        t += HeapOrigin.allCases.map { ("PVZ_ORIGIN_\($0)", UInt64($0.rawValue)) }
        t += PhysHeapType.allCases.map { ("PVZ_HEAP_TYPE_\($0)", UInt64($0.rawValue)) }
        return t
    }

    /// Names the headers define that are the guest driver's own (its ioctl
    /// interface, mmap offsets, header guards), not part of the device contract.
    static let driverOnly: Set<String> = [
        "VIRTIO_PVZ_UAPI_H", "PVZ_REGS_H", "PVZ_RAW_MAX", "PVZ_MMAP_FW_HEAP", "PVZ_MMAP_REGS", "PVZ_IOC_MAGIC",
        "PVZ_IOC_GET_CONFIG", "PVZ_IOC_CREATE_DEV_CONFIG", "PVZ_IOC_DESTROY_DEV_CONFIG", "PVZ_IOC_CREATE_DEV_PHYS_HEAPS",
        "PVZ_IOC_DESTROY_DEV_PHYS_HEAPS", "PVZ_IOC_GET_HEAP_ORIGIN", "PVZ_IOC_GET_HEAP_ADDR_SIZE", "PVZ_IOC_READ_REG",
        "PVZ_IOC_WRITE_REG", "PVZ_IOC_RAW", "PVZ_IOC_KICK", "PVZ_IOC_MAP_FW_HEAP", "PVZ_IOC_UNMAP_FW_HEAP",
        "PVZ_IOC_DEBUG_BREAK_RING",
    ]

    static let includeDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../qemu/guest/include").standardized.path
    static let headers = ["virtio_pvz_uapi.h", "pvz_regs.h"]

    /// Compiles and runs the C program; its output, one value per table row.
    static func valuesFromC(_ table: [(String, UInt64)]) throws -> [UInt64] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pvz-uapi-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = "#include <stddef.h>\n#include <stdio.h>\n" + headers.map { "#include \"\($0)\"\n" }.joined()
        c += "int main(void) {\n"
        for (expr, _) in table { c += "    printf(\"%llu\\n\", (unsigned long long)(\(expr)));\n" }
        c += "    return 0;\n}\n"
        try c.write(toFile: "\(dir)/uapi.c", atomically: true, encoding: .utf8)
        let compiler = ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let cc = try #require(compiler, "no C compiler (cc, gcc or clang) to build the header check")
        let build = try run(cc, ["-std=gnu11", "-Wall", "-Werror", "-I", includeDir, "-o", "\(dir)/uapi", "\(dir)/uapi.c"])
        try #require(build.status == 0, "the guest headers did not compile with every name PVZContract defines:\n\(build.output)")
        let out = try run("\(dir)/uapi", [])
        try #require(out.status == 0)
        return out.output.split(separator: "\n").compactMap { UInt64($0) }
    }

    static func run(_ path: String, _ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func everyValueAndOffsetAgrees() throws {
        let table = Self.table
        let values = try Self.valuesFromC(table)
        try #require(values.count == table.count, "the C program printed \(values.count) values for \(table.count) rows")
        for ((expr, swift), c) in zip(table, values) {
            #expect(c == swift, "\(expr): the guest header says \(c) (0x\(String(c, radix: 16))), PVZContract says \(swift) (0x\(String(swift, radix: 16)))")
        }
    }

    /// A constant added to a header must be added to the contract (or be the driver's own).
    @Test func theHeadersDefineNothingTheContractLacks() throws {
        let checked = Set(Self.table.map(\.0).filter { $0.allSatisfy { $0.isUppercase || $0.isNumber || $0 == "_" } })
        var unknown: [String] = []
        for h in Self.headers {
            let text = try String(contentsOfFile: "\(Self.includeDir)/\(h)", encoding: .utf8)
            for name in Self.definedNames(text) where !checked.contains(name) && !Self.driverOnly.contains(name)
                && !name.hasPrefix("VIRTIO_PVZ_F_") {
                unknown.append("\(h): \(name)")
            }
        }
        #expect(unknown.isEmpty, "defined in the guest headers but not checked against PVZContract: \(unknown)")
    }

    /// `#define NAME` and enum members `NAME = value`.
    static func definedNames(_ text: String) -> [String] {
        var names: [String] = []
        let ident = { (s: Substring) in String(s.prefix { $0.isLetter || $0.isNumber || $0 == "_" }) }
        for line in text.split(separator: "\n") {
            let t = line.drop { $0 == " " || $0 == "\t" }
            if t.hasPrefix("#define") {
                let n = ident(t.dropFirst("#define".count).drop { $0 == " " || $0 == "\t" })
                if !n.isEmpty { names.append(n) }
                continue
            }
            // enum members: "NAME = value," possibly several on a line.
            for part in t.split(separator: ",") {
                let p = part.drop { $0 == " " || $0 == "\t" || $0 == "{" }
                let n = ident(p)
                if n.hasPrefix("PVZ_"), p.dropFirst(n.count).drop(while: { $0 == " " }).hasPrefix("=") { names.append(n) }
            }
        }
        return names
    }
}
