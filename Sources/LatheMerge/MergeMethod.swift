import Foundation

/// The merge methods, with the parameters each takes and their defaults as in mergekit
/// (mergekit/merge_methods/registry.py and the method files).
public enum MergeMethod: String, Sendable, CaseIterable {
    case linear, slerp
    case taskArithmetic = "task_arithmetic"
    case ties
    case dareLinear = "dare_linear"
    case dareTies = "dare_ties"
    case della
    case dellaLinear = "della_linear"
    case breadcrumbs
    case breadcrumbsTies = "breadcrumbs_ties"
    case modelStock = "model_stock"
    case passthrough

    /// Which inputs a parameter is given for.
    public enum Scope: Sendable { case shared, everyInput, nonBase }
    public enum Kind: Sendable { case number, bool }

    public struct Parameter: Sendable {
        public let name: String
        public let kind: Kind
        public let scope: Scope
        /// nil: required (passthrough's `scale` is optional with no default: see ``optional``).
        public let defaultValue: Double?
        public var optional = false
    }

    /// How a task-arithmetic family member drops entries of each task vector (mergekit/sparsify.py).
    public enum Sparsification: Sendable { case magnitude, random, magnitudeOutliers, dellaMagprune }

    /// (sparsification, TIES sign consensus, default normalize, default rescale) of the
    /// generalized task arithmetic methods.
    var taskArithmetic: (sparsification: Sparsification?, consensus: Bool, normalize: Bool, rescale: Bool)? {
        switch self {
        case .taskArithmetic: (nil, false, false, false)
        case .ties: (.magnitude, true, true, false)
        case .dareTies: (.random, true, false, true)
        case .dareLinear: (.random, false, false, true)
        case .breadcrumbs: (.magnitudeOutliers, false, false, false)
        case .breadcrumbsTies: (.magnitudeOutliers, true, false, false)
        case .della: (.dellaMagprune, true, true, true)
        case .dellaLinear: (.dellaMagprune, false, false, true)
        default: nil
        }
    }

    public var parameters: [Parameter] {
        if let ta = taskArithmetic {
            var p = [Parameter(name: "int8_mask", kind: .bool, scope: .shared, defaultValue: 0),
                     Parameter(name: "normalize", kind: .bool, scope: .shared, defaultValue: ta.normalize ? 1 : 0),
                     Parameter(name: "rescale", kind: .bool, scope: .shared, defaultValue: ta.rescale ? 1 : 0),
                     Parameter(name: "lambda", kind: .number, scope: .shared, defaultValue: 1),
                     Parameter(name: "weight", kind: .number, scope: .nonBase, defaultValue: nil),
                     Parameter(name: "density", kind: .number, scope: .nonBase, defaultValue: 1)]
            if ta.sparsification == .magnitudeOutliers { p.append(Parameter(name: "gamma", kind: .number, scope: .nonBase, defaultValue: 0.01)) }
            if ta.sparsification == .dellaMagprune { p.append(Parameter(name: "epsilon", kind: .number, scope: .nonBase, defaultValue: 0.15)) }
            return p
        }
        switch self {
        case .linear: return [Parameter(name: "weight", kind: .number, scope: .everyInput, defaultValue: nil),
                              Parameter(name: "normalize", kind: .bool, scope: .shared, defaultValue: 1)]
        case .slerp: return [Parameter(name: "t", kind: .number, scope: .shared, defaultValue: nil)]
        case .modelStock: return [Parameter(name: "filter_wise", kind: .bool, scope: .shared, defaultValue: 0)]
        case .passthrough: return [Parameter(name: "scale", kind: .number, scope: .everyInput, defaultValue: nil, optional: true)]
        default: return []
        }
    }

    /// Whether the method needs a base model, and how many inputs it takes.
    var contract: (base: Bool?, minInputs: Int, maxInputs: Int?) {
        switch self {
        case .linear: (nil, 1, nil)  // the base, if any, is just another input
        case .slerp: (true, 2, 2)
        case .modelStock: (true, 3, nil)
        case .passthrough: (nil, 1, 1)
        default: (true, 1, nil)
        }
    }

    /// Every parameter name any method takes (a name outside this list is a typo).
    static let allParameterNames: Set<String> = Set(allCases.flatMap { $0.parameters.map(\.name) })
}

/// A parameter resolved for one tensor.
public enum ResolvedValue: Sendable, Equatable {
    case number(Double)
    case bool(Bool)
    case none

    var number: Double? { if case .number(let x) = self { return x }; return nil }
    var bool: Bool { if case .bool(let b) = self { return b }; return false }
}

extension ParameterSetting {
    /// The value for `tensorName` at layer fraction `t` (mergekit's `evaluate_setting`): filters
    /// by substring, gradients interpolated linearly between neighbouring entries at
    /// `t · (count − 1)` (booleans and strings take the entry at its integer part). nil when no
    /// condition matches (the next scope is then asked).
    public func evaluate(tensorName: String, t: Double, kind: MergeMethod.Kind) throws(SettingError) -> ResolvedValue? {
        switch self {
        case .scalar(let v): return try Self.validate(v, kind)
        case .gradient(let values):
            guard !values.isEmpty else { return nil }
            let validated = try values.map { v throws(SettingError) in try Self.validate(v, kind) }
            if kind == .bool { return validated[Int(t * Double(values.count - 1))] }
            let scaled = t * Double(values.count - 1)
            let i0 = Int(scaled), i1 = min(values.count - 1, i0 + 1)
            let frac = scaled - Double(i0)
            return .number((1 - frac) * validated[i0].number! + frac * validated[i1].number!)
        case .conditions(let conditions):
            for c in conditions where c.filter == nil || c.filter == "*" || (!tensorName.isEmpty && tensorName.contains(c.filter!)) {
                return try c.value.evaluate(tensorName: tensorName, t: t, kind: kind)
            }
            return nil
        }
    }

    public struct SettingError: Error { public let message: String }

    static func validate(_ v: ParameterValue, _ kind: MergeMethod.Kind) throws(SettingError) -> ResolvedValue {
        switch (v, kind) {
        case (.number(let x), .number): return .number(x)
        case (.bool(let b), .number): return .number(b ? 1 : 0)
        case (.string(let s), .number):
            guard let x = Double(s.trimmingCharacters(in: .whitespaces)) else { throw SettingError(message: "expected a number, found '\(s)'") }
            return .number(x)
        case (.bool(let b), .bool): return .bool(b)
        case (.number(let x), .bool):
            guard x == 0 || x == 1 else { throw SettingError(message: "expected true or false, found \(x)") }
            return .bool(x == 1)
        case (.string(let s), .bool):
            switch s.lowercased() {
            case "true", "yes", "on", "1": return .bool(true)
            case "false", "no", "off", "0": return .bool(false)
            default: throw SettingError(message: "expected true or false, found '\(s)'")
            }
        }
    }
}
