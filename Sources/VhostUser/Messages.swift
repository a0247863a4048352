// vhost-user wire format (QEMU docs/interop/vhost-user.rst): a 12-byte header
// then `size` bytes of payload, little-endian, with file descriptors riding
// along as SCM_RIGHTS on the header. One struct per payload shape, each with
// one decode and one encode.

/// Front-end → back-end requests.
public enum FrontEndRequest: UInt32, CaseIterable, Sendable {
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

    public var name: String {
        switch self {
        case .getFeatures: "GET_FEATURES"
        case .setFeatures: "SET_FEATURES"
        case .setOwner: "SET_OWNER"
        case .resetOwner: "RESET_OWNER"
        case .setMemTable: "SET_MEM_TABLE"
        case .setLogBase: "SET_LOG_BASE"
        case .setLogFD: "SET_LOG_FD"
        case .setVringNum: "SET_VRING_NUM"
        case .setVringAddr: "SET_VRING_ADDR"
        case .setVringBase: "SET_VRING_BASE"
        case .getVringBase: "GET_VRING_BASE"
        case .setVringKick: "SET_VRING_KICK"
        case .setVringCall: "SET_VRING_CALL"
        case .setVringErr: "SET_VRING_ERR"
        case .getProtocolFeatures: "GET_PROTOCOL_FEATURES"
        case .setProtocolFeatures: "SET_PROTOCOL_FEATURES"
        case .getQueueNum: "GET_QUEUE_NUM"
        case .setVringEnable: "SET_VRING_ENABLE"
        case .sendRARP: "SEND_RARP"
        case .netSetMTU: "NET_SET_MTU"
        case .setBackendReqFD: "SET_BACKEND_REQ_FD"
        case .iotlbMsg: "IOTLB_MSG"
        case .setVringEndian: "SET_VRING_ENDIAN"
        case .getConfig: "GET_CONFIG"
        case .setConfig: "SET_CONFIG"
        case .createCryptoSession: "CREATE_CRYPTO_SESSION"
        case .closeCryptoSession: "CLOSE_CRYPTO_SESSION"
        case .postcopyAdvise: "POSTCOPY_ADVISE"
        case .postcopyListen: "POSTCOPY_LISTEN"
        case .postcopyEnd: "POSTCOPY_END"
        case .getInflightFD: "GET_INFLIGHT_FD"
        case .setInflightFD: "SET_INFLIGHT_FD"
        case .gpuSetSocket: "GPU_SET_SOCKET"
        case .resetDevice: "RESET_DEVICE"
        case .vringKick: "VRING_KICK"
        case .getMaxMemSlots: "GET_MAX_MEM_SLOTS"
        case .addMemReg: "ADD_MEM_REG"
        case .remMemReg: "REM_MEM_REG"
        case .setStatus: "SET_STATUS"
        case .getStatus: "GET_STATUS"
        case .getSharedObject: "GET_SHARED_OBJECT"
        case .setDeviceStateFD: "SET_DEVICE_STATE_FD"
        case .checkDeviceState: "CHECK_DEVICE_STATE"
        }
    }

    /// Requests that always carry a reply payload, whatever NEED_REPLY says.
    public var hasReply: Bool {
        switch self {
        case .getFeatures, .getProtocolFeatures, .getQueueNum, .getVringBase, .getConfig,
             .getMaxMemSlots, .getStatus, .getInflightFD, .setDeviceStateFD, .checkDeviceState,
             .getSharedObject:
            return true
        default:
            return false
        }
    }
}

/// Back-end → front-end requests on the back-end channel.
public enum BackendRequest: UInt32, Sendable {
    case iotlbMsg = 1, configChangeMsg = 2, vringHostNotifierMsg = 3
}

/// vhost-user protocol feature bits (GET/SET_PROTOCOL_FEATURES).
public struct ProtocolFeatures: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let mq = ProtocolFeatures(rawValue: 1 << 0)
    public static let logShmfd = ProtocolFeatures(rawValue: 1 << 1)
    public static let rarp = ProtocolFeatures(rawValue: 1 << 2)
    public static let replyAck = ProtocolFeatures(rawValue: 1 << 3)
    public static let mtu = ProtocolFeatures(rawValue: 1 << 4)
    public static let backendReq = ProtocolFeatures(rawValue: 1 << 5)
    public static let crossEndian = ProtocolFeatures(rawValue: 1 << 6)
    public static let cryptoSession = ProtocolFeatures(rawValue: 1 << 7)
    public static let pagefault = ProtocolFeatures(rawValue: 1 << 8)
    public static let config = ProtocolFeatures(rawValue: 1 << 9)
    public static let backendSendFD = ProtocolFeatures(rawValue: 1 << 10)
    public static let hostNotifier = ProtocolFeatures(rawValue: 1 << 11)
    public static let inflightShmfd = ProtocolFeatures(rawValue: 1 << 12)
    public static let resetDevice = ProtocolFeatures(rawValue: 1 << 13)
    public static let inbandNotifications = ProtocolFeatures(rawValue: 1 << 14)
    public static let configureMemSlots = ProtocolFeatures(rawValue: 1 << 15)
    public static let status = ProtocolFeatures(rawValue: 1 << 16)
    public static let deviceState = ProtocolFeatures(rawValue: 1 << 19)
}

