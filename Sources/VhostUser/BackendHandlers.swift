import CPVZShim
import Logging
import Platform
import Synchronization
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

// One typed handler per front-end message (libvhost-user's shape): decode the
// payload, check it, change the connection's state, answer.
extension Backend {
    // MARK: Features

    func getFeatures(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        if p.count != 0 && p.count != 8 { return .failed("payload of \(p.count) bytes, expected 0 or 8") }
        sendU64(h, offeredFeatures)
        return .replied
    }

    func setFeatures(_ p: UnsafeRawBufferPointer) -> Outcome {
        if let e = expectSize(p, 8, "SET_FEATURES") { return .failed(e) }
        let f = p.le64(0)
        let unknown = f & ~offeredFeatures
        if unknown != 0 { return .failed("features 0x\(String(f, radix: 16)) include bits 0x\(String(unknown, radix: 16)) never offered (offered 0x\(String(offeredFeatures, radix: 16)))") }
        ackedFeatures = f
        stats.ackedFeatures.store(f, ordering: .relaxed)
        let logAll = f & VirtioFeature.logAll != 0
        if logAll != dirtyLog.logAll {
            logger.info("dirty-page logging \(logAll ? "on (a migration copies guest RAM)" : "off")")
        }
        dirtyLog.setLogAll(logAll)
        for v in vrings {
            changing(v) {
                if v.queue != nil {
                    v.queue!.eventIdx = f & RingFeature.eventIdx != 0
                    v.queue!.indirect = f & RingFeature.indirectDesc != 0
                }
                // Without PROTOCOL_FEATURES rings are enabled as soon as they start.
                if f & VirtioFeature.protocolFeatures == 0 { v.enabled = true }
            }
        }
        return .ok
    }

    func getProtocolFeatures(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        if p.count != 0 && p.count != 8 { return .failed("payload of \(p.count) bytes, expected 0 or 8") }
        sendU64(h, offeredProtocolFeatures.rawValue)
        return .replied
    }

    func setProtocolFeatures(_ p: UnsafeRawBufferPointer) -> Outcome {
        if let e = expectSize(p, 8, "") { return .failed(e) }
        let f = ProtocolFeatures(rawValue: p.le64(0))
        let unknown = f.subtracting(offeredProtocolFeatures)
        if !unknown.isEmpty { return .failed("protocol features 0x\(String(f.rawValue, radix: 16)) include bits 0x\(String(unknown.rawValue, radix: 16)) never offered") }
        ackedProtocolFeatures = f
        return .ok
    }

    func getQueueNum(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        if p.count != 0 && p.count != 8 { return .failed("payload of \(p.count) bytes, expected 0 or 8") }
        sendU64(h, UInt64(vrings.count))
        return .replied
    }

    func getMaxMemSlots(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        if p.count != 0 && p.count != 8 { return .failed("payload of \(p.count) bytes, expected 0 or 8") }
        sendU64(h, Self.maxMemSlots)
        return .replied
    }

    // MARK: Memory

    func setMemTable(_ p: UnsafeRawBufferPointer, _ fds: inout [Int32]) -> Outcome {
        guard let table = MemoryTablePayload.decode(p) else {
            return .failed("memory table payload of \(p.count) bytes is malformed (count \(p.count >= 4 ? p.le32(0) : 0), limit \(MemoryTablePayload.maxRegions) regions of 32 bytes)")
        }
        if table.regions.count != fds.count { return .failed("\(table.regions.count) regions but \(fds.count) fds") }
        let ds = table.regions.map { MemoryRegionDescriptor(guestPhysAddr: $0.guestPhysAddr, size: $0.memorySize, userAddr: $0.userAddr, mmapOffset: $0.mmapOffset) }
        do {
            let m = try GuestMemory(descriptors: ds, fds: fds, dirtyLog: dirtyLog)
            installMemory(m)
        } catch {
            return .failed(error.description)
        }
        return .ok
    }

    func addMemReg(_ p: UnsafeRawBufferPointer, _ fds: inout [Int32]) -> Outcome {
        guard let msg = SingleRegionPayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected \(SingleRegionPayload.size)") }
        let r = msg.region
        let d = MemoryRegionDescriptor(guestPhysAddr: r.guestPhysAddr, size: r.memorySize, userAddr: r.userAddr, mmapOffset: r.mmapOffset)
        if memory.regions.count >= GuestMemory.maxRegions {
            return .failed("memory table already holds \(memory.regions.count) regions, limit \(GuestMemory.maxRegions)")
        }
        do {
            try GuestMemory.validate([d])
            let region = try MappedRegion(fd: fds[0], d, index: memory.regions.count)
            installMemory(try memory.adding(region))
        } catch {
            return .failed(error.description)
        }
        return .ok
    }

