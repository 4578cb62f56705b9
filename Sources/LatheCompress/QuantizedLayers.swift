import CLatheKernels
import LatheNN
import LatheTensor

/// A layer that runs on quantized weights; the model file writer asks it for its tensors.
public protocol QuantizedLayer: Module {
    /// How the layer is quantized, as recorded in the file's `lathe.quantization` metadata.
    var quantizationEntry: QuantizedLayerEntry { get }
    /// The tensors of the layer, by name relative to the layer (`weight`, `weight_scale`, ...).
    var quantizedTensors: [String: Tensor] { get }
}

/// The float32 values of `x` as a contiguous buffer (no autodiff).
@inline(__always)
func withFloats<R>(_ x: Tensor, _ body: (UnsafeBufferPointer<Float>) -> R) -> R {
    x.detached().to(.float32).withUnsafeBufferPointer(body)
}

/// Activation parameters for a batch: the given ones (static) or its min-max (dynamic).
func activationParams(_ x: UnsafeBufferPointer<Float>, _ fixed: AffineParams?, symmetric: Bool = false) -> AffineParams {
    if let fixed { return fixed }
    var lo: Float = 0, hi: Float = 0
    if x.count > 0 { lathe_minmax_f32(x.baseAddress!, x.count, &lo, &hi) }
    return AffineParams(min: lo.isNaN ? 0 : lo, max: hi.isNaN ? 0 : hi, symmetric: symmetric)
}

/// `y = x W^T + b` through the int8 GEMM: x quantized to uint8 with `params` (or per batch).
func int8Linear(_ x: Tensor, weight: PackedInt8Weights, bias: [Float]?, params: AffineParams?, name: String) -> Tensor {
    let k = weight.cols, n = weight.rows
    precondition(x.shape.last == k, "\(name): input \(x.shape) does not end in \(k) features")
    let m = x.count / Swift.max(k, 1)
    var y = Tensor.zeros([m, n])
    withFloats(x) { xs in
        let p = activationParams(xs, params)
        let q = QuantMath.quantizeU8(xs, p)
        q.withUnsafeBufferPointer { qa in
            y.withUnsafeMutableBufferPointer { out in
                if m > 0 { weight.matmul(qa.baseAddress!, m: m, aParams: p, bias: bias, into: out.baseAddress!) }
            }
        }
    }
    return x.rank == 2 ? y : y.reshaped(Array(x.shape.dropLast()) + [n])
}

/// Static int8 `Linear`: per-channel symmetric int8 weights, per-tensor uint8 activations with
/// the scale and zero point found by calibration, int32 accumulation, float32 output.
///
/// `y = (q(x) - za) · Wq^T · (sa · sw[n]) + b`, with `q(x) = clamp(round(x / sa) + za, 0, 255)`.
/// Inference only (no gradients).
public final class QuantizedLinear: Module, QuantizedLayer {
    public let weight: PackedInt8Weights
    public let bias: [Float]?
    public let inputParams: AffineParams

    public init(weight: PackedInt8Weights, bias: [Float]?, inputParams: AffineParams) {
        precondition(bias == nil || bias!.count == weight.rows, "QuantizedLinear: bias has \(bias!.count) values for \(weight.rows) outputs")
        self.weight = weight
        self.bias = bias
        self.inputParams = inputParams
    }

    /// Quantizes `linear` with activations calibrated to `inputParams`.
    public convenience init(_ linear: Linear, inputParams: AffineParams) {
        self.init(weight: PackedInt8Weights(quantizing: linear.weight.value.scalars, rows: linear.outFeatures, cols: linear.inFeatures),
                  bias: linear.bias?.value.scalars, inputParams: inputParams)
    }

    public var inFeatures: Int { weight.cols }
    public var outFeatures: Int { weight.rows }

    public override func forward(_ x: Tensor) -> Tensor {
        int8Linear(x, weight: weight, bias: bias, params: inputParams, name: "QuantizedLinear")
    }

