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

/// The control protocol's line format: one JSON object per line each way,
/// snake_case keys. Requests are checked strictly (unknown fields, wrong
/// types and out-of-range numbers are refused with the field named);
/// responses are read leniently so a newer daemon can add fields.
public enum ControlCodec {
    /// Longest request line the daemon reads, newline excluded.
    public static let maxRequestBytes = 64 * 1024
    /// Longest response line a client reads (a status of many guests, a dtbo).
    public static let maxResponseBytes = 16 * 1024 * 1024
    /// Longest libvirt domain name accepted in a request (libvirt has no
    /// fixed limit; names here only label guests in status output).
    public static let maxDomainNameBytes = 256

    public struct RequestError: Error, Equatable {
        public var code: String
        public var message: String
        public var response: ControlResponse { .failure(code, message) }
    }

    // MARK: requests

    public static func decodeRequest(_ line: [UInt8]) -> Result<ControlRequest, RequestError> {
        if line.isEmpty || line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) {
            return .failure(RequestError(code: ControlErrorCode.badJSON, message: "empty request line: expected one JSON object, e.g. {\"cmd\":\"status\"}"))
        }
        if String(validating: line, as: UTF8.self) == nil {
            return .failure(RequestError(code: ControlErrorCode.badJSON, message: "request line is not valid UTF-8"))
        }
        if let i = line.firstIndex(where: { $0 < 0x20 && $0 != 0x09 }) {
            return .failure(RequestError(code: ControlErrorCode.badJSON,
                message: "request line has control byte 0x\(String(line[i], radix: 16)) at offset \(i): expected one JSON object"))
        }
        do {
            let env = try JSONDecoder().decode(RequestEnvelope.self, from: Data(line))
            return .success(env.request)
        } catch let e as RequestError {
            return .failure(e)
        } catch let DecodingError.typeMismatch(_, ctx) where ctx.codingPath.isEmpty {
            return .failure(RequestError(code: ControlErrorCode.badJSON, message: "request is not a JSON object: expected e.g. {\"cmd\":\"status\"}"))
        } catch {
            return .failure(RequestError(code: ControlErrorCode.badJSON, message: "request line is not valid JSON: expected one JSON object, e.g. {\"cmd\":\"status\"}"))
        }
    }

    public static func decodeRequest(_ line: String) -> Result<ControlRequest, RequestError> {
        decodeRequest(Array(line.utf8))
    }

    /// The request as one line, newline excluded.
    public static func encodeRequest(_ request: ControlRequest) -> String {
        var fields: [(String, String)] = [("cmd", quote(request.command))]
        switch request {
        case .status, .guests, .metrics: break
        case .heaps(let osid):
            if let osid { fields.append(("osid", String(osid.rawValue))) }
        case .online(let osid, let priority):
            fields.append(("osid", String(osid.rawValue)))
            if let priority { fields.append(("priority", String(priority))) }
        case .offline(let osid), .dt(let osid):
            fields.append(("osid", String(osid.rawValue)))
        case .configure(let param, let value):
            switch param {
            case .name(let n): fields.append(("param", quote(n)))
            case .number(let n, let abi):
                fields.append(("param", String(n)))
                fields.append(("abi", quote(abi)))
            }
            fields.append(("value", String(value)))
        case .prepare(let osid, let domain):
            fields.append(("osid", String(osid.rawValue)))
            if let domain { fields.append(("domain", quote(domain))) }
        }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    // MARK: responses

    public static func encodeResponse(_ response: ControlResponse) -> String {
        let enc = JSONEncoder()
        enc.keyEncodingStrategy = .convertToSnakeCase
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? enc.encode(response), let s = String(data: data, encoding: .utf8) else {
            return "{\"code\":\"internal\",\"error\":\"response could not be encoded\",\"ok\":false}"
        }
        return s
    }

    public static func decodeResponse(_ line: [UInt8]) throws -> ControlResponse {
        let dec = JSONDecoder()
        dec.keyDecodingStrategy = .convertFromSnakeCase
        return try dec.decode(ControlResponse.self, from: Data(line))
    }

    /// A value as pretty JSON for `--json` output of the CLI.
    public static func prettyJSON<T: Encodable>(_ value: T) -> String {
        let enc = JSONEncoder()
        enc.keyEncodingStrategy = .convertToSnakeCase
        enc.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        guard let data = try? enc.encode(value), let s = String(data: data, encoding: .utf8) else { return "null" }
        return s
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += "\\u00" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}

struct AnyKey: CodingKey {
    var stringValue: String
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    var intValue: Int? { nil }
    init?(intValue: Int) { nil }
}

/// Decodes the `cmd` and exactly the fields that command allows.
struct RequestEnvelope: Decodable {
    let request: ControlRequest

    private static let fieldsByCommand: [String: [String]] = [
        "status": [], "guests": [], "heaps": ["osid"], "online": ["osid", "priority"],
        "offline": ["osid"], "configure": ["param", "value", "abi"], "dt": ["osid"], "prepare": ["osid", "domain"], "metrics": [],
    ]

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        guard c.contains(AnyKey("cmd")) else {
            throw bad("missing field \"cmd\": expected one of \(ControlRequest.commands.joined(separator: ", "))")
        }
        let cmd = try Self.field(c, "cmd", String.self, "a string")
        guard let allowed = Self.fieldsByCommand[cmd] else {
            throw ControlCodec.RequestError(code: ControlErrorCode.unknownCommand,
                message: "unknown command \(ControlCodec.quote(String(cmd.prefix(64)))): expected one of \(ControlRequest.commands.joined(separator: ", "))")
        }
        for key in c.allKeys where key.stringValue != "cmd" && !allowed.contains(key.stringValue) {
            throw bad("unknown field \(ControlCodec.quote(String(key.stringValue.prefix(64)))) for command \"\(cmd)\": allowed fields are "
                + (allowed.isEmpty ? "none" : allowed.joined(separator: ", ")))
        }
        func osid(required: Bool) throws -> OSID? {
            guard c.contains(AnyKey("osid")) else {
                if required { throw bad("command \"\(cmd)\" needs field \"osid\" (an unsigned integer 0...\(UInt32.max))") }
                return nil
            }
            return OSID(try Self.field(c, "osid", UInt32.self, "an unsigned integer 0...\(UInt32.max)"))
        }
        switch cmd {
        case "status": request = .status
        case "guests": request = .guests
        case "metrics": request = .metrics
        case "heaps": request = .heaps(osid: try osid(required: false))
        case "online":
            let o = try osid(required: true)!
            let p: UInt32? = c.contains(AnyKey("priority"))
                ? try Self.field(c, "priority", UInt32.self, "an unsigned integer 0...\(UInt32.max)") : nil
            request = .online(osid: o, priority: p)
        case "offline": request = .offline(osid: try osid(required: true)!)
        case "dt": request = .dt(osid: try osid(required: true)!)
        case "configure":
            guard c.contains(AnyKey("param")), c.contains(AnyKey("value")) else {
                throw bad("command \"configure\" needs fields \"param\" (a VMM_CONF_PARAM name such as \"VMM_CONF_HCS_DEADLINE\") and \"value\" (an unsigned integer 0...\(UInt32.max))")
            }
            let param: ConfParam
            if let name = try? c.decode(String.self, forKey: AnyKey("param")) {
                guard !name.isEmpty, name.utf8.count <= 64, name.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic || $0 == "_" || ("0"..."9").contains($0) }) else {
                    throw ControlCodec.RequestError(code: ControlErrorCode.unknownParam,
                        message: "field \"param\": expected a VMM_CONF_PARAM name (letters, digits, _; at most 64 bytes)")
                }
                param = .name(name)
            } else {
                let n = try Self.field(c, "param", UInt32.self, "a VMM_CONF_PARAM name, or a number with \"abi\"")
                guard c.contains(AnyKey("abi")) else {
                    throw ControlCodec.RequestError(code: ControlErrorCode.unknownParam,
                        message: "\"param\": \(n) needs \"abi\": VMM_CONF_PARAM numbers differ between DDK ABIs (8 is ISOL_THRES in 1.10, HCS_DEADLINE in 1.15); give the name instead")
                }
                let abi = try Self.field(c, "abi", String.self, "a DDK ABI such as \"1.10\"")
                guard abi.utf8.count <= 16 else { throw bad("field \"abi\": at most 16 bytes") }
                param = .number(n, abi: abi)
            }
            let value = try Self.field(c, "value", UInt32.self, "an unsigned integer 0...\(UInt32.max)")
            request = .configure(param: param, value: value)
        case "prepare":
            let o = try osid(required: true)!
            var domain: String? = nil
            if c.contains(AnyKey("domain")) {
                let d = try Self.field(c, "domain", String.self, "a string")
                guard !d.isEmpty, d.utf8.count <= ControlCodec.maxDomainNameBytes,
                      !d.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
                    throw bad("field \"domain\": expected a non-empty name of at most \(ControlCodec.maxDomainNameBytes) bytes without control characters")
                }
                domain = d
            }
            request = .prepare(osid: o, domain: domain)
        default:
            throw bad("unknown command")  // unreachable: fieldsByCommand covers every command
        }
    }

    private static func field<T: Decodable>(_ c: KeyedDecodingContainer<AnyKey>, _ name: String, _ type: T.Type,
                                            _ expected: String) throws -> T {
        do {
            return try c.decode(T.self, forKey: AnyKey(name))
        } catch {
            // Out-of-range numbers surface as Foundation's internal errors,
            // not DecodingError: every failure here is this field's.
            throw bad("field \"\(name)\": expected \(expected)")
        }
    }
}

private func bad(_ message: String) -> ControlCodec.RequestError {
    ControlCodec.RequestError(code: ControlErrorCode.badRequest, message: message)
}
