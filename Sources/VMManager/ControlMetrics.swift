// What `metrics` reports: counters and gauges per guest, for `pvzctl
// metrics` (Prometheus text format). Counters only grow while the daemon
// runs; a restart starts them at 0 (Prometheus handles the reset).

public struct NamedCount: Codable, Sendable, Equatable {
    public var name: String
    public var count: UInt64
    public init(name: String, count: UInt64) { self.name = name; self.count = count }
}

public struct GuestMetrics: Codable, Sendable, Equatable {
    public var osid: UInt32
    public var domain: String?
    public var listening: Bool
    public var connected: Bool
    public var online: Bool
    public var needsReset: Bool
    /// Hypercalls answered, by function name (UNKNOWN for a number outside the table).
    public var callsByFunction: [NamedCount]
    /// Hypercalls answered, by PVZ status name.
    public var callsByStatus: [NamedCount]
    public var kicks: UInt64
    public var commands: UInt64
    public var faults: UInt64
    public var events: UInt64
    public var eventsDropped: UInt64
    /// Bytes of every heap the guest holds (host and guest origin).
    public var heapBytes: UInt64
    public var disconnects: UInt64

    public init(osid: UInt32, domain: String?, listening: Bool, connected: Bool, online: Bool, needsReset: Bool,
                callsByFunction: [NamedCount], callsByStatus: [NamedCount], kicks: UInt64, commands: UInt64, faults: UInt64,
                events: UInt64, eventsDropped: UInt64, heapBytes: UInt64, disconnects: UInt64) {
        self.osid = osid; self.domain = domain; self.listening = listening; self.connected = connected
        self.online = online; self.needsReset = needsReset; self.callsByFunction = callsByFunction
        self.callsByStatus = callsByStatus; self.kicks = kicks; self.commands = commands; self.faults = faults
        self.events = events; self.eventsDropped = eventsDropped; self.heapBytes = heapBytes; self.disconnects = disconnects
    }
}

public struct DaemonMetrics: Codable, Sendable, Equatable {
    public var uptimeSeconds: Double
    /// Host-origin heap bytes in use, all guests together.
    public var hostHeapBytes: UInt64
    /// Calls with an OSID that has no guest (refused).
    public var invalidOsidCalls: UInt64
    public var guests: [GuestMetrics]
    public init(uptimeSeconds: Double, hostHeapBytes: UInt64, invalidOsidCalls: UInt64, guests: [GuestMetrics]) {
        self.uptimeSeconds = uptimeSeconds; self.hostHeapBytes = hostHeapBytes
        self.invalidOsidCalls = invalidOsidCalls; self.guests = guests
    }
}