/// Virtio/vhost feature bits the engine itself deals in.
public enum VirtioFeature {
    public static let version1: UInt64 = 1 << 32
    public static let protocolFeatures: UInt64 = 1 << 30  // VHOST_USER_F_PROTOCOL_FEATURES
    /// VHOST_F_LOG_ALL: the back-end marks every guest page it writes in the
    /// front-end's dirty log (live migration); vhost's bit, not the guest's.
    public static let logAll: UInt64 = 1 << 26
}

/// Virtio device status bits (SET_STATUS / GET_STATUS).
public enum DeviceStatus {
    public static let acknowledge: UInt8 = 1
    public static let driver: UInt8 = 2
    public static let driverOK: UInt8 = 4
    public static let featuresOK: UInt8 = 8
    public static let needsReset: UInt8 = 0x40
    public static let failed: UInt8 = 0x80
}

public struct MessageHeader: Equatable, Sendable {
    public static let size = 12
    public static let versionMask: UInt32 = 0x3
    public static let version: UInt32 = 0x1
    public static let replyFlag: UInt32 = 0x4
    public static let needReplyFlag: UInt32 = 0x8

    public var request: UInt32
    public var flags: UInt32
    public var size: UInt32

    public init(request: UInt32, flags: UInt32, size: UInt32) {
        self.request = request
        self.flags = flags
        self.size = size
    }

    public var needsReply: Bool { flags & Self.needReplyFlag != 0 }

    public static func decode(_ b: UnsafeRawBufferPointer) -> MessageHeader? {
        guard b.count >= size else { return nil }
        return MessageHeader(request: b.le32(0), flags: b.le32(4), size: b.le32(8))
    }

    public func encode(into b: UnsafeMutableRawBufferPointer) {
        b.putLE32(0, request)
        b.putLE32(4, flags)
        b.putLE32(8, size)
    }
}

/// Why a payload could not be decoded.
public struct PayloadError: Error, Equatable, CustomStringConvertible {
    public var request: String
    public var expected: String
    public var actual: Int
    public var description: String { "\(request): payload of \(actual) bytes, expected \(expected)" }
}

/// VhostUserVringState: index + num (SET_VRING_NUM/BASE/ENABLE, GET_VRING_BASE).
public struct VringStatePayload: Equatable, Sendable {
    public static let size = 8
    public var index: UInt32
    public var num: UInt32
    public init(index: UInt32, num: UInt32) { self.index = index; self.num = num }
    public static func decode(_ b: UnsafeRawBufferPointer) -> VringStatePayload? {
        guard b.count == size else { return nil }
        return VringStatePayload(index: b.le32(0), num: b.le32(4))
    }
    public func encode(into b: UnsafeMutableRawBufferPointer) {
        b.putLE32(0, index)
        b.putLE32(4, num)
    }
}

/// VhostUserVringAddr (SET_VRING_ADDR): front-end virtual addresses of the ring parts.
public struct VringAddrPayload: Equatable, Sendable {
    public static let size = 40
    /// VHOST_VRING_F_LOG: log writes to the used ring at `log` (guest physical).
    public static let logFlag: UInt32 = 1
    public var index: UInt32
    public var flags: UInt32
    public var desc: UInt64
    public var used: UInt64
    public var avail: UInt64
    public var log: UInt64
    public init(index: UInt32, flags: UInt32, desc: UInt64, used: UInt64, avail: UInt64, log: UInt64) {
        self.index = index; self.flags = flags; self.desc = desc; self.used = used; self.avail = avail; self.log = log
    }
    public static func decode(_ b: UnsafeRawBufferPointer) -> VringAddrPayload? {
        guard b.count == size else { return nil }
        return VringAddrPayload(index: b.le32(0), flags: b.le32(4), desc: b.le64(8), used: b.le64(16),
                                avail: b.le64(24), log: b.le64(32))
    }
    public func encode(into b: UnsafeMutableRawBufferPointer) {
        b.putLE32(0, index); b.putLE32(4, flags)
        b.putLE64(8, desc); b.putLE64(16, used); b.putLE64(24, avail); b.putLE64(32, log)
    }
}

/// One VhostUserMemoryRegion (32 bytes).
extension MemoryRegionWire {
    public static let size = 32
}
public struct MemoryRegionWire: Equatable, Sendable {
    public var guestPhysAddr: UInt64
    public var memorySize: UInt64
    public var userAddr: UInt64
    public var mmapOffset: UInt64
    public init(guestPhysAddr: UInt64, memorySize: UInt64, userAddr: UInt64, mmapOffset: UInt64) {
        self.guestPhysAddr = guestPhysAddr; self.memorySize = memorySize; self.userAddr = userAddr; self.mmapOffset = mmapOffset
    }
    static func decode(_ b: UnsafeRawBufferPointer, at o: Int) -> MemoryRegionWire {
        MemoryRegionWire(guestPhysAddr: b.le64(o), memorySize: b.le64(o + 8), userAddr: b.le64(o + 16), mmapOffset: b.le64(o + 24))
    }
    func encode(into b: UnsafeMutableRawBufferPointer, at o: Int) {
        b.putLE64(o, guestPhysAddr); b.putLE64(o + 8, memorySize); b.putLE64(o + 16, userAddr); b.putLE64(o + 24, mmapOffset)
    }
}