    func remMemReg(_ p: UnsafeRawBufferPointer) -> Outcome {
        guard let msg = SingleRegionPayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected \(SingleRegionPayload.size)") }
        let r = msg.region
        do {
            installMemory(try memory.removing(MemoryRegionDescriptor(guestPhysAddr: r.guestPhysAddr, size: r.memorySize, userAddr: r.userAddr, mmapOffset: r.mmapOffset)))
        } catch {
            return .failed(error.description)
        }
        return .ok
    }

    // MARK: Vrings

    func setVringNum(_ p: UnsafeRawBufferPointer) -> Outcome {
        guard let s = VringStatePayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected 8") }
        guard let v = vring(s.index) else { return badIndex(s.index) }
        guard s.num <= UInt32(UInt16.max), SplitQueue.validSize(UInt16(s.num), max: device.maxQueueSize) else {
            return .failed("queue \(s.index) size \(s.num) is not a power of two in 1...\(device.maxQueueSize)")
        }
        if v.started { return .failed("queue \(s.index) is started; stop it (GET_VRING_BASE) before resizing") }
        v.size = UInt16(s.num)
        if v.kickSet && v.addr != nil { return startRing(v) }
        return .ok
    }

    func setVringAddr(_ p: UnsafeRawBufferPointer) -> Outcome {
        guard let a = VringAddrPayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected \(VringAddrPayload.size)") }
        guard let v = vring(a.index) else { return badIndex(a.index) }
        guard v.started else {
            v.addr = a
            if v.kickSet && v.size > 0 { return startRing(v) }
            return .ok
        }
        // A running ring (QEMU sets the log flag at a migration's start): a
        // refusal leaves it as it was.
        return changing(v) {
            guard let q = makeQueue(v, a) else {
                return .failed("queue \(a.index) ring addresses (desc 0x\(String(a.desc, radix: 16)), avail 0x\(String(a.avail, radix: 16)), used 0x\(String(a.used, radix: 16))) are not inside the memory table, or misaligned; the ring runs on at its old ones")
            }
            v.addr = a
            v.queue = q
            return .ok
        }
    }

    func setVringBase(_ p: UnsafeRawBufferPointer) -> Outcome {
        guard let s = VringStatePayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected 8") }
        guard let v = vring(s.index) else { return badIndex(s.index) }
        guard s.num <= UInt32(UInt16.max) else { return .failed("queue \(s.index) base \(s.num) exceeds 65535 (split ring)") }
        if v.started { return .failed("queue \(s.index) is started; its base cannot change") }
        v.base = UInt16(s.num)
        return .ok
    }

    func getVringBase(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        guard let s = VringStatePayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected 8") }
        guard let v = vring(s.index) else { return badIndex(s.index) }
        if v.started { stopRing(v) }
        v.kick = nil
        v.kickSet = false
        VringStatePayload(index: s.index, num: UInt32(v.base)).encode(into: replyPayload)
        sendReply(h, payloadSize: VringStatePayload.size)
        return .replied
    }

    enum FDKind { case kick, call, err }

    func setVringFD(_ p: UnsafeRawBufferPointer, _ fds: inout [Int32], kind: FDKind) -> Outcome {
        if let e = expectSize(p, 8, "") { return .failed(e) }
        let raw = p.le64(0)
        let f = VringFDPayload(raw)
        if raw & ~(VringFDPayload.indexMask | VringFDPayload.noFDFlag) != 0 {
            return .failed("reserved bits set in 0x\(String(raw, radix: 16))")
        }
        guard let v = vring(f.index) else { return badIndex(f.index) }
        // Ownership moves to the vring.
        var fd: FileDescriptor? = nil
        if !f.noFD { fd = FileDescriptor(taking: fds[0]); fds[0] = -1 }
        // A call or err fd nobody reads (a full pipe, say) must not block the guest thread.
        fd?.setNonBlocking()
        switch kind {
        case .call:
            let raw = fd?.rawValue
            // The device's own thread signals it (kickq): never close it under that thread.
            changing(v) { v.call = fd.take() }
            // A signal the device sent to the previous call fd may be lost
            // (QEMU starts a ring on its "masked" notifier, then gives the
            // guest's), and under EVENT_IDX a driver that missed it is never
            // told again: tell the new fd once. A spurious interrupt costs
            // the driver one look at the used ring (libvhost-user does the same).
            if let raw { EventFD.signal(raw) }
        case .err:
            v.err = fd
        case .kick:
            if v.started { stopRing(v) }
            v.kick = fd
            // The ring starts on SET_VRING_KICK (vhost-user.rst "Starting and stopping rings").
            return startRing(v)
        }
        return .ok
    }

