/// The project's version: `--version` of both binaries and the control
/// protocol's status (one definition).
public enum PVZVersion {
    public static let string = "0.1.0"
}
