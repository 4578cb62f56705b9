import CLatheKernels
import Foundation
import LatheIO
import LatheNN
import LatheTensor

/// A module whose children have explicit names (for state-dict keys that are not Swift
/// property names, such as BERT's `LayerNorm` or `attention.self`).
final class NamedModules: Module {
    let children: [(String, Module)]
    init(_ children: [(String, Module)]) { self.children = children }
    override var namedChildren: [(String, Module)] { children }
}

/// A BERT encoder (Hugging Face `BertModel` state-dict names): word, position and token-type
/// embeddings, post-norm blocks of non-causal attention and a GELU MLP. `embed` mean-pools the
/// last hidden states into sentence embeddings, as sentence-transformers' MiniLM models do.
public final class BertModel: Module {
    public let config: BertConfig
    let embeddings: NamedModules
    let encoder: NamedModules
    let wordEmbeddings: Embedding, positionEmbeddings: Embedding, typeEmbeddings: Embedding, embeddingNorm: LayerNorm
    let blocks: [(q: Linear, k: Linear, v: Linear, o: Linear, norm1: LayerNorm, up: Linear, down: Linear, norm2: LayerNorm)]

    public init(config c: BertConfig, weights: [String: Tensor], file: String = "weights") throws {
        config = c
        var used = Set<String>()
        func take(_ key: String, _ shape: [Int]) throws -> Tensor {
            guard let t = weights[key] else { throw ModelFileError(file: file, message: "missing tensor \(key)") }
            guard t.shape == shape else { throw ModelFileError(file: file, message: "\(key) has shape \(t.shape), the config implies \(shape)") }
            used.insert(key)
            return t.to(.float32)
        }
        let d = c.hiddenSize
        func linear(_ p: String, _ out: Int, _ input: Int) throws -> Linear {
            Linear(weight: try take(p + ".weight", [out, input]), bias: try take(p + ".bias", [out]))
        }
        func norm(_ p: String) throws -> LayerNorm {
            LayerNorm(weight: try take(p + ".weight", [d]), bias: try take(p + ".bias", [d]), eps: c.layerNormEps)
        }
        wordEmbeddings = Embedding(weight: try take("embeddings.word_embeddings.weight", [c.vocabularySize, d]))
        positionEmbeddings = Embedding(weight: try take("embeddings.position_embeddings.weight", [c.maxPositions, d]))
        typeEmbeddings = Embedding(weight: try take("embeddings.token_type_embeddings.weight", [c.typeVocabularySize, d]))
        embeddingNorm = try norm("embeddings.LayerNorm")
        embeddings = NamedModules([("word_embeddings", wordEmbeddings), ("position_embeddings", positionEmbeddings),
                                   ("token_type_embeddings", typeEmbeddings), ("LayerNorm", embeddingNorm)])
        var blocks: [(q: Linear, k: Linear, v: Linear, o: Linear, norm1: LayerNorm, up: Linear, down: Linear, norm2: LayerNorm)] = []
        var layerModules: [(String, Module)] = []
        for i in 0..<c.layers {
            let p = "encoder.layer.\(i)."
            let b = (q: try linear(p + "attention.self.query", d, d), k: try linear(p + "attention.self.key", d, d),
                     v: try linear(p + "attention.self.value", d, d), o: try linear(p + "attention.output.dense", d, d),
                     norm1: try norm(p + "attention.output.LayerNorm"), up: try linear(p + "intermediate.dense", c.intermediateSize, d),
                     down: try linear(p + "output.dense", d, c.intermediateSize), norm2: try norm(p + "output.LayerNorm"))
            blocks.append(b)
            layerModules.append(("\(i)", NamedModules([
                ("attention", NamedModules([("self", NamedModules([("query", b.q), ("key", b.k), ("value", b.v)])),
                                            ("output", NamedModules([("dense", b.o), ("LayerNorm", b.norm1)]))])),
                ("intermediate", NamedModules([("dense", b.up)])),
                ("output", NamedModules([("dense", b.down), ("LayerNorm", b.norm2)])),
            ])))
        }
        self.blocks = blocks
        encoder = NamedModules([("layer", NamedModules(layerModules))])
        super.init()
        // Not used for embeddings: the pooler, and the position-id buffer some files keep.
        let extra = Set(weights.keys).subtracting(used).filter { !$0.hasPrefix("pooler.") && $0 != "embeddings.position_ids" }.sorted()
        if !extra.isEmpty {
            throw ModelFileError(file: file, message: "\(extra.count) tensor(s) a BERT encoder does not use: " + extra.prefix(5).joined(separator: ", "))
        }
    }

