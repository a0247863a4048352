// What the control socket reports about the daemon, its guests and their
// heaps. Field names become snake_case JSON keys (ControlCodec); names avoid
// acronym capitals (heapId, not heapID) so the key conversion round-trips.

public struct HeapStatus: Codable, Sendable, Equatable {
    public var osid: UInt32
    /// PVRSRV_DEVICE_PHYS_HEAP value and its name (GPU_LOCAL, FW_LOCAL, ...).
    public var heapId: UInt32
    public var heapName: String
    /// "HOST" or "GUEST" (PVRSRV_DEVICE_PHYS_HEAP_ORIGIN).
    public var origin: String
    public var ipa: UInt64
    public var pa: UInt64
    public var size: UInt64

    public init(osid: UInt32, heapId: UInt32, heapName: String, origin: String, ipa: UInt64, pa: UInt64, size: UInt64) {
        self.osid = osid; self.heapId = heapId; self.heapName = heapName; self.origin = origin
        self.ipa = ipa; self.pa = pa; self.size = size
    }
}

public struct GuestCounters: Codable, Sendable, Equatable {
    /// hypercallq requests answered.
    public var calls: UInt64
    /// kickq doorbells.
    public var kicks: UInt64
    /// firmware ring commands executed.
    public var commands: UInt64
    /// firmware faults (bad command or ring) and malformed descriptor chains.
    public var faults: UInt64
    /// eventq events delivered and dropped (no buffer posted, queue full).
    public var events: UInt64
    public var eventsDropped: UInt64

    public init(calls: UInt64 = 0, kicks: UInt64 = 0, commands: UInt64 = 0, faults: UInt64 = 0,
                events: UInt64 = 0, eventsDropped: UInt64 = 0) {
        self.calls = calls; self.kicks = kicks; self.commands = commands; self.faults = faults
        self.events = events; self.eventsDropped = eventsDropped
    }
}

public struct GuestStatus: Codable, Sendable, Equatable {
    public var osid: UInt32
    /// libvirt domain name when the guest came online through libvirt.
    public var domain: String?
    public var socketPath: String
    /// The vhost-user socket is bound and accepting.
    public var listening: Bool
    /// A front-end (QEMU) is connected.
    public var connected: Bool
    /// OnVmOnline seen and no OnVmOffline since.
    public var online: Bool
    public var priority: UInt32
    /// virtio device status byte as last set by the driver.
    public var deviceStatus: UInt8
    /// The device is in NEEDS_RESET (a malformed chain or similar).
    public var needsReset: Bool
    /// Negotiated virtio feature bits.
    public var features: UInt64
    /// "stopped", "idle", "running", "faulted".
    public var firmware: String
    public var carveoutIpa: UInt64
    public var carveoutSize: UInt64
    public var counters: GuestCounters
    public var heaps: [HeapStatus]

    public init(osid: UInt32, domain: String? = nil, socketPath: String, listening: Bool, connected: Bool,
                online: Bool, priority: UInt32, deviceStatus: UInt8 = 0, needsReset: Bool = false,
                features: UInt64 = 0, firmware: String = "stopped", carveoutIpa: UInt64 = 0,
                carveoutSize: UInt64 = 0, counters: GuestCounters = GuestCounters(), heaps: [HeapStatus] = []) {
        self.osid = osid; self.domain = domain; self.socketPath = socketPath; self.listening = listening
        self.connected = connected; self.online = online; self.priority = priority
        self.deviceStatus = deviceStatus; self.needsReset = needsReset; self.features = features
        self.firmware = firmware; self.carveoutIpa = carveoutIpa; self.carveoutSize = carveoutSize
        self.counters = counters; self.heaps = heaps
    }
}

public struct ConfParamStatus: Codable, Sendable, Equatable {
    public var param: UInt32
    public var name: String
    public var value: UInt32
    public init(param: UInt32, name: String, value: UInt32) { self.param = param; self.name = name; self.value = value }
}

public struct DaemonStatus: Codable, Sendable, Equatable {
    public var version: String
    public var pid: Int32
    public var uptimeSeconds: Double
    public var controlSocket: String
    public var maxOsids: UInt32
    /// Current VMMConfigure parameters.
    public var parameters: [ConfParamStatus]
    public var guests: [GuestStatus]
    /// Whether the libvirt event listener is connected (nil: no listener).
    public var libvirtConnected: Bool?
    /// The DDK PVZ ABI the daemon speaks (`--ddk-abi`); `parameters` are named and numbered in it.
    public var ddkAbi: String?

    public init(version: String, pid: Int32, uptimeSeconds: Double, controlSocket: String, maxOsids: UInt32,
                parameters: [ConfParamStatus] = [], guests: [GuestStatus] = [], libvirtConnected: Bool? = nil,
                ddkAbi: String? = nil) {
        self.ddkAbi = ddkAbi
        self.version = version; self.pid = pid; self.uptimeSeconds = uptimeSeconds
        self.controlSocket = controlSocket; self.maxOsids = maxOsids; self.parameters = parameters
        self.guests = guests; self.libvirtConnected = libvirtConnected
    }
}
