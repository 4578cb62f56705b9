/// CRC-32C (Castagnoli), the checksum TFRecord framing uses.
///
/// Reflected polynomial `0x82F63B78`, initial value `0xFFFFFFFF`, final XOR `0xFFFFFFFF`
/// (so `"123456789"` hashes to `0xE3069283`). Computed byte by byte from a 256-entry table.
public enum CRC32C {
    /// The 256-entry lookup table for the reflected polynomial `0x82F63B78`.
    static let table: [UInt32] = (0..<256).map { (byte: Int) -> UInt32 in
        var crc = UInt32(byte)
        for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    /// Extends a running checksum with `bytes`; start from `0` (the value of an empty input).
    ///
    /// `update(update(0, a), b)` equals `checksum(a + b)`.
    public static func update<Bytes: Sequence>(_ crc: UInt32, _ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var c = ~crc
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return ~c
    }

    /// The CRC-32C of `bytes`.
    public static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        update(0, bytes)
    }

    /// TFRecord's masked form of a CRC: `((crc >> 15) | (crc << 17)) &+ 0xA282EAD8` (32-bit arithmetic).
    public static func masked(_ crc: UInt32) -> UInt32 {
        ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
