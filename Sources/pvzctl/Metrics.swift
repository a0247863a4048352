import ArgumentParser
import Foundation
import VMManager

/// The Prometheus text exposition format (version 0.0.4) of `metrics`.
enum PrometheusText {
    struct Family {
        let name: String
        let type: String
        let help: String
        var samples: [(labels: [(String, String)], value: String)] = []
    }

    static func render(_ m: DaemonMetrics) -> String {
        func family(_ name: String, _ type: String, _ help: String) -> Family { Family(name: name, type: type, help: help) }
        var up = family("pvz_uptime_seconds", "gauge", "Seconds since the daemon started.")
        up.samples.append(([], String(format: "%.3f", m.uptimeSeconds)))
        var pool = family("pvz_host_heap_bytes", "gauge", "Bytes of host-origin heap in use, all guests together.")
        pool.samples.append(([], String(m.hostHeapBytes)))
        var invalid = family("pvz_invalid_osid_calls_total", "counter", "Calls for an OSID that has no guest (refused).")
        invalid.samples.append(([], String(m.invalidOsidCalls)))

        var online = family("pvz_guest_online", "gauge", "1 when the OSID is online (OnVmOnline, no OnVmOffline since).")
        var listening = family("pvz_guest_listening", "gauge", "1 when the guest's vhost-user socket accepts connections.")
        var connected = family("pvz_guest_connected", "gauge", "1 when a front-end (QEMU) is connected.")
        var reset = family("pvz_guest_needs_reset", "gauge", "1 when the device is in NEEDS_RESET (a broken ring).")
        var calls = family("pvz_calls_total", "counter", "Hypercalls answered, by function.")
        var status = family("pvz_call_status_total", "counter", "Hypercalls answered, by PVZ status.")
        var kicks = family("pvz_kicks_total", "counter", "kickq doorbells.")
        var commands = family("pvz_firmware_commands_total", "counter", "Firmware ring commands executed.")
        var faults = family("pvz_faults_total", "counter", "Firmware faults and malformed descriptor chains.")
        var events = family("pvz_events_total", "counter", "eventq events delivered.")
        var dropped = family("pvz_events_dropped_total", "counter", "eventq events dropped (no buffer posted, queue full).")
        var heap = family("pvz_heap_bytes", "gauge", "Bytes of heap the guest holds (both origins).")
        var disconnects = family("pvz_frontend_disconnects_total", "counter", "Front-end disconnects.")
        for g in m.guests {
            let base = [("osid", String(g.osid))] + (g.domain.map { [("domain", $0)] } ?? [])
            online.samples.append((base, g.online ? "1" : "0"))
            listening.samples.append((base, g.listening ? "1" : "0"))
            connected.samples.append((base, g.connected ? "1" : "0"))
            reset.samples.append((base, g.needsReset ? "1" : "0"))
            for c in g.callsByFunction { calls.samples.append((base + [("function", c.name)], String(c.count))) }
            for c in g.callsByStatus { status.samples.append((base + [("status", c.name)], String(c.count))) }
            kicks.samples.append((base, String(g.kicks)))
            commands.samples.append((base, String(g.commands)))
            faults.samples.append((base, String(g.faults)))
            events.samples.append((base, String(g.events)))
            dropped.samples.append((base, String(g.eventsDropped)))
            heap.samples.append((base, String(g.heapBytes)))
            disconnects.samples.append((base, String(g.disconnects)))
        }
        let all = [up, pool, invalid, online, listening, connected, reset, calls, status, kicks, commands, faults, events,
                   dropped, heap, disconnects]
        var out = ""
        for f in all {
            out += "# HELP \(f.name) \(f.help)\n# TYPE \(f.name) \(f.type)\n"
            for s in f.samples {
                let labels = s.labels.isEmpty ? "" : "{" + s.labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
                out += "\(f.name)\(labels) \(s.value)\n"
            }
        }
        return out
    }

    /// Label values escape backslash, double quote and newline.
    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }
}

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Counters and gauges per OSID in Prometheus text format.",
        discussion: """
        Per guest: online, listening, connected and NEEDS_RESET state; hypercalls by function and by \
        status; kicks, firmware commands, faults, events and dropped events; heap bytes; front-end \
        disconnects. With -o FILE the text is written atomically (for node_exporter's textfile collector).
        """)
    @OptionGroup var common: Common
    @Option(name: .shortAndLong, help: "Write to this file (atomically) instead of stdout.") var output: String?

    func run() throws {
        let r = try common.send(.metrics)
        guard !common.json else { return }
        guard let m = r.metrics else { printError("pvzctl: metrics answer without metrics"); throw CLIExit.unreachable }
        let text = PrometheusText.render(m)
        guard let output else { print(text, terminator: ""); return }
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
        } catch {
            printError("pvzctl: cannot write \(output): \(error.localizedDescription)")
            throw CLIExit.usage
        }
    }
}
