import ArgumentParser
import Foundation
import Lathe

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model (GGUF file or Hugging Face folder) as a Hugging Face folder that transformers loads.",
        discussion: """
        The folder gets config.json, generation_config.json, the weights (model.safetensors, or shards with \
        model.safetensors.index.json) and the source folder's tokenizer files; from a GGUF file, its tokenizer is \
        written as tokenizer.json, tokenizer_config.json (with the chat template) and special_tokens_map.json. GGUF \
        weights are dequantised, and Llama's q/k rows and Gemma's norms are put back in Hugging Face's conventions.

        Example: lathe convert ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf --output smollm2-hf --dtype bf16
        """)

    enum WeightType: String, ExpressibleByArgument, CaseIterable {
        case f32, f16, bf16
        var dtype: DType { switch self { case .f32: .float32; case .f16: .float16; case .bf16: .bfloat16 } }
    }

    @Argument(help: "A GGUF file or a Hugging Face folder.") var model: String
    @Option(help: "The Hugging Face folder to write (created if needed).") var output: String
    @Option(help: "The weights' type in the files: \(WeightType.allCases.map(\.rawValue).joined(separator: ", ")).") var dtype: WeightType = .f32
    @Option(help: "Split the weights into shards of at most this many megabytes (as save_pretrained's max_shard_size).")
    var maxShardMB: Int?

    func run() throws {
        guard !output.lowercased().hasSuffix(".gguf") else {
            throw ValidationError("writing GGUF files is not supported yet; --output names a Hugging Face folder to write")
        }
        if let mb = maxShardMB, mb < 1 { throw ValidationError("--max-shard-mb must be at least 1") }
        var t0 = Timing.now()
        let source = URL(fileURLWithPath: model)
        let kind = try PretrainedModel.loadModel(model)
        var template: String?, tokenizer: (any Tokenizer)?
        if !isFolder(model) {
            let file = try GGUFFile(contentsOf: source)
            template = try file.string("tokenizer.chat_template")
            do {
                tokenizer = try PretrainedModel.ggufTokenizer(file)
            } catch {
                // The weights are still worth writing; the folder then lacks tokenizer.json.
                FileHandle.standardError.write(Data("warning: the tokenizer is not written (\(error))\n".utf8))
            }
        }
        FileHandle.standardError.write(Data(String(format: "loaded %@ in %.1f s\n", model, Timing.now() - t0).utf8))
        t0 = Timing.now()
        let files = try HuggingFaceWriter.write(kind, tokenizerSource: source, tokenizer: tokenizer, chatTemplate: template,
                                                to: URL(fileURLWithPath: output),
                                                options: .init(dtype: dtype.dtype, maxShardBytes: maxShardMB.map { $0 << 20 }))
        for f in files {
            let size = (try? FileManager.default.attributesOfItem(atPath: f.path)[.size] as? Int) ?? 0
            print(String(format: "%@  %.1f MB", f.lastPathComponent, Double(size) / 1e6))
        }
        print(String(format: "wrote %@ in %.1f s", output, Timing.now() - t0))
    }

    func isFolder(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}
