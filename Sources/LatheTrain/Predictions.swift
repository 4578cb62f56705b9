import Foundation
import LatheData
import LatheIO
import LatheNN
import LatheTensor

/// A classifier's output on every sample of one split, with each sample's index in the full
/// data set, so that another tool (PyTorch, `Tools/reference/check_interop.py`) can rebuild the
/// same split and compare sample by sample.
public struct Predictions: Sendable {
    public var split: DataSplit
    /// Each sample's row in the full data set (for `digits`: the row of `Digits.load()`, i.e. the
    /// line of the bundled `digits.csv.gz`; for `fashion-mnist`: of the official train or test file).
    public var indices: [Int]
    /// True class ids.
    public var labels: [Int]
    /// Predicted class ids (argmax of the logits, first on ties).
    public var predicted: [Int]
    /// `[count, classes]` float32.
    public var logits: Tensor

    public var count: Int { indices.count }
    public var correct: Int { zip(labels, predicted).filter { $0 == $1 }.count }
    public var accuracy: Double { Double(correct) / Double(Swift.max(count, 1)) }

    /// The JSON written by `lathe eval --predictions`: the `info` entries (strings), then `split`,
    /// `count`, `correct`, `accuracy`, `indices`, `labels`, `predictions` and, with
    /// `includeLogits`, `logits` (one list per sample, shortest round-tripping float32 decimals).
    public func json(info: [(String, String)] = [], includeLogits: Bool = true) -> String {
        func ints(_ a: [Int]) -> String { "[" + a.map(String.init).joined(separator: ",") + "]" }
        var lines = info.map { "  \(quoted($0.0)): \(quoted($0.1))" }
        lines.append("  \"split\": \(quoted(split.rawValue))")
        lines.append("  \"count\": \(count)")
        lines.append("  \"correct\": \(correct)")
        lines.append("  \"accuracy\": \(accuracy)")
        lines.append("  \"indices\": \(ints(indices))")
        lines.append("  \"labels\": \(ints(labels))")
        lines.append("  \"predictions\": \(ints(predicted))")
        if includeLogits {
            let classes = logits.shape.last ?? 0, values = logits.scalars
            let rows = (0..<count).map { r in
                "    [" + values[r * classes..<(r + 1) * classes].map { "\($0)" }.joined(separator: ",") + "]"
            }
            lines.append("  \"logits\": [\n" + rows.joined(separator: ",\n") + "\n  ]")
        }
        return "{\n" + lines.joined(separator: ",\n") + "\n}\n"
    }

    func quoted(_ s: String) -> String { JSONWriter.quoted(s) }
}

extension ClassificationTask {
    /// The samples of a split (`test` falls back to validation when there is no test split).
    public func dataset(_ split: DataSplit) -> TensorDataset {
        split == .test ? (test ?? validation) : split == .train ? train : validation
    }

    /// Logits and predictions for every sample of `data`, in batches of 512 (call in eval mode).
    public static func predict(_ model: Module, _ data: TensorDataset, flatten: Bool, split: DataSplit) -> Predictions {
        let n = data.count
        var logits: [Tensor] = []
        for start in stride(from: 0, to: n, by: 512) {
            let idx = Tensor(Array(start..<Swift.min(n, start + 512)))
            var x = data.features.indexSelect(dim: 0, index: idx)
            if flatten { x = x.flattened(from: 1) }
            logits.append(model(x))
        }
        let all = logits.isEmpty ? Tensor([Float](), shape: [0, 0]) : Tensor.concatenated(logits, dim: 0)
        return Predictions(split: split, indices: data.indicesInSource, labels: data.labels.intScalars,
                           predicted: n == 0 ? [] : all.argmax(dim: 1).intScalars, logits: all)
    }
}

extension Trainer {
    /// Per-sample predictions of the current model on a split, in evaluation mode (classifiers only).
    public func predictions(_ split: DataSplit) throws -> Predictions {
        guard let c = task as? ClassificationTask else {
            throw RecipeError(file: "recipe", key: "model.name", message: "per-sample predictions need a classifier, not '\(recipe?.model.name ?? "\(type(of: model))")'")
        }
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        return noGrad { ClassificationTask.predict(model, c.dataset(split), flatten: c.flatten, split: split) }
    }
}
