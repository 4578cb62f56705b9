// The file types Lathe writes and the per-tensor type rules of llama.cpp's llama-quantize
// (`llama_tensor_get_type` and `tensor_allows_quantization` in llama.cpp's src/llama-quant.cpp).

/// A GGUF file's main type: llama.cpp's `llama_ftype`, stored as `general.file_type`. The
/// `_M`/`_S` mixtures give some tensors more bits (see ``GGUFTypeRules``).
public enum GGUFFileType: String, CaseIterable, Sendable {
    case f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1
    case q4_K_S = "q4_k_s", q4_K_M = "q4_k_m", q5_K_S = "q5_k_s", q5_K_M = "q5_k_m", q6_K = "q6_k"

    /// `llama_ftype`'s value (`general.file_type`).
    public var id: UInt32 {
        switch self {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q4_1: 3
        case .q8_0: 7
        case .q5_0: 8
        case .q5_1: 9
        case .q4_K_S: 14
        case .q4_K_M: 15
        case .q5_K_S: 16
        case .q5_K_M: 17
        case .q6_K: 18
        case .bf16: 32
        }
    }

    /// llama-quantize's name (`Q4_K_M`, `F16`, ...).
    public var name: String { rawValue.uppercased() }

    /// The type of the tensors no rule gives another (`llama_ftype_get_default_type`).
    public var defaultType: GGMLType {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        case .q8_0: .q8_0
        case .q4_0: .q4_0
        case .q4_1: .q4_1
        case .q5_0: .q5_0
        case .q5_1: .q5_1
        case .q4_K_S, .q4_K_M: .q4_K
        case .q5_K_S, .q5_K_M: .q5_K
        case .q6_K: .q6_K
        }
    }

    /// The file type called `name` (`q4_0`, `Q4_K_M`, any case).
    public init?(name: String) { self.init(rawValue: name.lowercased()) }

    /// The names `init(name:)` accepts, in the order of this enum.
    public static var names: [String] { allCases.map(\.rawValue) }
}

/// How each tensor's type is chosen when a model is written as GGUF, following llama.cpp's
/// `llama-quantize` (llama.cpp src/llama-quant.cpp, `llama_tensor_get_type`) for the file types
/// Lathe writes:
///
/// 1. Only tensors of 2 or more dimensions whose name ends in `weight` are converted, and not
///    norms (`_norm.weight`), positional embeddings (`position_embd`, `token_types`), MoE
///    routers (`ffn_gate_inp`) or SSM convolutions: the others keep their type (from a Hugging
///    Face folder they are F32, as llama.cpp's converter writes them).
/// 2. F32, F16 and BF16 files: every converted tensor gets that type.
/// 3. Quantised files (unless ``pure``): the output projection, or the token embedding when the
///    model has none (a tied head), gets Q6_K (Q8_0 files keep Q8_0); by rule 4 that is Q8_0
///    when its rows are not a multiple of 256. The untied token embedding keeps the file's type. Q4_K_M and Q5_K_M give Q6_K to `attn_v` and
///    `ffn_down` of the layers `use_more_bits` picks (the first and last eighth of the layers and
///    every third in between: `i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2`); Q4_K_S gives Q5_K to
///    the first four `attn_v` and to `ffn_down` of the first eighth of the layers; fused `attn_qkv`
///    gets Q5_K (Q4_K_M) or Q6_K (Q5_K_M).
/// 4. A type whose blocks do not divide the rows falls back: Q4_K → Q5_0, Q5_K → Q5_1,
///    Q6_K → Q8_0, and to F16 if that does not divide them either (32-element types go
///    straight to F16).
/// 5. ``outputType`` and ``tokenEmbeddingType`` override rule 3 for those tensors, as
///    llama-quantize's `--output-tensor-type` and `--token-embedding-type` do (without the
///    fallback of rule 4: an override that does not divide the rows is an error).
///
/// A tensor that already has its chosen type is copied as it is (no re-quantisation).
public struct GGUFTypeRules: Sendable, Equatable {
    public var fileType: GGUFFileType
    /// Every converted tensor in ``GGUFFileType/defaultType`` (llama-quantize's `--pure`), with
    /// only the fallback of rule 4.
    public var pure: Bool
    public var outputType: GGMLType?
    public var tokenEmbeddingType: GGMLType?

    public init(fileType: GGUFFileType, pure: Bool = false, outputType: GGMLType? = nil, tokenEmbeddingType: GGMLType? = nil) {
        (self.fileType, self.pure, self.outputType, self.tokenEmbeddingType) = (fileType, pure, outputType, tokenEmbeddingType)
    }

    /// One tensor as the rules see it.
    public struct Tensor: Sendable, Equatable {
        public var name: String
        /// GGML order (`ne[0]` first).
        public var dimensions: [Int]
        /// Its type in the source (F32 for a Hugging Face folder's tensors).
        public var type: GGMLType
        public init(name: String, dimensions: [Int], type: GGMLType) {
            (self.name, self.dimensions, self.type) = (name, dimensions, type)
        }
    }

