import PVZContract
import PVZServer
import Testing
@testable import VMManager

@Suite struct MetadataTests {
    func parse(_ s: String, max: UInt32 = 8) -> Result<PVZDomainMetadata, PVZDomainMetadata.ParseError> {
        PVZDomainMetadata.parse(s, maxOSIDs: max)
    }
    func message(_ s: String) -> String? {
        if case .failure(let e) = parse(s) { return e.message }
        return nil
    }

    @Test func libvirtForms() {
        #expect(parse(#"<guest osid="1" priority="5"/>"#) == .success(.init(osid: OSID(1), priority: 5)))
        #expect(parse(#"<pvz:guest xmlns:pvz="urn:vhost-user-pvz:1" osid='7'/>"#) == .success(.init(osid: OSID(7), priority: nil)))
        #expect(parse("\n  <guest\n priority=\"0\" osid=\"2\" extra=\"x\"></guest>") == .success(.init(osid: OSID(2), priority: 0)))
        #expect(parse(#"<guest osid="1" priority="4294967295"/>"#) == .success(.init(osid: OSID(1), priority: UInt32.max)))
    }

    @Test(arguments: [
        (#"<guest osid="1" priority="high"/>"#, "priority \"high\""),
        (#"<guest osid="1" priority="-1"/>"#, "priority \"-1\""),
        (#"<guest osid="1" priority="4294967296"/>"#, "priority"),
        (#"<guest osid="1" priority=" 5"/>"#, "priority"),
        (#"<guest osid="1" priority="0x5"/>"#, "priority"),
        (#"<guest osid="1" priority=""/>"#, "priority"),
        (#"<guest priority="1"/>"#, "osid missing"),
        (#"<guest osid="0"/>"#, "1...7"),
        (#"<guest osid="8"/>"#, "1...7"),
        (#"<guest osid="one"/>"#, "osid \"one\""),
        (#"<host osid="1"/>"#, "<host>"),
        (#"guest osid="1""#, "'<'"),
        (#"<guest osid=1/>"#, "quoted"),
        (#"<guest osid="1"#, "not closed"),
        (#"<guest osid="1" osid="2"/>"#, "twice"),
        (#"<guest osid"#, "'='"),
    ])
    func badMetadataIsExplained(_ xml: String, _ needle: String) {
        let m = message(xml)
        #expect(m?.contains(needle) == true, "\(xml): \(m ?? "accepted")")
    }

    @Test func sizeLimit() {
        let big = "<guest osid=\"1\" pad=\"" + String(repeating: "x", count: 5000) + "\"/>"
        #expect(message(big)?.contains("limit 4096") == true)
    }

    @Test func maxOSIDsIsConfigurable() {
        #expect(parse(#"<guest osid="9"/>"#, max: 16) == .success(.init(osid: OSID(9), priority: nil)))
    }
}
