import LatheTensor

/// Samples held in memory as two tensors: `features` `[N, ...]` (float32) and `labels` `[N]`
/// (int64 class ids).
public struct TensorDataset: Sendable {
    /// `[N, ...]` float32.
    public let features: Tensor
    /// `[N]` int64.
    public let labels: Tensor
    /// Number of classes when known (labels are then in `0..<classes`).
    public let classes: Int?
    /// For a subset (``subset(indices:)``, ``split(fractions:seed:)``): the index of each sample
    /// in the original data set (the one built with ``init(features:labels:classes:)``), so
    /// other tools can rebuild the same subset. `nil` for an original data set.
    public let sourceIndices: [Int]?

    /// Pairs `features` with `labels`. int32 labels are widened to int64.
    public init(features: Tensor, labels: Tensor, classes: Int? = nil) {
        precondition(features.rank >= 1, "TensorDataset: features must be [N, ...], got shape \(features.shape)")
        precondition(features.dtype == .float32, "TensorDataset: features must be float32, got \(features.dtype)")
        precondition(labels.rank == 1, "TensorDataset: labels must be [N], got shape \(labels.shape)")
        precondition(labels.dtype == .int64 || labels.dtype == .int32,
                     "TensorDataset: labels must be int64 class ids, got \(labels.dtype)")
        precondition(features.shape[0] == labels.shape[0],
                     "TensorDataset: \(features.shape[0]) feature rows but \(labels.shape[0]) labels")
        precondition(classes == nil || classes! > 0, "TensorDataset: classes must be positive")
        self.features = features
        self.labels = labels.dtype == .int64 ? labels : labels.to(.int64)
        self.classes = classes
        sourceIndices = nil
    }

    init(features: Tensor, labels: Tensor, classes: Int?, sourceIndices: [Int]?) {
        (self.features, self.labels, self.classes, self.sourceIndices) = (features, labels, classes, sourceIndices)
    }

    /// The index of each sample in the original data set (`0..<count` for an original data set).
    public var indicesInSource: [Int] { sourceIndices ?? Array(0..<count) }

    /// Number of samples.
    public var count: Int { labels.shape[0] }

    /// Shape of one sample's features (`features.shape` without the first dimension).
    public var sampleShape: [Int] { Array(features.shape.dropFirst()) }

    /// The samples at `indices` (1-D int64 tensor), in that order.
    public func subset(indices: Tensor) -> TensorDataset {
        let picked = indices.intScalars
        return TensorDataset(features: features.indexSelect(dim: 0, index: indices),
                             labels: labels.indexSelect(dim: 0, index: indices), classes: classes,
                             sourceIndices: sourceIndices.map { source in picked.map { source[$0] } } ?? picked)
    }

    /// The samples at `indices`, in that order (repeats allowed).
    public func subset(indices: [Int]) -> TensorDataset {
        subset(indices: Tensor(indices, shape: [indices.count], dtype: .int64))
    }

    /// How many samples of each class (`classes` entries, or max label + 1).
    public func classCounts() -> [Int] {
        let ids = labels.intScalars
        var counts = [Int](repeating: 0, count: max(classes ?? 0, (ids.max() ?? -1) + 1))
        for id in ids where id >= 0 { counts[id] += 1 }
        return counts
    }

    /// Shuffles the samples with `seed` and cuts them into consecutive parts of the given
    /// fractions (e.g. `[0.8, 0.1, 0.1]`). Part sizes are `round(n * cumulative fraction)`
    /// differences, so they add up to `count`. The parts are disjoint. Each part's
    /// ``sourceIndices`` (and ``splitIndices(fractions:seed:)``) say which samples it took.
    public func split(fractions: [Double], seed: UInt64) throws -> [TensorDataset] {
        try splitIndices(fractions: fractions, seed: seed).map { subset(indices: $0) }
    }

    /// The row indices (into this data set) of each part that ``split(fractions:seed:)`` makes.
    public func splitIndices(fractions: [Double], seed: UInt64) throws -> [[Int]] {
        guard !fractions.isEmpty else { throw DataError.invalidArgument("split: give at least one fraction") }
        guard fractions.allSatisfy({ $0 >= 0 && $0.isFinite }) else {
            throw DataError.invalidArgument("split: fractions must be finite and non-negative, got \(fractions)")
        }
        let total = fractions.reduce(0, +)
        guard abs(total - 1) <= 1e-6 else {
            throw DataError.invalidArgument("split: fractions \(fractions) sum to \(total), not 1")
        }
        var generator = RandomGenerator(seed: seed)
        let order = Tensor.permutation(count, generator: &generator).intScalars
        var parts: [[Int]] = []
        var cumulative = 0.0, start = 0
        for (i, f) in fractions.enumerated() {
            cumulative += f
            let end = i == fractions.count - 1 ? count : min(count, Int((cumulative / total * Double(count)).rounded()))
            parts.append(Array(order[start..<max(start, end)]))
            start = max(start, end)
        }
        return parts
    }
}
