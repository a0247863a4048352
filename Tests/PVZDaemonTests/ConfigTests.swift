import Testing
import Foundation
import Logging
import PVZContract
import PVZDaemon
import PVZServer

@Suite("config space and config file")
struct ConfigTests {
    @Test func configSpaceFixture() {
        let cs = PVZConfigSpace(osid: OSID(2), status: [.online, .devConfigCreated], bvnc: 0x0024_0034_0068_00B6, irq: 102,
                                priority: 5, regsIPA: IPA(0x1000_0000), regsSize: 0x10000, maxOSIDs: 8,
                                fwHeapIPA: IPA(0x0100_0000), fwHeapSize: 0x0200_0000)
        var b = [UInt8](repeating: 0, count: 64)
        b.withUnsafeMutableBytes { cs.encode(into: $0) }
        let expected: [UInt8] = [0x50, 0x56, 0x5A, 0x31, 1, 0, 0, 0, 2, 0, 0, 0, 0x09, 0, 0, 0,
                                 0xB6, 0, 0x68, 0, 0x34, 0, 0x24, 0, 102, 0, 0, 0, 5, 0, 0, 0,
                                 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 1, 0, 8, 0, 0, 0,
                                 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]
        #expect(b == expected)
        #expect(b.withUnsafeBytes { PVZConfigSpace.decode($0) } == cs)
        var wrongMagic = b; wrongMagic[0] = 0
        #expect(wrongMagic.withUnsafeBytes { PVZConfigSpace.decode($0) } == nil)
    }

    @Test func numbers() throws {
        #expect(NumberParser.parse("0x10000000") == 0x1000_0000)
        #expect(NumberParser.parse("64M") == 64 << 20)
        #expect(NumberParser.parse("4096") == 4096)
        #expect(NumberParser.parse("0x") == nil)
        #expect(NumberParser.parse("12Q") == nil)
        #expect(NumberParser.parse("99999999999999999999G") == nil)
        #expect(try NumberParser.carveout("0x10000000:64M") == IPARange(start: IPA(0x1000_0000), size: 64 << 20)!)
        #expect(throws: ConfigError.self) { try NumberParser.carveout("0x1000") }
        #expect(throws: ConfigError.self) { try NumberParser.carveout("0xffffffffffffffff:0x2000") }
        #expect(throws: ConfigError.self) { try NumberParser.carveout("0x1000:0") }
    }

    @Test func fileParses() throws {
        let json = """
        {"control_socket": "/run/x.sock", "state_file": "/var/lib/x.json",
         "guests": [{"socket_path": "/run/g1.sock", "osid": 1, "carveout": "0x10000000:64M", "priority": 4,
                     "online_on_connect": true, "fw_heap_origin": "host", "heap_type": "lma", "fw_heap_size": "16M",
                     "gpu_heap_size": 8388608}]}
        """
        let c = try DaemonConfig.parse(Data(json.utf8))
        #expect(c.controlSocket == "/run/x.sock")
        #expect(c.stateFile == "/var/lib/x.json")
        let g = try #require(c.guests.first)
        #expect(g.spec.osid == OSID(1))
        #expect(g.spec.policy.fwHeapOrigin == .host)
        #expect(g.spec.policy.heapType == .lma)
        #expect(g.spec.policy.fwHeapSize == 16 << 20)
        #expect(g.spec.policy.gpuHeapSize == 8 << 20)
        #expect(g.spec.policy.irq == 101)
        #expect(g.settings == GuestSettings(onlineOnConnect: true, priority: 4))
    }

    @Test(arguments: [
        (#"{"guests": [{"socket_path": "a", "fd": 5, "osid": 1, "carveout": "0x1000:0x20000"}]}"#, "give one of socket_path, fd or fd_name, not several"),
        (#"{"guests": [{"socket_path": "a", "osid": 1, "carveout": "zz"}]}"#, "is not IPA:SIZE"),
        (#"{"guests": [{"socket_path": "a", "osid": 1, "carveout": "0x1000:64K", "heap_type": "numa"}]}"#, "'numa'"),
        (#"{"guests": [{"socket_path": "a", "osid": 1, "carveout": "0x1000:64K", "fw_heap_origin": "cloud"}]}"#, "'cloud'"),
        (#"{"guests": [{"socket_path": "a", "carveout": "0x1000:64K"}]}"#, "osid is required"),
        (#"{"guests": [{"socket_path": "a", "osid": 1, "carveout": "0x1000:64K", "fw_heap_size": "lots"}]}"#, "'lots' is not a number"),
        (#"not json"#, "config"),
    ])
    func badFilesSayWhatIsWrong(_ json: String, _ needle: String) {
        do {
            _ = try DaemonConfig.parse(Data(json.utf8))
            Issue.record("accepted: \(json)")
        } catch {
            #expect(error.description.contains(needle), "\(error.description)")
        }
    }

    @Test func daemonRefusesBadConfigurations() {
        let carve = IPARange(start: IPA(0x1000_0000), size: 0x10000)!  // room for the bank only
        let tooSmall = GuestConfig(socketPath: "/tmp/pvz-x.sock", spec: GuestSpec(osid: OSID(1), carveout: carve), settings: GuestSettings())
        #expect(throws: ConfigError.self) { _ = try Daemon(config: DaemonConfig(guests: [tooSmall], controlSocket: nil), logger: .init(label: "t")) }
        #expect(throws: ConfigError.self) { _ = try Daemon(config: DaemonConfig(guests: [], controlSocket: nil), logger: .init(label: "t")) }
        let ok = IPARange(start: IPA(0x1000_0000), size: 64 << 20)!
        let a = GuestConfig(socketPath: "/tmp/pvz-dup.sock", spec: GuestSpec(osid: OSID(1), carveout: ok), settings: GuestSettings())
        let b = GuestConfig(socketPath: "/tmp/pvz-dup.sock", spec: GuestSpec(osid: OSID(2), carveout: ok), settings: GuestSettings())
        #expect(throws: ConfigError.self) { _ = try Daemon(config: DaemonConfig(guests: [a, b], controlSocket: nil), logger: .init(label: "t")) }
        let c = GuestConfig(socketPath: "/tmp/pvz-c.sock", spec: GuestSpec(osid: OSID(1), carveout: ok), settings: GuestSettings())
        let d = GuestConfig(socketPath: "/tmp/pvz-d.sock", spec: GuestSpec(osid: OSID(1), carveout: ok), settings: GuestSettings())
        #expect(throws: ConfigError.self) { _ = try Daemon(config: DaemonConfig(guests: [c, d], controlSocket: nil), logger: .init(label: "t")) }
    }
}