    public var quantizationEntry: QuantizedLayerEntry {
        var e = QuantizedLayerEntry(type: "linear", scheme: "int8_static", bits: 8, inFeatures: inFeatures, outFeatures: outFeatures, bias: bias != nil)
        e.input = inputParams
        return e
    }
    public var quantizedTensors: [String: Tensor] { int8Tensors(weight, shape: [outFeatures, inFeatures], bias: bias) }
}

/// Dynamic int8 `Linear`: like ``QuantizedLinear`` but each call quantizes its input with the
/// batch's own min-max range (no calibration; one extra pass over the input).
public final class DynamicQuantizedLinear: Module, QuantizedLayer {
    public let weight: PackedInt8Weights
    public let bias: [Float]?

    public init(weight: PackedInt8Weights, bias: [Float]?) {
        precondition(bias == nil || bias!.count == weight.rows, "DynamicQuantizedLinear: bias has \(bias!.count) values for \(weight.rows) outputs")
        self.weight = weight
        self.bias = bias
    }

    public convenience init(_ linear: Linear) {
        self.init(weight: PackedInt8Weights(quantizing: linear.weight.value.scalars, rows: linear.outFeatures, cols: linear.inFeatures),
                  bias: linear.bias?.value.scalars)
    }

    public var inFeatures: Int { weight.cols }
    public var outFeatures: Int { weight.rows }

    public override func forward(_ x: Tensor) -> Tensor {
        int8Linear(x, weight: weight, bias: bias, params: nil, name: "DynamicQuantizedLinear")
    }

    public var quantizationEntry: QuantizedLayerEntry {
        QuantizedLayerEntry(type: "linear", scheme: "int8_dynamic", bits: 8, inFeatures: inFeatures, outFeatures: outFeatures, bias: bias != nil)
    }
    public var quantizedTensors: [String: Tensor] { int8Tensors(weight, shape: [outFeatures, inFeatures], bias: bias) }
}

