// A strict JSON reader for the config file. Foundation's decoders say "not
// valid JSON" without a position and silently ignore unknown keys; an admin
// needs the line and column of a typo and the name of a key that does nothing.

/// Where a value starts in the file (1-based).
public struct SourcePosition: Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var description: String { "line \(line), column \(column)" }
}

/// A parsed JSON value with its position. Numbers keep their literal text so
/// range checks can quote exactly what the file said.
public struct JSONNode: Sendable {
    public enum Value: Sendable {
        case object([(key: String, keyPosition: SourcePosition, node: JSONNode)])
        case array([JSONNode])
        case string(String)
        case number(String)
        case bool(Bool)
        case null
    }
    public var value: Value
    public var position: SourcePosition

    public var typeName: String {
        switch value {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }
}

/// RFC 8259 JSON, plus the limits a config file needs: bounded size and
/// nesting, duplicate keys refused.
public struct ConfigJSONParser {
    public static let maxBytes = 1 << 20
    public static let maxDepth = 16

    private let bytes: [UInt8]
    private var i = 0
    private var line = 1
    private var lineStart = 0
    private let source: String

    public static func parse(_ bytes: [UInt8], source: String) throws(ConfigError) -> JSONNode {
        guard bytes.count <= maxBytes else {
            throw ConfigError("\(source): \(bytes.count) bytes; a config file may have at most \(maxBytes)")
        }
        var p = ConfigJSONParser(bytes: bytes, source: source)
        p.skipSpace()
        let root = try p.value(depth: 0)
        p.skipSpace()
        guard p.i == bytes.count else { throw p.error("unexpected \(p.describeHere()) after the end of the top-level value") }
        return root
    }

    private init(bytes: [UInt8], source: String) {
        self.bytes = bytes
        self.source = source
    }

    private var position: SourcePosition { SourcePosition(line: line, column: i - lineStart + 1) }

    private func error(_ what: String, at pos: SourcePosition? = nil) -> ConfigError {
        ConfigError("\(source): \(pos ?? position): \(what)")
    }

    private func describeHere() -> String {
        guard i < bytes.count else { return "end of file" }
        let b = bytes[i]
        if b >= 0x21 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
        return "byte 0x\(String(b, radix: 16))"
    }

    private mutating func skipSpace() {
        while i < bytes.count {
            switch bytes[i] {
            case 0x20, 0x09, 0x0D: i += 1
            case 0x0A: i += 1; line += 1; lineStart = i
            default: return
            }
        }
    }

    private mutating func value(depth: Int) throws(ConfigError) -> JSONNode {
        guard depth < Self.maxDepth else { throw error("nested deeper than \(Self.maxDepth) levels") }
        let pos = position
        guard i < bytes.count else { throw error("expected a value, found end of file") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return JSONNode(value: try object(depth: depth), position: pos)
        case UInt8(ascii: "["): return JSONNode(value: try array(depth: depth), position: pos)
        case UInt8(ascii: "\""): return JSONNode(value: .string(try string()), position: pos)
        case UInt8(ascii: "t"): try literal("true"); return JSONNode(value: .bool(true), position: pos)
        case UInt8(ascii: "f"): try literal("false"); return JSONNode(value: .bool(false), position: pos)
        case UInt8(ascii: "n"): try literal("null"); return JSONNode(value: .null, position: pos)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return JSONNode(value: .number(try number()), position: pos)
        default: throw error("expected a value, found \(describeHere())")
        }
    }

    private mutating func literal(_ word: String) throws(ConfigError) {
        let w = Array(word.utf8)
        guard i + w.count <= bytes.count, Array(bytes[i..<i + w.count]) == w else {
            throw error("expected a value, found \(describeHere())")
        }
        i += w.count
    }

    private mutating func object(depth: Int) throws(ConfigError) -> JSONNode.Value {
        i += 1
        var members: [(key: String, keyPosition: SourcePosition, node: JSONNode)] = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
        while true {
            skipSpace()
            let keyPos = position
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else {
                throw error("expected a key in double quotes, found \(describeHere())")
            }
            let key = try string()
            if members.contains(where: { $0.key == key }) { throw error("key \"\(key)\" appears twice in this object", at: keyPos) }
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw error("expected ':' after key \"\(key)\", found \(describeHere())") }
            i += 1
            skipSpace()
            members.append((key, keyPos, try value(depth: depth + 1)))
            skipSpace()
            guard i < bytes.count else { throw error("unterminated object: expected ',' or '}', found end of file") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            throw error("expected ',' or '}', found \(describeHere())")
        }
    }

    private mutating func array(depth: Int) throws(ConfigError) -> JSONNode.Value {
        i += 1
        var items: [JSONNode] = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipSpace()
            items.append(try value(depth: depth + 1))
            skipSpace()
            guard i < bytes.count else { throw error("unterminated array: expected ',' or ']', found end of file") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            throw error("expected ',' or ']', found \(describeHere())")
        }
    }

