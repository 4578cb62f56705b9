import LatheNN
import LatheTensor

/// One entry of a sensitivity scan: a metric after pruning one layer alone.
public struct SensitivityRow: Sendable, Equatable {
    public var parameter: String
    public var sparsity: Double
    public var metric: Double
    /// `baseline - metric` (positive: worse).
    public var drop: Double

    public init(parameter: String, sparsity: Double, metric: Double, drop: Double) {
        (self.parameter, self.sparsity, self.metric, self.drop) = (parameter, sparsity, metric, drop)
    }
}

/// How much each layer tolerates magnitude pruning on its own (Han et al. 2015, section 4).
public struct SensitivityScan: Sendable, Equatable {
    /// The metric of the unpruned model.
    public var baseline: Double
    public var rows: [SensitivityRow]

    public init(baseline: Double, rows: [SensitivityRow]) { (self.baseline, self.rows) = (baseline, rows) }

    /// The rows of one parameter, by increasing sparsity.
    public func rows(for parameter: String) -> [SensitivityRow] {
        rows.filter { $0.parameter == parameter }.sorted { $0.sparsity < $1.sparsity }
    }

    /// Per layer, the highest scanned sparsity whose drop (and that of every lower scanned
    /// sparsity) is at most `maxDrop`; 0 when even the lowest exceeds it.
    ///
    /// Drops measured one layer at a time do not simply add up when all layers are pruned
    /// together; check the combined result (and fine-tune).
    public func ratios(maxDrop: Double) -> [String: Double] {
        var out: [String: Double] = [:]
        for name in Set(rows.map(\.parameter)) {
            var best = 0.0
            for r in rows(for: name) {
                guard r.drop <= maxDrop else { break }
                best = r.sparsity
            }
            out[name] = best
        }
        return out
    }
}

/// For each parameter and each sparsity, prunes that parameter alone by magnitude, measures
/// `evaluate()` (e.g. validation accuracy, higher is better), and restores the weights.
///
/// - Parameters:
///   - parameters: default ``prunableParameters(_:)``.
///   - sparsities: default 0.1, 0.2, ..., 0.9.
///   - evaluate: the metric of the model as it is now; called `1 + parameters * sparsities` times.
public func sensitivityScan(_ model: Module, parameters: [String]? = nil,
                            sparsities: [Double] = (1...9).map { Double($0) / 10 },
                            evaluate: () -> Double) -> SensitivityScan {
    let byName = Dictionary(uniqueKeysWithValues: model.namedParameters)
    let baseline = evaluate()
    var rows: [SensitivityRow] = []
    for name in parameters ?? prunableParameters(model) {
        guard let p = byName[name] else { preconditionFailure("sensitivityScan: the model has no parameter \(name)") }
        let saved = p.value.detached()
        for s in sparsities {
            pruneMagnitude(model, sparsity: s, parameters: [name])
            let metric = evaluate()
            rows.append(SensitivityRow(parameter: name, sparsity: s, metric: metric, drop: baseline - metric))
            p.value = saved
        }
    }
    return SensitivityScan(baseline: baseline, rows: rows)
}
