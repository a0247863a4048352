import Foundation
import PVZContract
import PVZDaemon
import PVZServer
import VMManager

/// Control-socket lines: each input line goes through `ControlCodec` and, when
/// it decodes, into the daemon's handler (a real `Daemon` with two guests whose
/// sockets listen but are never served); the response is encoded as the
/// server would. The same bytes are also read as a response line (pvzctl's side).
let controlTarget = FuzzTarget(name: "control", summary: "ControlCodec lines into Daemon.handle") {
    let dir = "/tmp/pvz-fuzz-control-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let guests = fuzzGuestSpecs().prefix(2).map {
        GuestConfig(socketPath: "\(dir)/g\($0.osid.rawValue).sock", spec: $0, settings: GuestSettings(), domain: nil)
    }
    let daemon = try! Daemon(config: DaemonConfig(guests: Array(guests), controlSocket: nil, maxOSIDs: 4), logger: quietLogger())
    let peer = PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid())
    return { data in
        var input = FuzzInput(data)
        while !input.isEmpty {
            let line = input.line()
            switch ControlCodec.decodeRequest(line) {
            case .success(let request):
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
    }
}