/// VhostUserMemory (SET_MEM_TABLE): count, padding, then that many regions.
public struct MemoryTablePayload: Equatable, Sendable {
    /// VHOST_MEMORY_BASELINE_NREGIONS: what SET_MEM_TABLE can carry.
    public static let maxRegions = 8
    public var regions: [MemoryRegionWire]
    public init(regions: [MemoryRegionWire]) { self.regions = regions }
    public var encodedSize: Int { 8 + MemoryRegionWire.size * regions.count }
    public static func decode(_ b: UnsafeRawBufferPointer) -> MemoryTablePayload? {
        guard b.count >= 8 else { return nil }
        let n = Int(b.le32(0))
        // QEMU sends exactly 8 + 32*n; some front-ends send the full 8-slot array.
        guard n <= maxRegions, b.count == 8 + 32 * n || b.count == 8 + 32 * maxRegions else { return nil }
        return MemoryTablePayload(regions: (0..<n).map { MemoryRegionWire.decode(b, at: 8 + 32 * $0) })
    }
    public func encode(into b: UnsafeMutableRawBufferPointer) {
        b.putLE32(0, UInt32(regions.count)); b.putLE32(4, 0)
        for (i, r) in regions.enumerated() { r.encode(into: b, at: 8 + 32 * i) }
    }
}

/// VhostUserMemRegMsg (ADD_MEM_REG / REM_MEM_REG): padding then one region.
public struct SingleRegionPayload: Equatable, Sendable {
    public static let size = 40
    public var region: MemoryRegionWire
    public init(region: MemoryRegionWire) { self.region = region }
    public static func decode(_ b: UnsafeRawBufferPointer) -> SingleRegionPayload? {
        guard b.count == size else { return nil }
        return SingleRegionPayload(region: .decode(b, at: 8))
    }
    public func encode(into b: UnsafeMutableRawBufferPointer) {
        b.putLE64(0, 0)
        region.encode(into: b, at: 8)
    }
}

/// VhostUserConfig (GET/SET_CONFIG): offset, size, flags, then `size` bytes.
public struct ConfigPayload: Equatable, Sendable {
    public static let headerSize = 12
    public static let maxSize = 256  // VHOST_USER_MAX_CONFIG_SIZE
    public var offset: UInt32
    public var size: UInt32
    public var flags: UInt32
    public init(offset: UInt32, size: UInt32, flags: UInt32) { self.offset = offset; self.size = size; self.flags = flags }
    public static func decode(_ b: UnsafeRawBufferPointer) -> ConfigPayload? {
        guard b.count >= headerSize else { return nil }
        let p = ConfigPayload(offset: b.le32(0), size: b.le32(4), flags: b.le32(8))
        guard p.size <= maxSize, b.count == headerSize + Int(p.size) else { return nil }
        return p
    }
    public func encodeHeader(into b: UnsafeMutableRawBufferPointer) {
        b.putLE32(0, offset); b.putLE32(4, size); b.putLE32(8, flags)
    }
}

/// Index byte and no-fd flag of SET_VRING_KICK/CALL/ERR's u64.
public struct VringFDPayload: Equatable, Sendable {
    public static let indexMask: UInt64 = 0xff
    public static let noFDFlag: UInt64 = 0x100
    public var index: UInt32
    public var noFD: Bool
    public init(index: UInt32, noFD: Bool) { self.index = index; self.noFD = noFD }
    public init(_ v: UInt64) { index = UInt32(v & Self.indexMask); noFD = v & Self.noFDFlag != 0 }
    public var rawValue: UInt64 { UInt64(index) | (noFD ? Self.noFDFlag : 0) }
}

// Little-endian field access on byte buffers (wire structs never rely on host layout).
extension UnsafeRawBufferPointer {
    @inline(__always) public func le16(_ o: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    @inline(__always) public func le32(_ o: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
    @inline(__always) public func le64(_ o: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
}
extension UnsafeMutableRawBufferPointer {
    @inline(__always) public func le32(_ o: Int) -> UInt32 { UnsafeRawBufferPointer(self).le32(o) }
    @inline(__always) public func le64(_ o: Int) -> UInt64 { UnsafeRawBufferPointer(self).le64(o) }
    @inline(__always) public func putLE16(_ o: Int, _ v: UInt16) { storeBytes(of: v.littleEndian, toByteOffset: o, as: UInt16.self) }
    @inline(__always) public func putLE32(_ o: Int, _ v: UInt32) { storeBytes(of: v.littleEndian, toByteOffset: o, as: UInt32.self) }
    @inline(__always) public func putLE64(_ o: Int, _ v: UInt64) { storeBytes(of: v.littleEndian, toByteOffset: o, as: UInt64.self) }
}
