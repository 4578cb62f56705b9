import CLatheKernels
import Foundation
import LatheCompress
import LatheNN
import LatheTensor
import LatheText

/// Calibrated weight-only int4 quantization of a ``DecoderModel``'s projections (group 32, the
/// formats of GGUF Q4_0 and Q4_1, see ``Int4Groups``): GPTQ (``GPTQ``) or AWQ (``AWQ``), from
/// the activations of a calibration text.
///
/// Layer by layer (the standard sequential scheme): the calibration rows' hidden states enter
/// layer `i` as the already-quantized layers `< i` produced them; one pass through the float
/// layer `i`, with a recorder (``InputRecorder``) put in the slots of `q_proj`, `o_proj`,
/// `gate_proj` and `down_proj` by model surgery, collects for each of the four inputs
/// `H = X^T X` and the mean `|x|` per channel (`k_proj`/`v_proj` read `q_proj`'s input and
/// `up_proj` `gate_proj`'s). The layer's seven projections are then quantized and replaced by
/// their dequantised values, and a second pass gives the next layer's inputs. Within a layer
/// every projection sees the float layer's activations (not "true-sequential").
///
/// - GPTQ: each projection with its input's Hessian.
/// - AWQ: per input, the scale search of ``AWQ/searchScales(weights:cols:meanAbs:hessian:symmetric:gridSize:)``
///   over the layers reading it; `1/s` is folded into the op before: the input norm's weight
///   for q/k/v, the norm before the MLP for gate/up (`(w + offset) / s - offset`, Gemma's
///   `weight + 1` convention included), the rows of `v_proj` for `o_proj` (with grouped-query
///   attention, the scales of the query heads sharing a key/value head are tied: their mean
///   `|x|` is averaged), the rows of `up_proj` for `down_proj`. Then round-to-nearest.
///   AWQ's weight clipping search is not done.
public enum CalibratedQuantization {
    public enum Method: String, CaseIterable, Sendable {
        case gptq, awq
    }

    public struct Options: Sendable, Equatable {
        public var method: Method
        /// Q4_0-style (`d (u - 8)`) or Q4_1-style (`d u + m`) groups.
        public var symmetric: Bool
        /// GPTQ's damping, a fraction of the mean Hessian diagonal.
        public var damping: Float = 0.01
        /// GPTQ: columns in order of decreasing Hessian diagonal.
        public var actOrder = false
        /// AWQ: grid points of α in `[0, 1)`.
        public var awqGrid = 20

        public init(method: Method, symmetric: Bool) { (self.method, self.symmetric) = (method, symmetric) }
    }

    /// One projection's result.
    public struct Projection: Sendable {
        /// Hugging Face name of the weight (`model.layers.3.self_attn.q_proj.weight`).
        public var name: String
        public var weights: Int4Groups
        /// The calibration output error `tr(D H D^T) / T` (`D` = quantized − float weight) of
        /// plain round-to-nearest of the float weight and of this method's result.
        public var roundToNearestError: Double
        public var error: Double
        /// AWQ's α for this projection's input (nil for GPTQ).
        public var alpha: Float?
    }

    /// What calibration produced.
    public struct Result: Sendable {
        /// Every quantized projection, layer by layer.
        public var projections: [Projection]
        /// Float tensors that changed (AWQ's folded norms), by Hugging Face name. The rows of
        /// `v_proj` and `up_proj` that AWQ rescales are part of their projections' weights.
        public var changedTensors: [String: [Float]]
        /// Calibration tokens (rows times length).
        public var tokens: Int
        public var seconds: Double
    }

    /// Cuts `ids` (a tokenized text) into `rows` consecutive rows of `length` tokens, each
    /// starting with `bos` when given (in place of the text's token, as perplexity does).
    /// Throws when the text is too short.
    public static func rows(_ ids: [Int], rows: Int, length: Int, bos: Int?) throws -> [[Int]] {
        guard rows >= 1 else { throw CalibrationError("the number of calibration rows must be at least 1, got \(rows)") }
        guard length >= 2 else { throw CalibrationError("calibration rows must be at least 2 tokens long, got \(length)") }
        guard ids.count >= rows * length else {
            throw CalibrationError("the calibration text has \(ids.count) tokens; \(rows) rows of \(length) need \(rows * length) "
                                   + "(use a longer text, or fewer or shorter rows)")
        }
        return (0..<rows).map { r in
            var row = Array(ids[(r * length)..<((r + 1) * length)])
            if let bos { row[0] = bos }
            return row
        }
    }
}

public struct CalibrationError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ message: String) { description = message }
}

