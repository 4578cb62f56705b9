import Foundation
import LatheData
import LatheTensor
import XCTest
import _LatheTestSupport

/// Big-endian IDX bytes: magic `00 00 type rank`, sizes, data.
func idxBytes(type: UInt8 = 8, dims: [Int], data: [UInt8]) -> Data {
    var d = Data([0, 0, type, UInt8(dims.count)])
    for s in dims { d.append(contentsOf: [UInt8(s >> 24 & 255), UInt8(s >> 16 & 255), UInt8(s >> 8 & 255), UInt8(s & 255)]) }
    d.append(contentsOf: data)
    return d
}

final class IDXTests: XCTestCase {
    func testRoundTripOfHandMadeFiles() throws {
        let dir = try temporaryDirectory()
        let pixels = (0..<24).map { UInt8($0 * 11) }
        try idxBytes(dims: [2, 3, 4], data: pixels).write(to: dir.appendingPathComponent("img"))
        try idxBytes(dims: [2], data: [7, 3]).write(to: dir.appendingPathComponent("lab"))
        let ds = try IDX.load(images: dir.appendingPathComponent("img"), labels: dir.appendingPathComponent("lab"))
        XCTAssertEqual(ds.features.shape, [2, 1, 3, 4])
        XCTAssertEqual(ds.features.dtype, .float32)
        XCTAssertEqual(ds.features.scalars, pixels.map { Float($0) / 255 })
        XCTAssertEqual(ds.labels.intScalars, [7, 3])
        XCTAssertEqual(ds.classes, 8)

        // Rank-4 images keep their channel dimension.
        try idxBytes(dims: [2, 3, 2, 2], data: pixels).write(to: dir.appendingPathComponent("img4"))
        XCTAssertEqual(try IDX.loadImages(dir.appendingPathComponent("img4")).shape, [2, 3, 2, 2])
    }

    func testGzipFixture() throws {
        let ds = try IDX.load(images: fixture("tiny-images-idx3-ubyte.gz"), labels: fixture("tiny-labels-idx1-ubyte.gz"))
        XCTAssertEqual(ds.features.shape, [3, 1, 4, 5])
        XCTAssertEqual(ds.features.scalars, (0..<60).map { Float(($0 * 7) % 256) / 255 })
        XCTAssertEqual(ds.labels.intScalars, [2, 0, 1])
    }

    func testBadFilesGiveClearErrors() throws {
        let dir = try temporaryDirectory()
        func write(_ name: String, _ d: Data) throws -> URL {
            let u = dir.appendingPathComponent(name)
            try d.write(to: u)
            return u
        }
        let labels = try write("labels", idxBytes(dims: [2], data: [1, 2]))
        let images = try write("images", idxBytes(dims: [2, 2, 2], data: Array(repeating: 9, count: 8)))

        // A labels file given as images: magic 0x00000801 is rank 1.
        var e = expectDataError { try IDX.load(images: labels, labels: labels) }
        XCTAssertTrue(e?.description.contains("0x00000801") ?? false, e?.description ?? "")
        XCTAssertTrue(e?.description.contains("rank 1") ?? false, e?.description ?? "")
        // Not IDX at all.
        let text = try write("text", Data("hello world, not idx".utf8))
        e = expectDataError { try IDX.loadImages(text) }
        XCTAssertTrue(e?.description.contains("is not IDX") ?? false, e?.description ?? "")
        // Wrong element type (int32 = 0x0C).
        let ints = try write("ints", idxBytes(type: 0x0C, dims: [1, 1, 1], data: [0, 0, 0, 1]))
        e = expectDataError { try IDX.loadImages(ints) }
        XCTAssertTrue(e?.description.contains("0xc is not supported") ?? false, e?.description ?? "")
        // Truncated data and truncated header.
        let short = try write("short", idxBytes(dims: [3, 2, 2], data: Array(repeating: 1, count: 10)))
        e = expectDataError { try IDX.loadImages(short) }
        XCTAssertTrue(e?.description.contains("truncated") ?? false, e?.description ?? "")
        XCTAssertTrue(e?.description.contains("3x2x2 = 12 bytes") ?? false, e?.description ?? "")
        XCTAssertTrue(e?.description.contains("only 10") ?? false, e?.description ?? "")
        let header = try write("header", idxBytes(dims: [3, 2, 2], data: []).prefix(9))
        e = expectDataError { try IDX.loadImages(header) }
        XCTAssertTrue(e?.description.contains("truncated") ?? false, e?.description ?? "")
        // Extra bytes.
        let long = try write("long", idxBytes(dims: [2], data: [1, 2, 3]))
        e = expectDataError { try IDX.loadLabels(long) }
        XCTAssertTrue(e?.description.contains("1 unexpected bytes") ?? false, e?.description ?? "")
        // Count mismatch between images and labels.
        let three = try write("three", idxBytes(dims: [3], data: [1, 2, 3]))
        e = expectDataError { try IDX.load(images: images, labels: three) }
        XCTAssertTrue(e?.description.contains("3 labels, but images has 2 images") ?? false, e?.description ?? "")
        // Missing file; truncated gzip.
        e = expectDataError { try IDX.loadImages(dir.appendingPathComponent("nope")) }
        guard case .missingFile = e else { return XCTFail("\(String(describing: e))") }
        let gz = try Data(contentsOf: fixture("tiny-images-idx3-ubyte.gz"))
        let cut = try write("cut.gz", gz.prefix(gz.count - 20))
        e = expectDataError { try IDX.loadImages(cut) }
        guard case .corruptCompressedData = e else { return XCTFail("\(String(describing: e))") }
    }
}

