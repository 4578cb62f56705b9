import Foundation
import LatheIO
import LatheTensor

/// LoRA and DoRA adapters in mlx-lm's folder format (what `mlx_lm.lora --train` writes):
/// `adapter_config.json` (``MLXAdapterConfig``) and `adapters.safetensors`, tensors named by
/// module path, `model.layers.N.self_attn.q_proj.lora_a` `[in, r]`, `...lora_b` `[r, out]` and,
/// for DoRA, `...m` `[out]`.
///
/// They load as the equivalent PEFT adapter (``PEFTAdapter``): `lora_A = lora_aᵀ`,
/// `lora_B = lora_bᵀ`, magnitude `m`, `scaling = scale`, rows of `lora_B` in Hugging Face's order
/// (mlx-lm's models keep Hugging Face's weights as they are). The adapted layers are the ones
/// the weights file has; each must be one the config allows (`num_layers`, `lora_parameters.keys`).
public enum MLXAdapter {
    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapters.safetensors"

    /// Whether `folder` holds an mlx-lm adapter: `adapters.safetensors` and no PEFT weights file.
    public static func isAdapterFolder(_ folder: URL) -> Bool {
        let fm = FileManager.default
        return fm.fileExists(atPath: folder.appendingPathComponent(weightsFile).path)
            && !fm.fileExists(atPath: folder.appendingPathComponent(PEFTAdapter.weightsFile).path)
    }

    /// Reads a folder's `adapter_config.json`.
    public static func readConfig(folder: URL) throws -> MLXAdapterConfig {
        let url = folder.appendingPathComponent(configFile)
        guard let data = try? Data(contentsOf: url) else { throw LoRAError("cannot read \(url.path) (is \(folder.path) an mlx-lm adapter folder?)") }
        let json: JSONValue
        do { json = try JSONParser.parse([UInt8](data)) } catch { throw LoRAError("\(url.path): not valid JSON: \(error)") }
        if json["peft_type"] != nil {
            throw LoRAError("\(url.path) is PEFT's (peft_type), but the folder has \(weightsFile), mlx-lm's weights file, and no \(PEFTAdapter.weightsFile)")
        }
        do { return try MLXAdapterConfig(json: json) } catch { throw LoRAError("\(url.path): \(error.message.replacingOccurrences(of: "adapter_config.json ", with: ""))") }
    }

    /// The PEFT config and tensors (PEFT's names and shapes, Hugging Face row order) of an
    /// mlx-lm adapter whose tensors are `tensors`, for a model with `blocks` blocks.
    public static func peftEquivalent(config: MLXAdapterConfig, tensors: some TensorSource, blocks: Int,
                                      file: String = weightsFile) throws -> (LoRAConfig, [String: Tensor]) {
        var paths = Set<String>()
        var out: [String: Tensor] = [:]
        for name in tensors.tensorNames.sorted() {
            guard let dot = name.lastIndex(of: ".") else { throw LoRAError("\(file): tensor '\(name)' is not an adapter tensor (.lora_a, .lora_b, .m)") }
            let path = String(name[..<dot]), leaf = name[name.index(after: dot)...]
            guard let shape = tensors.shape(of: name) else { continue }
            let peftName: String
            switch leaf {
            case "lora_a", "lora_b":
                guard shape.count == 2 else {
                    throw LoRAError("\(file): \(name) has shape \(shape); Lathe reads 2-D lora_a/lora_b (mlx-lm's mixture-of-experts adapters are not supported)")
                }
                peftName = PEFTAdapter.prefix + path + (leaf == "lora_a" ? ".lora_A.weight" : ".lora_B.weight")
                out[peftName] = try tensors.float32Tensor(named: name).transposed(0, 1).contiguous()
            case "m":
                guard config.useDoRA else { throw LoRAError("\(file): \(name) is a DoRA magnitude, but fine_tune_type is not dora") }
                guard shape.count == 1 else { throw LoRAError("\(file): \(name) has shape \(shape); a DoRA magnitude is 1-D") }
                peftName = PEFTAdapter.prefix + path + ".lora_magnitude_vector"
                out[peftName] = try tensors.float32Tensor(named: name)
            default:
                throw LoRAError("\(file): tensor '\(name)' is not an adapter tensor (.lora_a, .lora_b, .m): "
                                + "mlx-lm adapters with other trained parameters are not supported")
            }
            guard config.allows(path, blocks: blocks) else {
                throw LoRAError("\(file): \(name) adapts a layer that adapter_config.json excludes (num_layers \(config.numLayers.map(String.init) ?? "-"), "
                                + "keys \(config.keys?.joined(separator: ", ") ?? "default"))")
            }
            paths.insert(path)
        }
        guard !paths.isEmpty else { throw LoRAError("\(file) holds no adapter tensors") }
        return (config.loraConfig(paths: Array(paths)), out)
    }

    /// Loads the mlx-lm adapter folder `folder` into `model` (as ``PEFTAdapter/load(folder:into:outputLayer:)``
    /// does a PEFT folder; the model is changed only when the whole adapter fits).
    /// - Returns: the equivalent PEFT config.
    @discardableResult
    public static func load(folder: URL, into model: Module, outputLayer: String? = "lm_head") throws -> LoRAConfig {
        let config = try readConfig(folder: folder)
        let url = folder.appendingPathComponent(weightsFile)
        guard FileManager.default.fileExists(atPath: url.path) else { throw LoRAError("\(folder.path) has no \(weightsFile)") }
        let file = try MappedSafeTensors(contentsOf: url)
        let (lora, tensors) = try peftEquivalent(config: config, tensors: file, blocks: blockCount(model), file: url.path)
        try PEFTAdapter.loadWhole(config: lora, tensors: tensors, into: model, outputLayer: outputLayer, file: url.path)
        return lora
    }

    /// The number of `model.layers.N` blocks of `model` (1 + the largest N).
    static func blockCount(_ model: Module) -> Int {
        var count = 0
        for (path, _) in model.namedModules {
            let parts = path.split(separator: ".", maxSplits: 3)
            if parts.count >= 3, parts[0] == "model", parts[1] == "layers", let i = Int(parts[2]) { count = Swift.max(count, i + 1) }
        }
        return count
    }
}