/// int8 `Conv2d` (groups = 1): the input is quantized to uint8 (calibrated parameters, or per
/// batch when `inputParams` is nil), unfolded with padding = the zero point (exactly 0.0), and
/// multiplied with per-channel int8 weights `[O, C·kh·kw]` by the int8 GEMM.
public final class QuantizedConv2d: Module, QuantizedLayer {
    /// The codes with columns ordered (ki, kj, c), for the channels-last unfolding.
    let channelsLastWeight: PackedInt8Weights
    public let bias: [Float]?
    public let inputParams: AffineParams?
    public let inChannels: Int, kernelSize: (Int, Int)
    public let stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int)

    public init(weight: PackedInt8Weights, bias: [Float]?, inputParams: AffineParams?, inChannels: Int, kernelSize: (Int, Int),
                stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int)) {
        precondition(weight.cols == inChannels * kernelSize.0 * kernelSize.1, "QuantizedConv2d: weight has \(weight.cols) columns, not C*kh*kw")
        precondition(bias == nil || bias!.count == weight.rows, "QuantizedConv2d: bias has \(bias!.count) values for \(weight.rows) channels")
        self.bias = bias
        self.inputParams = inputParams
        self.inChannels = inChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        channelsLastWeight = PackedInt8Weights(codes: Self.reorder(weight.codes, rows: weight.rows, channels: inChannels,
                                                                   taps: kernelSize.0 * kernelSize.1, toChannelsLast: true),
                                               scales: weight.scales, rows: weight.rows, cols: weight.cols)
    }

    /// The weights with columns ordered (c, ki, kj) like the float weight `[O, C, kh, kw]` (what
    /// files store); rebuilt from the channels-last packing the layer computes with.
    public var weight: PackedInt8Weights {
        let w = channelsLastWeight
        return PackedInt8Weights(codes: Self.reorder(w.codes, rows: w.rows, channels: inChannels, taps: kernelSize.0 * kernelSize.1,
                                                     toChannelsLast: false),
                                 scales: w.scales, rows: w.rows, cols: w.cols)
    }

    /// Moves the columns of `[rows, C * taps]` codes between (c, tap) and (tap, c) order.
    static func reorder(_ codes: [Int8], rows: Int, channels: Int, taps: Int, toChannelsLast: Bool) -> [Int8] {
        var out = [Int8](repeating: 0, count: codes.count)
        for n in 0..<rows {
            for ch in 0..<channels {
                for t in 0..<taps {
                    let chw = (n * channels + ch) * taps + t, hwc = (n * taps + t) * channels + ch
                    if toChannelsLast { out[hwc] = codes[chw] } else { out[chw] = codes[hwc] }
                }
            }
        }
        return out
    }

    /// Quantizes `conv` (which must have groups = 1); `inputParams` nil means dynamic.
    public convenience init(_ conv: Conv2d, inputParams: AffineParams?) {
        precondition(conv.groups == 1, "QuantizedConv2d: grouped convolutions are not supported (groups = \(conv.groups))")
        let s = conv.weight.value.shape
        self.init(weight: PackedInt8Weights(quantizing: conv.weight.value.scalars, rows: s[0], cols: s[1] * s[2] * s[3]),
                  bias: conv.bias?.value.scalars, inputParams: inputParams, inChannels: s[1], kernelSize: (s[2], s[3]),
                  stride: conv.stride, padding: conv.padding, dilation: conv.dilation)
    }

    public var outChannels: Int { channelsLastWeight.rows }

    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == inChannels, "QuantizedConv2d: expected input [N, \(inChannels), H, W], got \(x.shape)")
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (kh, kw) = kernelSize
        let oh = (h + 2 * padding.0 - dilation.0 * (kh - 1) - 1) / stride.0 + 1
        let ow = (w + 2 * padding.1 - dilation.1 * (kw - 1) - 1) / stride.1 + 1
        precondition(oh > 0 && ow > 0, "QuantizedConv2d: input \(x.shape) is smaller than the kernel")
        let m = b * oh * ow, kdim = channelsLastWeight.cols, o = channelsLastWeight.rows
        var y = Tensor.zeros([b, o, oh, ow])
        guard m > 0 else { return y }
        withFloats(x) { xs in
            // Quantize, go channels-last (each tap then copies C contiguous bytes), unfold, multiply
            // (rows are output pixels, so the result is channels-last) and transpose back.
            // Images are independent, so the pool runs chunks of them through every step while
            // their buffers are still in cache (a chunk's GEMM runs inline on its thread; a single
            // chunk, e.g. batch 1, runs outside the pool and its GEMM uses all threads).
            let p = activationParams(xs, inputParams)
            let plane = c * h * w, rowsPerImage = oh * ow
            let grain = Swift.max(1, Swift.min(8, 65536 / Swift.max(rowsPerImage * kdim, 1)))
            let maxImages = Swift.min(grain, b)
            y.withUnsafeMutableBufferPointer { out in
                ThreadPool.forChunks(b, grain: grain) { r in
                    let n = r.count
                    let q = UnsafeMutablePointer<UInt8>.allocate(capacity: maxImages * plane * (c > 1 ? 2 : 1))
                    let cols = UnsafeMutablePointer<UInt8>.allocate(capacity: maxImages * rowsPerImage * kdim)
                    let pixels = UnsafeMutablePointer<Float>.allocate(capacity: maxImages * rowsPerImage * o)
                    defer { q.deallocate(); cols.deallocate(); pixels.deallocate() }
                    lathe_quantize_u8(xs.baseAddress! + r.lowerBound * plane, n * plane, 1 / p.scale, p.zeroPoint, q)
                    var image = UnsafePointer(q)
                    if c > 1 {
                        lathe_transpose_u8(q, n, c, h * w, q + maxImages * plane)
                        image = UnsafePointer(q + maxImages * plane)
                    }
                    lathe_im2col_nhwc_u8(image, n, c, h, w, kh, kw, stride.0, stride.1, padding.0, padding.1, dilation.0, dilation.1,
                                         oh, ow, UInt8(p.zeroPoint), cols)
                    channelsLastWeight.matmul(cols, m: n * rowsPerImage, aParams: p, bias: bias, into: pixels)
                    lathe_transpose_f32(pixels, n, rowsPerImage, o, out.baseAddress! + r.lowerBound * rowsPerImage * o)
                }
            }
        }
        return y
    }

    public var quantizationEntry: QuantizedLayerEntry {
        var e = QuantizedLayerEntry(type: "conv2d", scheme: inputParams == nil ? "int8_dynamic" : "int8_static", bits: 8,
                                    inFeatures: inChannels, outFeatures: outChannels, bias: bias != nil)
        e.kernelSize = [kernelSize.0, kernelSize.1]
        e.stride = [stride.0, stride.1]
        e.padding = [padding.0, padding.1]
        e.dilation = [dilation.0, dilation.1]
        e.input = inputParams
        return e
    }
    public var quantizedTensors: [String: Tensor] {
        int8Tensors(weight, shape: [outChannels, inChannels, kernelSize.0, kernelSize.1], bias: bias)
    }
}

