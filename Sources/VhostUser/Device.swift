import Logging
import Virtqueue

/// A virtio device served over vhost-user. The engine owns the socket, the
/// messages, the memory table and the vrings; the device sees only queues and
/// guest memory (rust-vmm's `VhostUserBackend` split). All calls come on the
/// guest's own thread, so a device needs no locks for its per-connection state.
public protocol VhostUserDevice: AnyObject {
    var queueCount: Int { get }
    var maxQueueSize: UInt16 { get }
    /// Every virtio feature bit offered (VERSION_1, ring bits, device bits).
    /// The engine adds VHOST_USER_F_PROTOCOL_FEATURES.
    var deviceFeatures: UInt64 { get }
    /// Bytes of config space; 0 means no GET_CONFIG.
    var configSize: Int { get }
    func readConfig(into buffer: UnsafeMutableRawBufferPointer)
    /// SET_CONFIG: nil when taken, else why it was refused (the front-end gets a failed ack).
    func writeConfig(offset: UInt32, bytes: UnsafeRawBufferPointer, _ ctx: BackendContext) -> String?

    func frontEndConnected(_ ctx: BackendContext)
    /// The connection ended; `reason` says whether the guest is gone (the
    /// front-end closed it, or broke the protocol) or the daemon is stopping.
    func frontEndDisconnected(_ ctx: BackendContext, reason: DisconnectReason)
    func memoryChanged(_ ctx: BackendContext)
    func queueStarted(_ index: Int, _ ctx: BackendContext)
    /// Queue `index` is about to stop (GET_VRING_BASE, reset, disconnect):
    /// return every chain popped from it while its rings are still mapped.
    func queueStopping(_ index: Int, _ ctx: BackendContext)
    func queueStopped(_ index: Int, _ ctx: BackendContext)
    /// The guest kicked queue `index` (or it was enabled with work pending).
    func queueKicked(_ index: Int, _ ctx: BackendContext)

    /// Queues the device serves on a thread of its own (rust-vmm's worker
    /// threads): the engine does not watch their kick eventfd. It hands such a
    /// ring over when it starts (`queueHandOver`) and takes it back before it
    /// changes or stops it (`queueTakeBack`, which returns once the device no
    /// longer touches it); in between only the device's thread uses the ring.
    func servesQueueItself(_ index: Int) -> Bool
    func queueHandOver(_ index: Int, _ ctx: BackendContext)
    func queueTakeBack(_ index: Int, _ why: TakeBack, _ ctx: BackendContext)
    /// Another thread rang the guest's waker (`VhostUserServer.wake()`).
    func wake(_ ctx: BackendContext)
    func statusChanged(from old: UInt8, to new: UInt8, _ ctx: BackendContext)
    /// RESET_DEVICE or RESET_OWNER: a new boot of the guest's driver follows.
    /// (Status 0 alone only stops the rings: QEMU sends it on every stop.)
    func reset(_ ctx: BackendContext)

    /// Live migration (VHOST_USER_PROTOCOL_F_DEVICE_STATE) is offered only
    /// when true. The engine calls these with every ring stopped.
    var supportsMigration: Bool { get }
    /// The device's state for the destination, or why it cannot be saved.
    func saveState(_ ctx: BackendContext) -> Result<[UInt8], DeviceStateError>
    /// Takes a source's state over; nil on success, else why it was refused
    /// (nothing changed then, and the migration fails).
    func loadState(_ bytes: [UInt8], _ ctx: BackendContext) -> DeviceStateError?
}

/// Why the engine takes a ring back from the device's own thread.
public enum TakeBack: Sendable, Equatable {
    /// GET_VRING_BASE, a reset or a disconnect: the ring stops; every chain
    /// popped from it must be on its used ring first (or given up, for a reset).
    case stopping
    /// The memory table or the enable state changes; it comes back at once.
    case changing
    /// The ring broke (NEEDS_RESET).
    case broken
}

/// Why a device state could not be saved or loaded, in words for the log.
public struct DeviceStateError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Why a front-end connection ended.
public enum DisconnectReason: Sendable, Equatable {
    /// The front-end closed its end (QEMU quit or crashed, the device was unplugged).
    case frontEndClosed
    /// The back-end ended it: the front-end broke the protocol.
    case protocolError
    /// The daemon is stopping: the guest may well come back to a restarted daemon.
    case serverStopping
}

extension VhostUserDevice {
    public func writeConfig(offset: UInt32, bytes: UnsafeRawBufferPointer, _ ctx: BackendContext) -> String? {
        "config space is not writable (write of \(bytes.count) bytes at offset \(offset) ignored)"
    }
    public func frontEndConnected(_ ctx: BackendContext) {}
    public func frontEndDisconnected(_ ctx: BackendContext, reason: DisconnectReason) {}
    public func memoryChanged(_ ctx: BackendContext) {}
    public func queueStarted(_ index: Int, _ ctx: BackendContext) {}
    public func servesQueueItself(_ index: Int) -> Bool { false }
    public func queueHandOver(_ index: Int, _ ctx: BackendContext) {}
    public func queueTakeBack(_ index: Int, _ why: TakeBack, _ ctx: BackendContext) {}
    public func queueStopping(_ index: Int, _ ctx: BackendContext) {}
    public func queueStopped(_ index: Int, _ ctx: BackendContext) {}
    public func wake(_ ctx: BackendContext) {}
    public func statusChanged(from old: UInt8, to new: UInt8, _ ctx: BackendContext) {}
    public func reset(_ ctx: BackendContext) {}
    public var supportsMigration: Bool { false }
    public func saveState(_ ctx: BackendContext) -> Result<[UInt8], DeviceStateError> { .failure(DeviceStateError("not supported")) }
    public func loadState(_ bytes: [UInt8], _ ctx: BackendContext) -> DeviceStateError? { DeviceStateError("not supported") }
}

/// What a device may see and do of its connection.
public protocol BackendContext: AnyObject {
    var memory: GuestMemory { get }
    var vrings: [Vring] { get }
    var ackedFeatures: UInt64 { get }
    var status: UInt8 { get }
    var logger: Logger { get }
    /// The guest broke the virtio contract on `queue`: stop it, set NEEDS_RESET,
    /// tell the front-end (error fd, config change). Other guests are untouched.
    func needsReset(queue: Int, reason: String)
    /// Sends VHOST_USER_BACKEND_CONFIG_CHANGE_MSG when the back-end channel was negotiated.
    func sendConfigChange()
}
