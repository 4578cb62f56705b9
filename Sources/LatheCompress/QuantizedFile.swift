import Foundation
import LatheIO
import LatheNN
import LatheTensor

/// One quantized layer in the `lathe.quantization` metadata of a file (see docs/quantized-format.md).
public struct QuantizedLayerEntry: Codable, Equatable, Sendable {
    /// `linear` or `conv2d`.
    public var type: String
    /// `int8_static`, `int8_dynamic` or `weight_only`.
    public var scheme: String
    /// 8 or 4.
    public var bits: Int
    /// Input features (linear) or input channels (conv2d).
    public var inFeatures: Int
    /// Output features or channels.
    public var outFeatures: Int
    public var bias: Bool
    /// Weight-only: elements per group along the input dimension.
    public var groupSize: Int?
    /// Weight-only: scales only (true) or scales and mins.
    public var symmetric: Bool?
    /// conv2d geometry.
    public var kernelSize: [Int]?, stride: [Int]?, padding: [Int]?, dilation: [Int]?
    /// int8_static: the activation quantization (`input_scale`, `input_zero_point`).
    public var input: AffineParams? {
        get { inputScale.flatMap { s in inputZeroPoint.map { AffineParams(scale: s, zeroPoint: Int32(clamping: $0)) } } }
        set { (inputScale, inputZeroPoint) = (newValue?.scale, newValue.map { Int($0.zeroPoint) }) }
    }
    public var inputScale: Float?
    public var inputZeroPoint: Int?

    public init(type: String, scheme: String, bits: Int, inFeatures: Int, outFeatures: Int, bias: Bool) {
        self.type = type
        self.scheme = scheme
        self.bits = bits
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.bias = bias
    }

    enum CodingKeys: String, CodingKey {
        case type, scheme, bits, bias, symmetric, stride, padding, dilation
        case inFeatures = "in_features", outFeatures = "out_features", groupSize = "group_size", kernelSize = "kernel_size"
        case inputScale = "input_scale", inputZeroPoint = "input_zero_point"
    }
}

/// The `lathe.quantization` metadata: format version and the quantized layers by dotted name.
public struct QuantizationManifest: Codable, Equatable, Sendable {
    public var format = "lathe-quantized"
    public var version = QuantizationManifest.currentVersion
    /// 2: int8 weight scales in fp16 and activation parameters in the manifest (1 had fp32
    /// scales and `input_scale`/`input_zero_point` tensors).
    public static let currentVersion = 2
    public var layers: [String: QuantizedLayerEntry]
    /// Batch norms folded into the layer before them (their tensors are absent; the layer has a bias).
    public var folded: [FoldedPair]?

    public init(layers: [String: QuantizedLayerEntry], folded: [FoldedPair]? = nil) {
        self.layers = layers
        self.folded = folded
    }

    /// The metadata key of the manifest.
    public static let metadataKey = "lathe.quantization"
}

/// A quantized model file that cannot be used; the message names the file and the problem.
public enum QuantizedFileError: Error, CustomStringConvertible, Equatable {
    case missingManifest(path: String)
    case badManifest(path: String, reason: String)
    case unknownLayer(path: String, layer: String, reason: String)
    case missingTensor(path: String, tensor: String)
    case wrongDType(path: String, tensor: String, expected: DType, found: DType)
    case wrongShape(path: String, tensor: String, expected: [Int], found: [Int])
    case badValue(path: String, tensor: String, reason: String)
    case stateDict(path: String, reason: String)

    public var description: String {
        switch self {
        case let .missingManifest(path):
            return "\(path): no '\(QuantizationManifest.metadataKey)' metadata; this is not a Lathe quantized model (load plain weights with loadStateDict)"
        case let .badManifest(path, reason): return "\(path): bad '\(QuantizationManifest.metadataKey)' metadata: \(reason)"
        case let .unknownLayer(path, layer, reason): return "\(path): quantized layer '\(layer)' does not fit the model: \(reason)"
        case let .missingTensor(path, tensor): return "\(path): tensor '\(tensor)' is missing"
        case let .wrongDType(path, tensor, expected, found): return "\(path): tensor '\(tensor)' is \(found), expected \(expected)"
        case let .wrongShape(path, tensor, expected, found): return "\(path): tensor '\(tensor)' has shape \(found), expected \(expected)"
        case let .badValue(path, tensor, reason): return "\(path): tensor '\(tensor)': \(reason)"
        case let .stateDict(path, reason): return "\(path): \(reason)"
        }
    }
}

