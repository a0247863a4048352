// FoundationEssentials, not Foundation: keeps libFoundation and ICU out of the daemon (docs/benchmarks.md, memory).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import PVZContract
import PVZServer

/// The project's element in a libvirt domain's <metadata>:
///
///     <pvz:guest xmlns:pvz="urn:vhost-user-pvz:1" osid="1" priority="5"/>
///
/// Its presence is what marks a domain as carrying the device. `priority` is
/// optional (absent: the daemon's configured priority). The hook
/// (scripts/hooks/qemu) applies the same rules; docs/libvirt.md lists them.
public struct PVZDomainMetadata: Equatable, Sendable {
    public static let namespaceURI = "urn:vhost-user-pvz:1"
    public static let elementName = "guest"

    public var osid: OSID
    public var priority: UInt32?

    public init(osid: OSID, priority: UInt32?) { self.osid = osid; self.priority = priority }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Parses the element as libvirt's virDomainGetMetadata returns it.
    /// Guests are OSIDs 1..<maxOSIDs (0 is the host).
    public static func parse(_ xml: String, maxOSIDs: UInt32 = VirtioPVZ.defaultMaxOSIDs) -> Result<PVZDomainMetadata, ParseError> {
        let attrs: [String: String]
        switch MiniXML.rootAttributes(xml, maxBytes: 4096) {
        case .failure(let e): return .failure(ParseError(message: "pvz metadata: \(e.message)"))
        case .success(let (name, a)):
            let local = name.split(separator: ":").last.map(String.init) ?? name
            guard local == elementName else {
                return .failure(ParseError(message: "pvz metadata: element <\(name.prefix(64))> found, expected <\(elementName)> in namespace \(namespaceURI)"))
            }
            attrs = a
        }
        guard let osidText = attrs["osid"] else {
            return .failure(ParseError(message: "pvz metadata: attribute osid missing (expected 1...\(maxOSIDs - 1))"))
        }
        guard let osid = decimal(osidText), osid >= 1, osid < maxOSIDs else {
            return .failure(ParseError(message: "pvz metadata: osid \"\(osidText.prefix(32))\" is not a guest OSID (expected a decimal integer 1...\(maxOSIDs - 1))"))
        }
        var priority: UInt32? = nil
        if let p = attrs["priority"] {
            guard let v = decimal(p) else {
                return .failure(ParseError(message: "pvz metadata: priority \"\(p.prefix(32))\" is not valid (expected a decimal integer 0...\(UInt32.max))"))
            }
            priority = v
        }
        return .success(PVZDomainMetadata(osid: OSID(osid), priority: priority))
    }

    /// Plain decimal only: no sign, no spaces, no hex, at most 10 digits.
    static func decimal(_ s: String) -> UInt32? {
        guard !s.isEmpty, s.utf8.count <= 10, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return UInt32(s)
    }
}

/// Just enough XML to read the attributes of one element: a name, then
/// name="value" pairs. Anything else is an error naming the byte offset.
enum MiniXML {
    struct Failure: Error { var message: String }

    static func rootAttributes(_ xml: String, maxBytes: Int) -> Result<(String, [String: String]), Failure> {
        let b = Array(xml.utf8)
        guard b.count <= maxBytes else { return .failure(Failure(message: "element is \(b.count) bytes (limit \(maxBytes))")) }
        var i = 0
        func skipSpace() { while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 } }
        func isNameByte(_ c: UInt8) -> Bool {
            (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
                || c == 0x3A || c == 0x5F || c == 0x2D || c == 0x2E || c >= 0x80
        }
        func name() -> String? {
            let s = i
            while i < b.count, isNameByte(b[i]) { i += 1 }
            return i > s ? String(decoding: b[s..<i], as: UTF8.self) : nil
        }
        skipSpace()
        guard i < b.count, b[i] == 0x3C else { return .failure(Failure(message: "expected '<' at offset \(i)")) }
        i += 1
        guard let element = name() else { return .failure(Failure(message: "expected an element name at offset \(i)")) }
        var attrs: [String: String] = [:]
        while true {
            skipSpace()
            guard i < b.count else { return .failure(Failure(message: "element <\(element)> not closed")) }
            if b[i] == 0x2F || b[i] == 0x3E { break }  // "/>" or ">": attributes done
            guard let key = name() else { return .failure(Failure(message: "expected an attribute name at offset \(i)")) }
            skipSpace()
            guard i < b.count, b[i] == 0x3D else { return .failure(Failure(message: "expected '=' after attribute \(key) at offset \(i)")) }
            i += 1
            skipSpace()
            guard i < b.count, b[i] == 0x22 || b[i] == 0x27 else {
                return .failure(Failure(message: "expected a quoted value for attribute \(key) at offset \(i)"))
            }
            let quote = b[i]
            i += 1
            let s = i
            while i < b.count, b[i] != quote { i += 1 }
            guard i < b.count else { return .failure(Failure(message: "value of attribute \(key) not closed")) }
            let raw = String(decoding: b[s..<i], as: UTF8.self)
            i += 1
            let local = key.split(separator: ":").last.map(String.init) ?? key
            if key.hasPrefix("xmlns") { continue }
            guard attrs[local] == nil else { return .failure(Failure(message: "attribute \(local) given twice")) }
            attrs[local] = unescape(raw)
        }
        return .success((element, attrs))
    }

    static func unescape(_ s: String) -> String {
        guard s.contains("&") else { return s }
        return s.replacing("&lt;", with: "<").replacing("&gt;", with: ">")
            .replacing("&quot;", with: "\"").replacing("&apos;", with: "'")
            .replacing("&amp;", with: "&")
    }
}
