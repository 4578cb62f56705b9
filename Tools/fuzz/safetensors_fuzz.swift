// libFuzzer target for Lathe's safetensors reader (Sources/LatheIO/SafeTensors*.swift): the input is
// a whole file. It is parsed from memory (`SafeTensors.headerLength` and `parseHeader`), then
// written to a file in /dev/shm (the readers take URLs; one file per process, rewritten each
// execution) and read by every reader: `SafeTensors.readHeader`, `SafeTensors.read(contentsOf:)`,
// `MappedSafeTensors` (`tensor(named:)` and `float32Tensor(named:)` for every tensor, `shape(of:)`)
// and `ShardedSafeTensors` over that one file. Any trap or AddressSanitizer report is a bug, and so
// is a huge allocation (libFuzzer's -malloc_limit_mb); a SafeTensorsError is the expected outcome
// for bad input. Also checked: the four readers agree (the same error, or the same header; `read`
// refuses exactly the headers with a dtype Lathe cannot load), an accepted header has unique names
// (as Swift strings, which is what the dictionaries of tensors use), each tensor's bytes hold exactly
// its shape of its dtype and the tensors tile the data section to the end of the file, every tensor
// read holds the file's bytes (F64: each value converted to Float), `tensor(named:)` of the mapping
// equals `read`'s tensor bit for bit, `float32Tensor(named:)` equals `tensor(named:).to(.float32)`
// bit for bit, the summaries are made (summaryJSON parses), and a file `read` accepts is written
// back by `SafeTensors.write` to a file that reads back to the same tensors and metadata.
//
// Not part of the package build. The readers use LatheTensor (Tensor, DType) and through it the C
// kernels (f16/bf16 conversion), so the C target is compiled first with clang (instrumented:
// -fsanitize=fuzzer-no-link,address) and given a module map, then LatheTensor as a module, then
// LatheIO's safetensors files with JSON.swift, AtomicFile.swift, TextFormat.swift and this file as
// the module LatheIO (so the internal headerLength/parseHeader are reachable). Run from the
// repository root:
//
//   mkdir -p /tmp/stfuzz/ck /tmp/stfuzz/mods
//   for f in Sources/CLatheKernels/*.c; do clang -fsanitize=fuzzer-no-link,address -O2 -fPIC \
//     -ISources/CLatheKernels/include -c $f -o /tmp/stfuzz/ck/$(basename $f .c).o; done
//   printf 'module CLatheKernels {\n  umbrella header "%s/Sources/CLatheKernels/include/CLatheKernels.h"\n  export *\n}\n' \
//     "$PWD" > /tmp/stfuzz/module.modulemap
//   swiftc -sanitize=fuzzer,address -parse-as-library -O -wmo -module-name LatheTensor -package-name Lathe \
//     -Xcc -fmodule-map-file=/tmp/stfuzz/module.modulemap -emit-module -emit-module-path /tmp/stfuzz/mods/LatheTensor.swiftmodule \
//     -emit-object -o /tmp/stfuzz/mods/LatheTensor.o Sources/LatheTensor/*.swift Sources/LatheTensor/Kernels/*.swift
//   swiftc -sanitize=fuzzer,address -parse-as-library -O -use-ld=lld -module-name LatheIO -package-name Lathe \
//     -I /tmp/stfuzz/mods -Xcc -fmodule-map-file=/tmp/stfuzz/module.modulemap Tools/fuzz/safetensors_fuzz.swift \
//     Sources/LatheIO/SafeTensors*.swift Sources/LatheIO/MappedFile.swift Sources/LatheIO/JSON.swift Sources/LatheIO/AtomicFile.swift \
//     Sources/LatheIO/TextFormat.swift /tmp/stfuzz/mods/LatheTensor.o /tmp/stfuzz/ck/*.o -o /tmp/safetensors_fuzz
//   mkdir -p /tmp/safetensors_corpus && cp Tools/fuzz/safetensors_seeds/* Tests/Fixtures/io/*.safetensors /tmp/safetensors_corpus/
//   for d in gpt mlp cnn resnet; do cp Tests/Fixtures/models/$d/batch.safetensors /tmp/safetensors_corpus/$d-batch.safetensors; done
//   SWIFT_BACKTRACE=enable=no nice -n 19 /tmp/safetensors_fuzz -runs=1000000 -max_len=8192 -timeout=10 \
//     -rss_limit_mb=2048 -malloc_limit_mb=512 -dict=Tools/fuzz/safetensors.dict /tmp/safetensors_corpus
//
// (1,000,000 executions took 172 s, 5,813/s, on one of two shared cores; ASan's RSS stays near 480 MB.)
//
// The seeds (Tools/fuzz/safetensors_seeds, made by Tools/fuzz/make_safetensors_seeds.py with
// Python's safetensors and torch; fuzz-* files, none yet, would be the fuzzer's own finds) are small
// valid files of every dtype (Lathe's and the others the format defines), scalars, empty tensors,
// metadata, odd offsets, malformed files (empty, header length past the end or over the limit,
// overlapping offsets, holes, trailing bytes, shapes whose product overflows, negative and
// fractional numbers, duplicate keys, __metadata__ with non-strings, not JSON, not UTF-8), and the
// inputs that failed before the fixes made while writing this target: bad-shape-zero-* (an empty
// shape whose other sizes overflow trapped in Tensor), bad-names-/bad-metadata-keys-canonically-equal
// (names equal as Swift strings, not as bytes) and bad-empty.safetensors (Foundation leaked 4 KiB
// mapping a 0-byte file); plus the small test fixtures (Tests/Fixtures/io, the models' batch files;
// all under 20 KB). SWIFT_BACKTRACE=enable=no keeps Swift's backtracer (which ASan reports on) out
// of a trap. FUZZ_TMPDIR sets the directory of the per-process files (default /dev/shm; removed at
// exit, left after a crash). Replay inputs: FUZZ_VERBOSE=1 /tmp/safetensors_fuzz FILE... (prints
// each outcome).

