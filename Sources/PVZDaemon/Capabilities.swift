/// What `--print-capabilities` prints: QEMU's docs/interop/vhost-user.json
/// VHostUserBackendCapabilities, which for a type without a branch of its own
/// is the type alone (no "features", nothing else: the union is closed).
/// contrib/qemu/50-vhost-user-pvz.json names the same type.
public enum BackendCapabilities {
    /// The VHostUserBackendType this back-end implements.
    public static let type = "pvz"

    public static var json: String { "{\n  \"type\": \"\(type)\"\n}" }
}
