import Testing
import Foundation
import PVZContract
import PVZDaemon

/// issue 10: admin input (flags, config file) must give a clear error, never a trap.
@Suite("admin input: no trap from flags or config")
struct AdminInputTests {
    @Test(arguments: [UInt32.max, UInt32.max - 99, UInt32.max - 5])
    func configOSIDNearTwoToThe32IsAnError(_ osid: UInt32) {
        let json = #"{"guests": [{"socket_path": "/tmp/a.sock", "osid": \#(osid), "carveout": "0x10000000:64M"}]}"#
        do {
            _ = try DaemonConfig.parse(Data(json.utf8))
            Issue.record("osid \(osid) accepted")
        } catch {
            #expect(error.description.contains("osid"), "\(error.description)")
            #expect(error.description.contains("\(osid)"), "\(error.description)")
        }
    }

    @Test func configMaxOSIDsZeroIsAnError() {
        let json = #"{"max_osids": 0, "guests": [{"socket_path": "/tmp/a.sock", "osid": 1, "carveout": "0x10000000:64M"}]}"#
        do {
            _ = try DaemonConfig.parse(Data(json.utf8))
            Issue.record("max_osids 0 accepted")
        } catch {
            #expect(error.description.contains("max_osids"), "\(error.description)")
        }
    }
}
