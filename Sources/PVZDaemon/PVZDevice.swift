import PVZContract
import GPUModel
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PVZServer
import Synchronization
import VhostUser
import Virtqueue

/// Per-guest settings the VM manager holds beyond the PVZ policy.
public struct GuestSettings: Sendable, Equatable {
    /// Bring the VM online when its front-end connects (no libvirt).
    public var onlineOnConnect: Bool
    /// Priority used for that automatic OnVmOnline.
    public var priority: UInt32
    public init(onlineOnConnect: Bool = false, priority: UInt32 = 0) {
        self.onlineOnConnect = onlineOnConnect
        self.priority = priority
    }
}

/// What the PVZ server may ask of the guest's side during a call: is a range
/// in its RAM (the live memory table), and let go of a firmware heap (the
/// firmware stops and detaches before the ledger drops the heap).
struct CallGlue: GuestRAM, FirmwareControl {
    let memory: GuestMemory
    let gpu: GuestGPU
    func contains(_ r: IPARange) -> Bool { memory.contains(gpa: r.start.rawValue, size: r.size) }
    func release(_ heap: HeapRecord) { gpu.releaseFirmware() }
}

/// virtio-pvz on the vhost-user engine: hypercallq → PVZ server, eventq ←
/// GPU events, kickq → firmware. One per guest; runs on the guest's thread.
public final class PVZDevice: VhostUserDevice, @unchecked Sendable {
    public let osid: OSID
    public let hostServer: PVZHostServer
    public let settings: GuestSettings
    public let gpu: GuestGPU
    let logger: Logger

    public let queueCount = PVZQueue.allCases.count
    public let maxQueueSize = VirtioPVZ.maxQueueSize
    public let configSize = PVZConfigSpace.size
    public var deviceFeatures: UInt64 {
        var f = VirtioFeature.version1 | RingFeature.indirectDesc | RingFeature.eventIdx | PVZFeature.firmware
        if hostServer.spec(of: osid)?.policy.hostHeapsAllowed == true { f |= PVZFeature.hostHeaps }
        return f
    }

    /// Largest request or response the device copies; every legal one is far
    /// smaller, so a bigger one is answered MALFORMED_REQUEST by length.
    static let maxMessage = 256
    private let request = UnsafeMutableRawBufferPointer.allocate(byteCount: maxMessage, alignment: 8)
    private let response = UnsafeMutableRawBufferPointer.allocate(byteCount: maxMessage, alignment: 8)
    /// Set from other threads (VM manager, firmware) to have the guest thread
    /// send CONFIG_CHANGE_MSG.
    private let configDirty = Atomic<Bool>(false)
    private let connected = Atomic<Bool>(false)
    /// Test-only fault injection (PVZ_TEST_CRASH): exits the process at a
    /// chosen point of a call, as a SIGKILL there would.
    var crashPoint: CrashPoint?
    /// Called on the guest thread after a call changed the ledger (persists it).
    var ledgerChanged: () -> Void = {}
    /// Lifecycle lines a guest causes (resets, releases) are info, but a guest
    /// resetting in a loop must not flood the log. Guest thread only.
    private var lifecycleLog = RateLimit(burst: 20, perSecond: 2)
    /// The engine's server for this guest, to ring its doorbell from other threads.
    public weak var vhostServer: VhostUserServer?

    public init(osid: OSID, hostServer: PVZHostServer, settings: GuestSettings, gpu: GuestGPU, logger: Logger) {
        self.osid = osid
        self.hostServer = hostServer
        self.settings = settings
        self.gpu = gpu
        var l = logger
        l[metadataKey: "osid"] = "\(osid.rawValue)"
        self.logger = l
    }

    deinit {
        request.deallocate()
        response.deallocate()
    }

    public var isConnected: Bool { connected.load(ordering: .acquiring) }

    /// Thread-safe: asks the guest thread to tell the front-end the config changed.
    public func configChanged() {
        configDirty.store(true, ordering: .releasing)
        vhostServer?.wake()
    }

    // MARK: config space

    public func configSpace() -> PVZConfigSpace {
        let v = hostServer.configView(osid: osid)
        var status: PVZConfigSpace.Status = []
        if v?.online == true { status.insert(.online) }
        if v?.devConfigCreated == true { status.insert(.devConfigCreated) }
        if v?.fwHeap != nil { status.insert(.firmwareHeapMapped) }
        if gpu.firmwareRunning { status.insert(.firmwareRunning) }
        return PVZConfigSpace(osid: osid, status: status, bvnc: gpu.bvnc, irq: v?.irq ?? 0,
                              priority: v?.priority ?? 0, regsIPA: v?.regsIPA ?? IPA(0),
                              regsSize: v?.regsSize ?? 0, maxOSIDs: v?.maxOSIDs ?? 0,
                              fwHeapIPA: v?.fwHeap?.ipa.start ?? IPA(0), fwHeapSize: v?.fwHeap?.size ?? 0)
    }

