import Foundation
import LatheIO
import LatheTensor

/// GPT-2 from and to files: Hugging Face folders (Conv1D weights `[in, out]`), GGUF files in
/// llama.cpp's layout (`[out, in]`, its tensor names).
extension GPT2Model {
    /// Loads a Hugging Face folder: `config.json` (`model_type` `gpt2`) and `model.safetensors`
    /// (or the shards listed in `model.safetensors.index.json`), read from the mapped files one
    /// tensor at a time.
    public static func load(huggingFaceFolder folder: URL) throws -> GPT2Model {
        let configURL = folder.appendingPathComponent("config.json")
        guard let bytes = try? Data(contentsOf: configURL) else {
            throw ModelFileError(file: configURL.path, message: "cannot read config.json (is \(folder.path) a Hugging Face model folder?)")
        }
        let json: JSONValue
        do { json = try JSONParser.parse([UInt8](bytes)) } catch { throw ModelFileError(file: configURL.path, message: "not valid JSON: \(error)") }
        let config = try GPT2Config.huggingFace(json, file: configURL.path)
        return try GPT2Model(config: config, huggingFaceWeights: try ShardedSafeTensors(try DecoderModel.weightFiles(folder)), file: folder.path)
    }

    /// Loads a GGUF file whose architecture is `gpt2`, dequantising its tensors to float32.
    public static func load(gguf url: URL) throws -> GPT2Model {
        try load(gguf: try GGUFFile(contentsOf: url))
    }

    /// ``load(gguf:)`` from an opened file.
    public static func load(gguf file: GGUFFile) throws -> GPT2Model {
        let config = try GPT2Config.gguf(file)
        var state: [String: Tensor] = [:]
        for info in file.tensors {
            guard let name = huggingFaceName(gguf: info.name) else {
                throw ModelFileError(file: file.path, message: "tensor \(info.name) has no place in a gpt2 model")
            }
            state[name] = try file.tensor(named: info.name)
        }
        return try GPT2Model(config: config, state: state, conv1DLayout: false, file: file.path)
    }

    /// The Hugging Face name of a tensor of a llama.cpp GPT-2 file (its converter's map, reversed).
    static func huggingFaceName(gguf name: String) -> String? {
        let fixed = ["token_embd.weight": "transformer.wte.weight", "position_embd.weight": "transformer.wpe.weight",
                     "output_norm.weight": "transformer.ln_f.weight", "output_norm.bias": "transformer.ln_f.bias", "output.weight": "lm_head.weight"]
        if let n = fixed[name] { return n }
        let parts = name.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0 else { return nil }
        let tail = parts[2].split(separator: ".")
        guard tail.count == 2, tail[1] == "weight" || tail[1] == "bias" else { return nil }
        let modules = ["attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj", "ffn_norm": "ln_2",
                       "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"]
        guard let module = modules[String(tail[0])] else { return nil }
        return "transformer.h.\(layer).\(module).\(tail[1])"
    }

    /// The Hugging Face state dict of the model, as `save_pretrained` writes it: the module's
    /// names, `Conv1D` weights transposed back to `[in, out]`, no `lm_head.weight` when the head
    /// is tied. With ``huggingFaceConfig`` it is a Hugging Face folder's contents.
    public func huggingFaceTensors() -> [(String, Tensor)] {
        let state = stateDict()
        return stateKeys.map { key in
            let t = state[key]!
            let parts = key.split(separator: ".", maxSplits: 3)
            if parts.count == 4, parts[1] == "h", GPT2Model.conv1DWeights.contains(String(parts[3])) { return (key, t.T.contiguous()) }
            return (key, t)
        }
    }

    /// The `config.json` of ``huggingFaceTensors()`` (float32 weights).
    public var huggingFaceConfig: JSONValue { config.huggingFaceJSON() }
}