/// What a recorder has seen of one input: `H = X^T X` and `Σ|x|` per channel.
final class InputStatistics {
    let channels: Int
    var hessian: [Float]
    var absSum: [Double]
    var count = 0

    init(channels: Int) {
        self.channels = channels
        hessian = [Float](repeating: 0, count: channels * channels)
        absSum = [Double](repeating: 0, count: channels)
    }

    /// Adds the rows of `x` `[rows, channels]`.
    func add(_ x: Tensor) {
        let rows = x.count / channels
        precondition(x.shape.last == channels, "InputStatistics: input \(x.shape) does not end in \(channels) channels")
        x.contiguous().withUnsafeBufferPointer { p in
            hessian.withUnsafeMutableBufferPointer { h in
                lathe_sgemm(1, 0, channels, channels, rows, 1, p.baseAddress!, channels, p.baseAddress!, channels, 1, h.baseAddress!, channels)
            }
            for r in 0..<rows { for c in 0..<channels { absSum[c] += Double(abs(p[r * channels + c])) } }
        }
        count += rows
    }

    var meanAbs: [Float] { absSum.map { Float($0 / Double(max(count, 1))) } }
}

/// A layer wrapper that records its input (``InputStatistics``) and runs the layer it holds.
final class InputRecorder: Module {
    @Child var base: Module
    let statistics: InputStatistics

    init(base: Module, channels: Int) {
        statistics = InputStatistics(channels: channels)
        self.base = base
        super.init()
    }

    override func forward(_ x: Tensor) -> Tensor {
        statistics.add(x)
        return $base(x)
    }
}