    public func readConfig(into buffer: UnsafeMutableRawBufferPointer) {
        configSpace().encode(into: buffer)
    }

    /// Config space is read-only (the contract's section 4): QEMU forwards a
    /// guest's write as the whole buffer, which cannot say which field was meant.
    public func writeConfig(offset: UInt32, bytes: UnsafeRawBufferPointer, _ ctx: BackendContext) -> String? {
        "config space is read-only (write of \(bytes.count) bytes at offset \(offset) ignored)"
    }

    // MARK: connection life cycle

    public func frontEndConnected(_ ctx: BackendContext) {
        connected.store(true, ordering: .releasing)
        _ = try? hostServer.guestConnected(osid: osid)
        if settings.onlineOnConnect, hostServer.configView(osid: osid)?.online == false {
            do {
                try hostServer.onVmOnline(osid: osid, priority: settings.priority)
                gpu.vmOnline(priority: settings.priority)
                logger.info("VM online on front-end connect (priority \(settings.priority))")
            } catch {
                logger.warning("online on connect refused: \(error)")
            }
        }
    }

    public func frontEndDisconnected(_ ctx: BackendContext, reason: DisconnectReason) {
        connected.store(false, ordering: .releasing)
        _ = try? hostServer.guestDisconnected(osid: osid)
        if reason == .serverStopping {
            // A daemon restart keeps everything: the front-end reconnects to
            // the next daemon and finds the ledger (state file) as it was.
            gpu.releaseFirmware()
            return
        }
        // The guest's front-end is gone for good (QEMU quit or crashed, the
        // device was unplugged) or broke the protocol: release its device.
        releaseDevice(why: reason == .frontEndClosed ? "front-end gone" : "front-end broke the protocol", dropMemory: true)
    }

    public func memoryChanged(_ ctx: BackendContext) {
        gpu.attachMemory(ctx.memory, fwHeap: hostServer.configView(osid: osid)?.fwHeap?.ipa)
    }

    /// RESET_DEVICE / RESET_OWNER: what a rebooting guest kernel or a driver
    /// unbind does. The old boot's device config and heaps go; the VM stays online.
    public func reset(_ ctx: BackendContext) {
        releaseDevice(why: "device reset", dropMemory: false)
        ctx.sendConfigChange()
    }

    /// Firmware first (cancel, stop at a command boundary, detach), then the ledger.
    private func releaseDevice(why: String, dropMemory: Bool) {
        let online = hostServer.configView(osid: osid)?.online ?? false
        gpu.resetDevice(online: online, dropMemory: dropMemory)
        guard let r = try? hostServer.releaseDevice(osid: osid) else { return }
        if r.devConfigDestroyed || !r.freedHeaps.isEmpty {
            ledgerChanged()
            if let held = lifecycleLog.admit() {
                logger.info("\(why): released the device (\(r.devConfigDestroyed ? "device config, " : "")\(r.freedHeaps.count) heaps); VM stays \(online ? "online" : "offline")\(held > 0 ? " (\(held) similar lines not logged)" : "")")
            }
        } else {
            logger.debug("\(why): nothing to release")
        }
    }

    // kickq is served by the firmware processor's thread, not the guest's.
    public func servesQueueItself(_ index: Int) -> Bool { index == PVZQueue.kickq.rawValue }

    public func queueHandOver(_ index: Int, _ ctx: BackendContext) {
        if index == PVZQueue.kickq.rawValue { gpu.handOverKickq(ctx.vrings[index], ctx.memory) }
    }

    public func queueTakeBack(_ index: Int, _ why: TakeBack, _ ctx: BackendContext) {
        guard index == PVZQueue.kickq.rawValue else { return }
        let t0 = ContinuousClock.now
        let (finished, cancelled) = gpu.takeBackKickq(why)
        // Rare (a pause, a migration, a reset with work queued) and what a
        // guest mid-kick experiences: worth a line.
        if case .stopping = why, finished + cancelled > 0 {
            let d = (ContinuousClock.now - t0).components
            let us = d.seconds * 1_000_000 + d.attoseconds / 1_000_000_000_000
            logger.info("kickq stopped with \(finished + cancelled) kicks in flight: \(finished) finished and returned, \(cancelled) cancelled (kickCancelled events), in \(us) µs")
        }
    }

    public func wake(_ ctx: BackendContext) {
        if configDirty.exchange(false, ordering: .acquiringAndReleasing) { ctx.sendConfigChange() }
        if let broken = gpu.takeKickqBreak() { ctx.needsReset(queue: PVZQueue.kickq.rawValue, reason: broken) }
        deliverEvents(ctx)
    }

    public func queueKicked(_ index: Int, _ ctx: BackendContext) {
        switch index {
        case PVZQueue.hypercallq.rawValue: serveHypercalls(ctx)
        case PVZQueue.eventq.rawValue: deliverEvents(ctx)
        default: break
        }
    }

    // MARK: hypercallq (the hot path: no allocation, no lock across a syscall)

