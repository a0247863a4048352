import Foundation
import GPUModel
import PVZContract
import PVZDaemon
import PVZServer
import VMManager

/// Control-socket lines: each input line goes through `ControlCodec` and, when
/// it decodes, into the daemon's handler (a real `Daemon` with two guests whose
/// sockets listen but are never served); the response is encoded as the
/// server would. The same bytes are also read as a response line (pvzctl's side).
///
/// One `Daemon` serves every input (building one binds two sockets and starts
/// the firmware thread). After an input with a request that changes the daemon
/// (online, offline, configure, prepare) it is put back to the state it was
/// built in and `ControlTargetState` checks that it got there; after any other
/// input the check runs every 16th time (a read-only request that changed
/// something would fail it). So every input starts from the daemon as built.
let controlTarget = FuzzTarget(name: "control", summary: "ControlCodec lines into Daemon.handle") {
    let dir = "/tmp/pvz-fuzz-control-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    // Each guest has a configured domain: `prepare` with that name is how a
    // domain an input set is undone (the daemon has no way to forget one).
    let guests = fuzzGuestSpecs().prefix(2).map {
        GuestConfig(socketPath: "\(dir)/g\($0.osid.rawValue).sock", spec: $0, settings: GuestSettings(),
                    domain: "fuzz-vm\($0.osid.rawValue)")
    }
    let daemon = try! Daemon(config: DaemonConfig(guests: Array(guests), controlSocket: nil, maxOSIDs: 4), logger: quietLogger())
    let peer = PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid())
    let clean = ControlTargetState(daemon)
    var inputs = 0
    return { data in
        var input = FuzzInput(data)
        var changing = false
        inputs &+= 1
        while !input.isEmpty {
            let line = input.line()
            switch ControlCodec.decodeRequest(line) {
            case .success(let request):
                switch request {
                case .online, .offline, .configure, .prepare: changing = true
                case .status, .guests, .heaps, .dt, .metrics: break
                }
                let response = daemon.handle(request, peer: peer)
                let text = ControlCodec.encodeResponse(response)
                precondition(!text.contains("\n"), "a response must be one line")
                // What the daemon says, pvzctl must read back.
                precondition((try? ControlCodec.decodeResponse(Array(text.utf8))) != nil, "pvzctl cannot read: \(text)")
                // A request the codec accepted re-encodes to one it accepts again.
                let again = ControlCodec.encodeRequest(request)
                guard case .success(let same) = ControlCodec.decodeRequest(again), same == request else {
                    preconditionFailure("request \(request) does not survive encode/decode: \(again)")
                }
            case .failure(let e):
                precondition(!e.message.isEmpty, "a refusal without a reason")
            }
            _ = try? ControlCodec.decodeResponse(line)
        }
        if changing || inputs % 16 == 0 { clean.restore(daemon) }
    }
}

/// Everything of a `Daemon` a control request can change or show: what
/// `status` reports (uptime aside), the ledger as it would be saved, the
/// VMMConfigure parameters and each guest's register bank (the GPU clock
/// aside: it only runs forward). `metrics` shows nothing beyond these but the
/// hypercall counters, which only a front-end moves. What it leaves out is
/// not observable through the control socket without a front-end: the
/// firmware thread's per-OSID priorities (set again from the parameters) and
/// the guests' pending config-change flags (sent to a front-end, and none
/// ever connects).
struct ControlTargetState: Equatable {
    var status: DaemonStatus
    var ledger: PersistedState
    var parameters: VMMParameters
    var banks: [RegisterBank.Snapshot]

    init(_ d: Daemon) {
        status = d.status()
        status.uptimeSeconds = 0
        ledger = d.hostServer.persistedState()
        parameters = d.hostServer.vmmParameters
        banks = d.guests.map {
            var s = $0.device.gpu.bank.snapshot()
            s.clockNs = 0
            return s
        }
    }

    /// Puts `d` back into this state (after an input), then checks it got there.
    func restore(_ d: Daemon) {
        let now = ControlTargetState(d)
        guard now != self else { return }
        let peer = PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid())
        // The firmware thread's priorities follow online (its priority) and configure.
        var priorities = false
        for (i, rt) in d.guests.enumerated() {
            let osid = rt.config.spec.osid
            if now.status.guests[i].online, !status.guests[i].online {
                _ = try? d.vmOffline(osid)
                priorities = true
            }
            if let domain = status.guests[i].domain, now.status.guests[i].domain != domain {
                _ = d.handle(.prepare(osid: osid, domain: domain), peer: peer)
            }
        }
        if now.parameters != parameters {
            // Twice: a time slice may only go back once another made room (their sum is at most 100).
            for _ in 0 ..< 2 {
                for k in d.hostServer.ddkABI.knobs where d.hostServer.vmmParameters.value(of: k) != parameters.value(of: k) {
                    try? d.hostServer.vmmConfigure(knob: k, value: parameters.value(of: k))
                }
            }
            priorities = true
        }
        // What a configure leaves on the firmware thread: every OSID's priority, the deadline.
        if priorities { d.guests.first?.device.gpu.parametersChanged(d.hostServer.vmmParameters) }
        // An offline's effects on the firmware thread (the OSID's kicks
        // cancelled, its events raised) land before the banks are put back.
        d.processor.sync()
        for (rt, bank) in zip(d.guests, banks) {
            var b = bank
            b.clockNs = rt.device.gpu.bank.clockNs
            try! rt.device.gpu.bank.restore(b)
        }
        let after = ControlTargetState(d)
        // fatalError, not precondition: an optimized build keeps its message.
        if after != self { fatalError("control target: the daemon did not return to its clean state:\nclean \(self)\nnow   \(after)") }
    }
}
