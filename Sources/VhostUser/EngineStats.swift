import Synchronization

/// What other threads (the control plane) may read of a guest's connection.
/// Written by the guest thread only.
public final class EngineStats: Sendable {
    public let deviceStatus = Atomic<UInt8>(0)
    public let ackedFeatures = Atomic<UInt64>(0)
    public let needsReset = Atomic<Bool>(false)
    public init() {}
}
