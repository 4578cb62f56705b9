import Foundation
import LatheTensor

/// The IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed).
///
/// A file is a big-endian header, `00 00 <type> <rank>` then `rank` 32-bit sizes, followed by
/// the elements in row-major order. Images are type `0x08` (unsigned byte) of rank 3
/// (`[N, rows, cols]`, magic `0x00000803`); labels are unsigned bytes of rank 1 (magic `0x00000801`).
public enum IDX {
    /// An IDX file's element type and sizes, and where its data start.
    struct Header {
        let type: UInt8
        let dims: [Int]
        let dataOffset: Int
        let elementCount: Int
    }

    static func elementSize(_ type: UInt8) -> Int? {
        switch type {
        case 0x08, 0x09: 1
        case 0x0B: 2
        case 0x0C, 0x0D: 4
        case 0x0E: 8
        default: nil
        }
    }

    static func header(_ bytes: UnsafeRawBufferPointer, path: String, expectedRank: ClosedRange<Int>, what: String) throws -> Header {
        func fail(_ offset: Int, _ reason: String) -> DataError {
            .malformed(path: path, location: "byte offset \(offset)", reason: reason)
        }
        guard bytes.count >= 4 else {
            throw fail(0, "file has \(bytes.count) bytes, too short for an IDX header (truncated?)")
        }
        let magic = (0..<4).map { String(format: "%02x", bytes[$0]) }.joined()
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw fail(0, "magic number 0x\(magic) is not IDX (expected 0x0000TTRR); is this an \(what) file?")
        }
        let type = bytes[2], rank = Int(bytes[3])
        guard type == 0x08 else {
            let known = elementSize(type) != nil ? "element type 0x\(String(type, radix: 16)) is not supported"
                                                  : "unknown element type 0x\(String(type, radix: 16))"
            throw fail(2, "\(known); \(what) files hold unsigned bytes (magic 0x0000080\(expectedRank.lowerBound))")
        }
        guard expectedRank.contains(rank) else {
            throw fail(3, "magic number 0x\(magic) says rank \(rank), but \(what) files have rank "
                + (expectedRank.count == 1 ? "\(expectedRank.lowerBound) (magic 0x0000080\(expectedRank.lowerBound))"
                                           : "\(expectedRank.lowerBound)...\(expectedRank.upperBound)"))
        }
        let dataOffset = 4 + 4 * rank
        guard bytes.count >= dataOffset else {
            throw fail(bytes.count, "file ends inside the header (\(bytes.count) of \(dataOffset) bytes); truncated file")
        }
        var dims: [Int] = []
        var total = 1
        for d in 0..<rank {
            let o = 4 + 4 * d
            let size = Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3])
            dims.append(size)
            let (t, overflow) = total.multipliedReportingOverflow(by: size)
            guard !overflow else { throw fail(o, "sizes \(dims) are impossibly large") }
            total = t
        }
        let available = bytes.count - dataOffset
        guard available >= total else {
            throw fail(bytes.count, "truncated file: the header declares \(dims.map(String.init).joined(separator: "x")) "
                + "= \(total) bytes of data after the \(dataOffset)-byte header, but only \(available) are present")
        }
        guard available == total else {
            throw fail(dataOffset + total, "\(available - total) unexpected bytes after the \(total) bytes of data "
                + "that the header (\(dims)) declares")
        }
        return Header(type: type, dims: dims, dataOffset: dataOffset, elementCount: total)
    }

    /// Images from an IDX file as float32 in `[0, 1]` (byte / 255): rank-3 files `[N, H, W]` give
    /// `[N, 1, H, W]`, rank-4 files `[N, C, H, W]` are kept as they are.
    public static func loadImages(_ url: URL, hint: String = "pass the path of an IDX images file") throws -> Tensor {
        try FileBytes.withContents(of: url, hint: hint) { bytes in
            let h = try header(bytes, path: url.path, expectedRank: 3...4, what: "IDX images")
            let shape = h.dims.count == 3 ? [h.dims[0], 1, h.dims[1], h.dims[2]] : h.dims
            return unitFloats(UnsafeRawBufferPointer(rebasing: bytes[h.dataOffset...]), shape: shape)
        }
    }

    /// Labels from an IDX file (unsigned bytes, rank 1) as int64 `[N]`.
    public static func loadLabels(_ url: URL, hint: String = "pass the path of an IDX labels file") throws -> Tensor {
        try FileBytes.withContents(of: url, hint: hint) { bytes in
            let h = try header(bytes, path: url.path, expectedRank: 1...1, what: "IDX labels")
            let src = UnsafeRawBufferPointer(rebasing: bytes[h.dataOffset...])
            let values = [Int64](unsafeUninitializedCapacity: h.elementCount) { buf, n in
                for i in 0..<h.elementCount { buf[i] = Int64(src[i]) }
                n = h.elementCount
            }
            return values.withUnsafeBytes { Tensor(bytes: $0, shape: [h.elementCount], dtype: .int64) }
        }
    }

    /// A labelled data set from an images file and a labels file (each plain or `.gz`).
    /// `classes` defaults to the largest label + 1.
    public static func load(images: URL, labels: URL, classes: Int? = nil) throws -> TensorDataset {
        let x = try loadImages(images)
        let y = try loadLabels(labels)
        guard x.shape[0] == y.shape[0] else {
            throw DataError.malformed(path: labels.path, location: "byte offset 4",
                                      reason: "\(y.shape[0]) labels, but \(images.lastPathComponent) has \(x.shape[0]) images")
        }
        let n = classes ?? ((y.intScalars.max() ?? -1) + 1)
        return TensorDataset(features: x, labels: y, classes: Swift.max(n, 1))
    }

    /// Bytes to float32 `byte / 255` via a 256-entry table (exactly PyTorch's `ToTensor`).
    static func unitFloats(_ src: UnsafeRawBufferPointer, shape: [Int]) -> Tensor {
        var table = [Float](repeating: 0, count: 256)
        for v in 0..<256 { table[v] = Float(v) / 255 }
        var t = Tensor.zeros(shape)
        t.withUnsafeMutableBufferPointer { dst in
            table.withUnsafeBufferPointer { tp in
                let s = src.bindMemory(to: UInt8.self)
                for i in 0..<dst.count { dst[i] = tp[Int(s[i])] }
            }
        }
        return t
    }
}

/// Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28x28 grey images of clothes in 10 classes,
/// 60,000 for training and 10,000 for testing, in IDX files.
public enum FashionMNIST {
    public enum Split: String, Sendable, CaseIterable {
        case train, test
        /// The file-name prefix the original distribution uses.
        var prefix: String { self == .train ? "train" : "t10k" }
    }

    /// Where the Debian/Ubuntu package `dataset-fashion-mnist` installs the files.
    public static let defaultDirectory = URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist")

    public static let classNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    /// The file names of a split (as distributed, gzip-compressed).
    public static func fileNames(_ split: Split) -> (images: String, labels: String) {
        ("\(split.prefix)-images-idx3-ubyte.gz", "\(split.prefix)-labels-idx1-ubyte.gz")
    }

    static func hint(_ directory: URL) -> String {
        let files = Split.allCases.flatMap { [fileNames($0).images, fileNames($0).labels] }.joined(separator: ", ")
        return "Fashion-MNIST is not bundled with Lathe. On Debian/Ubuntu run `sudo apt-get install dataset-fashion-mnist`, "
            + "which puts the files in \(defaultDirectory.path)/; or download \(files) from "
            + "https://github.com/zalandoresearch/fashion-mnist and pass their folder: "
            + "FashionMNIST.load(directory: URL(fileURLWithPath: \"/path/to/folder\"))"
    }

    /// Loads a split: features `[N, 1, 28, 28]` float32 in `[0, 1]`, labels int64 `0..<10`.
    /// `directory` defaults to ``defaultDirectory``; uncompressed files (no `.gz`) work too.
    public static func load(directory: URL? = nil, split: Split = .train) throws -> TensorDataset {
        let dir = directory ?? defaultDirectory
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DataError.missingDirectory(path: dir.path, hint: hint(dir))
        }
        func locate(_ name: String) -> URL {
            let gz = dir.appendingPathComponent(name)
            let plain = dir.appendingPathComponent(String(name.dropLast(3)))
            return !FileManager.default.fileExists(atPath: gz.path) && FileManager.default.fileExists(atPath: plain.path) ? plain : gz
        }
        let names = fileNames(split)
        let imagesURL = locate(names.images), labelsURL = locate(names.labels)
        for url in [imagesURL, labelsURL] where !FileManager.default.fileExists(atPath: url.path) {
            throw DataError.missingFile(path: url.path, hint: hint(dir))
        }
        return try IDX.load(images: imagesURL, labels: labelsURL, classes: 10)
    }
}