    /// Whether llama-quantize converts the tensor at all (rule 1).
    public static func allowsQuantization(name: String, dimensions: [Int]) -> Bool {
        guard dimensions.count >= 2, name.hasSuffix("weight") else { return false }
        let kept = ["_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d", "shortconv.conv.weight", "altup", "laurel",
                    "per_layer_model_proj", "attn_rel_b.weight", "time_mix_", ".position_embd", ".rel_pos", ".patch_embd"]
        if kept.contains(where: { name.contains($0) }) { return false }
        return name != "position_embd.weight" && name != "token_types.weight"
    }

    /// The type of each of `tensors` (in file order). `layers`: the model's block count
    /// (`{arch}.block_count`), for the layer rules; nil counts the `ffn_down` tensors.
    /// Throws when an override does not fit a tensor's rows.
    public func types(for tensors: [Tensor], layers: Int? = nil) throws(GGUFError) -> [GGMLType] {
        let tied = !tensors.contains { $0.name == "output.weight" }
        let layerCount = layers ?? tensors.filter { $0.name.contains("ffn_down") }.count
        // llama-quantize counts the attention-v tensors in its own order: by layer, then by name.
        let attentionVNames = tensors.map(\.name).filter(Self.isAttentionV)
            .sorted { (Self.layer($0) ?? -1, $0) < (Self.layer($1) ?? -1, $1) }
        let attentionVRank = Dictionary(uniqueKeysWithValues: attentionVNames.enumerated().map { ($1, $0) })
        let attentionV = attentionVNames.count
        return try tensors.map { (t: Tensor) throws(GGUFError) -> GGMLType in
            let iAttentionV = attentionVRank[t.name] ?? 0
            guard Self.allowsQuantization(name: t.name, dimensions: t.dimensions) else { return t.type }
            let isOutput = t.name == "output.weight", isEmbedding = t.name == "token_embd.weight"
            if isEmbedding, let override = tokenEmbeddingType { return try checked(override, t) }
            if isOutput, let override = outputType { return try checked(override, t) }
            var type = fileType.defaultType
            guard type.isBlockQuantized else { return type }
            if !pure {
                type = ruleType(t, tied: tied, attentionV: attentionV, iAttentionV: iAttentionV, layers: layerCount)
            }
            return Self.fallback(type, rowLength: t.dimensions[0])
        }
    }

    private func checked(_ type: GGMLType, _ t: Tensor) throws(GGUFError) -> GGMLType {
        guard type.isQuantizable else {
            throw .unwritable(path: t.name, reason: "Lathe does not write \(type.name) (it writes \(GGMLType.quantizable.map(\.name).joined(separator: ", ")))")
        }
        guard t.dimensions[0] % type.blockSize == 0 else {
            throw .unwritable(path: t.name, reason: "rows of \(t.dimensions[0]) are not whole \(type.name) blocks of \(type.blockSize)")
        }
        return type
    }

    static func isAttentionV(_ name: String) -> Bool {
        name.contains("attn_v.weight") || name.contains("attn_qkv.weight") || name.contains("attn_kv_b.weight")
    }

    /// llama-quantize's `use_more_bits`.
    static func useMoreBits(_ i: Int, _ n: Int) -> Bool { i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2 }

    /// The layer number of `blk.N.*`.
    static func layer(_ name: String) -> Int? {
        let parts = name.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "blk" else { return nil }
        return Int(parts[1])
    }

    /// Rule 3 for a quantised file type.
    private func ruleType(_ t: Tensor, tied: Bool, attentionV: Int, iAttentionV: Int, layers: Int) -> GGMLType {
        let base = fileType.defaultType
        let ftype = fileType
        if t.name == "output.weight" || (tied && t.name == "token_embd.weight") {
            if t.dimensions[0] % base.blockSize != 0 { return .q8_0 }
            return base == .q8_0 ? .q8_0 : .q6_K
        }
        if t.name == "token_embd.weight" { return base }
        if t.name.contains("attn_qkv.weight") {
            switch ftype {
            case .q4_K_M: return .q5_K
            case .q5_K_M: return .q6_K
            default: return base
            }
        }
        if Self.isAttentionV(t.name) {
            if (ftype == .q4_K_M || ftype == .q5_K_M) && Self.useMoreBits(iAttentionV, attentionV) { return .q6_K }
            if ftype == .q4_K_S && iAttentionV < 4 { return .q5_K }
            return base
        }
        if t.name.contains("ffn_down") {
            let i = Self.layer(t.name) ?? 0
            if (ftype == .q4_K_M || ftype == .q5_K_M) && Self.useMoreBits(i, layers) { return .q6_K }
            if ftype == .q4_K_S && i < layers / 8 { return .q5_K }
            return base
        }
        return base
    }

    /// Rule 4: a type whose blocks divide rows of `rowLength`.
    static func fallback(_ type: GGMLType, rowLength: Int) -> GGMLType {
        guard rowLength % type.blockSize != 0 else { return type }
        let next: GGMLType
        switch type {
        case .q4_K: next = .q5_0
        case .q5_K: next = .q5_1
        case .q6_K: next = .q8_0
        case .q2_K, .q3_K: next = .q4_0
        default: next = type
        }
        return rowLength % next.blockSize == 0 ? next : .f16
    }
}

extension GGMLType {
    /// True for block formats (not F32, F16, BF16 or the integer types): ggml's `ggml_is_quantized`.
    public var isBlockQuantized: Bool {
        switch self {
        case .f32, .f16, .bf16, .i8, .i16, .i32, .i64, .f64: false
        default: true
        }
    }
}
