// libFuzzer target for Lathe's GGUF reader (Sources/LatheIO/GGUF*.swift, GGMLType*.swift): parses
// the input as a GGUF file from memory, and when it is accepted, reads every metadata value through
// the typed accessors, prints both summaries and dequantises every tensor Lathe can convert. Any
// trap (overflow, out-of-range index, failed precondition) or AddressSanitizer report is a bug; a
// GGUFError is the expected outcome for bad input. Not part of the package build: the reader's
// files compile on their own (Foundation only; GGUFFile+Tensor.swift, which needs LatheTensor, is
// left out). Run from the repository root:
//
//   swiftc -sanitize=fuzzer,address -parse-as-library -O -use-ld=lld -module-name GGUFFuzz Tools/fuzz/gguf_fuzz.swift \
//     Sources/LatheIO/GGMLType.swift Sources/LatheIO/GGMLType+Dequantize.swift Sources/LatheIO/GGUFValue.swift \
//     Sources/LatheIO/GGUFError.swift Sources/LatheIO/GGUFFile.swift Sources/LatheIO/GGUFFile+Parse.swift \
//     Sources/LatheIO/GGUFFile+Summary.swift Sources/LatheIO/TextFormat.swift Sources/LatheIO/JSON.swift Sources/LatheIO/MappedFile.swift \
//     -o /tmp/gguf_fuzz
//   mkdir -p /tmp/gguf_corpus && cp Tests/Fixtures/gguf/*.gguf /tmp/gguf_corpus/
//   /tmp/gguf_fuzz -runs=1000000 -max_len=16384 -dict=Tools/fuzz/gguf.dict /tmp/gguf_corpus
//
// (-runs counts executions; -jobs/-workers use more cores, -max_total_time=SECONDS bounds the time. Without
// -use-ld=lld the default gold linker works too but prints "Cannot export local symbol" warnings.)

import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let file: GGUFFile
    do {
        file = try GGUFFile(bytes: bytes, path: "fuzz.gguf")
    } catch {
        precondition(!error.description.isEmpty)
        return 0
    }
    for kv in file.metadata {
        _ = try? file.string(kv.key)
        _ = try? file.int(kv.key)
        _ = try? file.float(kv.key)
        _ = try? file.double(kv.key)
        _ = try? file.bool(kv.key)
        _ = try? file.strings(kv.key)
        _ = try? file.ints(kv.key)
        _ = try? file.floats(kv.key)
        _ = kv.value.formatted(maxElements: 4, maxStringLength: 16)
    }
    precondition(!file.summary().isEmpty)
    precondition((try? JSONParser.parse(file.summaryJSON())) != nil, "summaryJSON is not valid JSON")
    var total = 0
    for t in file.tensors {
        let raw = try! file.tensorData(named: t.name)
        precondition(raw.count == t.byteCount)
        precondition(file.dataOffset + t.offset + t.byteCount <= file.fileSize)
        guard t.type.isDequantizable else { continue }
        let values = try! file.dequantized(named: t.name)
        precondition(values.count == t.elementCount)
        total &+= values.count
    }
    return total < 0 ? 1 : 0
}