import Foundation
import LatheTensor
#if canImport(Glibc)
import Glibc
#endif

/// A failed invariant: the message on stderr, then a crash libFuzzer records.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write(Data(("safetensors_fuzz: " + message() + "\n").utf8))
        abort()
    }
}

let verbose = ProcessInfo.processInfo.environment["FUZZ_VERBOSE"] != nil
let tmpDir = ProcessInfo.processInfo.environment["FUZZ_TMPDIR"] ?? "/dev/shm"
let inputURL = URL(fileURLWithPath: "\(tmpDir)/safetensors_fuzz.\(getpid()).safetensors")
let rewrittenURL = URL(fileURLWithPath: "\(tmpDir)/safetensors_fuzz.\(getpid()).rewritten.safetensors")

/// Removes this process's files at exit (after a crash they stay, for inspection).
let cleanUp: Void = { atexit { unlink(inputURL.path); unlink(rewrittenURL.path) } }()

/// Writes `bytes` to `url` (created or truncated).
func writeFile(_ bytes: UnsafeBufferPointer<UInt8>, to url: URL) {
    let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    check(fd >= 0, "cannot create \(url.path): \(String(cString: strerror(errno)))")
    var done = 0
    while done < bytes.count {
        let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
        check(n > 0, "cannot write \(url.path): \(String(cString: strerror(errno)))")
        done += n
    }
    close(fd)
}

/// The outcome of a call: its value or its SafeTensorsError (any other error is a bug).
func outcome<T>(_ what: String, _ body: () throws -> T) -> Result<T, SafeTensorsError> {
    do { return .success(try body()) } catch let e as SafeTensorsError {
        check(e.description.contains(inputURL.path) || e.description.contains(rewrittenURL.path),
              "\(what): the error does not name the file: \(e)")
        return .failure(e)
    } catch {
        check(false, "\(what) threw something other than a SafeTensorsError: \(error)")
        fatalError()
    }
}

func error<T>(_ r: Result<T, SafeTensorsError>) -> SafeTensorsError? {
    if case .failure(let e) = r { return e }
    return nil
}

func rawBytes(_ t: Tensor) -> [UInt8] { t.withUnsafeRawBytes { Array($0) } }

/// The bits a file dtype takes per element (the format's table, written out again here).
let bits: [String: Int] = [
    "BOOL": 8, "U8": 8, "I8": 8, "F16": 16, "BF16": 16, "I32": 32, "F32": 32, "I64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "U32": 32, "U64": 64, "C64": 64,
]

