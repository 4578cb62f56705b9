import Foundation
import LatheNN
import LatheTensor

/// Exact zeros in one parameter (or, for ``SparsityReport/overall``, in all of them).
public struct SparsityRow: Sendable, Equatable {
    public var name: String
    public var zeros: Int
    public var total: Int

    public init(name: String, zeros: Int, total: Int) { (self.name, self.zeros, self.total) = (name, zeros, total) }
    /// `zeros / total` (0 for an empty tensor).
    public var sparsity: Double { total == 0 ? 0 : Double(zeros) / Double(total) }
}

/// Per-parameter and overall sparsity of a model.
public struct SparsityReport: Sendable, Equatable, CustomStringConvertible {
    public var rows: [SparsityRow]

    public init(rows: [SparsityRow]) { self.rows = rows }
    /// Sums over ``rows``.
    public var overall: SparsityRow {
        SparsityRow(name: "total", zeros: rows.reduce(0) { $0 + $1.zeros }, total: rows.reduce(0) { $0 + $1.total })
    }

    /// A fixed-width table: name, zeros, total, sparsity in percent, and a total line.
    public var description: String {
        let width = Swift.max(5, (rows.map(\.name.count).max() ?? 0))
        func line(_ r: SparsityRow) -> String {
            r.name.padding(toLength: width, withPad: " ", startingAt: 0)
                + String(format: " %10d %10d %7.2f%%", r.zeros, r.total, 100 * r.sparsity)
        }
        let header = "name".padding(toLength: width, withPad: " ", startingAt: 0) + "      zeros      total sparsity"
        return ([header] + rows.map(line) + [line(overall)]).joined(separator: "\n")
    }
}

/// Counts exact zeros per parameter: the chosen ones, or by default the prunable weights
/// (``prunableParameters(_:)``).
public func sparsityReport(_ model: Module, parameters: [String]? = nil) -> SparsityReport {
    let byName = Dictionary(uniqueKeysWithValues: model.namedParameters)
    let names = parameters ?? prunableParameters(model)
    return SparsityReport(rows: names.map { name in
        guard let p = byName[name] else { preconditionFailure("sparsityReport: the model has no parameter \(name)") }
        let zeros = p.value.detached().withUnsafeBufferPointer { $0.reduce(0) { $1 == 0 ? $0 + 1 : $0 } }
        return SparsityRow(name: name, zeros: zeros, total: p.value.count)
    })
}
