import Foundation
import LatheIO

/// The adapter settings of an mlx-lm `adapter_config.json` (the arguments of the `mlx_lm.lora`
/// run that trained it, as `mlx_lm.utils.save_config` writes them).
///
/// mlx-lm's `LoRALinear` computes `y = W x + scale · (x lora_a) lora_b` with `lora_a` `[in, r]` and
/// `lora_b` `[r, out]`: `scale` is the multiplier itself (not `alpha / r`; a `lora_parameters.alpha`
/// key, which older defaults wrote, is ignored by mlx-lm and here). Its `DoRALinear` scales each
/// output row of that by `m / ‖W + scale · lora_bᵀ lora_aᵀ‖` (row norms), as PEFT's DoRA does. So
/// an mlx-lm adapter is the LoRA of ``LoRAConfig`` with `A = lora_aᵀ`, `B = lora_bᵀ`,
/// `scaling = scale`.
public struct MLXAdapterConfig: Sendable, Equatable {
    /// `fine_tune_type` `dora` (or the older `use_dora: true`).
    public var useDoRA: Bool
    /// `lora_parameters.rank`.
    public var rank: Int
    /// `lora_parameters.scale`: the adapter's multiplier.
    public var scale: Double
    /// `lora_parameters.dropout`.
    public var dropout: Float
    /// `num_layers` (or the older `lora_layers`): the last `n` blocks are adapted; 0 or less: all.
    /// nil when the file has neither key.
    public var numLayers: Int?
    /// `lora_parameters.keys`: module names relative to a block (`self_attn.q_proj`), or to the
    /// model for modules outside the blocks. nil: the mlx-lm version's default set, which has
    /// changed between versions (q and v projections, later every linear layer), so the adapted
    /// layers are read from the weights file instead.
    public var keys: [String]?
    /// `model`: the base model the run trained on (informational).
    public var baseModel: String?

    public init(useDoRA: Bool = false, rank: Int, scale: Double, dropout: Float = 0, numLayers: Int? = nil, keys: [String]? = nil,
                baseModel: String? = nil) {
        (self.useDoRA, self.rank, self.scale, self.dropout, self.numLayers, self.keys, self.baseModel) =
            (useDoRA, rank, scale, dropout, numLayers, keys, baseModel)
    }

    /// Whether a parsed `adapter_config.json` looks like mlx-lm's (it has `lora_parameters` or
    /// `fine_tune_type` and no PEFT `peft_type`).
    public static func looksLikeMLX(_ json: JSONValue) -> Bool {
        json["peft_type"] == nil && (json["lora_parameters"] != nil || json["fine_tune_type"] != nil)
    }

    /// Reads mlx-lm's `adapter_config.json`. The run's other arguments (data, optimizer, steps)
    /// do not change what the adapter computes and are not read. A full fine-tune
    /// (`fine_tune_type: full`) or a missing or malformed `lora_parameters` is an error naming
    /// the key.
    public init(json: JSONValue) throws(LoRAError) {
        func bad(_ m: String) -> LoRAError { LoRAError("adapter_config.json (mlx-lm): " + m) }
        guard json.objectMembers != nil else { throw bad("expected a JSON object, got \(json.kindName)") }
        switch json["fine_tune_type"] {
        case nil, .null?:
            switch json["use_dora"] {
            case nil, .null?: useDoRA = false
            case let v?:
                guard let b = v.boolValue else { throw bad("use_dora must be true or false, got \(v.kindName)") }
                useDoRA = b
            }
        case .string("lora")?: useDoRA = false
        case .string("dora")?: useDoRA = true
        case .string("full")?:
            throw bad("fine_tune_type is full: adapters.safetensors then holds whole fine-tuned layers, not an adapter "
                      + "(fuse them with mlx-lm, or load a full model)")
        case let v?:
            throw bad("fine_tune_type is \(JSONWriter.serialize(v, indent: nil).prefix(40)); Lathe reads lora and dora adapters")
        }
        guard let p = json["lora_parameters"], !p.isNull else { throw bad("lora_parameters is missing") }
        guard p.objectMembers != nil else { throw bad("lora_parameters must be an object, got \(p.kindName)") }
        guard let r = p["rank"]?.intValue else { throw bad("lora_parameters.rank is missing or not an integer") }
        guard r >= 1, r <= 1 << 16 else { throw bad("lora_parameters.rank must be in 1...65536, got \(r)") }
        rank = r
        guard let sv = p["scale"] else {
            throw bad("lora_parameters.scale is missing" + (p["alpha"] != nil ? " (mlx-lm uses scale, the multiplier itself, not alpha)" : ""))
        }
        guard let s = sv.doubleValue, Float(s).isFinite else { throw bad("lora_parameters.scale must be a finite float32 number, got \(sv.kindName)") }
        guard Float(s * Double(r)).isFinite else { throw bad("lora_parameters.scale times the rank must be a finite float32 number (PEFT's lora_alpha)") }
        scale = s
        dropout = 0
        if let v = p["dropout"], !v.isNull {
            guard let d = v.doubleValue, d >= 0, d < 1 else { throw bad("lora_parameters.dropout must be a number in [0, 1)") }
            dropout = Float(d)
        }
        keys = nil
        if let v = p["keys"], !v.isNull {
            guard let a = v.arrayValue else { throw bad("lora_parameters.keys must be a list of module names, got \(v.kindName)") }
            var names: [String] = []
            for item in a {
                guard let s = item.stringValue, !s.isEmpty else { throw bad("lora_parameters.keys must hold non-empty strings") }
                names.append(s)
            }
            guard !names.isEmpty else { throw bad("lora_parameters.keys is an empty list") }
            keys = names
        }
        numLayers = nil
        for key in ["num_layers", "lora_layers"] {
            guard let v = json[key], !v.isNull else { continue }
            guard let n = v.intValue else { throw bad("\(key) must be an integer, got \(v.kindName)") }
            numLayers = n
            break
        }
        baseModel = json["model"]?.stringValue
    }

    /// Whether mlx-lm adapts the module at `path` (a Hugging Face module path,
    /// `model.layers.3.self_attn.q_proj`) of a model with `blocks` blocks: inside a block, its
    /// index is among the last ``numLayers`` and the rest of the path is one of ``keys``;
    /// outside the blocks, the path is one of ``keys``. With no ``keys`` any path passes (the
    /// weights file says which).
    public func allows(_ path: String, blocks: Int) -> Bool {
        let parts = path.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count > 3, parts[0] == "model", parts[1] == "layers", let i = Int(parts[2]) {
            let n = numLayers ?? blocks
            if n > 0, i < blocks - n { return false }
            return keys.map { $0.contains(parts[3...].joined(separator: ".")) } ?? true
        }
        return keys.map { $0.contains(path) } ?? true
    }

    /// The equivalent ``LoRAConfig`` for the adapted module paths `paths`: targets the full
    /// paths, `r` the rank, `lora_alpha = scale · r` (so that `alpha / r` is `scale`).
    public func loraConfig(paths: [String]) -> LoRAConfig {
        LoRAConfig(targets: .names(paths.sorted()), rank: rank, alpha: scale * Double(rank), dropout: dropout, useDoRA: useDoRA,
                   baseModel: baseModel)
    }
}
