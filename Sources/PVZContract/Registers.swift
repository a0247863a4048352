/// An OSID's register bank (spec 9, docs/registers.md): 64 KiB at the start
/// of its carve-out, 32-bit registers at 4-aligned offsets.
public enum PVZRegister {
    /// Bytes of the bank (config space `regs_size`, CREATE_DEV_CONFIG's `regs_size`).
    public static let bankSize: UInt64 = 0x10000

    public static let coreID: UInt32 = 0x000
    public static let bvncLo: UInt32 = 0x004
    public static let bvncHi: UInt32 = 0x008
    public static let osid: UInt32 = 0x00C
    public static let fwStatus: UInt32 = 0x010
    public static let irqStatus: UInt32 = 0x014
    public static let irqEnable: UInt32 = 0x018
    public static let scratch: UInt32 = 0x01C
    public static let fwReadOffset: UInt32 = 0x020
    public static let fwCompletedSeqLo: UInt32 = 0x024
    public static let fwCompletedSeqHi: UInt32 = 0x028
    public static let clockLo: UInt32 = 0x030
    public static let clockHi: UInt32 = 0x034
    public static let calls: UInt32 = 0x040
    public static let kicks: UInt32 = 0x044
    public static let commands: UInt32 = 0x048
    public static let faults: UInt32 = 0x04C
    public static let eventsDropped: UInt32 = 0x050
    public static let eventsRaised: UInt32 = 0x054
    public static let eventsPending: UInt32 = 0x058

    /// Every defined register, in offset order (what the live mirror writes).
    public static let all: [UInt32] = [
        coreID, bvncLo, bvncHi, osid, fwStatus, irqStatus, irqEnable, scratch,
        fwReadOffset, fwCompletedSeqLo, fwCompletedSeqHi, clockLo, clockHi,
        calls, kicks, commands, faults, eventsDropped, eventsRaised, eventsPending,
    ]

    /// CORE_ID: "PZ" and register-layout version 1.
    public static let coreIDValue: UInt32 = 0x505A_0001
    /// IRQ_STATUS / IRQ_ENABLE bits: a firmware event, a VM-manager event.
    public static let irqFirmware: UInt32 = 1 << 0
    public static let irqVMManager: UInt32 = 1 << 1
    public static let irqMask: UInt32 = irqFirmware | irqVMManager

    /// A READ_REG/WRITE_REG offset the bank has room for: 4-aligned, inside it.
    public static func isValidOffset(_ o: UInt32) -> Bool { o & 3 == 0 && UInt64(o) < bankSize }
}

/// FW_STATUS bits: config space `status` bits 0–3, plus bit 4.
public struct FirmwareStatus: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let online = FirmwareStatus(rawValue: PVZConfigSpace.Status.online.rawValue)
    public static let running = FirmwareStatus(rawValue: PVZConfigSpace.Status.firmwareRunning.rawValue)
    public static let heapMapped = FirmwareStatus(rawValue: PVZConfigSpace.Status.firmwareHeapMapped.rawValue)
    public static let devConfigCreated = FirmwareStatus(rawValue: PVZConfigSpace.Status.devConfigCreated.rawValue)
    /// The last kick failed as a whole (bad magic, size or offset).
    public static let lastKickFailed = FirmwareStatus(rawValue: 1 << 4)
    public static let known = FirmwareStatus(rawValue: 0x1F)
}