/// The invariants of an accepted header of the file `input`.
func checkHeader(_ h: SafeTensorsHeader, _ input: UnsafeRawBufferPointer) {
    check(h.path == inputURL.path, "header path \(h.path)")
    check(h.fileSize == input.count, "file size \(h.fileSize) for \(input.count) bytes")
    var n: UInt64 = 0
    for k in (0..<8).reversed() { n = n << 8 | UInt64(input[k]) }
    check(UInt64(h.headerSize) == n && h.headerSize <= SafeTensors.maxHeaderSize, "header size \(h.headerSize), field \(n)")
    check(Set(h.names).count == h.names.count, "tensor names are not unique as strings: \(h.names)")
    check(!h.names.contains("__metadata__"), "a tensor is called __metadata__")
    var end = 0
    for e in h.entries {
        check(e.dataOffsets.lowerBound == end, "tensor \(e.name) begins at \(e.dataOffsets.lowerBound), not \(end)")
        end = e.dataOffsets.upperBound
        guard let b = bits[e.fileDType] else { check(false, "dtype \(e.fileDType) accepted"); return }
        check(e.shape.allSatisfy { $0 >= 0 }, "shape \(e.shape)")
        var nonzero = 1
        for d in e.shape where d > 0 {
            let (p, o) = nonzero.multipliedReportingOverflow(by: d)
            check(!o, "the sizes of shape \(e.shape) overflow")
            nonzero = p
        }
        let elements = e.shape.contains(0) ? 0 : nonzero
        check(e.elementCount == elements, "element count \(e.elementCount) of \(e.shape)")
        check(e.byteCount * 8 == elements * b, "\(e.name): \(e.byteCount) bytes for \(e.shape) of \(e.fileDType)")
        if let d = e.dtype {
            check(e.isConvertedOnLoad ? (e.fileDType == "F64" && d == .float32) : d.byteSize * 8 == b,
                  "\(e.name): dtype \(d) for \(e.fileDType)")
        }
        check(h[e.name] == e, "subscript of \(e.name)")
    }
    check(end == h.dataByteCount && h.dataStart + end == input.count,
          "the tensors end at \(end), the data section holds \(input.count - h.dataStart)")
    check(h.parameterCount >= 0, "parameter count \(h.parameterCount)")
    check(!h.summary().isEmpty, "empty summary")
    check(Array(h.summaryJSON().utf8).withUnsafeBytes { (try? JSONParser.parse($0)) != nil }, "summaryJSON is not JSON")
}

