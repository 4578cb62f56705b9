import Foundation
import LatheIO
import LatheText

extension CalibratedQuantization {
    /// What ``convert(gguf:to:rules:options:calibrationText:rows:length:progress:tensorProgress:)`` did.
    public struct Conversion: Sendable {
        public var result: Result
        public var written: [GGUFWrittenTensor]
    }

    /// Writes the GGUF model `source` as `output` (a Q4_0 or Q4_1 file, `rules.fileType`) with
    /// its projections quantized by calibration on `calibrationText` (its first `rows` ×
    /// `length` tokens, see ``rows(_:rows:length:bos:)``):
    ///
    /// 1. the model is loaded with every weight dequantised to float32 (the reference), and the
    ///    text tokenized with the file's tokenizer (without special tokens; each row starts with
    ///    BOS when the vocabulary adds one, as `lathe perplexity` does);
    /// 2. ``DecoderModel/quantizeWithCalibration(rows:options:progress:)`` quantizes the seven
    ///    projections of every layer (`options.symmetric` follows the file type: Q4_0 symmetric,
    ///    Q4_1 asymmetric);
    /// 3. the file is written as ``GGUFFile/requantize(to:rules:replacing:progress:)`` writes it
    ///    (metadata and tokenizer copied, llama-quantize's per-tensor types), with the
    ///    projections' blocks (``Int4Groups/ggufBlocks()``) and AWQ's folded norms in place of
    ///    the converted source tensors. The other tensors (embedding, output) follow the rules.
    public static func convert(gguf source: URL, to output: URL, rules: GGUFTypeRules, options: Options, calibrationText: String,
                               rows: Int, length: Int, progress: (String) -> Void = { _ in },
                               tensorProgress: ((GGUFWrittenTensor) -> Void)? = nil) throws -> Conversion {
        guard rules.fileType == .q4_0 || rules.fileType == .q4_1 else {
            throw CalibrationError("calibrated quantization writes q4_0 or q4_1 files, not \(rules.fileType.rawValue)")
        }
        if GGUFFile.sameFile(output.path, source.path) { throw CalibrationError("\(output.path): the output is the input; write to another path") }
        var options = options
        options.symmetric = rules.fileType == .q4_0
        let file = try GGUFFile(contentsOf: source)
        let model = try DecoderModel.load(gguf: file, quantized: false)
        let tokenizer = try PretrainedModel.ggufTokenizer(file)
        guard length <= model.maxPositions else {
            throw CalibrationError("calibration rows of \(length) tokens exceed the model's \(model.maxPositions) positions")
        }
        let ids = tokenizer.encode(calibrationText, addSpecialTokens: false)
        let calibration = try Self.rows(ids, rows: rows, length: length, bos: tokenizer.addedBOS)
        progress("calibrating on \(rows) rows of \(length) tokens (\(ids.count) in the text), \(options.method.rawValue), "
                 + "\(options.symmetric ? "Q4_0" : "Q4_1")-style groups of 32")
        let result = try model.quantizeWithCalibration(rows: calibration, options: options, progress: progress)

        // Hugging Face names back to the file's names.
        let gemma = model.config.architecture == "gemma3"
        var ggufName: [String: String] = [:]
        for info in file.tensors {
            if let hf = DecoderModel.huggingFaceName(info.name, gemma: gemma) { ggufName[hf] = info.name }
        }
        var replacing: [String: GGUFTensorReplacement] = [:]
        for p in result.projections {
            guard let name = ggufName[p.name] else { throw CalibrationError("\(source.path) has no tensor for \(p.name)") }
            replacing[name] = .blocks(p.weights.ggufType, p.weights.ggufBlocks())
        }
        for (hf, values) in result.changedTensors {
            guard let name = ggufName[hf] else { throw CalibrationError("\(source.path) has no tensor for \(hf)") }
            replacing[name] = .values(values)
        }
        let written = try file.requantize(to: output, rules: rules, replacing: replacing, progress: tensorProgress)
        return Conversion(result: result, written: written)
    }
}