    private mutating func string() throws(ConfigError) -> String {
        let start = position
        i += 1
        var out: [UInt8] = []
        while true {
            guard i < bytes.count else { throw error("unterminated string", at: start) }
            let b = bytes[i]
            switch b {
            case UInt8(ascii: "\""):
                i += 1
                guard let s = String(validating: out, as: UTF8.self) else { throw error("string is not valid UTF-8", at: start) }
                return s
            case UInt8(ascii: "\\"):
                i += 1
                guard i < bytes.count else { throw error("unterminated string", at: start) }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw error("lone UTF-16 high surrogate in \\u escape")
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("bad UTF-16 low surrogate in \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw error("\\u escape is not a Unicode scalar") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default:
                    i -= 1
                    throw error("unknown escape '\\\(Character(Unicode.Scalar(e)))' in string")
                }
            case 0x00..<0x20:
                throw error("control character 0x\(String(b, radix: 16)) inside a string (a newline must be written \\n)")
            default:
                out.append(b)
                i += 1
            }
        }
    }

    private mutating func hex4() throws(ConfigError) -> UInt32 {
        guard i + 4 <= bytes.count else { throw error("\\u escape needs 4 hex digits") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[i]
            let d: UInt32
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(b - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(b - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(b - UInt8(ascii: "A") + 10)
            default: throw error("\\u escape needs 4 hex digits, found \(describeHere())")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private mutating func number() throws(ConfigError) -> String {
        let start = i
        func digits() -> Int {
            let s = i
            while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { i += 1 }
            return i - s
        }
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        let intStart = i
        guard digits() > 0 else { throw error("expected digits in a number, found \(describeHere())") }
        if bytes[intStart] == UInt8(ascii: "0"), i - intStart > 1 {
            throw error("number with a leading zero (write hex as a string: \"0x1000\")", at: SourcePosition(line: line, column: start - lineStart + 1))
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { throw error("expected digits after '.', found \(describeHere())") }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { throw error("expected digits in the exponent, found \(describeHere())") }
        }
        return String(decoding: bytes[start..<i], as: UTF8.self)
    }
}

/// Reads one JSON object member by member: every key must be known, every
/// value of the expected type; errors carry the file, the key path, the
/// line and column, the value and what is accepted.
public struct ConfigObject {
    let members: [(key: String, keyPosition: SourcePosition, node: JSONNode)]
    let path: String
    let source: String
    let position: SourcePosition

    public init(_ node: JSONNode, path: String, source: String) throws(ConfigError) {
        guard case .object(let m) = node.value else {
            throw ConfigError("\(source): \(node.position): \(path.isEmpty ? "the top level" : path) must be an object, found \(node.typeName)")
        }
        members = m
        self.path = path
        self.source = source
        position = node.position
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func error(_ key: String, _ what: String) -> ConfigError {
        let pos = members.first { $0.key == key }?.node.position ?? position
        return ConfigError("\(source): \(pos): \(keyPath(key)): \(what)")
    }

    /// Refuses any key not in `known`, naming it and the keys that are accepted.
    public func onlyKeys(_ known: [String]) throws(ConfigError) {
        for m in members where !known.contains(m.key) {
            throw ConfigError("\(source): \(m.keyPosition): unknown key \"\(keyPath(m.key))\" (known keys here: \(known.joined(separator: ", ")))")
        }
    }

    public func node(_ key: String) -> JSONNode? {
        guard let n = members.first(where: { $0.key == key })?.node else { return nil }
        if case .null = n.value { return nil }
        return n
    }

    public func string(_ key: String) throws(ConfigError) -> String? {
        guard let n = node(key) else { return nil }
        guard case .string(let s) = n.value else { throw error(key, "expected a string, found \(n.typeName)") }
        return s
    }

    public func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let n = node(key) else { return nil }
        guard case .bool(let b) = n.value else { throw error(key, "expected true or false, found \(n.typeName)") }
        return b
    }

    /// An unsigned integer that must fit `T` (written as a JSON number).
    public func integer<T: FixedWidthInteger>(_ key: String, as: T.Type) throws(ConfigError) -> T? {
        guard let n = node(key) else { return nil }
        guard case .number(let text) = n.value else { throw error(key, "expected a number, found \(n.typeName)") }
        guard let v = T(text) else {
            throw error(key, "\(text) is not an integer in \(T.min)...\(T.max)")
        }
        return v
    }

    /// A size or address: a JSON number, or a string with 0x-hex or a K/M/G suffix.
    public func sizeText(_ key: String) throws(ConfigError) -> String? {
        guard let n = node(key) else { return nil }
        switch n.value {
        case .number(let t): return t
        case .string(let s): return s
        default: throw error(key, "expected a number or a string like \"64M\" or \"0x4000000\", found \(n.typeName)")
        }
    }

    public func strings(_ key: String) throws(ConfigError) -> [String]? {
        guard let n = node(key) else { return nil }
        guard case .array(let items) = n.value else { throw error(key, "expected an array of strings, found \(n.typeName)") }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item.value else {
                throw ConfigError("\(source): \(item.position): \(keyPath(key))[\(i)]: expected a string, found \(item.typeName)")
            }
            out.append(s)
        }
        return out
    }

    public func objects(_ key: String) throws(ConfigError) -> [ConfigObject]? {
        guard let n = node(key) else { return nil }
        guard case .array(let items) = n.value else { throw error(key, "expected an array of objects, found \(n.typeName)") }
        var out: [ConfigObject] = []
        for (i, item) in items.enumerated() { out.append(try ConfigObject(item, path: "\(keyPath(key))[\(i)]", source: source)) }
        return out
    }
}
