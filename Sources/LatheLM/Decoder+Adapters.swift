import Foundation
import LatheCompress
import LatheIO
import LatheNN
import LatheTensor
import LatheText

extension DecoderModel: AdapterRowOrder {
    /// Llama's q and k projections read from GGUF keep llama.cpp's adjacent-pair RoPE rows
    /// (``RopeLayout/pairs``): Hugging Face's row `j · headDim/2 + i` of a head is stored at
    /// row `2i + j`. Adapter folders keep Hugging Face's order (see ``AdapterRowOrder``).
    public func adapterRowOrder(forLayer path: String) -> [Int]? {
        guard config.ropeLayout == .pairs else { return nil }
        let heads: Int
        if path.hasSuffix("self_attn.q_proj") { heads = config.heads } else if path.hasSuffix("self_attn.k_proj") { heads = config.kvHeads } else { return nil }
        let headDim = config.headDim, half = headDim / 2
        var order = [Int](repeating: 0, count: heads * headDim)
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 { order[h * headDim + j * half + i] = h * headDim + 2 * i + j }
            }
        }
        return order
    }
}

/// Fusing an adapter (PEFT, mlx-lm or llama.cpp GGUF) into its base model and writing the result, as a Hugging Face folder
/// or a GGUF file (`lathe fuse`).
///
/// Every adapted layer is fused in float32 from the base's own weights (``LoRALinear/fusedWeight``:
/// `dequant(W) + scaling · B A`, or DoRA's row-scaled form) and, for a quantized output,
/// quantized once from those values: never from another copy of the base, and never skipped.
/// Layers without an adapter are written as the base has them (a GGUF base's tensors whose type
/// does not change are copied byte for byte).
public enum LoRAFusion {
    public enum Destination: Sendable {
        /// A Hugging Face folder with weights of `dtype` (float32, float16 or bfloat16).
        case huggingFace(URL, dtype: DType)
        /// A GGUF file with tensor types by `rules`.
        case gguf(URL, rules: GGUFTypeRules)
    }

    public struct Summary: Sendable {
        /// The adapter's config.
        public var config: LoRAConfig
        /// The fused layers' paths.
        public var fusedLayers: [String]
        /// Files written (a folder's files, or the GGUF file).
        public var files: [URL]
        /// For a GGUF output: each tensor's conversion.
        public var tensors: [GGUFWrittenTensor]
    }

