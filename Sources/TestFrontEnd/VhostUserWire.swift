// vhost-user as a front-end writes it, from QEMU's docs/interop/vhost-user.rst
// alone: the test front-end's own encoders, so the back-end's decoders are
// tested against bytes it did not produce (a bug shared by an encoder and
// its decoder cannot pass). Nothing here comes from the VhostUser module.

/// Front-end → back-end request codes (vhost-user.rst "Front-end message types").
public enum VhostUserRequest: UInt32, CaseIterable, Sendable {
    case getFeatures = 1, setFeatures = 2, setOwner = 3, resetOwner = 4
    case setMemTable = 5, setLogBase = 6, setLogFD = 7
    case setVringNum = 8, setVringAddr = 9, setVringBase = 10, getVringBase = 11
    case setVringKick = 12, setVringCall = 13, setVringErr = 14
    case getProtocolFeatures = 15, setProtocolFeatures = 16, getQueueNum = 17
    case setVringEnable = 18, sendRARP = 19, netSetMTU = 20, setBackendReqFD = 21
    case iotlbMsg = 22, setVringEndian = 23, getConfig = 24, setConfig = 25
    case createCryptoSession = 26, closeCryptoSession = 27
    case postcopyAdvise = 28, postcopyListen = 29, postcopyEnd = 30
    case getInflightFD = 31, setInflightFD = 32, gpuSetSocket = 33, resetDevice = 34
    case vringKick = 35, getMaxMemSlots = 36, addMemReg = 37, remMemReg = 38
    case setStatus = 39, getStatus = 40
    case getSharedObject = 41, setDeviceStateFD = 42, checkDeviceState = 43
}

/// The 12-byte message header: request u32, flags u32, size u32.
public struct VhostUserHeader: Equatable, Sendable {
    public static let size = 12
    /// Flags: bits 0–1 the version (1), bit 2 a reply, bit 3 NEED_REPLY.
    public static let version: UInt32 = 0x1
    public static let reply: UInt32 = 0x4
    public static let needReply: UInt32 = 0x8
    public var request: UInt32
    public var flags: UInt32
    public var size: UInt32
    public init(request: UInt32, flags: UInt32, size: UInt32) { self.request = request; self.flags = flags; self.size = size }

    public var bytes: [UInt8] { le32(request) + le32(flags) + le32(size) }
    public init(_ b: [UInt8]) {
        request = readLE32(b, 0); flags = readLE32(b, 4); size = readLE32(b, 8)
    }
}

/// Feature bits vhost-user adds to the device's (vhost-user.rst "Feature bits"):
/// VHOST_F_LOG_ALL is the front-end's to set while it migrates.
public enum VhostUserFeature {
    public static let logAll: UInt64 = 1 << 26
}

/// VHOST_USER_PROTOCOL_F_* bits (vhost-user.rst "Protocol features").
public enum VhostUserProtocolFeature {
    public static let mq: UInt64 = 1 << 0
    public static let replyAck: UInt64 = 1 << 3
    public static let backendReq: UInt64 = 1 << 5
    public static let config: UInt64 = 1 << 9
    public static let inflightShmfd: UInt64 = 1 << 12
    public static let resetDevice: UInt64 = 1 << 13
    public static let configureMemSlots: UInt64 = 1 << 15
    public static let status: UInt64 = 1 << 16
    public static let deviceState: UInt64 = 1 << 19
}

extension TestFrontEnd {
    /// A u64 payload (features, status, a vring fd's index and flags).
    public static func u64(_ v: UInt64) -> [UInt8] { le64(v) }

    /// VhostUserVringState: index u32, num u32.
    public static func state(_ index: UInt32, _ num: UInt32) -> [UInt8] { le32(index) + le32(num) }

    /// VhostUserVringAddr: index u32, flags u32, then the descriptor, used,
    /// avail and log addresses (u64, in that order).
    public static func vringAddr(index: UInt32, flags: UInt32 = 0, desc: UInt64, used: UInt64, avail: UInt64, log: UInt64 = 0) -> [UInt8] {
        le32(index) + le32(flags) + le64(desc) + le64(used) + le64(avail) + le64(log)
    }

    /// VhostUserMemoryRegion: guest address, size, user address, mmap offset (u64 each).
    public static func region(gpa: UInt64, size: UInt64, userAddr: UInt64, mmapOffset: UInt64) -> [UInt8] {
        le64(gpa) + le64(size) + le64(userAddr) + le64(mmapOffset)
    }

    /// VhostUserMemory (SET_MEM_TABLE): nregions u32, padding u32, the regions.
    /// `count` overrides nregions (for malformed tables).
    public static func memoryTable(_ regions: [[UInt8]], count: UInt32? = nil) -> [UInt8] {
        le32(count ?? UInt32(regions.count)) + le32(0) + regions.flatMap { $0 }
    }

    /// VhostUserMemRegMsg (ADD_MEM_REG / REM_MEM_REG): padding u64, one region.
    public static func singleRegion(_ region: [UInt8]) -> [UInt8] { le64(0) + region }

    /// VhostUserConfig: offset u32, size u32, flags u32, then `bytes` (size = its count).
    public static func config(offset: UInt32, flags: UInt32 = 0, bytes: [UInt8]) -> [UInt8] {
        le32(offset) + le32(UInt32(bytes.count)) + le32(flags) + bytes
    }

    /// VhostUserInflight: mmap_size u64, mmap_offset u64, num_queues u16, queue_size u16, 4 bytes padding.
    public static func inflight(mmapSize: UInt64, mmapOffset: UInt64, numQueues: UInt16, queueSize: UInt16) -> [UInt8] {
        le64(mmapSize) + le64(mmapOffset) + le16(numQueues) + le16(queueSize) + le32(0)
    }

    /// VhostUserTransferDeviceState: direction u32 (0 save, 1 load), phase u32 (0 stopped).
    public static func deviceState(direction: UInt32, phase: UInt32 = 0) -> [UInt8] { le32(direction) + le32(phase) }
}

func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
func readLE32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * $1) } }
func readLE64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * $1) } }
