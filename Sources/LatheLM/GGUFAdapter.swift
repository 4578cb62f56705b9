import Foundation
import LatheIO
import LatheNN
import LatheTensor

/// LoRA adapters as llama.cpp's GGUF adapter files (`llama-cli --lora FILE`, written by its
/// `convert_lora_to_gguf.py`), read and written.
///
/// The file's metadata: `general.architecture` (the base's, `llama`), `general.type = adapter`,
/// `adapter.type = lora`, `adapter.lora.alpha` (f32). Each adapted matrix `W` (named as in the base
/// GGUF, `blk.0.attn_q.weight`) has two tensors, `<name>.lora_a` with ggml dimensions `[in, r]`
/// (PEFT's `lora_A` `[r, in]` in row-major order) and `<name>.lora_b`, `[r, out]` (PEFT's
/// `lora_B` `[out, r]`). llama.cpp adds `s · B (A x)` with `s = alpha / r` (`r`: `lora_b`'s
/// `ne[0]`), times the user's `--lora-scaled` factor; alpha 0 means `s = 1`.
///
/// Llama's q and k matrices are stored in llama.cpp's adjacent-pair RoPE row order in a GGUF
/// base, so the rows of their `lora_b` are permuted the same way (``GGUFExport/halvesToPairs``)
/// when written and back when read; Qwen2 and Gemma 3 keep Hugging Face's order.
///
/// DoRA has no place in the format (llama.cpp reads no magnitudes): fuse a DoRA adapter instead.
/// Per-layer scalings that `alpha / r` with one alpha cannot express (rsLoRA, `alpha_pattern`)
/// are folded into `lora_b` when written.
public enum GGUFAdapter {
    /// Writes the LoRA adapters of `model` as a llama.cpp adapter file of element type `type`
    /// (f32, f16 or bf16). `name` becomes `general.name`.
    /// - Returns: the written tensors, in file order.
    /// - Throws: ``LoRAError`` when the model has no adapters or has DoRA adapters, or an adapted
    ///   layer has no tensor in llama.cpp's files of this architecture.
    @discardableResult
    public static func write(_ model: DecoderModel, to url: URL, type: GGMLType = .f32, name: String? = nil) throws -> [GGUFTensorDescriptor] {
        guard [.f32, .f16, .bf16].contains(type) else { throw LoRAError("a llama.cpp adapter is written as f32, f16 or bf16, not \(type)") }
        let layers = model.loraLayers
        guard !layers.isEmpty else { throw LoRAError("the model has no LoRA adapters to write") }
        if let dora = layers.first(where: { $0.1.loraMagnitudeVector != nil }) {
            throw LoRAError("\(dora.0) is a DoRA adapter: llama.cpp's LoRA files have no DoRA magnitudes; fuse it into the model instead (lathe fuse)")
        }
        let c = model.config
        // One alpha for the file: the first layer's scaling times its rank; layers whose own
        // scaling differs from alpha / r get the ratio folded into lora_b.
        var alpha = layers[0].1.scaling * Float(layers[0].1.rank)
        if alpha == 0 { alpha = Float(layers[0].1.rank) }
        let peft = PEFTAdapter.tensors(of: model)
        var plan: [(name: String, shape: [Int], values: [Float])] = []
        for (path, layer) in layers {
            guard let gguf = GGUFExport.ggufName(huggingFace: path + ".weight") else {
                throw LoRAError("the adapted layer \(path) has no tensor in llama.cpp's \(c.architecture) files")
            }
            if gguf == "output.weight", c.tieWordEmbeddings {
                throw LoRAError("the adapter changes lm_head, which this model ties to its embedding: llama.cpp's file has no output.weight to adapt")
            }
            guard let a = peft[PEFTAdapter.prefix + path + ".lora_A.weight"], let b = peft[PEFTAdapter.prefix + path + ".lora_B.weight"] else {
                throw LoRAError("\(path): the adapter's tensors are missing")
            }
            var bValues = b.contiguous().scalars
            let factor = layer.scaling / (alpha / Float(layer.rank))
            if factor != 1 { bValues = bValues.map { $0 * factor } }
            if c.architecture == "llama" {
                if path.hasSuffix("self_attn.q_proj") {
                    bValues = try GGUFExport.halvesToPairs(bValues, rows: b.shape[0], heads: c.heads, name: path)
                } else if path.hasSuffix("self_attn.k_proj") {
                    bValues = try GGUFExport.halvesToPairs(bValues, rows: b.shape[0], heads: c.kvHeads, name: path)
                }
            }
            plan.append((gguf + ".lora_a", a.shape, a.contiguous().scalars))
            plan.append((gguf + ".lora_b", b.shape, bValues))
        }
        // Block by block, as llama.cpp's converter orders them.
        func key(_ n: String) -> (Int, String) {
            let parts = n.split(separator: ".")
            return parts.count > 1 && parts[0] == "blk" ? (Int(parts[1]) ?? Int.max, n) : (Int.max, n)
        }
        plan.sort { key($0.name) < key($1.name) }
        var metadata = [GGUFKeyValue(key: "general.architecture", value: .string(c.architecture)),
                        GGUFKeyValue(key: "general.type", value: .string("adapter"))]
        if let name { metadata.append(GGUFKeyValue(key: "general.name", value: .string(name))) }
        metadata += [GGUFKeyValue(key: "adapter.type", value: .string("lora")),
                     GGUFKeyValue(key: "adapter.lora.alpha", value: .float32(alpha))]
        let descriptors = plan.map { GGUFTensorDescriptor(name: $0.name, shape: $0.shape, type: type) }
        try GGUFWriter.write(to: url, metadata: metadata, tensors: descriptors) { i, buffer in
            plan[i].values.withUnsafeBufferPointer { type.quantize($0, rowLength: plan[i].shape.last ?? 1, into: buffer) }
        }
        return descriptors
    }