    private func serveHypercalls(_ ctx: BackendContext) {
        let v = ctx.vrings[PVZQueue.hypercallq.rawValue]
        let side = CallGlue(memory: ctx.memory, gpu: gpu)
        var changed = false
        repeat {
            while true {
                let chain: DescriptorChain
                do {
                    guard let c = try v.nextChain(ctx.memory) else { break }
                    chain = c
                } catch {
                    ctx.needsReset(queue: PVZQueue.hypercallq.rawValue, reason: error.description)
                    return
                }
                let reqLen = min(chain.readableLength, Self.maxMessage)
                _ = chain.gather(into: UnsafeMutableRawBufferPointer(rebasing: request[0..<reqLen]))
                // A request longer than any legal one is passed at its true
                // length bound so the server answers MALFORMED_REQUEST.
                let reqView = chain.readableLength > Self.maxMessage
                    ? UnsafeRawBufferPointer(request) : UnsafeRawBufferPointer(rebasing: request[0..<reqLen])
                let respLen = min(chain.writableLength, Self.maxMessage)
                let respView = UnsafeMutableRawBufferPointer(rebasing: response[0..<respLen])
                crashPoint?.reached(.beforeCall)
                let outcome: CallOutcome
                if v.lastChainReplayed, let answer = hostServer.recordedAnswer(osid: osid, request: reqView, response: respView) {
                    // In flight when the previous daemon died, and it had already
                    // run: the guest gets that answer; nothing runs twice.
                    outcome = answer
                    logger.info("replayed \(answer.function?.name ?? "call") answered as recorded (\(answer.status.name))")
                } else {
                    outcome = hostServer.handleCall(osid: osid, request: reqView, response: respView,
                                                ram: side, registers: gpu.registers, firmware: side)
                }
                if outcome.status != .ok {
                    // Debug only: a hostile guest must not be able to flood the log.
                    logger.debug("call \(outcome.function?.name ?? "function \(outcome.rawFunction)") (request \(chain.readableLength) bytes, response room \(chain.writableLength)) -> \(outcome.status.name)")
                }
                if outcome.effect != .none {
                    // Debug: the guest chooses how often it calls (3,000 WRITE_REGs
                    // must not be 3,000 log lines); ledger changes show in status.
                    logger.debug("\(outcome.function?.name ?? "?"): \(outcome.effect)")
                    // Before the guest sees the answer: the firmware is started and
                    // the ledger is on disk when the call returns.
                    gpu.apply(outcome.effect, memory: ctx.memory)
                    if outcome.effect.changesLedger {
                        ledgerChanged()
                        crashPoint?.reached(.afterLedgerWrite)
                        // Config space shows the ledger (device config, firmware
                        // heap); a register write leaves it as it was, so it
                        // costs the guest no config interrupt.
                        changed = true
                    }
                }
                let written = chain.scatter(UnsafeRawBufferPointer(rebasing: response[0..<outcome.bytesWritten]))
                v.complete(head: chain.head, written: UInt32(written))
            }
            v.notifyIfNeeded()
        } while v.armAndRecheck()
        gpu.mirror()
        if changed { ctx.sendConfigChange() }
    }

    // MARK: eventq

    private func deliverEvents(_ ctx: BackendContext) {
        let v = ctx.vrings[PVZQueue.eventq.rawValue]
        guard v.isLive else { return }
        do {
            var used = false
            // Out of buffers: ask the driver to kick on its next one (EVENT_IDX
            // avail_event), and look again in case it posted one meanwhile.
            while true {
                repeat {
                    if try gpu.deliverEvents(v, ctx.memory) { used = true }
                } while !v.pending && v.armAndRecheck()
                // The firmware thread wakes this thread for an event only while a
                // buffer waits; without one the driver's next buffer kicks us.
                // An event raised after the last look but before this store saw
                // the old "no buffer" and woke nobody: look once more.
                let waiting = v.pending
                gpu.eventBuffersPosted(waiting)
                guard waiting, gpu.bank.pendingEvents > 0 else { break }
            }
            if used { v.notifyIfNeeded() }
        } catch {
            ctx.needsReset(queue: PVZQueue.eventq.rawValue, reason: error.description)
        }
    }

}

/// `PVZ_TEST_CRASH=before-call:N` or `after-ledger-write:N`: the daemon
/// exits (status 99, no clean-up) the Nth time it reaches that point of a
/// hypercall. For the exactly-once tests only; unset in every deployment.
final class CrashPoint: @unchecked Sendable {
    enum Point: String { case beforeCall = "before-call", afterLedgerWrite = "after-ledger-write" }
    let point: Point
    private var remaining: Int

    init?(environment value: String?) {
        guard let v = value, let colon = v.firstIndex(of: ":"),
              let p = Point(rawValue: String(v[..<colon])), let n = Int(v[v.index(after: colon)...]), n > 0 else { return nil }
        point = p
        remaining = n
    }

    func reached(_ p: Point) {
        guard p == point else { return }
        remaining -= 1
        if remaining == 0 { _exit(99) }
    }
}