/// `Linear` with weight-only group-wise int8 or int4 weights (fp16 scales, and mins when
/// asymmetric); activations stay float32. Batch 1 runs a fused dequantise-and-dot kernel;
/// larger batches dequantise blocks of rows and use the fp32 GEMM.
public final class WeightOnlyLinear: Module, QuantizedLayer {
    public let weight: GroupwiseWeights
    public let bias: [Float]?
    /// Up to ``int8ActivationRows`` rows of input are quantized to int8 per 32-element block and
    /// multiplied with integer dot products (as llama.cpp decodes), when the kernels take the
    /// weights (``GroupwiseWeights/supportsInt8Activations``); off: float activations throughout. Turning it on repacks the
    /// weights once into the 16-rows-per-vector decode layout (`lathe_wq_repack`), kept beside them.
    public var int8Activations = false {
        didSet {
            guard int8Activations, repacked == nil, weight.supportsInt8Activations else { return }
            repacked = weight.withMatrix { m in
                var out = [UInt8](repeating: 0, count: lathe_wq_repacked_size(m, weight.rows, weight.cols))
                out.withUnsafeMutableBufferPointer { lathe_wq_repack(m, weight.rows, weight.cols, $0.baseAddress!) }
                return out
            }
        }
    }
    private var repacked: [UInt8]?
    /// Inputs of up to this many rows take the 8-bit-activation kernel (decoding); more rows go
    /// through dequantised panels and the fp32 GEMM. Raise it to run everything as decoding does
    /// (`lathe perplexity --int8-activations`).
    nonisolated(unsafe) public static var int8ActivationRows = 4
    /// The most rows that take the 8-bit-activation kernel here: more inside a batched decode step
    /// (``Tensor/decoding(rows:_:)``), each row with the bits it has alone.
    static var int8RowLimit: Int { Swift.max(int8ActivationRows, Tensor.decodingRows) }

    public init(weight: GroupwiseWeights, bias: [Float]?) {
        precondition(bias == nil || bias!.count == weight.rows, "WeightOnlyLinear: bias has \(bias!.count) values for \(weight.rows) outputs")
        self.weight = weight
        self.bias = bias
    }

    public convenience init(_ linear: Linear, scheme: GroupwiseScheme) {
        self.init(weight: GroupwiseWeights(quantizing: linear.weight.value.scalars, rows: linear.outFeatures, cols: linear.inFeatures, scheme: scheme),
                  bias: linear.bias?.value.scalars)
    }

    public var inFeatures: Int { weight.cols }
    public var outFeatures: Int { weight.rows }