    /// Loads the llama.cpp adapter file at `url` into `model` as the equivalent LoRA adapter
    /// (targets: the adapted layers' full paths; `r` and `lora_alpha` so that each layer's
    /// scaling is llama.cpp's `alpha / r`). The model is changed only when the whole adapter fits.
    /// - Returns: the equivalent PEFT config.
    @discardableResult
    public static func load(file url: URL, into model: DecoderModel) throws -> LoRAConfig {
        let path = url.path
        func bad(_ m: String) -> LoRAError { LoRAError("\(path): " + m) }
        let file: GGUFFile
        do { file = try GGUFFile(contentsOf: url) } catch { throw bad("\(error)") }
        let c = model.config
        let (config, tensors): (LoRAConfig, [String: Tensor])
        do { (config, tensors) = try peftEquivalent(file, config: c) } catch let e as GGUFError { throw bad("\(e)") }
        try PEFTAdapter.loadWhole(config: config, tensors: tensors, into: model, file: path)
        return config
    }

    /// The PEFT config and tensors (Hugging Face row order) of the adapter file `file` for a
    /// model of config `c`.
    static func peftEquivalent(_ file: GGUFFile, config c: DecoderConfig) throws -> (LoRAConfig, [String: Tensor]) {
        func bad(_ m: String) -> LoRAError { LoRAError("\(file.path): " + m) }
        let type = try file.string("general.type")
        guard type == "adapter" else {
            throw bad("general.type is \(type.map { "'\($0)'" } ?? "missing"), not 'adapter': a GGUF model is given as the model, "
                      + "a llama.cpp LoRA adapter (general.type adapter) as --adapter")
        }
        let kind = try file.string("adapter.type")
        guard kind == "lora" else { throw bad("adapter.type is \(kind.map { "'\($0)'" } ?? "missing"); Lathe reads LoRA adapters (lora)") }
        if file.value("adapter.alora.invocation_tokens") != nil {
            throw bad("an activated LoRA (adapter.alora.invocation_tokens) applies only after its invocation tokens, which Lathe does not do")
        }
        let arch = try file.string("general.architecture")
        guard arch == c.architecture else {
            throw bad("the adapter is for architecture \(arch.map { "'\($0)'" } ?? "(none)"), the model is '\(c.architecture)'")
        }
        let alpha = try file.float("adapter.lora.alpha") ?? 0
        guard alpha.isFinite else { throw bad("adapter.lora.alpha is \(alpha)") }
        var pairs: [String: (a: GGUFTensorInfo?, b: GGUFTensorInfo?)] = [:]
        for info in file.tensors {
            if info.name.hasSuffix(".lora_a") {
                pairs[String(info.name.dropLast(7)), default: (nil, nil)].a = info
            } else if info.name.hasSuffix(".lora_b") {
                pairs[String(info.name.dropLast(7)), default: (nil, nil)].b = info
            } else if info.name.hasSuffix("_norm.weight") {
                throw bad("\(info.name) replaces a norm weight (mergekit-extract-lora writes these), which Lathe does not apply (llama.cpp skips it)")
            } else {
                throw bad("tensor '\(info.name)' is neither a .lora_a nor a .lora_b tensor")
            }
        }
        guard !pairs.isEmpty else { throw bad("the file has no LoRA tensors") }
        var tensors: [String: Tensor] = [:], ranks: [String: Int] = [:]
        for (base, pair) in pairs.sorted(by: { $0.key < $1.key }) {
            guard let a = pair.a, let b = pair.b else { throw bad("\(base) has \(pair.a == nil ? "no lora_a" : "no lora_b")") }
            if base == "token_embd.weight" { throw bad("the adapter changes token_embd (the embedding), which Lathe's adapters do not adapt") }
            guard let hf = DecoderModel.huggingFaceName(base, gemma: c.architecture == "gemma3"), hf.hasSuffix(".weight") else {
                throw bad("\(base) is not a matrix of a \(c.architecture) model")
            }
            let layerPath = String(hf.dropLast(".weight".count))
            // ggml dimensions: lora_a [in, r], lora_b [r, out].
            guard a.dimensions.count == 2, b.dimensions.count == 2, a.dimensions[1] == b.dimensions[0], a.dimensions[1] >= 1 else {
                throw bad("\(base): lora_a \(a.dimensions) and lora_b \(b.dimensions) (ggml order) are not [in, r] and [r, out]")
            }
            let r = a.dimensions[1], out = b.dimensions[1]
            var bt = try file.tensor(named: b.name)
            if c.architecture == "llama" {
                let heads = layerPath.hasSuffix("self_attn.q_proj") ? c.heads : layerPath.hasSuffix("self_attn.k_proj") ? c.kvHeads : 0
                if heads > 0 {
                    guard out == heads * c.headDim, c.headDim % 2 == 0 else {
                        throw bad("\(b.name) has \(out) rows; the model's \(layerPath) has \(heads * c.headDim)")
                    }
                    bt = DecoderModel.pairsToHalves(bt, heads: heads)
                }
            }
            let at = try file.tensor(named: a.name)
            guard at.scalars.allSatisfy(\.isFinite), bt.scalars.allSatisfy(\.isFinite) else { throw bad("\(base): NaN or infinite values") }
            tensors[PEFTAdapter.prefix + layerPath + ".lora_A.weight"] = at
            tensors[PEFTAdapter.prefix + layerPath + ".lora_B.weight"] = bt
            ranks[layerPath] = r
        }
        // The most common rank is r; others by rank_pattern. alpha 0 is llama.cpp's scale 1: alpha = r per layer.
        var counts: [Int: Int] = [:]
        for r in ranks.values { counts[r, default: 0] += 1 }
        let rank = counts.max { ($0.value, -$0.key) < ($1.value, -$1.key) }!.key
        var config = LoRAConfig(targets: .names(ranks.keys.sorted()), rank: rank, alpha: alpha == 0 ? Double(rank) : Double(alpha),
                                baseModel: try file.string("general.name"))
        for (path, r) in ranks.sorted(by: { $0.key < $1.key }) where r != rank {
            let pattern = NSRegularExpression.escapedPattern(for: path)
            config.rankPattern.append(.init(pattern, r))
            if alpha == 0 { config.alphaPattern.append(.init(pattern, Double(r))) }
        }
        do { try config.validate() } catch { throw bad(error.message) }
        return (config, tensors)
    }
}