extension DecoderModel {
    /// Quantizes the projections of every layer with calibration (see ``CalibratedQuantization``),
    /// on `rows` (token ids, e.g. from ``CalibratedQuantization/rows(_:rows:length:bos:)``).
    ///
    /// The model must hold float ``Linear`` projections (load GGUF files with `quantized: false`)
    /// and is changed in place: on return its projections hold the dequantised int4 weights (and
    /// AWQ's folded norms), so it computes as the quantized model. `progress` gets a line per layer.
    public func quantizeWithCalibration(rows: [[Int]], options: CalibratedQuantization.Options,
                                        progress: (String) -> Void = { _ in }) throws -> CalibratedQuantization.Result {
        let c = config
        guard !rows.isEmpty, rows.allSatisfy({ !$0.isEmpty }) else { throw CalibrationError("no calibration tokens") }
        for row in rows where row.contains(where: { $0 < 0 || $0 >= c.vocabularySize }) {
            throw CalibrationError("calibration token ids must be in 0..<\(c.vocabularySize)")
        }
        let maxLength = rows.map(\.count).max()!
        guard maxLength <= c.maxPositions else { throw CalibrationError("calibration rows of \(maxLength) tokens exceed the model's \(c.maxPositions) positions") }
        let start = Timing.now()
        var projections: [CalibratedQuantization.Projection] = []
        var changed: [String: [Float]] = [:]
        try noGrad {
            var hidden: [Tensor] = rows.map { ids in
                let x = model.embedTokens(Tensor(ids, shape: [ids.count]))
                return c.embeddingScale.map { x * $0 } ?? x
            }
            let cache = makeCache(capacity: maxLength)
            func run(_ layer: DecoderLayer, _ i: Int) -> [Tensor] {
                hidden.map { x in
                    cache.reset()
                    return layer.forward(x, start: 0, cache: cache, layer: i, rotary: rotaries[i], config: c)
                }
            }
            for (i, layer) in model.layers.enumerated() {
                let t0 = Timing.now()
                let p = "model.layers.\(i)."
                // 1. Record the four inputs through the float layer.
                let recorded = ["self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"]
                var recorders: [InputRecorder] = []
                for path in recorded {
                    guard let base = layer.module(at: path), let linear = base as? Linear else {
                        throw CalibrationError("\(p)\(path) is not a float Linear layer (load the model with quantized: false)")
                    }
                    let recorder = InputRecorder(base: linear, channels: linear.inFeatures)
                    try layer.setModule(recorder, at: path)
                    recorders.append(recorder)
                }
                _ = run(layer, i)
                for (path, recorder) in zip(recorded, recorders) { try layer.setModule(recorder.base, at: path) }
                let (attnIn, oIn, mlpIn, downIn) = (recorders[0].statistics, recorders[1].statistics, recorders[2].statistics, recorders[3].statistics)

                // 2. Quantize.
                func linear(_ path: String) -> Linear { layer.module(at: path) as! Linear }
                let q = linear("self_attn.q_proj"), k = linear("self_attn.k_proj"), v = linear("self_attn.v_proj"), o = linear("self_attn.o_proj")
                let gate = linear("mlp.gate_proj"), up = linear("mlp.up_proj"), down = linear("mlp.down_proj")
                let groups: [(names: [String], layers: [Linear], input: InputStatistics)] = [
                    (["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], [q, k, v], attnIn),
                    (["self_attn.o_proj"], [o], oIn), (["mlp.gate_proj", "mlp.up_proj"], [gate, up], mlpIn), (["mlp.down_proj"], [down], downIn),
                ]
                // The float weights, before AWQ changes them: errors are measured against them. AWQ
                // multiplies a weight's rows and columns by factors (`W' = diag(r) W diag(c)`), kept
                // to map the quantized weight back (`diag(1/r) Q(W') diag(1/c)`).
                let original = groups.map { $0.layers.map { $0.weight.value.contiguous().scalars } }
                var rowFactors = groups.map { $0.layers.map { [Float](repeating: 1, count: $0.outFeatures) } }
                var colFactors = groups.map { $0.layers.map { [Float](repeating: 1, count: $0.inFeatures) } }
                var alphas: [Float?] = [nil, nil, nil, nil]
                if options.method == .awq {
                    var scales: [[Float]] = []
                    for (g, entry) in groups.enumerated() {
                        var meanAbs = entry.input.meanAbs
                        if g == 1 { meanAbs = Self.tiedOverKeyValueHeads(meanAbs, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim) }
                        let search = AWQ.searchScales(weights: entry.layers.enumerated().map { (original[g][$0.offset], $0.element.outFeatures) },
                                                      cols: entry.input.channels, meanAbs: meanAbs, hessian: entry.input.hessian,
                                                      symmetric: options.symmetric, gridSize: options.awqGrid)
                        alphas[g] = search.alpha
                        scales.append(search.scales)
                        for j in entry.layers.indices { colFactors[g][j] = search.scales }
                    }
                    let fold = foldInputScales(layer: i, scales)
                    changed.merge(fold.norms) { $1 }
                    rowFactors[0][2] = fold.valueRows.map { 1 / $0 }
                    rowFactors[2][1] = fold.upRows.map { 1 / $0 }
                }
                for (g, entry) in groups.enumerated() {
                    let h = entry.input.hessian, tokens = Double(max(entry.input.count, 1))
                    for (j, l) in entry.layers.enumerated() {
                        let rowsN = l.outFeatures, cols = l.inFeatures
                        let w = l.weight.value.contiguous().scalars
                        let result: Int4Groups
                        switch options.method {
                        case .gptq:
                            do {
                                result = try GPTQ.quantize(weight: w, rows: rowsN, cols: cols, hessian: h,
                                                           options: .init(symmetric: options.symmetric, damping: options.damping, actOrder: options.actOrder))
                            } catch let e as GPTQError {
                                throw CalibrationError("\(p)\(entry.names[j]): \(e)")
                            }
                        case .awq:
                            result = Int4Groups(roundingToNearest: w, rows: rowsN, cols: cols, symmetric: options.symmetric)
                        }
                        let deq = result.dequantized()
                        l.weight.value = Tensor(deq, shape: [rowsN, cols])
                        var effective = deq
                        for r in 0..<rowsN { for cc in 0..<cols { effective[r * cols + cc] /= rowFactors[g][j][r] * colFactors[g][j][cc] } }
                        let rtn = Int4Groups(roundingToNearest: original[g][j], rows: rowsN, cols: cols, symmetric: options.symmetric).dequantized()
                        projections.append(.init(name: p + entry.names[j] + ".weight", weights: result,
                                                 roundToNearestError: GPTQ.outputError(rtn, original[g][j], rows: rowsN, cols: cols, hessian: h) / tokens,
                                                 error: GPTQ.outputError(effective, original[g][j], rows: rowsN, cols: cols, hessian: h) / tokens,
                                                 alpha: alphas[g]))
                    }
                }
                let mine = projections.suffix(7)
                let rtnSum = mine.reduce(0) { $0 + $1.roundToNearestError }, errSum = mine.reduce(0) { $0 + $1.error }
                var line = String(format: "layer %d/%d: output error %.4g (round-to-nearest %.4g, ratio %.3f)", i + 1, c.layers, errSum, rtnSum,
                                  rtnSum > 0 ? errSum / rtnSum : 1)
                if options.method == .awq { line += " alpha " + alphas.map { String(format: "%.2f", $0 ?? 0) }.joined(separator: "/") }
                progress(line + String(format: ", %.1f s", Timing.now() - t0))

                // 3. The next layer's inputs, through the quantized layer.
                hidden = run(layer, i)
            }
        }
        return .init(projections: projections, changedTensors: changed, tokens: rows.reduce(0) { $0 + $1.count }, seconds: Timing.now() - start)
    }

    /// Scales the four inputs of layer `layer` (AWQ's transformation, which leaves the float model's
    /// output unchanged): for input `g` with scales `s = scales[g]`, the columns of the projections
    /// reading it are multiplied by `s` and `1/s` is folded into what produces it:
    /// 0 (q/k/v): the input norm's weight; 1 (o): the rows of `v_proj` (row `kv * headDim + d`
    /// takes the scale of channel `d` of the first query head of key/value head `kv`, so the
    /// scales must be tied over the query heads that share it, see ``tiedOverKeyValueHeads``);
    /// 2 (gate/up): the norm before the MLP; 3 (down): the rows of `up_proj`. A norm's scale
    /// `w + offset` becomes `(w + offset) / s`.
    ///
    /// Returns the new norm weights by Hugging Face name and the scales the rows of `v_proj` and
    /// `up_proj` were divided by.
    package func foldInputScales(layer i: Int, _ scales: [[Float]]) -> (norms: [String: [Float]], valueRows: [Float], upRows: [Float]) {
        precondition(scales.count == 4, "foldInputScales: four inputs per layer, got \(scales.count)")
        let layer = model.layers[i], c = config, p = "model.layers.\(i)."
        func linear(_ path: String) -> Linear { layer.module(at: path) as! Linear }
        let readers = [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"], ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]]
        for (g, paths) in readers.enumerated() {
            for path in paths { let l = linear(path); l.weight.value = Self.scaledColumns(l.weight.value, scales[g]) }
        }
        var norms: [String: [Float]] = [:]
        let mlpNorm = layer.preFeedforwardLayernorm ?? layer.postAttentionLayernorm
        let mlpNormName = layer.preFeedforwardLayernorm != nil ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"
        for (norm, name, s) in [(layer.inputLayernorm, "input_layernorm.weight", scales[0]), (mlpNorm, mlpNormName, scales[2])] {
            let w = norm.weight.value.scalars
            norm.weight.value = Tensor((0..<w.count).map { (w[$0] + norm.offset) / s[$0] - norm.offset }, shape: [w.count])
            norms[p + name] = norm.weight.value.scalars
        }
        func divideRows(_ l: Linear, _ rowScales: [Float]) {
            l.weight.value = Self.scaledRows(l.weight.value, rowScales.map { 1 / $0 })
            if let b = l.bias { b.value = Tensor(zip(b.value.scalars, rowScales).map { $0 / $1 }, shape: b.value.shape) }
        }
        let v = linear("self_attn.v_proj"), group = c.heads / c.kvHeads
        let valueRows = (0..<v.outFeatures).map { row in scales[1][(row / c.headDim) * group * c.headDim + row % c.headDim] }
        divideRows(v, valueRows)
        divideRows(linear("mlp.up_proj"), scales[3])
        return (norms, valueRows, scales[3])
    }

    /// `meanAbs` of `o_proj`'s input (`heads * headDim` channels) with the query heads that share
    /// a key/value head averaged, so that one scale per key/value channel can be folded into `v_proj`.
    package static func tiedOverKeyValueHeads(_ meanAbs: [Float], heads: Int, kvHeads: Int, headDim: Int) -> [Float] {
        let group = heads / kvHeads
        guard group > 1 else { return meanAbs }
        var out = meanAbs
        for kv in 0..<kvHeads {
            for d in 0..<headDim {
                var sum: Float = 0
                for h in kv * group..<(kv + 1) * group { sum += meanAbs[h * headDim + d] }
                for h in kv * group..<(kv + 1) * group { out[h * headDim + d] = sum / Float(group) }
            }
        }
        return out
    }

    static func scaledColumns(_ w: Tensor, _ s: [Float]) -> Tensor {
        var v = w.contiguous().scalars
        let cols = w.shape[1]
        for i in 0..<v.count { v[i] *= s[i % cols] }
        return Tensor(v, shape: w.shape)
    }

    static func scaledRows(_ w: Tensor, _ s: [Float]) -> Tensor {
        var v = w.contiguous().scalars
        let cols = w.shape[1]
        for i in 0..<v.count { v[i] *= s[i / cols] }
        return Tensor(v, shape: w.shape)
    }
}