    func setVringEnable(_ p: UnsafeRawBufferPointer) -> Outcome {
        guard let s = VringStatePayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected 8") }
        guard let v = vring(s.index) else { return badIndex(s.index) }
        guard s.num <= 1 else { return .failed("queue \(s.index) enable value \(s.num), expected 0 or 1") }
        if ackedFeatures & VirtioFeature.protocolFeatures == 0 && ackedFeatures != 0 {
            return .failed("SET_VRING_ENABLE without VHOST_USER_F_PROTOCOL_FEATURES negotiated")
        }
        let was = v.enabled
        if v.handedOver {
            changing(v) { v.enabled = s.num == 1 }
            return .ok
        }
        v.enabled = s.num == 1
        if v.enabled && !was && v.isLive && !device.servesQueueItself(v.index) { device.queueKicked(v.index, self) }
        return .ok
    }

    // MARK: In-flight tracking (INFLIGHT_SHMFD)


    func getInflightFD(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        guard let m = InflightPayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected \(InflightPayload.size)") }
        do {
            let r = try InflightRegion(numQueues: m.numQueues, queueSize: m.queueSize,
                                       maxQueues: vrings.count, maxQueueSize: device.maxQueueSize)
            inflight = r
            r.payload.encode(into: replyPayload)
            sendReply(h, payloadSize: InflightPayload.size, fd: r.fd)
            return .replied
        } catch {
            return .failed(error.description)
        }
    }

    func setInflightFD(_ p: UnsafeRawBufferPointer, _ fds: inout [Int32]) -> Outcome {
        guard let m = InflightPayload.decode(p) else { return .failed("payload of \(p.count) bytes, expected \(InflightPayload.size)") }
        let fd = FileDescriptor(taking: fds[0])
        fds[0] = -1
        do {
            inflight = try InflightRegion(fd: fd, m, maxQueues: vrings.count, maxQueueSize: device.maxQueueSize)
        } catch {
            return .failed(error.description)
        }
        return .ok
    }

    // MARK: Dirty-page log (live migration)

    /// SET_LOG_BASE (LOG_SHMFD): the log to mark, as an fd. With LOG_SHMFD
    /// QEMU blocks until it is answered (it does not read the answer), so a
    /// refusal is answered too; a log that cannot be mapped is remembered,
    /// and the state save refuses (see `setDeviceStateFD`).
    func setLogBase(_ h: MessageHeader, _ p: UnsafeRawBufferPointer, _ fds: inout [Int32]) -> Outcome {
        guard ackedProtocolFeatures.contains(.logShmfd) else { return .failed("SET_LOG_BASE without LOG_SHMFD negotiated (the log must come as an fd)") }
        func refuse(_ why: String) -> Outcome {
            logger.error("SET_LOG_BASE refused: \(why); a migration now fails at the state save")
            sendU64(h, 1)
            return .replied
        }
        guard p.count == 16 else {
            _ = try? dirtyLog.install(fd: -1, size: 0, offset: 0)  // remembered as the failure
            return refuse("payload of \(p.count) bytes, expected 16 (mmap size, mmap offset)")
        }
        let size = p.le64(0), offset = p.le64(8)
        do {
            try dirtyLog.install(fd: fds[0], size: size, offset: offset)
        } catch {
            return refuse(error.description)
        }
        logger.info("dirty log mapped: \(size) bytes at offset \(offset) (guest physical space up to \((size * 8 * DirtyLog.pageSize) >> 20) MiB)")
        sendU64(h, 0)
        return .replied
    }

    // MARK: Device state (live migration)


    func setDeviceStateFD(_ h: MessageHeader, _ p: UnsafeRawBufferPointer, _ fds: inout [Int32]) -> Outcome {
        func reply(_ code: UInt64) -> Outcome {
            sendU64(h, code | DeviceStateTransferPayload.replyNoFD)
            return .replied
        }
        guard ackedProtocolFeatures.contains(.deviceState) else { return .failed("DEVICE_STATE was not negotiated") }
        guard let m = DeviceStateTransferPayload.decode(p) else {
            logger.error("SET_DEVICE_STATE_FD: payload of \(p.count) bytes, expected \(DeviceStateTransferPayload.size)")
            return reply(1)
        }
        guard m.phase == DeviceStateTransferPayload.phaseStopped, let dir = DeviceStateTransferPayload.Direction(rawValue: m.direction) else {
            logger.error("SET_DEVICE_STATE_FD: direction \(m.direction) phase \(m.phase) not supported (save 0 / load 1, phase 0 stopped)")
            return reply(1)
        }
        if let running = vrings.first(where: { $0.started }) {
            logger.error("SET_DEVICE_STATE_FD: queue \(running.index) still runs; the device must be stopped first")
            return reply(1)
        }
        if let old = transfer {
            // A new transfer abandons the one before (a front-end that never
            // ended it must not hold this guest thread for its 30 s deadline).
            old.cancel()
            _ = old.finish()
            transfer = nil
            logger.warning("SET_DEVICE_STATE_FD while a \(old.direction == .save ? "save" : "load") was in progress: that one is abandoned")
        }
        var bytes: [UInt8] = []
        if dir == .save, let why = dirtyLog.failure {
            // Pages this daemon wrote may be missing from the copy: the migration must fail.
            logger.error("device state save refused: \(why)")
            return reply(1)
        }
        if dir == .save {
            switch device.saveState(self) {
            case .success(let b): bytes = b
            case .failure(let e):
                logger.error("saving the device state: \(e)")
                return reply(1)
            }
        }
        let fd = FileDescriptor(taking: fds[0])
        fds[0] = -1
        transfer = DeviceStateTransfer(direction: dir, fd: fd, bytes: bytes, limit: Self.maxDeviceState)
        logger.info("device state \(dir == .save ? "save (\(bytes.count) bytes)" : "load") started")
        return reply(0)
    }

