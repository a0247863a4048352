import Testing
import Foundation
import PVZContract
import PVZDaemon
import PVZServer

/// Inputs the fuzz targets (scripts/fuzz) turned up, kept as tests.
@Suite struct FuzzRegressionTests {
    /// config target: an osid near 2^32 trapped in the default IRQ (100 + osid)
    /// before the server could refuse it. Now it is refused with the value.
    @Test func configOsidNear2to32() {
        // Refused by the config's own validation (one rule for flags and files),
        // with the value and the range, before any server is built.
        let text = #"{"guests":[{"socket_path":"/x","osid":4294967295,"carveout":"0x10000000:64M"}]}"#
        #expect {
            _ = try DaemonConfig.parse(Data(text.utf8))
        } throws: { "\($0)".contains("4294967295 is not a guest OSID: must be 1...7") }
    }
}