    /// `x W^T + b`. When gradients are recorded and `x` requires one, the output records the
    /// input gradient `dX = dY · dequant(W)` (``GroupwiseWeights/inputGradient(_:rows:panelRows:into:)``,
    /// panels of dequantised rows, never the whole float matrix) and the forward takes the float
    /// path (no 8-bit activations), so that gradient is exact for it. The weights stay frozen.
    public override func forward(_ x: Tensor) -> Tensor {
        let k = inFeatures, n = outFeatures
        precondition(x.shape.last == k, "WeightOnlyLinear: input \(x.shape) does not end in \(k) features")
        let m = x.count / Swift.max(k, 1)
        let recording = GradMode.isEnabled && x.requiresGrad
        var y = Tensor.zeros([m, n])
        withFloats(x) { xs in
            y.withUnsafeMutableBufferPointer { out in
                (bias ?? []).withUnsafeBufferPointer { b in
                    weight.withMatrix { mat in
                        guard m > 0 else { return }
                        if int8Activations && !recording && m <= Self.int8RowLimit, let packed = repacked {
                            packed.withUnsafeBufferPointer { p in
                                lathe_wq_gemv_repacked(m, n, k, xs.baseAddress!, k, p.baseAddress!, mat,
                                                       bias == nil ? nil : b.baseAddress, out.baseAddress!, n)
                            }
                        } else {
                            lathe_wq_gemm(m, n, k, xs.baseAddress!, k, mat, bias == nil ? nil : b.baseAddress, out.baseAddress!, n)
                        }
                    }
                }
            }
        }
        let out = x.rank == 2 ? y : y.reshaped(Array(x.shape.dropLast()) + [n])
        guard recording else { return out }
        let (w, shape) = (weight, x.shape)
        return out.recorded("weight_only_linear", [x]) { g in
            var dx = Tensor.zeros(shape)
            g.withUnsafeBufferPointer { dy in
                dx.withUnsafeMutableBufferPointer { w.inputGradient(dy.baseAddress!, rows: m, into: $0.baseAddress!) }
            }
            return [dx]
        }
    }

