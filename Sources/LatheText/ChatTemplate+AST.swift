// The syntax tree of a parsed template. Every node keeps its offset in the normalised source so
// that errors can name the line and column.

/// A constant written in the template.
enum JinjaConstant: Sendable {
    case none
    case bool(Bool)
    case integer(Int)
    case float(Double)
    case string(String)
}

enum JinjaBinaryOperator: String, Sendable {
    case add = "+", subtract = "-", multiply = "*", divide = "/", floorDivide = "//", modulo = "%", power = "**"
}

enum JinjaCompareOperator: String, Sendable {
    case equal = "==", notEqual = "!=", less = "<", lessEqual = "<=", greater = ">", greaterEqual = ">="
    case isIn = "in", notIn = "not in"
}

/// Positional and keyword arguments of a call, filter or test.
struct JinjaArguments: Sendable {
    var positional: [JinjaExpr] = []
    var keyword: [(name: String, value: JinjaExpr)] = []
    static let empty = JinjaArguments()
    var depth: Int { (positional.map(\.depth) + keyword.map(\.value.depth)).max() ?? 0 }
}

struct JinjaExpr: Sendable {
    indirect enum Kind: Sendable {
        case constant(JinjaConstant)
        case name(String)
        case list([JinjaExpr])
        case tuple([JinjaExpr])
        case dict([(key: JinjaExpr, value: JinjaExpr)])
        case attribute(JinjaExpr, String)
        case item(JinjaExpr, JinjaExpr)
        case slice(JinjaExpr, start: JinjaExpr?, stop: JinjaExpr?, step: JinjaExpr?)
        case call(JinjaExpr, JinjaArguments)
        case filter(JinjaExpr, name: String, JinjaArguments)
        case test(JinjaExpr, name: String, JinjaArguments)
        case not(JinjaExpr)
        case negate(JinjaExpr)
        case plus(JinjaExpr)
        case binary(JinjaBinaryOperator, JinjaExpr, JinjaExpr)
        case concat([JinjaExpr])
        case and(JinjaExpr, JinjaExpr)
        case or(JinjaExpr, JinjaExpr)
        case compare(JinjaExpr, [(op: JinjaCompareOperator, operand: JinjaExpr)])
        case conditional(test: JinjaExpr, then: JinjaExpr, otherwise: JinjaExpr?)
    }
    var kind: Kind
    var pos: Int
    /// Nesting depth of the tree below this node (1 for a leaf): evaluation recurses this deep.
    var depth: Int

    init(_ kind: Kind, at pos: Int) {
        self.kind = kind
        self.pos = pos
        func d(_ es: [JinjaExpr]) -> Int { es.map(\.depth).max() ?? 0 }
        let below: Int
        switch kind {
        case .constant, .name: below = 0
        case .list(let es), .tuple(let es), .concat(let es): below = d(es)
        case .dict(let pairs): below = d(pairs.flatMap { [$0.key, $0.value] })
        case .attribute(let e, _), .not(let e), .negate(let e), .plus(let e): below = e.depth
        case .item(let a, let b), .binary(_, let a, let b), .and(let a, let b), .or(let a, let b): below = max(a.depth, b.depth)
        case .slice(let e, let a, let b, let c): below = d([e] + [a, b, c].compactMap { $0 })
        case .call(let e, let args), .filter(let e, _, let args), .test(let e, _, let args): below = max(e.depth, args.depth)
        case .compare(let e, let ops): below = d([e] + ops.map(\.operand))
        case .conditional(let t, let a, let b): below = d([t, a] + (b.map { [$0] } ?? []))
        }
        depth = below + 1
    }
}

/// What `{% set %}` and `{% for %}` assign to.
enum JinjaTarget: Sendable {
    case name(String)
    case names([String])
    /// `ns.attr` (only namespaces accept attribute assignment).
    case attribute(String, String)
}

/// A filter applied by `{% set x | f %}` or `{% filter f %}`.
struct JinjaFilterCall: Sendable {
    var name: String
    var arguments: JinjaArguments
    var pos: Int
}

struct JinjaForLoop: Sendable {
    var target: JinjaTarget
    var iterable: JinjaExpr
    var condition: JinjaExpr?
    var body: [JinjaNode]
    var otherwise: [JinjaNode]?
    var pos: Int
}

struct JinjaMacro: Sendable {
    var name: String
    var parameters: [(name: String, defaultValue: JinjaExpr?)]
    var body: [JinjaNode]
    var pos: Int
}

indirect enum JinjaNode: Sendable {
    case text(String)
    case output(JinjaExpr)
    case conditional([(test: JinjaExpr, body: [JinjaNode])], otherwise: [JinjaNode]?)
    case forLoop(JinjaForLoop)
    case set(JinjaTarget, JinjaExpr, pos: Int)
    case setBlock(JinjaTarget, filters: [JinjaFilterCall], body: [JinjaNode], pos: Int)
    case macro(JinjaMacro)
    case loopControl(isBreak: Bool, pos: Int)
    /// `{% with a = 1 %}…{% endwith %}`: assignments in a scope of their own.
    case scoped([(name: String, value: JinjaExpr)], body: [JinjaNode])
    /// `{% filter f %}…{% endfilter %}`.
    case filterBlock([JinjaFilterCall], body: [JinjaNode])
    /// `{% generation %}…{% endgeneration %}` (transformers' marker of assistant text): the body.
    case generation([JinjaNode])
}
