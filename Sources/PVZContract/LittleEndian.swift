// Little-endian field access at explicit offsets: every wire struct of the
// contract reads and writes its bytes this way, never through host layout.
// Callers check the buffer's length first.

extension UnsafeRawBufferPointer {
    @inline(__always) public func loadLE16(_ at: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt16.self)) }
    @inline(__always) public func loadLE32(_ at: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
    @inline(__always) public func loadLE64(_ at: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always) public func storeLE32(_ at: Int, _ v: UInt32) { storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt32.self) }
    @inline(__always) public func storeLE64(_ at: Int, _ v: UInt64) { storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt64.self) }
}
