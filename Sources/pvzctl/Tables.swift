import VMManager

/// Plain-text tables for humans; scripts use --json.
enum Tables {
    static func render(_ header: [String], _ rows: [[String]], rightAligned: Set<Int> = []) -> String {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                let pad = String(repeating: " ", count: widths[i] - c.count)
                return rightAligned.contains(i) ? pad + c : c + pad
            }.joined(separator: "  ").replacing(/\s+$/, with: "")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }

    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    static func size(_ v: UInt64) -> String {
        if v >= 1 << 20, v % (1 << 20) == 0 { return "\(v >> 20) MiB" }
        if v >= 1 << 10, v % (1 << 10) == 0 { return "\(v >> 10) KiB" }
        return "\(v) B"
    }

    static func guestSummary(_ guests: [GuestStatus]) -> String {
        if guests.isEmpty { return "no guests configured" }
        return render(["OSID", "DOMAIN", "ONLINE", "PRIO", "FRONT-END", "DEVICE", "FIRMWARE", "CALLS", "KICKS", "HEAPS"],
            guests.map { g in
                [String(g.osid), g.domain ?? "-", g.online ? "yes" : "no", String(g.priority),
                 g.connected ? "connected" : (g.listening ? "waiting" : "no socket"),
                 g.needsReset ? "NEEDS_RESET" : "0x" + String(g.deviceStatus, radix: 16),
                 g.firmware, String(g.counters.calls), String(g.counters.kicks), String(g.heaps.count)]
            }, rightAligned: [0, 3, 7, 8, 9])
    }

    static func guestDetail(_ guests: [GuestStatus]) -> String {
        if guests.isEmpty { return "no guests configured" }
        return render(["OSID", "SOCKET", "CONN", "ONLINE", "PRIO", "STATUS", "FEATURES", "CARVE-OUT", "FW", "CALLS", "KICKS", "CMDS", "FAULTS", "EVENTS", "DROPPED"],
            guests.map { g in
                [String(g.osid), g.socketPath, g.connected ? "yes" : "no", g.online ? "yes" : "no", String(g.priority),
                 g.needsReset ? "NEEDS_RESET" : "0x" + String(g.deviceStatus, radix: 16),
                 hex(g.features), "\(hex(g.carveoutIpa))+\(size(g.carveoutSize))", g.firmware,
                 String(g.counters.calls), String(g.counters.kicks), String(g.counters.commands),
                 String(g.counters.faults), String(g.counters.events), String(g.counters.eventsDropped)]
            }, rightAligned: [0, 4, 9, 10, 11, 12, 13, 14])
    }

    static func heaps(_ heaps: [HeapStatus]) -> String {
        if heaps.isEmpty { return "no heaps" }
        return render(["OSID", "HEAP", "NAME", "ORIGIN", "IPA", "PA", "SIZE"],
            heaps.map { h in
                [String(h.osid), String(h.heapId), h.heapName, h.origin, hex(h.ipa), hex(h.pa), size(h.size)]
            }, rightAligned: [0, 1, 6])
    }
}
