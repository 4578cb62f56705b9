import Foundation
import LatheData
import XCTest
import _LatheTestSupport

final class GzipTests: XCTestCase {
    func gunzip(_ name: String) throws -> Data {
        try Gzip.decompress(try Data(contentsOf: fixture(name)), path: name)
    }

    func testDecodesFixturesFromPythonAndTheGzipCommand() throws {
        let words = try Data(contentsOf: fixture("words.txt"))
        XCTAssertEqual(try gunzip("words.txt.gz"), words, "gzip -9 (dynamic Huffman)")
        XCTAssertEqual(try gunzip("words-fast.txt.gz"), words, "Python gzip level 1")
        XCTAssertEqual(try gunzip("words-stored.gz"), words, "stored block")
        XCTAssertEqual(try gunzip("random.bin.gz"), try Data(contentsOf: fixture("random.bin")))
        XCTAssertEqual(String(decoding: try gunzip("hello.txt.gz"), as: UTF8.self), "hello, hello, hello world\n")
        XCTAssertEqual(String(decoding: try gunzip("fields.gz"), as: UTF8.self), String(repeating: "header fields test\n", count: 3))
        XCTAssertEqual(try gunzip("empty.gz"), Data())
    }

    func testMultipleMembersAreConcatenated() throws {
        XCTAssertEqual(String(decoding: try gunzip("multi.gz"), as: UTF8.self), "first member\nsecond member\n")
        // `cat a.gz b.gz` of the big fixtures too.
        let twice = try Data(contentsOf: fixture("words.txt.gz")) + Data(contentsOf: fixture("hello.txt.gz"))
        XCTAssertEqual(try Gzip.decompress(twice), try Data(contentsOf: fixture("words.txt")) + Data("hello, hello, hello world\n".utf8))
    }

    func testCRC32() {
        XCTAssertEqual(Gzip.crc32(Data("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(Gzip.crc32(Data()), 0)
        let a = Data("hello ".utf8), b = Data("world, this is longer than eight bytes".utf8)
        XCTAssertEqual(Gzip.crc32(b, initial: Gzip.crc32(a)), Gzip.crc32(a + b))
    }

    /// A gzip member built by hand from stored blocks (two blocks, one of the maximum 65,535 bytes).
    func testHandBuiltStoredBlocks() throws {
        let payload = Data((0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) })
        var gz = Data([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255])
        var start = 0
        while start < payload.count {
            let len = min(65_535, payload.count - start)
            let last: UInt8 = start + len == payload.count ? 1 : 0
            gz.append(last)  // BFINAL, BTYPE 00, then pad to the byte boundary
            gz.append(contentsOf: [UInt8(len & 255), UInt8(len >> 8), UInt8(~len & 255), UInt8((~len >> 8) & 255)])
            gz.append(payload[start..<start + len])
            start += len
        }
        let crc = Gzip.crc32(payload)
        for v in [crc, UInt32(payload.count)] { gz.append(contentsOf: (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }) }
        XCTAssertEqual(try Gzip.decompress(gz), payload)
    }

    func testRawInflateAndOutputLimit() throws {
        // Fixed-Huffman stream for "hello, hello, hello world\n" (the fixture's deflate data).
        let gz = try Data(contentsOf: fixture("hello.txt.gz"))
        let raw = gz.subdata(in: 10..<(gz.count - 8))
        let (out, used) = try Gzip.inflateRaw(raw + Data([1, 2, 3]), outputCapacity: 100)
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "hello, hello, hello world\n")
        XCTAssertEqual(used, raw.count, "stops after the final block")
        let e = expectDataError { try Gzip.inflateRaw(raw, outputCapacity: 10) }
        XCTAssertTrue(e?.description.contains("exceeds") ?? false, e?.description ?? "")
        expectDataError { try Gzip.decompress(try Data(contentsOf: fixture("words.txt.gz")), maxOutput: 1000) }
    }

    func testCorruptDataGivesErrorsNeverCrashes() throws {
        let good = try Data(contentsOf: fixture("words.txt.gz"))
        let words = try Data(contentsOf: fixture("words.txt"))
        var e: DataError?

        // Wrong CRC, wrong ISIZE.
        var bad = good
        bad[bad.count - 6] ^= 0x01
        e = expectDataError { try Gzip.decompress(bad, path: "x.gz") }
        XCTAssertTrue(e?.description.contains("CRC") ?? false, e?.description ?? "")
        XCTAssertTrue(e?.description.contains("x.gz") ?? false)
        bad = good
        bad[bad.count - 2] ^= 0x01
        e = expectDataError { try Gzip.decompress(bad) }
        XCTAssertTrue(e?.description.contains("length") ?? false, e?.description ?? "")

        // Not gzip / bad method / reserved flags / trailing garbage.
        e = expectDataError { try Gzip.decompress(Data("plain text, not gzip".utf8)) }
        XCTAssertTrue(e?.description.contains("not gzip") ?? false, e?.description ?? "")
        bad = good; bad[2] = 7
        expectDataError { try Gzip.decompress(bad) }
        bad = good; bad[3] = 0x80
        expectDataError { try Gzip.decompress(bad) }
        e = expectDataError { try Gzip.decompress(good + Data("junk".utf8)) }
        XCTAssertTrue(e?.description.contains("after the last gzip member") ?? false, e?.description ?? "")
        XCTAssertNoThrow(try Gzip.decompress(good + Data(count: 16)), "zero padding is allowed")
        bad = try Data(contentsOf: fixture("fields.gz")); bad[30] ^= 0xFF  // inside FNAME/FCOMMENT: header CRC catches it
        expectDataError { try Gzip.decompress(bad) }

        // Every truncation fails cleanly.
        for n in Array(0..<64) + Array(stride(from: 64, to: good.count, by: 97)) + [good.count - 1] {
            e = expectDataError { try Gzip.decompress(good.prefix(n)) }
            if n > 20 && n < good.count - 8 {
                XCTAssertTrue(e?.description.contains("truncated") ?? false, "prefix \(n): \(e?.description ?? "")")
            }
        }

        // Bit flips anywhere in the compressed body: an error, or (a flip in the final byte's
        // padding bits) the same output. Never a crash or wrong data.
        var state: UInt64 = 12345
        func next() -> Int { state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407; return Int(state >> 33) }
        for name in ["words.txt.gz", "words-fast.txt.gz", "hello.txt.gz", "random.bin.gz"] {
            let original = try Data(contentsOf: fixture(name))
            let expected = try Gzip.decompress(original)
            for _ in 0..<150 {
                var flipped = original
                let at = 10 + next() % (original.count - 18)
                flipped[at] ^= UInt8(1 << (next() % 8))
                if let out = try? Gzip.decompress(flipped) { XCTAssertEqual(out, expected, "\(name) flip at \(at)") }
            }
            // Random bytes as the DEFLATE body.
            for _ in 0..<100 {
                let body = Data((0..<(1 + next() % 300)).map { _ in UInt8(truncatingIfNeeded: next()) })
                _ = try? Gzip.decompress(original.prefix(10) + body)
                _ = try? Gzip.inflateRaw(body, outputCapacity: 1 << 16)
            }
        }
        _ = words
    }

    func testLoadersReadGzipByContent() throws {
        // small.csv.gz and small.csv give the same data set.
        let a = try CSV.loadNumeric(fixture("small.csv")), b = try CSV.loadNumeric(fixture("small.csv.gz"))
        XCTAssertEqual(a.features.scalars, b.features.scalars)
        XCTAssertEqual(a.labels.intScalars, b.labels.intScalars)
    }
}