    /// Loads the base at `path` (a GGUF file, kept quantized, or a Hugging Face folder), applies
    /// the adapter `adapter` (a PEFT or mlx-lm folder, or a llama.cpp GGUF adapter;
    /// ``DecoderModel/loadAdapter(at:)``) and writes the fused model to `destination`.
    ///
    /// With `calibration` (token rows, e.g. from ``CalibratedQuantization/rows(_:rows:length:bos:)``),
    /// a GGUF base written as Q4_0 or Q4_1 has its fused layers quantized by GPTQ on those rows
    /// (``DecoderModel/quantizeWithCalibration(rows:options:progress:)`` on the fused float model)
    /// instead of rounded to nearest, which keeps more of an adapter whose changes are smaller
    /// than a 4-bit step; layers without an adapter are still copied.
    /// - Throws: ``LoRAError`` for an adapter that does not fit the base, ``ModelFileError`` and
    ///   ``GGUFError`` for files that cannot be read or written, ``CalibrationError``.
    @discardableResult
    public static func write(base path: String, adapter: URL, to destination: Destination, calibration: [[Int]]? = nil,
                             progress: (String) -> Void = { _ in }, warn: (String) -> Void = { _ in }) throws -> Summary {
        let isFolder = try PretrainedModel.isFolder(path)
        let source = URL(fileURLWithPath: path)
        let output: URL
        switch destination { case .huggingFace(let u, _), .gguf(let u, _): output = u }
        if GGUFFile.sameFile(output.path, path) { throw ModelFileError(file: output.path, message: "the output is the base model; write to another path") }
        guard case .decoder(let model) = try PretrainedModel.loadModel(path) else {
            throw ModelFileError(file: path, message: "adapters apply to Llama-family decoders (Llama, Mistral, Qwen2, Gemma 3)")
        }
        let config = try model.loadAdapter(at: adapter).config
        let paths = model.loraLayers.map(\.0)
        if let calibration {
            guard case .gguf(let url, let rules) = destination, !isFolder, rules.fileType == .q4_0 || rules.fileType == .q4_1 else {
                throw CalibrationError("calibrated fusing writes a GGUF base's fused layers as q4_0 or q4_1")
            }
            return try writeCalibrated(model, file: GGUFFile(contentsOf: source), config: config, to: url, rules: rules, rows: calibration,
                                       progress: progress)
        }
        switch destination {
        case .gguf(let url, let rules) where !isFolder:
            // Quantize each fused layer once from float32; copy or convert the rest as `convert` does.
            let file = try GGUFFile(contentsOf: source)
            let gemma = try file.string("general.architecture") == "gemma3"
            let layers = Dictionary(uniqueKeysWithValues: model.loraLayers)
            var replacing: [String: GGUFTensorReplacement] = [:], fused = Set<String>()
            for info in file.tensors {
                guard let hf = DecoderModel.huggingFaceName(info.name, gemma: gemma), hf.hasSuffix(".weight"),
                      let layer = layers[String(hf.dropLast(".weight".count))] else { continue }
                fused.insert(String(hf.dropLast(".weight".count)))
                replacing[info.name] = .values(layer.fusedWeight.scalars)
            }
            if let missed = Set(paths).subtracting(fused).sorted().first {
                throw ModelFileError(file: path, message: "the adapted layer \(missed) has no tensor in the GGUF file; nothing was fused into it")
            }
            let written = try file.requantize(to: url, rules: rules, replacing: replacing)
            return Summary(config: config, fusedLayers: paths, files: [url], tensors: written)
        case .gguf(let url, let rules):
            // A Hugging Face base: a float32 folder of the fused model, then GGUF as `convert` writes it.
            try model.fuseLoRA()
            let staging = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).fused-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: staging) }
            try HuggingFaceWriter.write(.decoder(model), tokenizerSource: source, to: staging, options: .init(dtype: .float32))
            let written = try GGUFExport.write(huggingFaceFolder: staging, to: url, rules: rules)
            return Summary(config: config, fusedLayers: paths, files: [url], tensors: written)
        case .huggingFace(let folder, let dtype):
            try model.fuseLoRA()
            var template: String?, tokenizer: (any Tokenizer)?
            if !isFolder {
                let file = try GGUFFile(contentsOf: source)
                template = try file.string("tokenizer.chat_template")
                do { tokenizer = try PretrainedModel.ggufTokenizer(file) } catch { warn("the tokenizer is not written (\(error))") }
            }
            let files = try HuggingFaceWriter.write(.decoder(model), tokenizerSource: source, tokenizer: tokenizer, chatTemplate: template,
                                                    to: folder, options: .init(dtype: dtype))
            return Summary(config: config, fusedLayers: paths, files: files, tensors: [])
        }
    }

    /// The fused float model quantized by GPTQ on `rows`; the fused layers' blocks replace the
    /// file's tensors, the rest is copied or converted by `rules`.
    static func writeCalibrated(_ model: DecoderModel, file: GGUFFile, config: LoRAConfig, to url: URL, rules: GGUFTypeRules, rows: [[Int]],
                                progress: (String) -> Void) throws -> Summary {
        let paths = model.loraLayers.map(\.0)
        try model.fuseLoRA()
        // GPTQ runs on float projections: the ones without an adapter hold their dequantised weights.
        for (path, m) in model.namedModules {
            if let q = m as? WeightOnlyLinear, path.contains(".layers.") { try model.setModule(Linear(weight: q.denseWeight, bias: q.denseBias), at: path) }
        }
        var options = CalibratedQuantization.Options(method: .gptq, symmetric: rules.fileType == .q4_0)
        options.symmetric = rules.fileType == .q4_0
        let result = try model.quantizeWithCalibration(rows: rows, options: options, progress: progress)
        let gemma = model.config.architecture == "gemma3"
        var ggufName: [String: String] = [:]
        for info in file.tensors {
            if let hf = DecoderModel.huggingFaceName(info.name, gemma: gemma) { ggufName[hf] = info.name }
        }
        let fused = Set(paths.map { $0 + ".weight" })
        var replacing: [String: GGUFTensorReplacement] = [:]
        for p in result.projections where fused.contains(p.name) {
            guard let name = ggufName[p.name] else { throw ModelFileError(file: file.path, message: "no tensor for \(p.name)") }
            replacing[name] = .blocks(p.weights.ggufType, p.weights.ggufBlocks())
        }
        if let missed = fused.subtracting(result.projections.map(\.name)).sorted().first {
            throw CalibrationError("the adapted layer \(missed) is not a projection GPTQ quantizes; fuse without calibration")
        }
        let written = try file.requantize(to: url, rules: rules, replacing: replacing)
        return Summary(config: config, fusedLayers: paths, files: [url], tensors: written)
    }

    /// Token rows of `text` for ``write(base:adapter:to:calibration:progress:warn:)``'s GPTQ:
    /// `rows` rows of `length` tokens (at most the model's positions) in the GGUF base's own
    /// vocabulary, BOS first where it adds one.
    public static func calibrationRows(base path: String, text: String, rows: Int, length: Int) throws -> [[Int]] {
        guard !PretrainedModel.isDirectory(path) else {
            throw LoRAError("calibrated fusing needs a GGUF base (its fused layers are written as its 4-bit blocks)")
        }
        let file = try GGUFFile(contentsOf: URL(fileURLWithPath: path))
        let tokenizer = try PretrainedModel.ggufTokenizer(file)
        let positions = try DecoderConfig.gguf(file).maxPositions
        return try CalibratedQuantization.rows(tokenizer.encode(text, addSpecialTokens: false), rows: rows,
                                               length: min(length, positions), bos: tokenizer.addedBOS)
    }

    /// A fused model against the live adapter it came from, and the base without the adapter
    /// against the same: what fusing kept of what the adapter changes.
    public struct Comparison: Sendable {
        /// The fused model (the compared model) against the live adapter (the reference).
        public var fused: KLResult
        /// The base without the adapter against the live adapter.
        public var withoutAdapter: KLResult
        /// Tokens per chunk.
        public var context: Int
        /// The fused model is more than a tenth as far from the live adapter as the base is:
        /// quantizing the fused layers rounded much of the adapter's change away.
        public var lostMuchOfTheAdapter: Bool { fused.meanKL > 0.1 * withoutAdapter.meanKL }
    }

    /// Runs the model written at `written`, the base at `base` with the adapter folder `adapter`
    /// live, and the base alone on the first `chunks` chunks of `context` tokens (at most the
    /// models' positions) of `text`.
    public static func compare(base: String, adapter: URL, written: String, text: String, context: Int, chunks: Int) throws -> Comparison {
        let live = try PretrainedModel.load(base)
        guard case .decoder(let d) = live.kind else { throw LoRAError("\(base) is not a Llama-family decoder") }
        try d.loadAdapter(at: adapter)
        let fused = try PretrainedModel.load(written).languageModel()
        let length = min(context, d.maxPositions, fused.maxPositions)
        let ids = Array(live.tokenizer.encode(text, addSpecialTokens: false).prefix(chunks * length))
        let bos = live.tokenizer.addedBOS
        let r = try Perplexity.compare(fused, reference: d, tokens: ids, context: length, bos: bos)
        let plain = try PretrainedModel.load(base).languageModel()
        let dropped = try Perplexity.compare(plain, reference: d, tokens: ids, context: length, bos: bos)
        return Comparison(fused: r, withoutAdapter: dropped, context: length)
    }
}

