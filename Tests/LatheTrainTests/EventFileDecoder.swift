import Foundation
import LatheTrain
import XCTest

/// A small, independent reader for TFRecord-framed TensorBoard event files, used to check what
/// `TensorBoardWriter` writes and to read the Python-written golden file.
enum EventFileDecoder {
    struct DecodeError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    struct Event: Equatable {
        var wallTime: Double = 0
        var step: Int64 = 0
        var fileVersion: String?
        var values: [Value] = []
    }

    struct Value: Equatable {
        var tag: String
        var simpleValue: Float

        static func == (a: Value, b: Value) -> Bool {
            a.tag == b.tag && a.simpleValue.bitPattern == b.simpleValue.bitPattern
        }
    }

    /// Splits `data` into TFRecord payloads, checking both masked CRC-32Cs of every record.
    static func records(_ data: Data) throws -> [[UInt8]] {
        let bytes = [UInt8](data)
        var out: [[UInt8]] = []
        var i = 0
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }
        while i < bytes.count {
            guard i + 12 <= bytes.count else { throw DecodeError("truncated header at \(i)") }
            let lengthBytes = Array(bytes[i..<i + 8])
            let length = Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(lengthBytes[$1]) << (8 * UInt64($1)) })
            guard u32(i + 8) == CRC32C.masked(CRC32C.checksum(lengthBytes)) else { throw DecodeError("bad length CRC at \(i)") }
            guard i + 12 + length + 4 <= bytes.count else { throw DecodeError("truncated record at \(i)") }
            let payload = Array(bytes[i + 12..<i + 12 + length])
            guard u32(i + 12 + length) == CRC32C.masked(CRC32C.checksum(payload)) else { throw DecodeError("bad data CRC at \(i)") }
            out.append(payload)
            i += 12 + length + 4
        }
        return out
    }

    /// Iterates the fields of a protobuf message: (field number, wire type, raw value or payload).
    private static func fields(_ b: [UInt8], _ visit: (Int, Int, UInt64, [UInt8]) throws -> Void) throws {
        var i = 0
        func varint() throws -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard i < b.count, shift < 64 else { throw DecodeError("bad varint") }
                let byte = b[i]; i += 1
                v |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return v }
                shift += 7
            }
        }
        func fixed(_ n: Int) throws -> UInt64 {
            guard i + n <= b.count else { throw DecodeError("truncated fixed\(n * 8)") }
            defer { i += n }
            return (0..<n).reduce(0) { $0 | UInt64(b[i + $1]) << (8 * UInt64($1)) }
        }
        while i < b.count {
            let key = try varint()
            let field = Int(key >> 3), wire = Int(key & 7)
            switch wire {
            case 0: try visit(field, wire, try varint(), [])
            case 1: try visit(field, wire, try fixed(8), [])
            case 5: try visit(field, wire, try fixed(4), [])
            case 2:
                let n = Int(try varint())
                guard i + n <= b.count else { throw DecodeError("truncated bytes field") }
                let payload = Array(b[i..<i + n]); i += n
                try visit(field, wire, 0, payload)
            default: throw DecodeError("unsupported wire type \(wire)")
            }
        }
    }

    /// Decodes the fields of `tensorflow.Event` this project uses.
    static func event(_ payload: [UInt8]) throws -> Event {
        var e = Event()
        try fields(payload) { field, wire, raw, bytes in
            switch (field, wire) {
            case (1, 1): e.wallTime = Double(bitPattern: raw)
            case (2, 0): e.step = Int64(bitPattern: raw)
            case (3, 2): e.fileVersion = String(decoding: bytes, as: UTF8.self)
            case (5, 2):
                try fields(bytes) { f, w, _, valueBytes in
                    guard f == 1, w == 2 else { return }
                    var tag = "", simple: Float?
                    try fields(valueBytes) { vf, vw, vraw, vbytes in
                        if vf == 1, vw == 2 { tag = String(decoding: vbytes, as: UTF8.self) }
                        if vf == 2, vw == 5 { simple = Float(bitPattern: UInt32(vraw)) }
                    }
                    guard let simple else { throw DecodeError("summary value \(tag) without simple_value") }
                    e.values.append(Value(tag: tag, simpleValue: simple))
                }
            default: break
            }
        }
        return e
    }

    /// All events of the file at `url`.
    static func events(at url: URL) throws -> [Event] {
        try records(try Data(contentsOf: url)).map(event)
    }
}
