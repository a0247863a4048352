import Foundation
import PVZContract
import GPUModel
import PVZDaemon
import PVZServer

/// The live-migration state a destination reads from the front-end's pipe
/// (SET_DEVICE_STATE_FD, load): `PVZDevice.loadState` on a fresh guest. The
/// input is the JSON body (the target adds the PVZS header) unless it starts
/// with the header itself. Oracle: a state that loads saves again, and that
/// saved state loads into another fresh guest and saves the same.
let deviceStateTarget = FuzzTarget(name: "device-state", summary: "migration state (DEVICE_STATE load) into PVZDevice.loadState") {
    let scheduler = try! FirmwareProcessor(maxOSIDs: 4)
    let specs = fuzzGuestSpecs()
    func guest() -> PVZDevice {
        let server = try! PVZHostServer(maxOSIDs: 4, guests: specs, hostPoolSize: 0x40_0000 + 0x6000)
        let gpu = GuestGPU(osid: OSID(1), carveout: specs[0].carveout, processor: scheduler)
        return PVZDevice(osid: OSID(1), hostServer: server, settings: GuestSettings(), gpu: gpu, logger: quietLogger())
    }
    if debugFuzz {
        // What a real source sends: print it (Fuzz/make-seeds keeps a copy as the seed).
        let d = guest()
        try? d.hostServer.onVmOnline(osid: OSID(1), priority: 3)
        print(String(decoding: try! d.saveState().dropFirst(12), as: UTF8.self))
    }
    return { data in
        var bytes = Array(data)
        if !bytes.starts(with: DeviceState.magic) {
            var framed = DeviceState.magic
            withUnsafeBytes(of: DeviceState.formatVersion.littleEndian) { framed += $0 }
            withUnsafeBytes(of: UInt32(truncatingIfNeeded: bytes.count).littleEndian) { framed += $0 }
            bytes = framed + bytes
        }
        let a = guest()
        do { try a.loadState(bytes) } catch {
            if debugFuzz { print("device-state: refused: \(error)") }
            return
        }
        if debugFuzz { print("device-state: loaded") }
        let saved = try! a.saveState()
        let b = guest()
        do { try b.loadState(saved) } catch { preconditionFailure("a saved state does not load: \(error)") }
        // The GPU clock runs on between the two saves; everything else must match.
        var first = try! DeviceState.decode(saved), second = try! DeviceState.decode(try! b.saveState())
        precondition(second.bank.clockNs >= first.bank.clockNs, "the GPU clock went back across a migration")
        first.bank.clockNs = 0
        second.bank.clockNs = 0
        precondition(first == second, "a loaded state saves differently")
    }
}