    /// `layers` applied to the same input `x` (`[rows, K]`, rows at most ``int8ActivationRows`` or
    /// those of ``Tensor/decoding(rows:_:)``)
    /// in one call of the 8-bit-activation kernel: one quantization of `x` and one parallel loop
    /// over all their rows (a fused q/k/v or gate/up projection without concatenated weights).
    /// The same values as calling each layer; nil when a layer does not take that path.
    public static func forward(_ layers: [WeightOnlyLinear], sharing x: Tensor) -> [Tensor]? {
        guard !layers.isEmpty, layers.count <= 8, let k = layers.first?.inFeatures, x.rank == 2, x.shape[1] == k,
              x.shape[0] >= 1, x.shape[0] <= int8RowLimit,
              layers.allSatisfy({ $0.inFeatures == k && $0.int8Activations && $0.repacked != nil }) else { return nil }
        let m = x.shape[0]
        let outputs = layers.map { layer in
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: m * layer.outFeatures)
            buffer.initialize(repeating: 0)
            return buffer
        }
        defer { outputs.forEach { $0.deallocate() } }
        var packed: [UnsafePointer<UInt8>?] = [], mats: [UnsafePointer<lathe_wq_matrix>?] = [], biases: [UnsafePointer<Float>?] = []
        var ys: [UnsafeMutablePointer<Float>?] = []
        // Collects every layer's pointers in nested scopes, then calls the kernel from the innermost.
        func collect(_ i: Int, _ xs: UnsafeBufferPointer<Float>) {
            guard i < layers.count else {
                let n = layers.map(\.outFeatures), ld = n
                lathe_wq_gemv_repacked_many(Int32(layers.count), m, n, k, xs.baseAddress!, k, packed, mats, biases, ys, ld)
                return
            }
            let layer = layers[i]
            layer.repacked!.withUnsafeBufferPointer { p in
                layer.weight.withMatrix { mat in
                    (layer.bias ?? []).withUnsafeBufferPointer { b in
                        packed.append(p.baseAddress); mats.append(mat); biases.append(layer.bias == nil ? nil : b.baseAddress)
                        ys.append(outputs[i].baseAddress)
                        collect(i + 1, xs)
                    }
                }
            }
        }
        withFloats(x) { collect(0, $0) }
        return zip(layers, outputs).map { Tensor(Array($1), shape: [m, $0.outFeatures]) }
    }

    public var quantizationEntry: QuantizedLayerEntry {
        var e = QuantizedLayerEntry(type: "linear", scheme: "weight_only", bits: weight.scheme.bits, inFeatures: inFeatures,
                                    outFeatures: outFeatures, bias: bias != nil)
        e.groupSize = weight.scheme.groupSize
        e.symmetric = weight.scheme.symmetric
        return e
    }
    public var quantizedTensors: [String: Tensor] {
        let w = weight
        var t: [String: Tensor] = [:]
        t["weight"] = w.codes.withUnsafeBytes {
            Tensor(bytes: $0, shape: [w.rows, w.rowBytes], dtype: w.scheme.bits == 8 && w.scheme.symmetric ? .int8 : .uint8)
        }
        if w.hasFloat32Scales {
            t["weight_scale"] = Tensor(w.float32Scales, shape: [w.rows, w.groups])
            if !w.scheme.symmetric { t["weight_min"] = Tensor(w.float32Mins, shape: [w.rows, w.groups]) }
        } else {
            t["weight_scale"] = w.scales.withUnsafeBytes { Tensor(bytes: $0, shape: [w.rows, w.groups], dtype: .float16) }
            if !w.scheme.symmetric { t["weight_min"] = w.mins.withUnsafeBytes { Tensor(bytes: $0, shape: [w.rows, w.groups], dtype: .float16) } }
        }
        if let bias { t["bias"] = Tensor(bias) }
        return t
    }
}

/// An embedding table held as group-wise quantized rows: a lookup dequantises the rows it needs.
/// A quantized tied embedding shares its ``GroupwiseWeights`` with the output projection (the
/// arrays are shared, not copied), so a model like Gemma 3 270M does not hold its 262,144 x 640
/// table as float32 (671 MB) beside the quantized head.
public final class QuantizedEmbedding: Module {
    public let weight: GroupwiseWeights
    public init(weight: GroupwiseWeights) { self.weight = weight }

    public var count: Int { weight.rows }
    public var dimension: Int { weight.cols }

    /// Ids of any shape (integers in `0..<count`) to vectors of shape `ids.shape + [dimension]`.
    public override func forward(_ ids: Tensor) -> Tensor {
        let rows = ids.intScalars, k = dimension
        precondition(rows.allSatisfy { $0 >= 0 && $0 < count }, "QuantizedEmbedding: ids must be in 0..<\(count)")
        var out = Tensor.zeros([rows.count, k])
        out.withUnsafeMutableBufferPointer { o in
            weight.withMatrix { m in
                for (i, r) in rows.enumerated() { lathe_wq_dequantize(m, count, k, r, r + 1, o.baseAddress! + i * k, k) }
            }
        }
        return out.reshaped(ids.shape + [k])
    }
}

/// `weight` (int8, `shape`), `weight_scale` (f16 `[N]`: the scales are fp16 values) and `bias` (f32 `[N]`).
func int8Tensors(_ w: PackedInt8Weights, shape: [Int], bias: [Float]?) -> [String: Tensor] {
    var t: [String: Tensor] = [:]
    t["weight"] = w.codes.withUnsafeBytes { Tensor(bytes: $0, shape: shape, dtype: .int8) }
    t["weight_scale"] = Tensor(w.scales).to(.float16)
    if let bias { t["bias"] = Tensor(bias) }
    return t
}