/// The adapter formats `--adapter` reads.
public enum AdapterFormat: String, Sendable {
    /// A PEFT folder: `adapter_config.json` and `adapter_model.safetensors` (``PEFTAdapter``).
    case peft = "PEFT"
    /// An mlx-lm folder: `adapter_config.json` and `adapters.safetensors` (``MLXAdapter``).
    case mlx = "mlx-lm"
    /// A llama.cpp LoRA adapter file (``GGUFAdapter``).
    case gguf = "llama.cpp GGUF"

    /// The format of the adapter at `url`: a folder by its weights file, a file by GGUF's magic.
    public static func detect(_ url: URL) throws -> AdapterFormat {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw LoRAError("\(url.path): no such adapter folder or file (a PEFT or mlx-lm adapter folder, or a llama.cpp .gguf adapter)")
        }
        if isDirectory.boolValue {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent(PEFTAdapter.weightsFile).path) { return .peft }
            if MLXAdapter.isAdapterFolder(url) { return .mlx }
            throw LoRAError("\(url.path) has neither \(PEFTAdapter.weightsFile) (PEFT) nor \(MLXAdapter.weightsFile) (mlx-lm)"
                            + (FileManager.default.fileExists(atPath: url.appendingPathComponent("adapter_model.bin").path)
                               ? " (adapter_model.bin, PyTorch's pickle format, is not read)" : ""))
        }
        guard GGUFFile.hasMagic(atPath: url.path) else {
            throw LoRAError("\(url.path) is a file but not a GGUF adapter; give an adapter folder (PEFT or mlx-lm) or a llama.cpp .gguf adapter")
        }
        return .gguf
    }
}

