import CPVZShim
import Logging
import Platform
import Synchronization
import Virtqueue
#if canImport(Glibc)
import Glibc
#endif

// One message to its handler, after the fd-count rule; in vhost-user.rst's order.
extension Backend {
    // MARK: - Dispatch

    func dispatch(_ r: FrontEndRequest, _ h: MessageHeader, _ p: UnsafeRawBufferPointer, _ fds: inout [Int32]) -> Outcome {
        // Descriptor count check first: a message with the wrong fds is refused whole.
        let expected: ClosedRange<Int>
        switch r {
        case .setMemTable: expected = p.count >= 4 ? Int(min(p.le32(0), 8))...Int(min(p.le32(0), 8)) : 0...0
        case .addMemReg, .setBackendReqFD, .setLogFD, .setInflightFD, .setDeviceStateFD, .setLogBase: expected = 1...1
        case .remMemReg: expected = 0...1
        case .setVringKick, .setVringCall, .setVringErr:
            expected = p.count == 8 && VringFDPayload(p.le64(0)).noFD ? 0...0 : 1...1
        default: expected = 0...0
        }
        if !expected.contains(fds.count) {
            return .failed("\(fds.count) file descriptors attached, expected \(expected.lowerBound == expected.upperBound ? "\(expected.lowerBound)" : "\(expected.lowerBound)...\(expected.upperBound)")")
        }
        switch r {
        case .getFeatures: return getFeatures(h, p)
        case .setFeatures: return setFeatures(p)
        case .setOwner: return .ok
        case .resetOwner: resetAll(); return .ok
        case .setMemTable: return setMemTable(p, &fds)
        case .setVringNum: return setVringNum(p)
        case .setVringAddr: return setVringAddr(p)
        case .setVringBase: return setVringBase(p)
        case .getVringBase: return getVringBase(h, p)
        case .setVringKick: return setVringFD(p, &fds, kind: .kick)
        case .setVringCall: return setVringFD(p, &fds, kind: .call)
        case .setVringErr: return setVringFD(p, &fds, kind: .err)
        case .getProtocolFeatures: return getProtocolFeatures(h, p)
        case .setProtocolFeatures: return setProtocolFeatures(p)
        case .getQueueNum: return getQueueNum(h, p)
        case .setVringEnable: return setVringEnable(p)
        case .setBackendReqFD: return setBackendReqFD(&fds)
        case .getConfig: return getConfig(h, p)
        case .setConfig: return setConfig(p)
        case .resetDevice: resetAll(); return .ok
        case .getMaxMemSlots: return getMaxMemSlots(h, p)
        case .addMemReg: return addMemReg(p, &fds)
        case .remMemReg: return remMemReg(p)
        case .setStatus: return setStatus(p)
        case .getStatus: return getStatus(h, p)
        case .getInflightFD: return getInflightFD(h, p)
        case .setDeviceStateFD: return setDeviceStateFD(h, p, &fds)
        case .checkDeviceState: return checkDeviceState(h, p)
        case .setInflightFD: return setInflightFD(p, &fds)
        case .setLogBase: return setLogBase(h, p, &fds)
        default:
            return .failed("not supported by this back-end (its feature was not offered)")
        }
    }

    func expectSize(_ p: UnsafeRawBufferPointer, _ size: Int, _ name: String) -> String? {
        p.count == size ? nil : "payload of \(p.count) bytes, expected \(size)"
    }

    func vring(_ index: UInt32) -> Vring? {
        Int(index) < vrings.count ? vrings[Int(index)] : nil
    }

    func badIndex(_ index: UInt32) -> Outcome {
        .failed("vring index \(index) out of range (device has \(vrings.count) queues)")
    }
}
