import ArgumentParser
import Foundation
import Lathe

/// `lathe inspect FILE.safetensors`: the tensors, totals and metadata of a file, read from its
/// header only (fast on any size). A bad file prints the reason to stderr and exits non-zero.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the tensors (name, dtype, shape, bytes), totals and metadata of a safetensors file."
    )

    @Argument(help: "The .safetensors file.") var file: String
    @Flag(help: "Print one JSON object instead of a table.") var json = false

    func run() throws {
        let header = try SafeTensors.readHeader(contentsOf: URL(fileURLWithPath: file))
        print(json ? header.summaryJSON() : header.summary())
    }
}
