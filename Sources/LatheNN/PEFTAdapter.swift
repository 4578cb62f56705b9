import Foundation
import LatheIO
import LatheTensor

/// LoRA and DoRA adapters in PEFT's folder format: `adapter_config.json` (``LoRAConfig/peft(_:)``)
/// and `adapter_model.safetensors`, tensors named
/// `base_model.model.<module path>.lora_A.weight` `[r, in]`, `...lora_B.weight` `[out, r]` and, for
/// DoRA, `...lora_magnitude_vector` `[out]` (no `.weight`, as PEFT saves it).
///
/// Module paths are those of Hugging Face's model classes (`model.layers.0.self_attn.q_proj`),
/// which Lathe's decoders use too, so a folder PEFT wrote loads here and one written here loads in
/// PEFT (`PeftModel.from_pretrained`).
public enum PEFTAdapter {
    /// Rows of `t` (`[rows]` or `[rows, ...]`) moved from Hugging Face's order to a layer's stored
    /// order (`toStored`) or back, by `order` (Hugging Face row `i` is stored at row `order[i]`).
    static func reordered(_ t: Tensor, _ order: [Int], toStored: Bool) -> Tensor {
        let rows = t.shape[0], width = t.count / Swift.max(rows, 1), v = t.contiguous().scalars
        precondition(order.count == rows, "PEFTAdapter: a row order of \(order.count) for \(rows) rows")
        var out = v
        for (i, stored) in order.enumerated() {
            let (from, to) = toStored ? (i, stored) : (stored, i)
            for e in 0..<width { out[to * width + e] = v[from * width + e] }
        }
        return Tensor(out, shape: t.shape)
    }

    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"
    /// The prefix PEFT's `PeftModel` puts before the wrapped model's module paths.
    public static let prefix = "base_model.model."

    /// Reads a folder's `adapter_config.json`.
    public static func readConfig(folder: URL) throws -> LoRAConfig {
        let url = folder.appendingPathComponent(configFile)
        guard let data = try? Data(contentsOf: url) else {
            throw LoRAError("cannot read \(url.path) (is \(folder.path) a PEFT adapter folder?)")
        }
        let json: JSONValue
        do { json = try JSONParser.parse([UInt8](data)) } catch { throw LoRAError("\(url.path): not valid JSON: \(error)") }
        do { return try LoRAConfig.peft(json) } catch { throw LoRAError("\(url.path): \(error.message.replacingOccurrences(of: "adapter_config.json: ", with: ""))") }
    }