/// Saving and loading models whose layers were quantized (docs/quantized-format.md).
///
/// The file is a safetensors file: float layers keep their `state_dict` names; each quantized
/// layer `<p>` stores `<p>.weight` (int8/uint8 codes, row-major, not the kernels' packed
/// layout), `<p>.weight_scale`, optionally `<p>.weight_min`, `<p>.input_scale`,
/// `<p>.input_zero_point` and `<p>.bias`, and the metadata `lathe.quantization` describes each.
public enum QuantizedModelFile {
    /// Writes `model` (with its quantized layers in place) to `url`.
    public static func save(_ model: Module, to url: URL, metadata: [String: String] = [:]) throws {
        var tensors = model.stateDict()
        var layers: [String: QuantizedLayerEntry] = [:]
        for (path, m) in model.namedModules {
            guard let q = m as? any QuantizedLayer else { continue }
            let scales = (m as? QuantizedLinear)?.weight.scales ?? (m as? DynamicQuantizedLinear)?.weight.scales
                ?? (m as? QuantizedConv2d)?.channelsLastWeight.scales ?? []
            if let bad = scales.first(where: { QuantMath.float(fromFloat16Bits: QuantMath.float16Bits($0)) != $0 }) {
                throw QuantizedFileError.badValue(path: url.path, tensor: "\(path).weight_scale", reason: "scale \(bad) is not an fp16 value, "
                                                  + "which the file stores; make int8 weights with PackedInt8Weights(quantizing:rows:cols:)")
            }
            layers[path] = q.quantizationEntry
            for (name, t) in q.quantizedTensors { tensors[path.isEmpty ? name : "\(path).\(name)"] = t }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var meta = metadata
        let folded = BatchNormFolding.foldedPairs(in: model)
        let manifest = QuantizationManifest(layers: layers, folded: folded.isEmpty ? nil : folded)
        meta[QuantizationManifest.metadataKey] = String(decoding: try enc.encode(manifest), as: UTF8.self)
        try SafeTensors.write(tensors, metadata: meta, to: url)
    }

    /// Loads a quantized file into `model`, a freshly built float model of the same
    /// architecture: each listed layer is replaced by its quantized form (``Module/setModule(_:at:)``)
    /// and the remaining float weights are loaded strictly.
    public static func load(into model: Module, from url: URL) throws {
        let file = try SafeTensors.read(contentsOf: url)
        let path = url.path
        guard let json = file.metadata[QuantizationManifest.metadataKey] else { throw QuantizedFileError.missingManifest(path: path) }
        let manifest: QuantizationManifest
        do { manifest = try JSONDecoder().decode(QuantizationManifest.self, from: Data(json.utf8)) } catch {
            throw QuantizedFileError.badManifest(path: path, reason: "\(error)")
        }
        guard manifest.format == "lathe-quantized", manifest.version == QuantizationManifest.currentVersion else {
            let hint = manifest.version == 1 ? " (version 1 files, with fp32 weight scales, are no longer read: quantize the fp32 model again with lathe quantize)" : ""
            throw QuantizedFileError.badManifest(path: path, reason: "format '\(manifest.format)' version \(manifest.version) is not lathe-quantized "
                                                 + "version \(QuantizationManifest.currentVersion)" + hint)
        }
        // On any error the model is left as it was: every module surgery changed is put back.
        let before = model.snapshot()
        do {
            if let folded = manifest.folded {
                do { try BatchNormFolding.prepareFolded(model, pairs: folded) } catch {
                    throw QuantizedFileError.badManifest(path: path, reason: "folded: \(error)")
                }
            }
            let modules = Dictionary(model.namedModules, uniquingKeysWith: { a, _ in a })
            var remaining = file.tensors
            var built: [(String, Module)] = []
            for (layer, e) in manifest.layers.sorted(by: { $0.key < $1.key }) {
                guard let target = modules[layer] else { throw QuantizedFileError.unknownLayer(path: path, layer: layer, reason: "the model has no module of that name") }
                let r = TensorReader(path: path, prefix: layer, tensors: file.tensors)
                let q = try r.build(e, replacing: target)
                for name in r.used { remaining[name] = nil }
                built.append((layer, q))
            }
            for (layer, q) in built {
                do { try model.setModule(q, at: layer) } catch {
                    throw QuantizedFileError.unknownLayer(path: path, layer: layer, reason: error.description)
                }
            }
            do { try model.loadStateDict(remaining, strict: true) } catch {
                throw QuantizedFileError.stateDict(path: path, reason: error.description)
            }
        } catch {
            model.restore(before)
            throw error
        }
    }
}

/// Reads and checks the tensors of one quantized layer.
private final class TensorReader {
    let path: String, prefix: String, tensors: [String: Tensor]
    var used: [String] = []