final class FashionMNISTTests: XCTestCase {
    func testMissingDirectorySaysHowToGetIt() throws {
        let dir = try temporaryDirectory().appendingPathComponent("fashion-mnist")
        let e = expectDataError { try FashionMNIST.load(directory: dir) }
        guard case .missingDirectory(let path, _) = e else { return XCTFail("\(String(describing: e))") }
        XCTAssertEqual(path, dir.path)
        let message = e!.description
        XCTAssertTrue(message.contains(dir.path), message)
        XCTAssertTrue(message.contains("apt-get install dataset-fashion-mnist"), message)
        XCTAssertTrue(message.contains("/usr/share/datasets/fashion-mnist"), message)
        XCTAssertTrue(message.contains("FashionMNIST.load(directory:"), message)
    }

    func testMissingFileInAnExistingDirectory() throws {
        let dir = try temporaryDirectory()
        let e = expectDataError { try FashionMNIST.load(directory: dir, split: .test) }
        guard case .missingFile(let path, _) = e else { return XCTFail("\(String(describing: e))") }
        XCTAssertTrue(path.hasSuffix("t10k-images-idx3-ubyte.gz"), path)
        XCTAssertTrue(e!.description.contains("apt-get install dataset-fashion-mnist"))
    }

    func testLoadsFilesUnderTheOriginalNames() throws {
        let dir = try temporaryDirectory()
        try FileManager.default.copyItem(at: fixture("tiny-images-idx3-ubyte.gz"), to: dir.appendingPathComponent("train-images-idx3-ubyte.gz"))
        // Uncompressed labels work too.
        try idxBytes(dims: [3], data: [9, 0, 1]).write(to: dir.appendingPathComponent("train-labels-idx1-ubyte"))
        let ds = try FashionMNIST.load(directory: dir, split: .train)
        XCTAssertEqual(ds.features.shape, [3, 1, 4, 5])
        XCTAssertEqual(ds.labels.intScalars, [9, 0, 1])
        XCTAssertEqual(ds.classes, 10)
    }

    /// Uses the Debian package when installed; otherwise checks the documented error.
    func testInstalledPackageOrDocumentedError() throws {
        let dir = FashionMNIST.defaultDirectory
        guard FileManager.default.fileExists(atPath: dir.path) else {
            let e = expectDataError { try FashionMNIST.load() }
            guard case .missingDirectory(let path, _) = e else { return XCTFail("\(String(describing: e))") }
            XCTAssertEqual(path, "/usr/share/datasets/fashion-mnist")
            XCTAssertTrue(e!.description.contains("apt-get install dataset-fashion-mnist"))
            return
        }
        var train: TensorDataset?, test: TensorDataset?
        let ms = try milliseconds { train = try FashionMNIST.load(split: .train) }
        let msTest = try milliseconds { test = try FashionMNIST.load(split: .test) }
        print("Fashion-MNIST load: train (60k) \(String(format: "%.0f", ms)) ms, test (10k) \(String(format: "%.0f", msTest)) ms")
        XCTAssertEqual(train!.features.shape, [60000, 1, 28, 28])
        XCTAssertEqual(test!.features.shape, [10000, 1, 28, 28])
        XCTAssertEqual(train!.classCounts(), Array(repeating: 6000, count: 10))
        XCTAssertEqual(test!.classCounts(), Array(repeating: 1000, count: 10))
        let x = test!.features.scalars
        XCTAssertEqual(x.min(), 0)
        XCTAssertEqual(x.max(), 1)
        XCTAssertEqual(FashionMNIST.classNames.count, 10)
    }
}