    /// Loads a Hugging Face folder (`config.json`, `model.safetensors`).
    public static func load(huggingFaceFolder folder: URL) throws -> BertModel {
        let configURL = folder.appendingPathComponent("config.json")
        guard let bytes = try? Data(contentsOf: configURL) else {
            throw ModelFileError(file: configURL.path, message: "cannot read config.json (is \(folder.path) a Hugging Face model folder?)")
        }
        let json: JSONValue
        do { json = try JSONParser.parse([UInt8](bytes)) } catch { throw ModelFileError(file: configURL.path, message: "not valid JSON: \(error)") }
        let config = try BertConfig.huggingFace(json, file: configURL.path)
        var weights: [String: Tensor] = [:]
        for file in try DecoderModel.weightFiles(folder) {
            for (k, v) in try SafeTensors.read(contentsOf: file).tensors { weights[k.hasPrefix("bert.") ? String(k.dropFirst(5)) : k] = v }
        }
        return try BertModel(config: config, weights: weights, file: folder.path)
    }

    /// The last hidden states `[ids.count, hidden]` of one sequence (all its tokens attend to
    /// each other; no padding).
    public func hiddenStates(_ ids: [Int], tokenTypes: [Int]? = nil) -> Tensor {
        hiddenStates(batch: [ids], tokenTypes: tokenTypes.map { [$0] })[0]
    }

    /// The last hidden states of several sequences at once, `[length, hidden]` each: they are
    /// padded to the longest and run as one batch through the projections, and the attention
    /// never reads a padding position (``AttentionMask/keyValid``).
    public func hiddenStates(batch: [[Int]], tokenTypes: [[Int]]? = nil) -> [Tensor] {
        precondition(!batch.isEmpty, "BertModel: no sequences")
        let t = batch.map(\.count).max()!, n = batch.count, d = config.hiddenSize
        for ids in batch {
            precondition(ids.count >= 1 && ids.count <= config.maxPositions, "BertModel: 1 to \(config.maxPositions) tokens, got \(ids.count)")
            precondition(ids.allSatisfy { $0 >= 0 && $0 < config.vocabularySize }, "BertModel: token ids must be in 0..<\(config.vocabularySize)")
        }
        precondition(tokenTypes == nil || tokenTypes!.map(\.count) == batch.map(\.count), "BertModel: one token type per token")
        let padded = batch.flatMap { $0 + Array(repeating: 0, count: t - $0.count) }
        let types = (tokenTypes ?? batch.map { Array(repeating: 0, count: $0.count) }).flatMap { $0 + Array(repeating: 0, count: t - $0.count) }
        return noGrad {
            let positions = Tensor((0..<n).flatMap { _ in Array(0..<t) }, shape: [n * t])
            var x = wordEmbeddings(Tensor(padded, shape: [n * t])) + positionEmbeddings(positions) + typeEmbeddings(Tensor(types, shape: [n * t]))
            x = embeddingNorm(x)
            let heads = config.heads, hd = d / heads
            let layout = AttentionCore.Layout(rowStride: d, headStride: hd)
            for b in blocks {
                let q = b.q(x).scalars, k = b.k(x).scalars, v = b.v(x).scalars
                var ctx = [Float](repeating: 0, count: n * t * d)
                q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                    ctx.withUnsafeMutableBufferPointer { cp in
                        for (i, ids) in batch.enumerated() {
                            let offset = i * t * d
                            let mask = AttentionMask(causal: false, keyValid: ids.count == t ? nil : (0..<t).map { $0 < ids.count })
                            AttentionCore.attend(q: qp.baseAddress! + offset, qLayout: layout, rows: t, heads: heads,
                                                 keys: kp.baseAddress! + offset, values: vp.baseAddress! + offset, kvLayout: layout, kvHeads: heads,
                                                 keyCount: t, headDim: hd, start: 0, scale: 1 / Float(hd).squareRoot(), mask: mask,
                                                 out: cp.baseAddress! + offset, outLayout: layout)
                        }
                    }
                } } }
                x = b.norm1(b.o(Tensor(ctx, shape: [n * t, d])) + x)
                x = b.norm2(b.down(b.up(x).gelu(approximateTanh: config.tanhGELU)) + x)
            }
            return batch.enumerated().map { i, ids in x.sliced(dim: 0, start: i * t, end: i * t + ids.count).contiguous() }
        }
    }

    /// Sentence embeddings of several texts' ids in one batch (``embed(_:normalize:)`` each).
    public func embed(batch: [[Int]], normalize: Bool = true) -> [[Float]] {
        hiddenStates(batch: batch).map { Self.pool($0, normalize: normalize) }
    }

    /// The mean of the last hidden states over the tokens (sentence-transformers' mean pooling);
    /// `normalize` scales it to unit length (all-MiniLM-L6-v2's last module).
    public func embed(_ ids: [Int], normalize: Bool = true) -> [Float] {
        Self.pool(hiddenStates(ids), normalize: normalize)
    }

    static func pool(_ h: Tensor, normalize: Bool) -> [Float] {
        var mean = h.mean(dims: [0]).scalars
        if normalize {
            let norm = mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if norm > 0 { mean = mean.map { $0 / norm } }
        }
        return mean
    }
}
