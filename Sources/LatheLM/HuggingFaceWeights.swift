import Foundation
import LatheIO
import LatheTensor
import LatheText

/// A model's weights under Hugging Face's names and conventions, read one tensor at a time
/// (for tools that work tensor by tensor, such as merging), with what is needed to write a
/// folder like it: its `config.json` and its tokenizer.
///
/// - a Hugging Face folder: `config.json` and `model.safetensors` or shards (mapped);
/// - a `.safetensors` file (such as Lathe's own): the tensors, no config;
/// - a GGUF file of a decoder: tensors dequantised on request, renamed to Hugging Face's names,
///   Llama's q/k rows put back in rotate-half order and Gemma's baked `+1` taken out of its norms
///   (as ``HuggingFaceWriter`` does); its config as ``DecoderConfig/huggingFaceJSON(dtype:)``.
public struct HuggingFaceWeights: TensorSource {
    public enum Origin: Sendable { case folder, safetensors, gguf }

    public let path: String
    public let origin: Origin
    /// `config.json` (nil for a bare safetensors file).
    public let config: JSONValue?
    private let source: any TensorSource
    /// GGUF: how tensors are brought to Hugging Face's conventions.
    private let ggufFixes: (heads: Int, kvHeads: Int, pairs: Bool, normOffset: Float)?
    private let ggufFile: GGUFFile?

    /// Opens a Hugging Face folder, a `.safetensors` file or a `.gguf` file.
    public static func open(_ path: String) throws -> HuggingFaceWeights {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ModelFileError(file: path, message: "no such file or folder")
        }
        if isDirectory.boolValue {
            let folder = URL(fileURLWithPath: path)
            let configURL = folder.appendingPathComponent("config.json")
            guard let bytes = try? Data(contentsOf: configURL) else {
                throw ModelFileError(file: configURL.path, message: "cannot read config.json (is \(path) a Hugging Face model folder?)")
            }
            let json: JSONValue
            do { json = try JSONParser.parse([UInt8](bytes)) } catch { throw ModelFileError(file: configURL.path, message: "not valid JSON: \(error)") }
            let source = try ShardedSafeTensors(try DecoderModel.weightFiles(folder))
            return HuggingFaceWeights(path: path, origin: .folder, config: json, source: source, ggufFixes: nil, ggufFile: nil)
        }
        if path.lowercased().hasSuffix(".safetensors") {
            let source = try MappedSafeTensors(contentsOf: URL(fileURLWithPath: path))
            return HuggingFaceWeights(path: path, origin: .safetensors, config: nil, source: source, ggufFixes: nil, ggufFile: nil)
        }
        let file = try GGUFFile(contentsOf: URL(fileURLWithPath: path))
        if try file.string("general.architecture") == "gpt2" {
            throw ModelFileError(file: path, message: "GPT-2 GGUF files cannot be read tensor by tensor yet; convert the model to a folder first (lathe convert)")
        }
        let c = try DecoderConfig.gguf(file)
        let source = try GGUFTensorSource(file, gemma: c.architecture == "gemma3", quantized: false)
        let offset: Float = c.architecture == "gemma3" && c.normOffset == 0 ? 1 : 0
        return HuggingFaceWeights(path: path, origin: .gguf, config: c.huggingFaceJSON(), source: source,
                                  ggufFixes: (c.heads, c.kvHeads, c.ropeLayout == .pairs, offset), ggufFile: file)
    }

    public var tensorNames: [String] { source.tensorNames }
    public func shape(of name: String) -> [Int]? { source.shape(of: name) }

    public func float32Tensor(named name: String) throws -> Tensor {
        var t = try source.float32Tensor(named: name)
        guard let fix = ggufFixes else { return t }
        if fix.pairs {
            if name.hasSuffix("self_attn.q_proj.weight") || name.hasSuffix("self_attn.q_proj.bias") {
                t = DecoderModel.pairsToHalves(t, heads: fix.heads)
            } else if name.hasSuffix("self_attn.k_proj.weight") || name.hasSuffix("self_attn.k_proj.bias") {
                t = DecoderModel.pairsToHalves(t, heads: fix.kvHeads)
            }
        }
        if fix.normOffset != 0, name.hasSuffix("norm.weight") { t = t - fix.normOffset }
        return t
    }

    /// The storage dtype of `name` in a folder or safetensors file (nil for GGUF or unknown).
    public func fileDType(of name: String) -> DType? {
        if let m = source as? MappedSafeTensors { return m.header.entries.first { $0.name == name }?.dtype }
        if let s = source as? ShardedSafeTensors {
            for f in s.files { if let e = f.header.entries.first(where: { $0.name == name }) { return e.dtype } }
        }
        return nil
    }

    /// Writes this model's tokenizer into `folder`: a folder's tokenizer files are copied; a GGUF
    /// file's tokenizer is written as `tokenizer.json` and its companions. Returns the files.
    public func writeTokenizer(to folder: URL, warn: (String) -> Void = { _ in }) throws -> [URL] {
        switch origin {
        case .folder:
            return try HuggingFaceWriter.writeTokenizerFiles(source: URL(fileURLWithPath: path), tokenizer: nil, chatTemplate: nil,
                                                             modelMaxLength: nil, to: folder)
        case .safetensors:
            warn("\(path) is a bare safetensors file: no tokenizer files are written")
            return []
        case .gguf:
            let file = ggufFile!
            var tokenizer: (any Tokenizer)?
            do { tokenizer = try PretrainedModel.ggufTokenizer(file) } catch { warn("the tokenizer of \(path) is not written (\(error))") }
            let positions = config?["max_position_embeddings"]?.intValue
            return try HuggingFaceWriter.writeTokenizerFiles(source: nil, tokenizer: tokenizer, chatTemplate: try file.string("tokenizer.chat_template"),
                                                             modelMaxLength: positions, to: folder)
        }
    }
}
