import PVZContract
import PVZServer
import Testing
@testable import VMManager

@Suite struct CodecTests {
    func decode(_ s: String) -> Result<ControlRequest, ControlCodec.RequestError> { ControlCodec.decodeRequest(s) }

    func failure(_ s: String) -> ControlCodec.RequestError? {
        if case .failure(let e) = decode(s) { return e }
        return nil
    }

    @Test func everyCommandRoundTrips() {
        let requests: [ControlRequest] = [
            .status, .guests, .heaps(osid: nil), .heaps(osid: OSID(3)), .online(osid: OSID(1), priority: 5),
            .online(osid: OSID(2), priority: nil), .offline(osid: OSID(7)), .configure(param: .name("HCS_DEADLINE"), value: 4_000_000_000),
            .configure(param: .number(9, abi: "1.10"), value: 1),
            .dt(osid: OSID(1)), .prepare(osid: OSID(1), domain: "vm \"one\"\\"), .prepare(osid: OSID(4), domain: nil),
        ]
        for r in requests {
            let line = ControlCodec.encodeRequest(r)
            #expect(!line.contains("\n"))
            #expect(decode(line) == .success(r), "\(line)")
        }
    }

    @Test func acceptsTheDocumentedExamples() {
        #expect(decode(#"{"cmd":"status"}"#) == .success(.status))
        #expect(decode(#"{"cmd":"online","osid":1,"priority":5}"#) == .success(.online(osid: OSID(1), priority: 5)))
        #expect(decode(#" { "osid" : 2 , "cmd" : "offline" } "#) == .success(.offline(osid: OSID(2))))
        #expect(decode(#"{"cmd":"heaps","osid":1}"#) == .success(.heaps(osid: OSID(1))))
    }

    @Test(arguments: ["not json", "{", "[1,2]", "42", "\"status\"", "null", "{\"cmd\":\"status\"} trailing", ""])
    func garbageIsBadJSON(_ line: String) {
        #expect(failure(line)?.code == ControlErrorCode.badJSON)
    }

    @Test func binaryAndControlBytesAreRefused() {
        let e1 = ControlCodec.decodeRequest([0xFF, 0xFE, 0x7B, 0x7D])
        #expect(e1 == .failure(.init(code: ControlErrorCode.badJSON, message: "request line is not valid UTF-8")))
        guard case .failure(let e2) = ControlCodec.decodeRequest(Array("{\"cmd\":\"st\u{0}atus\"}".utf8)) else {
            Issue.record("NUL accepted"); return
        }
        #expect(e2.code == ControlErrorCode.badJSON)
        #expect(e2.message.contains("0x0"))
    }