final class CSVTests: XCTestCase {
    func testParsesNumbersHeaderBlankLinesAndLabels() throws {
        let ds = try CSV.loadNumeric(fixture("small.csv"))
        XCTAssertEqual(ds.features.shape, [3, 3])
        XCTAssertEqual(ds.features.scalars, [1, 2, 3, 4.5, -5, 60, 7, 8, 9])
        XCTAssertEqual(ds.labels.intScalars, [0, 1, 2])
        XCTAssertEqual(ds.classes, 3)

        let first = try CSV.parseNumeric("3;1.25;\"2\"\r\n 1 ; -0.5 ;0\r\n", labelColumn: 0, delimiter: ";")
        XCTAssertEqual(first.features.scalars, [1.25, 2, -0.5, 0])
        XCTAssertEqual(first.labels.intScalars, [3, 1])
        XCTAssertEqual(first.classes, 4)
        XCTAssertEqual(try CSV.parseNumeric("0.1,1e-3,12345678901234567890,0\n").features.scalars, [0.1, 0.001, 1.2345679e19])
    }

    func testErrorsNameLineAndColumn() throws {
        var e = expectDataError { try CSV.parseNumeric("x,y\n1,2\n3,abc\n") }
        XCTAssertEqual(e?.description, "malformed data in <text> at line 3, column 2: \"abc\" is not a number")
        e = expectDataError { try CSV.parseNumeric("1,2,0\n1,2,0\n\n1,2\n") }
        XCTAssertEqual(e?.description, "malformed data in <text> at line 4: 2 fields, but line 1 has 3")
        e = expectDataError { try CSV.parseNumeric("1,2,0.5\n") }
        XCTAssertTrue(e?.description.contains("line 1, column 3: label 0.5 is not a class id") ?? false, e?.description ?? "")
        e = expectDataError { try CSV.parseNumeric("1,2,-1\n") }
        XCTAssertTrue(e?.description.contains("label -1.0 is not a class id") ?? false, e?.description ?? "")
        e = expectDataError { try CSV.parseNumeric("1,,0\n") }
        XCTAssertTrue(e?.description.contains("line 1, column 2: empty cell") ?? false, e?.description ?? "")
        e = expectDataError { try CSV.parseNumeric("a,b\n1,2\n", hasHeader: false) }
        XCTAssertTrue(e?.description.contains("line 1, column 1") ?? false, e?.description ?? "")
        e = expectDataError { try CSV.parseNumeric("1;2;3\n", hasHeader: false) }
        XCTAssertTrue(e?.description.contains("wrong delimiter") ?? false, e?.description ?? "")
        e = expectDataError { try CSV.parseNumeric("1,2\n", labelColumn: 5) }
        XCTAssertTrue(e?.description.contains("labelColumn 5") ?? false, e?.description ?? "")
        e = expectDataError { try CSV.parseNumeric("a,b\n\n") }
        XCTAssertTrue(e?.description.contains("no data rows") ?? false, e?.description ?? "")
        e = expectDataError { try CSV.loadNumeric(URL(fileURLWithPath: "/nonexistent/file.csv")) }
        XCTAssertTrue(e?.description.contains("/nonexistent/file.csv") ?? false, e?.description ?? "")
        // Errors inside a gzip file report the decompressed line too.
        let dir = try temporaryDirectory()
        let gz = try Gzip.decompress(Data(contentsOf: fixture("small.csv.gz")))
        XCTAssertEqual(String(decoding: gz, as: UTF8.self), try String(contentsOf: fixture("small.csv"), encoding: .utf8))
        let broken = dir.appendingPathComponent("broken.csv")
        try Data("1,2,0\n1,2\n".utf8).write(to: broken)
        e = expectDataError { try CSV.loadNumeric(broken) }
        XCTAssertTrue(e?.description.contains("broken.csv at line 2") ?? false, e?.description ?? "")
    }
}