    /// Wraps the layers of `model` that the folder's config targets and loads the adapter's
    /// weights into them. Every tensor of the file must belong to an adapted layer and have the
    /// shape its config implies, and every adapted layer must get all of its tensors; otherwise
    /// the error names the tensors. The model is changed only when the whole adapter fits.
    /// - Returns: the config read.
    @discardableResult
    public static func load(folder: URL, into model: Module, outputLayer: String? = "lm_head") throws -> LoRAConfig {
        let config = try readConfig(folder: folder)
        let url = folder.appendingPathComponent(weightsFile)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw LoRAError("\(folder.path) has no \(weightsFile) (adapter_model.bin, PyTorch's pickle format, is not read)")
        }
        let file = try MappedSafeTensors(contentsOf: url)
        try loadWhole(config: config, tensors: file, into: model, outputLayer: outputLayer, file: url.path)
        return config
    }

    /// ``load(config:tensors:into:outputLayer:file:)``, leaving the model as it was when the
    /// adapter does not fit.
    public static func loadWhole(config: LoRAConfig, tensors: some TensorSource, into model: Module, outputLayer: String? = "lm_head",
                                 file: String) throws {
        let snapshot = model.snapshot(), trainable = model.parameters.map { ($0, $0.requiresGrad) }
        do {
            try load(config: config, tensors: tensors, into: model, outputLayer: outputLayer, file: file)
        } catch {
            model.restore(snapshot)
            for (p, flag) in trainable where p.requiresGrad != flag { p.requiresGrad = flag }
            throw error
        }
    }

    /// Applies `config` to `model` and fills the adapters from `tensors` (PEFT names).
    public static func load(config: LoRAConfig, tensors: some TensorSource, into model: Module, outputLayer: String? = "lm_head",
                            file: String = "adapter") throws {
        let paths = try model.addLoRA(config, outputLayer: outputLayer, initialization: .zeros)
        var expected: [String: (Parameter, [Int], order: [Int]?)] = [:]
        let rowOrder = model as? AdapterRowOrder
        for path in paths {
            guard let layer = model.module(at: path) as? LoRALinear else { continue }
            let (r, input, output) = (layer.rank, layer.loraA.weight.value.shape[1], layer.loraB.weight.value.shape[0])
            let order = rowOrder?.adapterRowOrder(forLayer: path)
            expected[prefix + path + ".lora_A.weight"] = (layer.loraA.weight, [r, input], nil)
            expected[prefix + path + ".lora_B.weight"] = (layer.loraB.weight, [output, r], order)
            if let m = layer.loraMagnitudeVector { expected[prefix + path + ".lora_magnitude_vector"] = (m, [output], order) }
        }
        let names = Set(tensors.tensorNames)
        let unexpected = names.subtracting(expected.keys).sorted()
        if !unexpected.isEmpty {
            throw LoRAError("\(file): \(unexpected.count) tensor(s) belong to no layer the config adapts in this model: "
                            + unexpected.prefix(4).joined(separator: ", ") + (unexpected.count > 4 ? ", ..." : "")
                            + " (is it an adapter for another model, or an unsupported PEFT method?)")
        }
        let missing = Set(expected.keys).subtracting(names).sorted()
        if !missing.isEmpty {
            throw LoRAError("\(file): \(missing.count) tensor(s) missing for the layers the config adapts: "
                            + missing.prefix(4).joined(separator: ", ") + (missing.count > 4 ? ", ..." : ""))
        }
        for (name, (parameter, shape, order)) in expected.sorted(by: { $0.key < $1.key }) {
            let found = tensors.shape(of: name)
            guard found == shape else {
                throw LoRAError("\(file): \(name) has shape \(found ?? []), the config and the base layer imply \(shape) (r from r or rank_pattern)")
            }
            let t = try tensors.float32Tensor(named: name)
            guard t.scalars.allSatisfy(\.isFinite) else { throw LoRAError("\(file): \(name) holds NaN or infinite values") }
            parameter.value = order.map { reordered(t, $0, toStored: true) } ?? t.contiguous()
        }
    }

    /// The adapter tensors of `model` under PEFT's names, rows in Hugging Face's order (see
    /// ``AdapterRowOrder``).
    public static func tensors(of model: Module) -> [String: Tensor] {
        let rowOrder = model as? AdapterRowOrder
        return Dictionary(uniqueKeysWithValues: model.adapterState.map { key, value in
            let path = key.hasSuffix(".lora_magnitude_vector") ? String(key.dropLast(".lora_magnitude_vector".count))
                : key.hasSuffix(".lora_B.weight") ? String(key.dropLast(".lora_B.weight".count)) : nil
            let order = path.flatMap { rowOrder?.adapterRowOrder(forLayer: $0) }
            return (prefix + key, order.map { reordered(value, $0, toStored: false) } ?? value)
        })
    }

    /// Writes `config` and the adapters of `model` as a PEFT folder (created if needed; the two
    /// files are replaced atomically). Throws when the model has no adapters.
    public static func save(_ model: Module, config: LoRAConfig, to folder: URL) throws {
        let tensors = tensors(of: model)
        guard !tensors.isEmpty else { throw LoRAError("the model has no LoRA adapters to save") }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: folder.appendingPathComponent(weightsFile))
        try AtomicFile.write(JSONWriter.serialize(config.peftJSON()) + "\n", to: folder.appendingPathComponent(configFile))
    }
}

/// A model some of whose layers store their output rows in another order than the Hugging Face
/// model they come from (Llama's q and k projections read from GGUF keep llama.cpp's
/// adjacent-pair RoPE order). ``PEFTAdapter`` moves the rows of `lora_B` and of DoRA's magnitude
/// when it loads and saves, so that adapter folders always hold Hugging Face's order, whatever
/// file the base came from.
public protocol AdapterRowOrder: Module {
    /// For the layer at `path`: Hugging Face's output row `i` is stored at row `order[i]`; nil
    /// when the orders agree.
    func adapterRowOrder(forLayer path: String) -> [Int]?
}