    @Test func unknownCommandNamesTheChoices() {
        let e = failure(#"{"cmd":"reboot"}"#)
        #expect(e?.code == ControlErrorCode.unknownCommand)
        #expect(e?.message.contains("\"reboot\"") == true)
        #expect(e?.message.contains("status, guests") == true)
    }

    @Test func missingCmd() {
        let e = failure(#"{"osid":1}"#)
        #expect(e?.code == ControlErrorCode.badRequest)
        #expect(e?.message.contains("cmd") == true)
    }

    @Test(arguments: [
        (#"{"cmd":5}"#, "cmd"),
        (#"{"cmd":"online","osid":"1"}"#, "osid"),
        (#"{"cmd":"online","osid":-1}"#, "osid"),
        (#"{"cmd":"online","osid":1.5}"#, "osid"),
        (#"{"cmd":"online","osid":4294967296}"#, "osid"),
        (#"{"cmd":"online","osid":true}"#, "osid"),
        (#"{"cmd":"online","osid":null}"#, "osid"),
        (#"{"cmd":"online","osid":1,"priority":"high"}"#, "priority"),
        (#"{"cmd":"online","osid":1,"priority":-3}"#, "priority"),
        (#"{"cmd":"online"}"#, "osid"),
        (#"{"cmd":"offline"}"#, "osid"),
        (#"{"cmd":"dt","osid":[1]}"#, "osid"),
        (#"{"cmd":"configure","param":1}"#, "value"),
        (#"{"cmd":"configure","param":"PRIO_OSID1","value":-1}"#, "value"),
        (#"{"cmd":"prepare","osid":1,"domain":7}"#, "domain"),
        (#"{"cmd":"prepare","osid":1,"domain":""}"#, "domain"),
        (#"{"cmd":"status","osid":1}"#, "osid"),
        (#"{"cmd":"online","osid":1,"prio":1}"#, "prio"),
    ])
    func badFieldsAreNamed(_ line: String, _ field: String) {
        let e = failure(line)
        #expect(e?.code == ControlErrorCode.badRequest, "\(line)")
        #expect(e?.message.contains("\"\(field)\"") == true, "\(line): \(e?.message ?? "accepted")")
    }

    @Test func longDomainNameRefusedWithLimit() {
        let name = String(repeating: "a", count: ControlCodec.maxDomainNameBytes + 1)
        let e = failure(#"{"cmd":"prepare","osid":1,"domain":"\#(name)"}"#)
        #expect(e?.message.contains("\(ControlCodec.maxDomainNameBytes) bytes") == true)
    }

    @Test func confParamsAreNamedOrNumberedWithTheirABI() {
        // A bare number is refused: 8 is ISOL_THRES in DDK 1.10 and HCS_DEADLINE in 1.15.
        let e = failure(#"{"cmd":"configure","param":8,"value":1}"#)
        #expect(e?.code == ControlErrorCode.unknownParam)
        #expect(e?.message.contains("abi") == true)
        #expect(decode(#"{"cmd":"configure","param":8,"abi":"1.15","value":1}"#) == .success(.configure(param: .number(8, abi: "1.15"), value: 1)))
        #expect(decode(#"{"cmd":"configure","param":"HCS_DEADLINE","value":1}"#) == .success(.configure(param: .name("HCS_DEADLINE"), value: 1)))
        #expect(failure(#"{"cmd":"configure","param":"HCS DEADLINE; rm","value":1}"#)?.code == ControlErrorCode.unknownParam)
        #expect(failure(#"{"cmd":"configure","param":"","value":1}"#)?.code == ControlErrorCode.unknownParam)
    }


    @Test func responsesRoundTripWithSnakeCaseKeys() throws {
        let heap = HeapStatus(osid: 1, heapId: 0, heapName: "GPU_LOCAL", origin: "HOST", ipa: 0x1001_0000, pa: 0x8000_0000, size: 0x10_0000)
        var g = GuestStatus(osid: 1, domain: "vm1", socketPath: "/run/x.sock", listening: true, connected: true,
                            online: true, priority: 5, deviceStatus: 0x0F, needsReset: false, features: 1 << 32 | 3,
                            firmware: "idle", carveoutIpa: 0x1000_0000, carveoutSize: 0x400_0000, heaps: [heap])
        g.counters.eventsDropped = 2
        let status = DaemonStatus(version: "0.1", pid: 42, uptimeSeconds: 1.5, controlSocket: "/run/c.sock", maxOsids: 8,
                                  parameters: [ConfParamStatus(param: 8, name: "VMM_CONF_ISOL_THRES", value: 3)], guests: [g])
        let line = ControlCodec.encodeResponse(.success(status: status))
        #expect(!line.contains("\n"))
        #expect(line.contains("\"heap_id\":0"))
        #expect(line.contains("\"events_dropped\":2"))
        #expect(line.contains("\"socket_path\":\"/run/x.sock\""))
        let back = try ControlCodec.decodeResponse(Array(line.utf8))
        #expect(back.status == status)
        #expect(back.ok)
    }

    @Test func failureAndDtboResponses() throws {
        let f = try ControlCodec.decodeResponse(Array(ControlCodec.encodeResponse(.failure("x_code", "what \"went\" wrong")).utf8))
        #expect(!f.ok && f.code == "x_code" && f.error == "what \"went\" wrong")
        let blob: [UInt8] = [0xD0, 0x0D, 0xFE, 0xED, 0, 1, 2, 255]
        let d = try ControlCodec.decodeResponse(Array(ControlCodec.encodeResponse(.success(dtbo: blob)).utf8))
        #expect(d.dtboBytes == blob)
        var bad = ControlResponse.success
        bad.dtbo = "!!!"
        #expect(bad.dtboBytes == nil)
    }
}