final class BundledDataTests: XCTestCase {
    func testDigits() throws {
        _ = try Digits.load()  // warm up the bundle lookup
        var ds: TensorDataset?
        let ms = try milliseconds { ds = try Digits.load() }
        print("Digits load: \(String(format: "%.1f", ms)) ms")
        let d = ds!
        XCTAssertEqual(d.count, 1797)
        XCTAssertEqual(d.features.shape, [1797, 1, 8, 8])
        XCTAssertEqual(d.features.dtype, .float32)
        XCTAssertEqual(d.labels.dtype, .int64)
        XCTAssertEqual(d.classes, 10)
        let counts = d.classCounts()
        XCTAssertEqual(counts.count, 10)
        XCTAssertEqual(counts.reduce(0, +), 1797)
        XCTAssertTrue(counts.allSatisfy { (170...190).contains($0) }, "\(counts)")
        let x = d.features.scalars
        XCTAssertEqual(x.min(), 0)
        XCTAssertEqual(x.max(), 1)
        // First image of sklearn's digits: row 0 is 0 0 5 13 9 1 0 0, label 0.
        XCTAssertEqual(Array(x[0..<8]), [0, 0, 5, 13, 9, 1, 0, 0].map { Float($0) / 16 })
        XCTAssertEqual(Array(d.labels.intScalars.prefix(10)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    }

    func testCharCorpusBasics() {
        let c = CharCorpus(text: "hello world")
        XCTAssertEqual(String(String.UnicodeScalarView(c.vocabulary)), " dehlorw")
        XCTAssertEqual(c.vocabSize, 8)
        XCTAssertEqual(c.encode("hold"), [3, 5, 4, 1])
        XCTAssertEqual(c.decode(c.encode("world hello")), "world hello")
        XCTAssertEqual(c.text, "hello world")
        XCTAssertTrue(c.canEncode("low"))
        XCTAssertFalse(c.canEncode("lowz"))

        let u = CharCorpus(text: "naïve café ☕ naïve")
        XCTAssertEqual(u.decode(u.encode("café ☕")), "café ☕")
        XCTAssertEqual(u.vocabulary.last, "☕")
        XCTAssertEqual(u.count, 18)
    }

    func testCharCorpusBatchesAndSplit() {
        let letters: [UInt8] = (0..<1000).map { (i: Int) -> UInt8 in UInt8(97 + (i * 7 + i / 26) % 26) }
        let text = String(decoding: letters, as: UTF8.self)
        let c = CharCorpus(text: text)
        let (train, val) = c.split(validationFraction: 0.1)
        XCTAssertEqual(train.count, 900)
        XCTAssertEqual(val.count, 100)
        XCTAssertEqual(train.vocabulary, c.vocabulary)
        XCTAssertEqual(train.text + val.text, text)

        var g1 = RandomGenerator(seed: 5), g2 = RandomGenerator(seed: 5)
        let (x, y) = train.batch(size: 4, context: 16, generator: &g1)
        XCTAssertEqual(x.shape, [4, 16])
        XCTAssertEqual(y.shape, [4, 16])
        XCTAssertEqual(x.dtype, DType.int64)
        let xs = x.intScalars, ys = y.intScalars
        for b in 0..<4 {
            let row = Array(xs[b * 16..<(b + 1) * 16]), next = Array(ys[b * 16..<(b + 1) * 16])
            XCTAssertEqual(Array(row.dropFirst()), Array(next.dropLast()), "y is x shifted by one")
            XCTAssertTrue(train.text.contains(train.decode(row + [next.last!])), "a window of the text")
        }
        XCTAssertEqual(train.batch(size: 4, context: 16, generator: &g2).x.intScalars, xs, "seeded")
        XCTAssertNotEqual(train.batch(size: 4, context: 16, generator: &g2).x.intScalars, xs, "the generator advances")

        let evals = val.evaluationBatches(context: 8, batchSize: 5)
        XCTAssertEqual(evals.map { $0.x.shape[0] }, [5, 5, 2])  // (100 - 1) / 8 = 12 windows
        let flat = evals.flatMap { $0.x.intScalars }
        XCTAssertEqual(flat, Array(val.ids.prefix(96).map(Int.init)))
        XCTAssertEqual(evals.last!.y.intScalars.last, Int(val.ids[96]))
        XCTAssertEqual(val.evaluationBatches(context: 8, batchSize: 5).map { $0.y.intScalars }, evals.map { $0.y.intScalars })
    }

    func testShakespeare() throws {
        var c: CharCorpus?
        let ms = try milliseconds { c = try CharCorpus.shakespeare() }
        print("Shakespeare load: \(String(format: "%.0f", ms)) ms, \(c!.count) characters, vocabulary \(c!.vocabSize)")
        XCTAssertEqual(c!.count, 2_653_295)
        XCTAssertEqual(c!.vocabSize, 81)
        let text = c!.decode(Array(c!.ids.prefix(200_000).map(Int.init)))
        XCTAssertTrue(text.hasPrefix("HAMLET, PRINCE OF DENMARK"))
        XCTAssertTrue(text.contains("To be, or not to be"))
        XCTAssertFalse(text.contains("Gutenberg"))
        let (train, val) = c!.split(validationFraction: 0.1)
        XCTAssertEqual(train.count + val.count, c!.count)
    }
}
