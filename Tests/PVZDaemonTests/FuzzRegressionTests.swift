import Testing
import Foundation
import PVZDaemon
import PVZServer

/// Inputs the fuzz targets (scripts/fuzz) turned up, kept as tests.
@Suite struct FuzzRegressionTests {
    /// config target: an osid near 2^32 trapped in the default IRQ (100 + osid)
    /// before the server could refuse it. Now it is refused with the value.
    @Test func configOsidNear2to32() throws {
        let text = #"{"guests":[{"socket_path":"/x","osid":4294967295,"carveout":"0x10000000:64M"}]}"#
        let config = try DaemonConfig.parse(Data(text.utf8))
        #expect(throws: PVZConfigError.self) {
            _ = try PVZHostServer(maxOSIDs: config.maxOSIDs, guests: config.guests.map(\.spec))
        }
    }
}
