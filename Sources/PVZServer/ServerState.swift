// The server's mutable state, all behind one Mutex. Fixed-size storage made
// at init (one slot per OSID, fixed counter arrays) so the hypercall path
// only mutates in place and never allocates.

struct GuestSlot {
    let spec: GuestSpec
    var online = false
    var frontEndConnected = false
    var priority: UInt32 = 0
    var devConfigCreated = false
    /// Host-origin heaps from CREATE_DEV_PHYS_HEAPS (exist together or not at all).
    var hostHeapsCreated = false
    var hostFwHeap: HeapRecord?
    var hostGpuHeap: HeapRecord?
    /// The guest-origin firmware heap from MAP_DEV_PHYS_HEAP.
    var guestFwHeap: HeapRecord?
    /// Index 0 counts unknown functions, 1...10 the PVZFunction raw values.
    var callsByFunction: [UInt64]
    /// Indexed by PVZStatus raw value.
    var callsByStatus: [UInt64]
    var disconnects: UInt64 = 0

    init(spec: GuestSpec) {
        self.spec = spec
        callsByFunction = Array(repeating: 0, count: Int(PVZFunction.writeReg.rawValue) + 1)
        callsByStatus = Array(repeating: 0, count: Int(PVZStatus.invalidPVZConfig.rawValue) + 1)
    }

    /// The firmware heap in use, whichever origin it has.
    var fwHeap: HeapRecord? { hostFwHeap ?? guestFwHeap }

    mutating func count(function raw: UInt32, status: PVZStatus) {
        let f = raw <= PVZFunction.writeReg.rawValue ? Int(raw) : 0
        callsByFunction[f] &+= 1
        callsByStatus[Int(status.rawValue)] &+= 1
    }
}

struct ServerState {
    /// Index = OSID raw value; nil for OSIDs without a configured guest (and 0, the host).
    var guests: [GuestSlot?]
    /// OnVmOnline / VMM_CONF_PRIO_OSIDn priority of every OSID, the host's included.
    var priorities: [UInt32]
    var isolationThreshold: UInt32 = 0
    var hcsDeadline: UInt32 = 0
    var hostPoolUsed: UInt64 = 0
    let hostPoolLimit: UInt64
    /// Calls for OSIDs without a guest slot (counted, then refused).
    var invalidOSIDCalls: UInt64 = 0
}
