import Foundation
import LatheIO
import LatheNN
import LatheTensor

extension DecoderModel {
    /// The next-token cross-entropy of ``loss(_:labels:segmentIDs:)`` (position `t` predicts
    /// `labels[t + 1]`, -100 counts for nothing), with the output projection applied only at the
    /// positions whose next label counts. Fine-tuning data masks most positions (prompts), and the
    /// projection onto a large vocabulary, forward and backward, is then most of the work saved.
    /// With a mean or sum and a head that fuses with the loss (``loss(_:labels:segmentIDs:)``), the
    /// logits of those positions are never held either.
    ///
    /// - Parameter reduction: `.mean` over the counted labels, or `.sum`.
    /// - Throws: ``TrainingInputError`` as ``loss(_:labels:segmentIDs:)``.
    public func labelledLoss(_ ids: Tensor, labels: Tensor, segmentIDs: Tensor? = nil, reduction: Reduction = .mean) throws -> Tensor {
        guard labels.shape == ids.shape else { throw TrainingInputError("labels \(labels.shape) and ids \(ids.shape) differ in shape") }
        let (b, t) = try checkTrainingInput(ids, segmentIDs: segmentIDs)
        let l = labels.intScalars
        var positions: [Int] = [], targets: [Int] = []
        for r in 0..<b {
            for j in 0..<(t - 1) {
                let next = l[r * t + j + 1]
                guard next != -100 else { continue }
                guard next >= 0, next < config.vocabularySize else {
                    throw TrainingInputError("label \(next) is outside the vocabulary (0..<\(config.vocabularySize)) and is not -100")
                }
                positions.append(r * t + j)
                targets.append(next)
            }
        }
        guard !positions.isEmpty else {
            throw TrainingInputError("every label after the first position of each row is -100: nothing to predict")
        }
        let h = trainingHiddenStates(ids, segmentIDs: segmentIDs, rows: b, length: t).reshaped([b * t, config.hiddenSize])
        if reduction != .none {
            // Head and loss fused over the counted positions (the others' targets ignored).
            var all = [Int](repeating: -100, count: b * t)
            for (p, target) in zip(positions, targets) { all[p] = target }
            if let mean = fusedHeadLoss(h, targets: all) { return reduction == .sum ? mean * Float(positions.count) : mean }
        }
        let chosen = h.indexSelect(dim: 0, index: Tensor(positions, shape: [positions.count], dtype: .int64))
        return Loss.crossEntropy(outputLogits(chosen), Tensor(targets, shape: [targets.count], dtype: .int64), reduction: reduction)
    }
}

extension PretrainedModel {
    /// Loads a Llama-family decoder for training: every weight as float32 (a GGUF file's
    /// quantized matrices are dequantised), with its tokenizer and chat template.
    /// - Throws: ``ModelFileError`` for a missing file, or a model that is not such a decoder.
    public static func loadForTraining(_ path: String) throws -> PretrainedModel {
        if try isFolder(path) {
            let p = try load(path)
            _ = try p.decoder()
            return p
        }
        let file = try GGUFFile(contentsOf: URL(fileURLWithPath: path))
        if try file.string("general.architecture") == "gpt2" {
            throw ModelFileError(file: path, message: "fine-tuning needs a Llama-family decoder; this is a GPT-2")
        }
        return PretrainedModel(kind: .decoder(try DecoderModel.load(gguf: file, quantized: false)), tokenizer: try ggufTokenizer(file),
                               chatTemplate: try file.string("tokenizer.chat_template"), path: path)
    }
}
