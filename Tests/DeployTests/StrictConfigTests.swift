import Testing
import Foundation
import Logging
import PVZContract
import PVZDaemon
import PVZServer
import SafeSockets
import Sandbox

/// issue 13: strict config. Unknown keys are named, JSON errors carry line and
/// column, and flags and files go through one validation.
@Suite("strict config")
struct StrictConfigTests {
    func error(_ json: String) -> String? {
        do { _ = try DaemonConfig.parse(Data(json.utf8), source: "g.json"); return nil } catch { return error.description }
    }

    @Test func unknownKeysAreNamedWithTheirPosition() {
        let top = error(#"{"guests": [], "max_osid": 4}"#)
        #expect(top?.contains(#"unknown key "max_osid""#) == true, "\(top ?? "accepted")")
        #expect(top?.contains("line 1, column 16") == true, "\(top ?? "accepted")")
        let guest = error("""
        {"guests": [
          {"socket_path": "/tmp/a.sock", "osid": 1, "carveout": "0x10000000:64M",
           "online_on_conect": true}]}
        """)
        #expect(guest?.contains(#"unknown key "guests[0].online_on_conect""#) == true, "\(guest ?? "accepted")")
        #expect(guest?.contains("line 3, column 4") == true, "\(guest ?? "accepted")")
        #expect(guest?.contains("online_on_connect") == true, "lists the known keys: \(guest ?? "")")
    }

    @Test(arguments: [
        ("{\"guests\": [\n  {\"osid\": 1,,}]}", "g.json: line 2, column 14: expected a key in double quotes, found ','"),
        ("{\"guests\": []\n\n  \"x\": 1}", "g.json: line 3, column 3: expected ',' or '}', found '\"'"),
        ("{\"guests\": [{\"osid\": 01}]}", "line 1, column 22: number with a leading zero"),
        ("{\"guests\": [], \"guests\": []}", "line 1, column 16: key \"guests\" appears twice"),
        ("{\"guests\": [{\"osid\": \"1\"}]}", "line 1, column 22: guests[0].osid: expected a number, found a string"),
        ("{\"guests\": [{\"osid\": 4294967296}]}", "line 1, column 22: guests[0].osid: 4294967296 is not an integer in 0...4294967295"),
        ("{\"guests\": [{\"osid\": 1.5}]}", "guests[0].osid: 1.5 is not an integer"),
        ("{\"guests\": [] } x", "line 1, column 17: unexpected 'x' after the end"),
        ("", "line 1, column 1: expected a value, found end of file"),
        ("{\"guests\": \"x\"}", "guests: expected an array of objects, found a string"),
        ("{\"guests\": [{\"socket_path\": \"/tmp/a\", \"osid\": 9, \"carveout\": \"0x1000:64M\"}]}", "line 1, column 47: guests[0].osid: 9 is not a guest OSID: must be 1...7 (max_osids 8"),
        ("{\"log_level\": \"loud\", \"guests\": []}", "g.json: line 1, column 15: log_level: 'loud' is not one of trace, debug, info"),
        ("{\"socket_mode\": \"0666\", \"guests\": []}", "socket_mode: socket mode 0666 gives others access"),
        ("{\"seccomp\": \"strict\", \"guests\": []}", "seccomp: 'strict' is not one of kill, log, off"),
        ("{\"user\": \"no-such-user-pvz\", \"guests\": []}", "user: no such user 'no-such-user-pvz'"),
        ("{\"libvirt_uri\": \"qemu+ssh://h/system\", \"guests\": []}", "which the seccomp sandbox forbids"),
        ("{\"guests\": []}", "no guests configured"),
        ("{\"ddk_abi\": \"1.12\", \"guests\": [{\"socket_path\": \"/tmp/a\", \"osid\": 1, \"carveout\": \"0x10000000:64M\"}]}", "ddk_abi: '1.12' is not a DDK PVZ ABI this host speaks: 1.10, 1.13, 1.15, 1.18, 23"),
        ("{\"guests\": [{\"socket_path\": \"/tmp/a\", \"osid\": 1, \"carveout\": \"0x10000000:64M\", \"fw_heap_size\": \"12M\"}]}", "fw_heap_size: 12582912 bytes is not a DDK 1.10 firmware heap size (1 << RGX_FW_HEAP_SHIFT: 4M, 8M, 16M, 32M)"),
        ("{\"ddk_abi\": \"1.15\", \"guests\": [{\"socket_path\": \"/tmp/a\", \"osid\": 1, \"carveout\": \"0x10000000:256M\", \"fw_heap_size\": \"64M\"}]}", "is not a DDK 1.15 firmware heap size"),
    ])
    func jsonErrorsHaveLineAndColumn(_ json: String, _ needle: String) {
        let e = error(json)
        #expect(e?.contains(needle) == true, "\(e ?? "accepted")")
    }

    @Test func flagsAreNamedAsFlagsAndOverrideTheFile() throws {
        var o = try DaemonOptions.parse(Array(#"{"log_level": "debug", "guests": [{"socket_path": "/tmp/a.sock", "osid": 1, "carveout": "0x10000000:64M"}]}"#.utf8), source: "g.json")
        #expect(try o.validated().logLevel == .debug)
        // --log-level bogus with --config: refused, and named as the flag.
        o.logLevel = "bogus"
        o.names.fromFlags.insert("log_level")
        #expect { try o.validated() } throws: { "\($0)".hasPrefix("--log-level: 'bogus' is not one of") }
        var flags = DaemonOptions()
        var g = GuestOptions()
        g.osid = 4294967295
        g.carveout = "0x10000000:64M"
        flags.guests = [g]
        #expect { try flags.validated() } throws: { "\($0)" == "--osid: 4294967295 is not a guest OSID: must be 1...7 (--max-osids 8; 0 is the host)" }
        flags.maxOSIDs = 0
        #expect { try flags.validated() } throws: { "\($0)" == "--max-osids: 0 is out of range 2...16 (OSIDs including the host's 0)" }
    }

    @Test func socketSettingsResolve() throws {
        let c = try DaemonConfig.parse(Data(#"{"socket_group": "nogroup", "socket_mode": "0660", "allow_users": ["nobody"], "user": "nobody", "seccomp": "log", "guests": [{"fd_name": "vm1", "osid": 1, "carveout": "0x10000000:64M"}]}"#.utf8))
        #expect(c.socketAccess.mode == 0o660)
        #expect(c.socketAccess.group == 65534)
        #expect(c.socketAccess.allowedUIDs == [65534])
        #expect(c.socketAccess.owner == 65534)
        #expect(c.sandbox.user?.uid == 65534)
        #expect(c.sandbox.seccomp == .log)
        #expect(c.guests[0].fdName == "vm1")
        #expect(c.guests[0].spec.policy.irq == 101)
    }
}