    init(path: String, prefix: String, tensors: [String: Tensor]) {
        self.path = path
        self.prefix = prefix
        self.tensors = tensors
    }

    func tensor(_ name: String, _ dtype: DType, _ shape: [Int], optional: Bool = false) throws -> Tensor? {
        let full = prefix.isEmpty ? name : "\(prefix).\(name)"
        guard let t = tensors[full] else {
            if optional { return nil }
            throw QuantizedFileError.missingTensor(path: path, tensor: full)
        }
        guard t.dtype == dtype else { throw QuantizedFileError.wrongDType(path: path, tensor: full, expected: dtype, found: t.dtype) }
        guard t.shape == shape else { throw QuantizedFileError.wrongShape(path: path, tensor: full, expected: shape, found: t.shape) }
        used.append(full)
        return t
    }

    func bytes<T>(_ t: Tensor, as: T.Type) -> [T] {
        t.withUnsafeRawBytes { raw in Array(raw.bindMemory(to: T.self)) }
    }

    func bias(_ e: QuantizedLayerEntry) throws -> [Float]? {
        e.bias ? try tensor("bias", .float32, [e.outFeatures])!.scalars : nil
    }

    func inputParams(_ e: QuantizedLayerEntry, required: Bool) throws -> AffineParams? {
        guard let scale = e.inputScale, let zp = e.inputZeroPoint else {
            if required { throw bad("\(e.scheme) needs input_scale and input_zero_point") }
            return nil
        }
        guard scale > 0, scale.isFinite else { throw bad("input_scale \(scale) is not positive and finite") }
        guard (0...255).contains(zp) else { throw bad("input_zero_point \(zp) is outside [0, 255]") }
        return AffineParams(scale: scale, zeroPoint: Int32(zp))
    }

    func bad(_ reason: String) -> QuantizedFileError { .unknownLayer(path: path, layer: prefix, reason: reason) }

