import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Log output for a terminal or a file (swift-log's stream format), or for
/// systemd's journal: when stderr is the journal, every line starts with its
/// syslog priority, `<3>`, so journald records the level (`journalctl -p
/// warning` works) and carries no timestamp of its own.
public enum DaemonLogging {
    /// Whether stderr is connected to the journal: JOURNAL_STREAM names the
    /// device and inode of the stream systemd gave the service (systemd.exec(5)).
    public static func stderrIsJournal(environment: [String: String]) -> Bool {
        guard let v = environment["JOURNAL_STREAM"] else { return false }
        let parts = v.split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
    }

    public static func bootstrap(level: Logger.Level, journal: Bool) {
        LoggingSystem.bootstrap { label in
            if journal {
                var h = JournalLogHandler(label: label)
                h.logLevel = level
                return h
            }
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
    }
}

/// One line per entry on stderr, prefixed with the syslog priority
/// (sd-daemon(3): "<N>" at the start of a line).
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// syslog priorities: trace and debug are 7 (debug), critical is 2 (crit).
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    public static func format(level: Logger.Level, label: String, source: String, message: String, metadata: Logger.Metadata) -> String {
        let meta = metadata.isEmpty ? "" : " " + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        // A message with newlines would become several journal entries at the
        // default priority: keep it one line.
        let text = message.contains("\n") ? message.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: " | ") : message
        return "<\(priority(level))>\(label):\(meta) [\(source)] \(text)\n"
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        let line = Self.format(level: event.level, label: label, source: event.source, message: "\(event.message)", metadata: merged)
        // One write per line: lines from several threads never interleave.
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }
}
