import Logging
import Platform
import VhostUser
import Virtqueue
import Synchronization

/// A tiny device for engine tests: queue 0 copies each chain's readable bytes,
/// reversed, into its writable part. Exercises the engine without PVZ.
final class EchoDevice: VhostUserDevice, @unchecked Sendable {
    let queueCount = 2
    let maxQueueSize: UInt16 = 256
    let deviceFeatures: UInt64 = VirtioFeature.version1 | RingFeature.indirectDesc | RingFeature.eventIdx
    let configSize = 16
    let broken = Mutex<[String]>([])
    private var scratch = [UInt8](repeating: 0, count: 4096)

    func readConfig(into b: UnsafeMutableRawBufferPointer) {
        for i in 0..<b.count { b[i] = UInt8(i) &+ 0xA0 }
    }

    func queueKicked(_ index: Int, _ ctx: BackendContext) {
        let v = ctx.vrings[index]
        repeat {
            while true {
                let chain: DescriptorChain?
                do { chain = try v.nextChain(ctx.memory) } catch {
                    broken.withLock { $0.append(error.description) }
                    ctx.needsReset(queue: index, reason: error.description)
                    return
                }
                guard let c = chain else { break }
                let n = scratch.withUnsafeMutableBytes { c.gather(into: $0) }
                scratch[0..<n].reverse()
                let w = scratch.withUnsafeBytes { c.scatter(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                v.complete(head: c.head, written: UInt32(w))
            }
            v.notifyIfNeeded()
        } while v.armAndRecheck()
    }
}

/// Starts a server for `device` on a fresh socket path, on its own thread.
func startServer(_ device: VhostUserDevice, name: String = #function) throws -> (VhostUserServer, String) {
    let path = "/tmp/pvz-test-\(getpid())-\(name.filter { $0.isLetter })-\(UInt32.random(in: 0...UInt32.max)).sock"
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let s = try VhostUserServer(socketPath: path, device: device, logger: logger)
    _ = try OSThread(name: "test-guest") { s.run() }
    return (s, path)
}

#if canImport(Glibc)
import Glibc
#endif
