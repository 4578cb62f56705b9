import ArgumentParser
import Foundation
import Lathe

/// `lathe inspect FILE`: the tensors, totals and metadata of a safetensors or GGUF file (told
/// apart by the GGUF magic), read from the header only (fast on any size). A bad file prints the
/// reason to stderr and exits non-zero.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the tensors (name, type, shape, bytes), totals and metadata of a safetensors or GGUF file."
    )

    @Argument(help: "The .safetensors or .gguf file.") var file: String
    @Flag(help: "Print one JSON object instead of a table.") var json = false

    func run() throws {
        let url = URL(fileURLWithPath: file)
        if GGUFFile.hasMagic(atPath: url.path) {
            let gguf = try GGUFFile(contentsOf: url)
            print(json ? gguf.summaryJSON() : gguf.summary())
        } else {
            let header = try SafeTensors.readHeader(contentsOf: url)
            print(json ? header.summaryJSON() : header.summary())
        }
    }
}