extension DecoderModel {
    /// Loads the adapter at `url` (a PEFT or mlx-lm folder, or a llama.cpp GGUF adapter file;
    /// ``AdapterFormat/detect(_:)``) into the model, unmerged. The model is changed only when
    /// the whole adapter fits.
    /// - Returns: the adapter as a PEFT config, and the format it was read from.
    @discardableResult
    public func loadAdapter(at url: URL) throws -> (config: LoRAConfig, format: AdapterFormat) {
        let format = try AdapterFormat.detect(url)
        switch format {
        case .peft: return (try PEFTAdapter.load(folder: url, into: self), format)
        case .mlx: return (try MLXAdapter.load(folder: url, into: self), format)
        case .gguf: return (try GGUFAdapter.load(file: url, into: self), format)
        }
    }
}

/// Converting an adapter between the formats `--adapter` reads (`lathe convert-adapter`).
public enum AdapterConversion {
    public enum Destination: Sendable {
        /// A PEFT folder (`adapter_config.json`, `adapter_model.safetensors`).
        case peft(URL)
        /// A llama.cpp LoRA adapter file with tensors of `type` (f32, f16, bf16).
        case gguf(URL, type: GGMLType)
    }

    public struct Summary: Sendable {
        /// The adapter as a PEFT config.
        public var config: LoRAConfig
        /// The format read.
        public var format: AdapterFormat
        /// The adapted layers' paths.
        public var layers: [String]
        /// For a GGUF output: the tensors written.
        public var tensors: [GGUFTensorDescriptor]
    }

    /// Loads the base at `base` (a GGUF file or a Hugging Face folder: the adapter's shapes,
    /// architecture and q/k row order come from it), applies the adapter at `adapter` and writes
    /// it to `destination`.
    @discardableResult
    public static func convert(base: String, adapter: URL, to destination: Destination) throws -> Summary {
        guard case .decoder(let model) = try PretrainedModel.loadModel(base) else {
            throw ModelFileError(file: base, message: "adapters apply to Llama-family decoders (Llama, Mistral, Qwen2, Gemma 3)")
        }
        let (config, format) = try model.loadAdapter(at: adapter)
        let layers = model.loraLayers.map(\.0)
        switch destination {
        case .peft(let folder):
            if folder.standardizedFileURL == adapter.standardizedFileURL { throw LoRAError("the output is the input adapter; write to another folder") }
            try PEFTAdapter.save(model, config: config, to: folder)
            return Summary(config: config, format: format, layers: layers, tensors: [])
        case .gguf(let url, let type):
            if GGUFFile.sameFile(url.path, adapter.path) || GGUFFile.sameFile(url.path, base) {
                throw LoRAError("the output is an input file; write to another path")
            }
            let name = adapter.standardizedFileURL.lastPathComponent
            let written = try GGUFAdapter.write(model, to: url, type: type, name: name)
            return Summary(config: config, format: format, layers: layers, tensors: written)
        }
    }
}