    func checkDeviceState(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        guard ackedProtocolFeatures.contains(.deviceState) else { return .failed("DEVICE_STATE was not negotiated") }
        guard let t = transfer else {
            logger.error("CHECK_DEVICE_STATE without a transfer")
            sendU64(h, 1)
            return .replied
        }
        transfer = nil
        let (bytes, error) = t.finish(withinMs: DeviceStateTransfer.checkDeadlineMs)
        if let error {
            logger.error("device state \(t.direction == .save ? "save" : "load") failed: \(error)")
            sendU64(h, 1)
            return .replied
        }
        if t.direction == .load, let refusal = device.loadState(bytes, self) {
            logger.error("device state refused: \(refusal)")
            sendU64(h, 1)
            return .replied
        }
        logger.info("device state \(t.direction == .save ? "saved" : "loaded (\(bytes.count) bytes)")")
        sendU64(h, 0)
        return .replied
    }

    // MARK: Config, status, back-end channel

    func getConfig(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        guard let c = ConfigPayload.decode(p) else { return .failed("config payload of \(p.count) bytes is malformed") }
        let size = device.configSize
        guard Int(c.offset) + Int(c.size) <= size else {
            return .failed("config read at offset \(c.offset) size \(c.size) exceeds the \(size)-byte config space")
        }
        var full = [UInt8](repeating: 0, count: size)
        full.withUnsafeMutableBytes { device.readConfig(into: $0) }
        c.encodeHeader(into: replyPayload)
        for i in 0..<Int(c.size) { replyPayload[ConfigPayload.headerSize + i] = full[Int(c.offset) + i] }
        sendReply(h, payloadSize: ConfigPayload.headerSize + Int(c.size))
        return .replied
    }

    func setConfig(_ p: UnsafeRawBufferPointer) -> Outcome {
        guard let c = ConfigPayload.decode(p) else { return .failed("config payload of \(p.count) bytes is malformed") }
        let bytes = UnsafeRawBufferPointer(rebasing: p[ConfigPayload.headerSize...])
        // What a write means is the device's to say.
        if let refusal = device.writeConfig(offset: c.offset, bytes: bytes, self) { return .failed(refusal) }
        return .ok
    }

    func setBackendReqFD(_ fds: inout [Int32]) -> Outcome {
        let channel = FileDescriptor(taking: fds[0])
        fds[0] = -1
        // Notifications only: when the front-end does not read them they are dropped, never waited for.
        channel.setNonBlocking()
        backendChannel = consume channel
        return .ok
    }

    func getStatus(_ h: MessageHeader, _ p: UnsafeRawBufferPointer) -> Outcome {
        if p.count != 0 && p.count != 8 { return .failed("payload of \(p.count) bytes, expected 0 or 8") }
        sendU64(h, UInt64(status))
        return .replied
    }

    func setStatus(_ p: UnsafeRawBufferPointer) -> Outcome {
        if let e = expectSize(p, 8, "") { return .failed(e) }
        let v = p.le64(0)
        guard v <= 0xff else { return .failed("status 0x\(String(v, radix: 16)) does not fit in 8 bits") }
        let old = deviceStatus
        deviceStatus = UInt8(v)
        stats.deviceStatus.store(deviceStatus, ordering: .relaxed)
        // Status 0 is what QEMU sends whenever it stops the device (VM paused,
        // migration, and the first half of a guest reset): the rings stop, the
        // device keeps its state. A real reset follows as RESET_DEVICE.
        if v == 0 { resetRings() } else { device.statusChanged(from: old, to: deviceStatus, self) }
        return .ok
    }
}
