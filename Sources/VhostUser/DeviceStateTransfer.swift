import CPVZShim
import Platform
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// VhostUserTransferDeviceState (SET_DEVICE_STATE_FD): direction, phase.
public struct DeviceStateTransferPayload: Equatable, Sendable {
    public static let size = 8
    public enum Direction: UInt32, Sendable { case save = 0, load = 1 }
    /// The only phase vhost-user defines: the VM and the device are stopped.
    public static let phaseStopped: UInt32 = 0
    public var direction: UInt32
    public var phase: UInt32
    public init(direction: UInt32, phase: UInt32) { self.direction = direction; self.phase = phase }
    public static func decode(_ b: UnsafeRawBufferPointer) -> DeviceStateTransferPayload? {
        guard b.count == size else { return nil }
        return DeviceStateTransferPayload(direction: b.le32(0), phase: b.le32(4))
    }
    public func encode(into b: UnsafeMutableRawBufferPointer) {
        b.putLE32(0, direction); b.putLE32(4, phase)
    }
    /// SET_DEVICE_STATE_FD's reply: bits 0–7 an error code, bit 8 "no fd returned".
    public static let replyNoFD: UInt64 = 0x100
}

/// One state transfer over the front-end's pipe, on its own thread so the
/// guest thread never blocks on a pipe QEMU reads or writes at its own pace.
/// CHECK_DEVICE_STATE waits for it, briefly (`checkDeadlineMs`).
final class DeviceStateTransfer: @unchecked Sendable {
    /// How long the transfer thread waits for the front-end to move the pipe.
    static let deadlineSeconds: Int32 = 30
    /// How long CHECK_DEVICE_STATE waits for the transfer to end. QEMU ends
    /// it before it asks (it closes the pipe it wrote, or reads it to its
    /// end), so what is left is at most a pipe's worth of bytes: a front-end
    /// that asks earlier gets a failure, not a guest thread held for 30 s.
    static let checkDeadlineMs: Int32 = 2000
    let direction: DeviceStateTransferPayload.Direction
    private let limit: Int
    private var thread: OSThread?
    /// Rung by `cancel()`: the transfer stops waiting on the front-end's pipe.
    private let cancelDoorbell: FileDescriptor
    /// Its descriptor; -1 when none could be made (poll then ignores it).
    private var cancelFD: Int32 { cancelDoorbell.rawValue }
    /// Set by the transfer thread once: the bytes read (load) or nil, and an error.
    private let outcome = Mutex<(done: Bool, bytes: [UInt8], error: String?)>((false, [], nil))
    /// Rung by the transfer thread when `outcome` is set; -1 when none could
    /// be made (`finish(withinMs:)` then waits in short sleeps).
    private let doneDoorbell = FileDescriptor(taking: eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK)))
    private var isDone: Bool { outcome.withLock { $0.done } }

    /// Save: writes `bytes` to `fd`, then closes it. Load: reads `fd` to its
    /// end (at most `limit` bytes), then closes it. Takes `fd`.
    init(direction: DeviceStateTransferPayload.Direction, fd: consuming FileDescriptor, bytes: [UInt8], limit: Int) {
        self.direction = direction
        self.limit = limit
        cancelDoorbell = FileDescriptor(taking: eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK)))
        let raw = fd.release()
        do {
            thread = try OSThread(name: "pvz-state") { [self] in
                let pipe = FileDescriptor(taking: raw)
                run(fd: pipe.rawValue, bytes: bytes)
            }
        } catch {
            _ = close(raw)
            outcome.withLock { $0 = (true, [], "cannot start the transfer: \(error)") }
        }
    }

    private func run(fd: Int32, bytes: [UInt8]) {
        var error: String?
        var got: [UInt8] = []
        if direction == .save {
            var off = 0
            while off < bytes.count, error == nil {
                guard wait(fd, Int16(POLLOUT)) else { error = "the front-end did not read the state within \(Self.deadlineSeconds) s"; break }
                let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
                if n > 0 { off += n } else if n < 0 && errno != EINTR && errno != EAGAIN { error = "write: errno \(errno)" }
            }
        } else {
            var buf = [UInt8](repeating: 0, count: 65536)
            while error == nil {
                guard wait(fd, Int16(POLLIN)) else { error = "the front-end sent no end of state within \(Self.deadlineSeconds) s"; break }
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
                if n == 0 { break }
                if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; error = "read: errno \(errno)"; break }
                got += buf[0..<n]
                if got.count > limit { error = "state larger than \(limit) bytes"; break }
            }
        }
        outcome.withLock { $0 = (true, got, error) }
        if doneDoorbell.rawValue >= 0 { EventFD.signal(doneDoorbell.rawValue) }
    }

    private func wait(_ fd: Int32, _ events: Int16) -> Bool {
        var p = [pollfd(fd: fd, events: events, revents: 0), pollfd(fd: cancelFD, events: Int16(POLLIN), revents: 0)]
        let r = poll(&p, 2, Self.deadlineSeconds * 1000)
        if p[1].revents != 0 { return false }  // cancelled: the connection is going away
        return r > 0 || (r < 0 && errno == EINTR)
    }

    /// The connection ends: stop waiting for a front-end that will not finish
    /// (a disconnect must not hold the guest thread for `deadlineSeconds`).
    func cancel() { if cancelFD >= 0 { EventFD.signal(cancelFD) } }

    /// Waits for the transfer to end; the bytes read (load) and an error, if any.
    func finish() -> (bytes: [UInt8], error: String?) {
        thread?.join()
        return outcome.withLock { ($0.bytes, $0.error) }
    }

    /// CHECK_DEVICE_STATE: the transfer's outcome if it ends within `ms`;
    /// otherwise it is cancelled and fails.
    func finish(withinMs ms: Int32) -> (bytes: [UInt8], error: String?) {
        let deadline = ContinuousClock.now + .milliseconds(Int(ms))
        while !isDone {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { break }
            let leftMs = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            if doneDoorbell.rawValue >= 0 {
                var p = pollfd(fd: doneDoorbell.rawValue, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, leftMs)
            } else {
                usleep(useconds_t(min(leftMs, 10)) * 1000)
            }
        }
        if isDone { return finish() }
        cancel()
        _ = finish()
        return ([], "the transfer had not ended \(ms) ms after CHECK_DEVICE_STATE (the front-end ends it first: it closes the pipe it writes, or reads that pipe to its end)")
    }
}
