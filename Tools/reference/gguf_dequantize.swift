// Dequantises one tensor of a GGUF file with Lathe's reader and writes it as raw little-endian
// float32 (storage order: ne[0] fastest), reporting time and peak resident memory. Used by
// check_gguf_model.py to compare with gguf-py, and to check that opening a model and dequantising
// one matrix costs about that matrix plus the pages read, not the whole file. A standalone build of
// the reader's sources (no LatheTensor); from the repository root:
//
//   swiftc -O -parse-as-library -module-name GGUFDequantize Tools/reference/gguf_dequantize.swift \
//     Sources/LatheIO/GGMLType.swift Sources/LatheIO/GGMLType+Dequantize.swift Sources/LatheIO/GGUFValue.swift \
//     Sources/LatheIO/GGUFError.swift Sources/LatheIO/GGUFFile.swift Sources/LatheIO/GGUFFile+Parse.swift \
//     Sources/LatheIO/GGUFFile+Summary.swift Sources/LatheIO/TextFormat.swift Sources/LatheIO/JSON.swift \
//     -o /tmp/gguf_dequantize
//   /tmp/gguf_dequantize MODEL.gguf TENSOR [OUT.f32]
//
// Prints one JSON line: tensor, type, ne, elements, file size, open and dequantise times, and peak
// RSS (Linux: VmHWM) at the start, after opening and after dequantising.

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Peak resident set size of this process so far, in bytes: `VmHWM` from /proc/self/status on
/// Linux (getrusage's ru_maxrss there keeps the parent's peak across fork and exec, so a child of
/// a large Python process would report Python's peak), ru_maxrss elsewhere (bytes on macOS).
func peakRSS() -> Int {
    #if os(Linux)
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
    }
    return 0
    #else
    var usage = rusage()
    getrusage(RUSAGE_SELF, &usage)
    return usage.ru_maxrss
    #endif
}

@main
struct GGUFDequantize {
    static func main() throws {
        let args = CommandLine.arguments
        guard args.count == 3 || args.count == 4 else {
            FileHandle.standardError.write(Data("usage: gguf_dequantize MODEL.gguf TENSOR [OUT.f32]\n".utf8))
            exit(2)
        }
        let rssStart = peakRSS()
        let t0 = Date()
        let file = try GGUFFile(contentsOf: URL(fileURLWithPath: args[1]))
        let t1 = Date()
        let rssOpen = peakRSS()
        guard let info = file.tensorInfo(named: args[2]) else { throw GGUFError.tensorNotFound(path: file.path, name: args[2]) }
        let values = try file.dequantized(named: args[2])
        let t2 = Date()
        let rssDequantized = peakRSS()
        if args.count == 4 {
            try values.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: args[3])) }
        }
        print(JSONWriter.object([
            ("tensor", JSONWriter.quoted(info.name)), ("type", JSONWriter.quoted(info.type.name)),
            ("ne", JSONWriter.intArray(info.dimensions)), ("elements", "\(info.elementCount)"),
            ("tensor_bytes", "\(info.byteCount)"), ("file_size", "\(file.fileSize)"),
            ("open_seconds", JSONWriter.number(t1.timeIntervalSince(t0), digits: 4)),
            ("dequantize_seconds", JSONWriter.number(t2.timeIntervalSince(t1), digits: 4)),
            ("peak_rss_start", "\(rssStart)"), ("peak_rss_after_open", "\(rssOpen)"),
            ("peak_rss_after_dequantize", "\(rssDequantized)"),
        ]))
    }
}