/// `t` holds the file bytes of `e` (F64: the values converted to Float).
func checkTensor(_ t: Tensor, _ e: SafeTensorsHeader.Entry, _ h: SafeTensorsHeader, _ input: UnsafeRawBufferPointer, _ what: String) {
    check(t.shape == e.shape && t.dtype == e.dtype, "\(what) \(e.name): shape \(t.shape) \(t.dtype), header \(e.shape) \(String(describing: e.dtype))")
    let file = UnsafeRawBufferPointer(rebasing: input[h.dataStart + e.dataOffsets.lowerBound ..< h.dataStart + e.dataOffsets.upperBound])
    if e.isConvertedOnLoad {
        let values = (0..<e.elementCount).map {
            Float(Double(bitPattern: UInt64(littleEndian: file.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))).bitPattern
        }
        let got = t.withUnsafeRawBytes { raw in (0..<e.elementCount).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self) } }
        check(got == values, "\(what) \(e.name): F64 values differ from the file's")
    } else {
        check(rawBytes(t) == Array(file), "\(what) \(e.name): bytes differ from the file's")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let buffer = UnsafeBufferPointer(start: data, count: size)
    let input = UnsafeRawBufferPointer(buffer)
    let path = inputURL.path
    _ = cleanUp

    // From memory.
    let parsed = outcome("parseHeader") { () throws -> SafeTensorsHeader in
        let n = try SafeTensors.headerLength(first8: input, fileSize: size, path: path)
        return try SafeTensors.parseHeader(UnsafeRawBufferPointer(rebasing: input[8..<8 + n]), fileSize: size, path: path)
    }

    // From the file, by each reader.
    writeFile(buffer, to: inputURL)
    let header = outcome("readHeader") { try SafeTensors.readHeader(contentsOf: inputURL) }
    check(header == parsed, "readHeader \(header) differs from parseHeader \(parsed)")
    let mappedResult = outcome("MappedSafeTensors") { try MappedSafeTensors(contentsOf: inputURL) }
    check(mappedResult.map(\.header) == parsed, "MappedSafeTensors \(mappedResult.map(\.header)) differs from parseHeader \(parsed)")
    let readResult = outcome("read") { try SafeTensors.read(contentsOf: inputURL) }

    guard case .success(let h) = parsed, case .success(let mapped) = mappedResult else {
        check(error(readResult) != nil, "read accepted a file the header parser refused")
        if verbose, case .failure(let e) = parsed { print("refused: \(e)") }
        return 0
    }
    checkHeader(h, input)

    // read(contentsOf:) refuses exactly the files with a dtype Lathe cannot load (the first in data order).
    if let bad = h.entries.first(where: { $0.dtype == nil }) {
        check(error(readResult) == .unsupportedDType(path: path, tensor: bad.name, dtype: bad.fileDType),
              "read of a file with \(bad.fileDType): \(readResult)")
    }
    let file: SafeTensorsFile?
    switch readResult {
    case .success(let f): file = f
    case .failure(let e):
        check(h.entries.contains { $0.dtype == nil }, "read refused a file whose header was accepted: \(e)")
        file = nil
    }
    if let file {
        check(file.header == h && file.names == h.names && file.metadata == h.metadata, "read's header differs")
        check(file.tensors.count == h.entries.count, "read made \(file.tensors.count) tensors of \(h.entries.count) names")
        check(file.convertedFromFloat64 == h.entries.filter(\.isConvertedOnLoad).map(\.name), "convertedFromFloat64")
        for e in h.entries {
            guard let t = file[e.name] else { check(false, "read lost tensor \(e.name)"); return 1 }
            checkTensor(t, e, h, input, "read")
        }
    }

    // The mapping, tensor by tensor.
    check(mapped.tensorNames == h.names, "mapped names")
    check(mapped.shape(of: "\u{1}no such tensor\u{1}") == nil, "shape of a missing tensor")
    check(error(outcome("missing") { try mapped.float32Tensor(named: "\u{1}no such tensor\u{1}") }) != nil,
          "float32Tensor of a missing tensor")
    for e in h.entries {
        check(mapped.shape(of: e.name) == e.shape, "mapped shape of \(e.name)")
        let t = outcome("tensor(named:)") { try mapped.tensor(named: e.name) }
        let f = outcome("float32Tensor(named:)") { try mapped.float32Tensor(named: e.name) }
        guard e.dtype != nil else {
            let expected = SafeTensorsError.unsupportedDType(path: path, tensor: e.name, dtype: e.fileDType)
            check(error(t) == expected && error(f) == expected, "mapped \(e.fileDType) tensor \(e.name): \(t), \(f)")
            continue
        }
        guard case .success(let tensor) = t, case .success(let f32) = f else {
            check(false, "mapped tensor \(e.name) of \(e.fileDType): \(t), \(f)")
            return 1
        }
        checkTensor(tensor, e, h, input, "mapped")
        if let file, let r = file[e.name] { check(rawBytes(r) == rawBytes(tensor), "mapped \(e.name) differs from read's") }
        let converted = tensor.to(.float32)
        check(f32.shape == e.shape && f32.dtype == .float32, "float32Tensor \(e.name): \(f32.shape) \(f32.dtype)")
        check(rawBytes(f32) == rawBytes(converted), "float32Tensor \(e.name) differs from tensor(named:).to(.float32)")
    }
    let sharded = outcome("ShardedSafeTensors") { try ShardedSafeTensors([inputURL]) }
    guard case .success(let shards) = sharded else { check(false, "ShardedSafeTensors of one good file: \(sharded)"); return 1 }
    check(shards.tensorNames == h.names, "sharded names")
    for e in h.entries where e.dtype != nil {
        check(shards.shape(of: e.name) == e.shape, "sharded shape of \(e.name)")
        let a = outcome("sharded") { try shards.float32Tensor(named: e.name) }
        let b = outcome("mapped") { try mapped.float32Tensor(named: e.name) }
        check((try? a.get()).map(rawBytes) == (try? b.get()).map(rawBytes), "sharded \(e.name) differs")
    }

    // What read accepts, write writes back.
    if let file {
        let written = outcome("write") { try SafeTensors.write(file.tensors, metadata: file.metadata, to: rewrittenURL) }
        check((try? written.get()) != nil, "write of a file read: \(written)")
        let again = outcome("read again") { try SafeTensors.read(contentsOf: rewrittenURL) }
        guard case .success(let back) = again else { check(false, "reading the rewritten file: \(again)"); return 1 }
        check(back.metadata == file.metadata, "metadata after write and read")
        check(Set(back.names) == Set(file.names), "names after write and read")
        for (name, t) in file.tensors {
            guard let u = back[name] else { check(false, "\(name) lost by write"); return 1 }
            check(u.shape == t.shape && u.dtype == t.dtype && rawBytes(u) == rawBytes(t), "\(name) changed by write and read")
        }
    }
    if verbose { print("accepted: \(h.entries.count) tensors, \(h.metadata.count) metadata, read \(file == nil ? "refused" : "ok")") }
    return 0
}
