import PVZServer
import Synchronization
import VhostUser
import Virtqueue

/// One guest's emulated GPU as the device glue sees it: its register bank,
/// its pending events and its firmware. Bridges GPUModel to the vrings.
/// INTEGRATION PENDING: register bank, event backlog and firmware come from
/// GPUModel; until merged, registers read 0 and kicks are returned unrun.
public final class GuestGPU: @unchecked Sendable {
    public let osid: OSID
    public let bvnc: UInt64
    public let registers = NoRegisters()
    private let running = Atomic<Bool>(false)
    public var firmwareRunning: Bool { running.load(ordering: .acquiring) }

    public init(osid: OSID, bvnc: UInt64 = PVZIdentity.defaultBVNC) {
        self.osid = osid
        self.bvnc = bvnc
    }

    public struct Counters: Sendable { public var kicks: UInt64 = 0, commands: UInt64 = 0, faults: UInt64 = 0, events: UInt64 = 0, eventsDropped: UInt64 = 0 }
    public var counters: Counters { Counters() }
    public var firmwareState: String { firmwareRunning ? "running" : "stopped" }
    public func stopFirmware(timeoutSeconds: Double) -> Bool { true }
    public func parametersChanged(_ p: VMMParameters) {}
    public func vmOnline(priority: UInt32) {}
    public func vmOffline() { running.store(false, ordering: .releasing) }
    public func attachMemory(_ memory: GuestMemory) {}
    public func detachMemory() {}
    public func deviceReset() {}
    public func kickQueueStopped() {}
    public func apply(_ effect: CallEffect, memory: GuestMemory) {}

    /// Fills posted eventq buffers with pending events; true when any was used.
    public func deliverEvents(_ v: Vring, _ memory: GuestMemory) throws(ChainError) -> Bool { false }

    public func acceptKicks(_ v: Vring, _ memory: GuestMemory) throws(ChainError) {
        while let c = try v.nextChain(memory) {
            v.complete(head: c.head, written: 0)
        }
        v.notifyIfNeeded()
    }

    public func completeKicks(_ v: Vring) {}
}