    func build(_ e: QuantizedLayerEntry, replacing target: Module) throws -> Module {
        guard e.inFeatures > 0, e.outFeatures > 0 else { throw bad("in_features and out_features must be positive") }
        if e.scheme != "int8_static", e.inputScale != nil || e.inputZeroPoint != nil {
            throw bad("a \(e.scheme) layer has no input_scale or input_zero_point (only int8_static layers have fixed activation ranges)")
        }
        let (n, k) = (e.outFeatures, e.inFeatures)
        switch (e.type, e.scheme) {
        case ("linear", "int8_static"), ("linear", "int8_dynamic"):
            guard let lin = target as? Linear else { throw bad("the model has a \(type(of: target)) there, not a Linear") }
            guard e.bits == 8, lin.inFeatures == k, lin.outFeatures == n, (lin.bias != nil) == e.bias else {
                throw bad("the file's [\(n), \(k)] int\(e.bits) layer does not match the model's Linear(\(lin.inFeatures), \(lin.outFeatures))")
            }
            let w = try int8Weights(rows: n, cols: k, shape: [n, k])
            if e.scheme == "int8_static" { return QuantizedLinear(weight: w, bias: try bias(e), inputParams: try inputParams(e, required: true)!) }
            return DynamicQuantizedLinear(weight: w, bias: try bias(e))
        case ("conv2d", "int8_static"), ("conv2d", "int8_dynamic"):
            guard let conv = target as? Conv2d else { throw bad("the model has a \(type(of: target)) there, not a Conv2d") }
            guard let ks = e.kernelSize, let st = e.stride, let pd = e.padding, let dl = e.dilation,
                  [ks, st, pd, dl].allSatisfy({ $0.count == 2 }) else { throw bad("conv2d needs kernel_size, stride, padding and dilation (two values each)") }
            let ws = conv.weight.value.shape
            guard e.bits == 8, ws == [n, k, ks[0], ks[1]], conv.groups == 1, (conv.bias != nil) == e.bias,
                  st == [conv.stride.0, conv.stride.1], pd == [conv.padding.0, conv.padding.1], dl == [conv.dilation.0, conv.dilation.1] else {
                throw bad("the file's conv2d does not match the model's Conv2d (weight \(ws))")
            }
            let w = try int8Weights(rows: n, cols: k * ks[0] * ks[1], shape: [n, k, ks[0], ks[1]])
            return QuantizedConv2d(weight: w, bias: try bias(e), inputParams: try inputParams(e, required: e.scheme == "int8_static"),
                                   inChannels: k, kernelSize: (ks[0], ks[1]), stride: (st[0], st[1]), padding: (pd[0], pd[1]),
                                   dilation: (dl[0], dl[1]))
        case ("linear", "weight_only"):
            guard let lin = target as? Linear else { throw bad("the model has a \(type(of: target)) there, not a Linear") }
            guard e.bits == 8 || e.bits == 4, let g = e.groupSize, g > 0, g % 16 == 0, let sym = e.symmetric else {
                throw bad("weight_only needs bits 8 or 4, group_size a positive multiple of 16 and symmetric")
            }
            guard lin.inFeatures == k, lin.outFeatures == n, (lin.bias != nil) == e.bias else {
                throw bad("the file's [\(n), \(k)] layer does not match the model's Linear(\(lin.inFeatures), \(lin.outFeatures))")
            }
            let scheme = GroupwiseScheme(bits: e.bits, groupSize: g, symmetric: sym)
            let rowBytes = e.bits == 4 ? (k + 1) / 2 : k, groups = (k + g - 1) / g
            let codes = try tensor("weight", e.bits == 8 && sym ? .int8 : .uint8, [n, rowBytes])!
            // fp16 scales (Lathe's own), or float32 (K-quant weights saved from a GGUF model).
            let scaleType: DType = tensors[prefix.isEmpty ? "weight_scale" : "\(prefix).weight_scale"]?.dtype == .float32 ? .float32 : .float16
            let scales = try tensor("weight_scale", scaleType, [n, groups])!
            let mins = sym ? nil : try tensor("weight_min", scaleType, [n, groups])!
            let weight = scaleType == .float32
                ? GroupwiseWeights(scheme: scheme, rows: n, cols: k, codes: bytes(codes, as: UInt8.self), float32Scales: scales.scalars,
                                   float32Mins: mins?.scalars ?? [])
                : GroupwiseWeights(scheme: scheme, rows: n, cols: k, codes: bytes(codes, as: UInt8.self), scales: bytes(scales, as: UInt16.self),
                                   mins: mins.map { bytes($0, as: UInt16.self) } ?? [])
            return WeightOnlyLinear(weight: weight, bias: try bias(e))
        default:
            throw bad("unknown type/scheme '\(e.type)'/'\(e.scheme)' (expected linear or conv2d with int8_static, int8_dynamic or weight_only)")
        }
    }

    func int8Weights(rows n: Int, cols k: Int, shape: [Int]) throws -> PackedInt8Weights {
        let codes = bytes(try tensor("weight", .int8, shape)!, as: Int8.self)
        let scales = try tensor("weight_scale", .float16, [n])!.to(.float32).scalars
        if let bad = scales.firstIndex(where: { !($0 >= 0 && $0.isFinite) }) {
            throw QuantizedFileError.badValue(path: path, tensor: "\(prefix).weight_scale", reason: "scale \(scales[bad]) at \(bad) is negative or not finite")
        }
        guard k <= 65536 else { throw QuantizedFileError.badValue(path: path, tensor: "\(prefix).weight", reason: "\(k) inputs per channel exceed 65536") }
        return PackedInt8Weights(codes: codes, scales: scales, rows: n, cols: k)
    }
}
