import Foundation
import LatheIO
import LatheText

/// A pretrained model with its tokenizer, from a GGUF file or a Hugging Face folder.
public struct PretrainedModel {
    public enum Kind {
        /// The Llama family (Llama, Mistral, Qwen2, Gemma 3).
        case decoder(DecoderModel)
        case gpt2(GPT2Model)
        case encoder(BertModel)
    }
    public var kind: Kind
    public var tokenizer: any Tokenizer
    /// The Jinja chat template the file carries, if any.
    public var chatTemplate: String?
    public var path: String

    /// The Llama-family decoder, or an error saying what the model is instead.
    public func decoder() throws -> DecoderModel {
        switch kind {
        case .decoder(let d): return d
        case .gpt2: throw ModelFileError(file: path, message: "this is a GPT-2, not a Llama-family decoder (use languageModel())")
        case .encoder: throw ModelFileError(file: path, message: "this is an encoder (BERT): it embeds text but does not generate it")
        }
    }

    /// The model that generates text (any decoder family), or an error saying the model is an encoder.
    public func languageModel() throws -> any LanguageModel {
        switch kind {
        case .decoder(let d): return d
        case .gpt2(let g): return g
        case .encoder: throw ModelFileError(file: path, message: "this is an encoder (BERT): it embeds text but does not generate it")
        }
    }

    public func encoder() throws -> BertModel {
        guard case .encoder(let e) = kind else { throw ModelFileError(file: path, message: "this is a decoder: use lathe generate or perplexity; embed needs an encoder (BERT)") }
        return e
    }

    /// Loads `path`: a `.gguf` file, or a folder with `config.json`, the weights and `tokenizer.json`.
    public static func load(_ path: String) throws -> PretrainedModel {
        let url = URL(fileURLWithPath: path)
        if try isFolder(path) {
            let tokenizer = try loadTokenizer(contentsOf: url.appendingPathComponent("tokenizer.json"))
            var template: String?
            if let data = try? Data(contentsOf: url.appendingPathComponent("tokenizer_config.json")),
               let json = try? JSONParser.parse([UInt8](data)) {
                template = json["chat_template"]?.stringValue
            }
            return PretrainedModel(kind: try loadFolderModel(url), tokenizer: tokenizer, chatTemplate: template, path: path)
        }
        let file = try GGUFFile(contentsOf: url)
        return PretrainedModel(kind: try loadGGUFModel(file), tokenizer: try ggufTokenizer(file), chatTemplate: try file.string("tokenizer.chat_template"), path: path)
    }

    /// Loads only the network of `path` (a `.gguf` file or a Hugging Face folder, which then
    /// needs no tokenizer), e.g. to convert it.
    public static func loadModel(_ path: String) throws -> Kind {
        if try isFolder(path) { return try loadFolderModel(URL(fileURLWithPath: path)) }
        return try loadGGUFModel(GGUFFile(contentsOf: URL(fileURLWithPath: path)))
    }

    /// The model of a GGUF file, by its `general.architecture`.
    static func loadGGUFModel(_ file: GGUFFile) throws -> Kind {
        if try file.string("general.architecture") == "gpt2" { return .gpt2(try GPT2Model.load(gguf: file)) }
        return .decoder(try DecoderModel.load(gguf: file))
    }

    /// Whether `path` is an existing folder (false when nothing is there).
    public static func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// Whether `path` is a folder; an error when nothing is there.
    static func isFolder(_ path: String) throws -> Bool {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ModelFileError(file: path, message: "no such file or folder (Tools/fetch-models fetches the public models into ~/.cache/lathe/models)")
        }
        return isDirectory.boolValue
    }

    /// The model of a Hugging Face folder, by its config's `model_type`.
    static func loadFolderModel(_ url: URL) throws -> Kind {
        let configURL = url.appendingPathComponent("config.json")
        let type = (try? JSONParser.parse([UInt8](Data(contentsOf: configURL))))?["model_type"]?.stringValue
        if type == "bert" { return .encoder(try BertModel.load(huggingFaceFolder: url)) }
        if type == "gpt2" { return .gpt2(try GPT2Model.load(huggingFaceFolder: url)) }
        return .decoder(try DecoderModel.load(huggingFaceFolder: url))
    }

    /// The tokenizer a GGUF file describes in its `tokenizer.ggml.*` keys.
    public static func ggufTokenizer(_ file: GGUFFile) throws -> any Tokenizer {
        func bad(_ m: String) -> ModelFileError { ModelFileError(file: file.path, message: m) }
        guard let model = try file.string("tokenizer.ggml.model") else { throw bad("no tokenizer (tokenizer.ggml.model is missing)") }
        guard let tokens = file.value("tokenizer.ggml.tokens")?.arrayValue?.stringValues else { throw bad("tokenizer.ggml.tokens is missing or not strings") }
        let merges = file.value("tokenizer.ggml.merges")?.arrayValue?.stringValues ?? []
        let types = file.value("tokenizer.ggml.token_type")?.arrayValue?.intValues?.map { Int32(truncatingIfNeeded: $0) }
        let scores = file.value("tokenizer.ggml.scores")?.arrayValue?.floatValues
        do {
            return try BPETokenizer(ggufModel: model, pre: try file.string("tokenizer.ggml.pre"), tokens: tokens, merges: merges,
                                    tokenTypes: types, scores: scores,
                                    bos: try file.int("tokenizer.ggml.bos_token_id"), eos: try file.int("tokenizer.ggml.eos_token_id"),
                                    unk: try file.int("tokenizer.ggml.unknown_token_id"), pad: try file.int("tokenizer.ggml.padding_token_id"),
                                    addBOS: try file.bool("tokenizer.ggml.add_bos_token"), addEOS: try file.bool("tokenizer.ggml.add_eos_token"),
                                    addSpacePrefix: try file.bool("tokenizer.ggml.add_space_prefix"), source: file.path)
        } catch let e as TokenizerError {
            throw bad("\(e)")
        }
    }
}
