import PVZContract
import PVZServer
import SafeSockets
#if canImport(Glibc)
import Glibc
#endif

/// A listening socket ready for a server: bound here or handed over.
public struct OpenListener: Sendable {
    public var fd: Int32
    /// The socket file, when the socket has one.
    public var file: SocketFileIdentity?
    /// Bound by this daemon (its file is removed at stop); false for --fd and systemd.
    public var ownsFile: Bool
    /// How to name it in logs and errors ("/run/x.sock", "fd 5", "systemd fd 3 'vm1'").
    public var label: String

    /// Closes it and removes its file when the daemon made it (start-up
    /// failed); a handed-over socket stays open for its owner.
    func discard() {
        guard ownsFile else { return }
        close(fd)
        file?.unlinkIfOurs()
    }
}

/// Decides where each socket of the daemon comes from and opens them all,
/// or none: a failure part-way closes and removes what was already bound, so
/// a daemon that cannot start leaves every existing socket as it found it.
///
/// Socket activation (systemd, systemd-socket-activate) matches handed-over
/// sockets by name (FileDescriptorName=, a guest's `fd_name`; "control" for
/// the control socket) or by the path they are bound to; a single guest
/// without a socket takes the one remaining socket. Every handed-over socket
/// must find its user: a spare one is an error in the units.
public struct ListenerPlan: Sendable {
    public var guests: [OpenListener]
    public var control: OpenListener?

    public static let controlName = "control"

    public static func open(_ config: DaemonConfig, inherited: [InheritedSocket]) throws(ConfigError) -> ListenerPlan {
        var opened: [OpenListener] = []
        var used = Set<Int32>()
        func fail(_ message: String) -> ConfigError {
            for o in opened { o.discard() }
            return ConfigError(message)
        }
        func take(_ s: InheritedSocket) -> OpenListener {
            used.insert(s.fd)
            let file = SafeListener.identity(ofInherited: s.fd)
            let label = "socket-activated fd \(s.fd) '\(s.name)'" + (s.path.map { " (\($0))" } ?? "")
            return OpenListener(fd: s.fd, file: file, ownsFile: false, label: label)
        }
        func unused(_ match: (InheritedSocket) -> Bool) -> InheritedSocket? {
            inherited.first { !used.contains($0.fd) && match($0) }
        }
        let names = inherited.map(\.name).joined(separator: ":")

        // The control socket first: its name keeps it out of the guests' way.
        var control: OpenListener?
        if let s = unused({ $0.name == controlName || (config.controlSocket != nil && $0.path == config.controlSocket) }) {
            control = take(s)
        }

        var slots = [OpenListener?](repeating: nil, count: config.guests.count)
        for (i, g) in config.guests.enumerated() {
            if let name = g.fdName {
                guard let s = unused({ $0.name == name }) else {
                    throw fail("OSID \(g.spec.osid.rawValue): fd_name '\(name)': no socket-activated descriptor of that name (LISTEN_FDNAMES: \(names.isEmpty ? "none" : names))")
                }
                slots[i] = take(s)
            } else if let p = g.socketPath, let s = unused({ $0.path == p }) {
                slots[i] = take(s)
            } else if let fd = g.listenFD {
                guard !used.contains(fd) else {
                    throw fail("OSID \(g.spec.osid.rawValue): --fd \(fd) is already used by another socket")
                }
                do { try SafeListener.checkListening(fd: fd, what: "OSID \(g.spec.osid.rawValue): --fd") } catch { throw fail(error.message) }
                used.insert(fd)
                slots[i] = OpenListener(fd: fd, file: SafeListener.identity(ofInherited: fd), ownsFile: false, label: "fd \(fd)")
            }
            if let o = slots[i] { opened.append(o) }
        }
        // Guests given no socket at all take what socket activation has left, one each.
        for (i, g) in config.guests.enumerated() where slots[i] == nil && g.socketPath == nil {
            let rest = inherited.filter { !used.contains($0.fd) }
            guard rest.count == 1, config.guests.filter({ $0.socketPath == nil && $0.fdName == nil && $0.listenFD == nil }).count == 1 else {
                throw fail("OSID \(g.spec.osid.rawValue) has no socket: give --socket-path or --fd (socket_path, fd or fd_name in a config file), or start it with one socket-activated descriptor (handed over: \(rest.isEmpty ? "none" : rest.map { "fd \($0.fd) '\($0.name)'" }.joined(separator: ", ")))")
            }
            slots[i] = take(rest[0])
            opened.append(slots[i]!)
        }
        if let control { opened.append(control) }
        let spare = inherited.filter { !used.contains($0.fd) }
        guard spare.isEmpty else {
            throw fail("socket-activated \(spare.map { "fd \($0.fd) '\($0.name)'\($0.path.map { " (\($0))" } ?? "")" }.joined(separator: ", ")) matches no guest (by fd_name or socket_path) and is not the control socket (named '\(controlName)')")
        }

        // Then bind what was not handed over.
        for (i, g) in config.guests.enumerated() where slots[i] == nil {
            guard let p = g.socketPath else { continue }
            do {
                let b = try SafeListener.bind(path: p, access: config.socketAccess)
                slots[i] = OpenListener(fd: b.fd, file: b.identity, ownsFile: true, label: p)
                opened.append(slots[i]!)
            } catch {
                throw fail("OSID \(g.spec.osid.rawValue): \(error.message)")
            }
        }
        if control == nil, let p = config.controlSocket {
            do {
                // Owner and daemon uid only (pvzctl as root works too); never the guests' group.
                let access = SocketAccess(mode: 0o600, owner: config.socketAccess.owner)
                let b = try SafeListener.bind(path: p, access: access, backlog: 64)
                control = OpenListener(fd: b.fd, file: b.identity, ownsFile: true, label: p)
                opened.append(control!)
            } catch {
                throw fail("control socket: \(error.message)")
            }
        }
        return ListenerPlan(guests: slots.map { $0! }, control: control)
    }

    /// Closes everything (start-up failed after the plan was made).
    public func discard() {
        for g in guests { g.discard() }
        control?.discard()
    }
}
