import Foundation

// Renders a parsed template with jinja2's semantics: `for` bodies run in a fresh scope per
// iteration (assignments inside never leak out, nor into the next iteration), `if` bodies share
// their scope, macros see the scope they were defined in, undefined names are jinja2's default
// `Undefined` (printing nothing, failing when an attribute, item or operator is applied to it).

/// A level of variables; lookups walk outwards.
final class JinjaScope {
    var vars: [String: Value] = [:]
    let parent: JinjaScope?

    init(parent: JinjaScope?) { self.parent = parent }

    func lookup(_ name: String) -> Value? {
        var s: JinjaScope? = self
        while let c = s {
            if let v = c.vars[name] { return v }
            s = c.parent
        }
        return nil
    }
}

final class JinjaInterpreter {
    let template: ChatTemplate
    let limits: ChatTemplate.Limits
    private var steps = 0
    private var depth = 0
    private var produced = 0
    /// Scopes holding macros (which hold the scope): emptied after rendering to break the cycle.
    private var macroScopes: [JinjaScope] = []

    init(template: ChatTemplate) {
        self.template = template
        limits = template.limits
    }

    enum Flow { case normal, breakLoop, continueLoop }

    func render(context: [String: JinjaValue]) throws(ChatTemplateError) -> String {
        let root = JinjaScope(parent: nil)
        defer {
            for s in macroScopes { s.vars.removeAll() }
            root.vars.removeAll()
        }
        var out = ""
        do {
            for (name, f) in JinjaBuiltins.globals(template) { root.vars[name] = .function(f) }
            for (name, v) in context { root.vars[name] = try convert(v, level: 0) }
            _ = try render(template.nodes, root, &out)
        } catch {
            if case .located(let e) = error { throw e }
            throw ChatTemplateError(kind: error.kind, message: error.message, line: 0, column: 0)
        }
        return out
    }

    private func convert(_ v: JinjaValue, level: Int) throws(JinjaRuntimeError) -> Value {
        guard level < JinjaLimits.valueNesting else { throw .limit("the template's data is nested more than \(JinjaLimits.valueNesting) deep") }
        switch v {
        case .array(let a):
            var out: [Value] = []
            out.reserveCapacity(a.count)
            for x in a { out.append(try convert(x, level: level + 1)) }
            return .list(out)
        case .object(let members):
            var d = JinjaDict()
            for (k, x) in members { d[k] = try convert(x, level: level + 1) }
            return .dict(d)
        default:
            return Value(v)
        }
    }

    // MARK: - Accounting

    /// Counts one unit of work.
    func step(_ n: Int = 1) throws(JinjaRuntimeError) {
        steps += n
        if steps > limits.steps {
            throw .limit("more than \(limits.steps) evaluation steps (ChatTemplate.Limits.steps); a loop that does not end in reasonable time?")
        }
    }

    /// Checks that a string the template builds stays within the output limit.
    func checkSize(_ s: String) throws(JinjaRuntimeError) -> String {
        if s.utf8.count > limits.outputBytes {
            throw .limit("a string of more than \(limits.outputBytes) bytes (ChatTemplate.Limits.outputBytes)")
        }
        return s
    }

    /// The work of going through `v` once, in steps: one per element of a list, tuple, dict or
    /// iterator, one per 16 bytes of text.
    static func cost(_ v: Value) -> Int {
        switch v {
        case .string(let s), .markup(let s): s.utf8.count / 16
        case .list(let a), .tuple(let a): a.count
        case .dict(let d): d.count
        case .iterator(let it): it.items.count
        default: 0
        }
    }

    /// Counts the work of going through `v` once.
    func charge(_ v: Value) throws(JinjaRuntimeError) {
        let n = Self.cost(v)
        if n > 0 { try step(n) }
    }

    /// A width (`indent`, `center`, `tojson(indent=…)`): 0 for negative ones, an error beyond
    /// the output limit.
    func checkWidth(_ w: Int) throws(JinjaRuntimeError) -> Int {
        if w > limits.outputBytes { throw .limit("a width of more than \(limits.outputBytes) (ChatTemplate.Limits.outputBytes)") }
        return max(0, w)
    }

    func checkCount(_ n: Int) throws(JinjaRuntimeError) {
        if n > JinjaLimits.listElements { throw .limit("a list of more than \(JinjaLimits.listElements) elements") }
    }

    private func append(_ s: String, to out: inout String) throws(JinjaRuntimeError) {
        produced += s.utf8.count
        if produced > limits.outputBytes {
            throw .limit("the output exceeds \(limits.outputBytes) bytes (ChatTemplate.Limits.outputBytes)")
        }
        out += s
    }

    private func locate(_ e: JinjaRuntimeError, _ pos: Int) -> JinjaRuntimeError {
        if case .located = e { return e }
        return .located(ChatTemplateError(e.kind, e.message, source: template.normalized, offset: pos))
    }

    /// Refuses values nested deeper than printing and comparing can follow (and cycles through
    /// namespaces); each container element visited counts as a step.
    func checkNesting(_ v: Value, level: Int = 0) throws(JinjaRuntimeError) {
        guard level < JinjaLimits.valueNesting else { throw .limit("a value nested more than \(JinjaLimits.valueNesting) deep (or containing itself)") }
        switch v {
        case .list(let a), .tuple(let a):
            for x in a {
                switch x {
                case .list, .tuple, .dict, .namespace: try step(); try checkNesting(x, level: level + 1)
                default: break
                }
            }
        case .dict(let d):
            for x in d.values { try step(); try checkNesting(x, level: level + 1) }
        case .namespace(let ns):
            for x in ns.attributes.values { try step(); try checkNesting(x, level: level + 1) }
        case .iterator(let it):
            for x in it.items { try step(); try checkNesting(x, level: level + 1) }
        default: break
        }
    }

    // MARK: - Statements

    func render(_ nodes: [JinjaNode], _ scope: JinjaScope, _ out: inout String) throws(JinjaRuntimeError) -> Flow {
        depth += 1
        defer { depth -= 1 }
        if depth > limits.depth { throw .limit("evaluation nested more than \(limits.depth) deep (ChatTemplate.Limits.depth; a recursive macro?)") }
        for node in nodes {
            try step()
            switch node {
            case .text(let s):
                try append(s, to: &out)
            case .output(let e):
                let v = try eval(e, scope)
                do {
                    let text = try v.pythonString()
                    try step(text.utf8.count / 16)
                    try append(text, to: &out)
                } catch { throw locate(error, e.pos) }
            case .conditional(let branches, let otherwise):
                var taken = false
                for (test, body) in branches {
                    guard try eval(test, scope).isTruthy else { continue }
                    taken = true
                    let flow = try render(body, scope, &out)
                    if flow != .normal { return flow }
                    break
                }
                if !taken, let otherwise {
                    let flow = try render(otherwise, scope, &out)
                    if flow != .normal { return flow }
                }
            case .forLoop(let loop):
                try renderFor(loop, scope, &out)
            case .set(let target, let e, let pos):
                let v = try eval(e, scope)
                do { try assign(target, v, scope) } catch { throw locate(error, pos) }
            case .setBlock(let target, let filters, let body, let pos):
                var text = ""
                _ = try render(body, scope, &text)
                var v = Value.string(text)
                for f in filters { v = try applyFilter(f.name, v, f.arguments, scope, at: f.pos) }
                do { try assign(target, v, scope) } catch { throw locate(error, pos) }
            case .macro(let macro):
                let defining = scope
                scope.vars[macro.name] = .function(JinjaFunction(macro.name, isMacro: true) { interpreter, args throws(JinjaRuntimeError) in
                    try interpreter.call(macro, defining, args)
                })
                macroScopes.append(scope)
            case .loopControl(let isBreak, _):
                return isBreak ? .breakLoop : .continueLoop
            case .scoped(let assignments, let body):
                let inner = JinjaScope(parent: scope)
                for (name, e) in assignments { inner.vars[name] = try eval(e, scope) }
                let flow = try render(body, inner, &out)
                if flow != .normal { return flow }
            case .filterBlock(let filters, let body):
                var text = ""
                _ = try render(body, scope, &text)
                var v = Value.string(text)
                for f in filters { v = try applyFilter(f.name, v, f.arguments, scope, at: f.pos) }
                do { try append(try v.pythonString(), to: &out) } catch { throw locate(error, filters.first?.pos ?? 0) }
            case .generation(let body):
                let flow = try render(body, scope, &out)
                if flow != .normal { return flow }
            }
        }
        return .normal
    }

    private func renderFor(_ loop: JinjaForLoop, _ scope: JinjaScope, _ out: inout String) throws(JinjaRuntimeError) {
        let iterable = try eval(loop.iterable, scope)
        var items: [Value]
        do { items = try iterate(iterable) } catch { throw locate(error, loop.iterable.pos) }
        if let condition = loop.condition {
            var kept: [Value] = []
            for item in items {
                try step()
                let s = JinjaScope(parent: scope)
                do { try assign(loop.target, item, s) } catch { throw locate(error, loop.pos) }
                if try eval(condition, s).isTruthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            if let otherwise = loop.otherwise { _ = try render(otherwise, JinjaScope(parent: scope), &out) }
            return
        }
        let state = JinjaLoop(items)
        for (i, item) in items.enumerated() {
            try step()
            let s = JinjaScope(parent: scope)
            do { try assign(loop.target, item, s) } catch { throw locate(error, loop.pos) }
            state.index0 = i
            s.vars["loop"] = .loop(state)
            let flow = try render(loop.body, s, &out)
            if flow == .breakLoop { break }
        }
    }

    /// The elements a `for` loop (or `list`, `join` …) walks: list and tuple elements, the
    /// characters of a string, the keys of a dict, nothing for undefined.
    func iterate(_ v: Value) throws(JinjaRuntimeError) -> [Value] {
        switch v.plain {
        case .list(let a), .tuple(let a): return a
        case .string(let s):
            try step(s.utf8.count / 16)
            return s.unicodeScalars.map { .string(String($0)) }
        case .dict(let d): return d.keys
        case .iterator(let it): return it.drain()
        case .undefined: return []
        default: throw .type("'\(v.typeName)' object is not iterable")
        }
    }

    private func assign(_ target: JinjaTarget, _ v: Value, _ scope: JinjaScope) throws(JinjaRuntimeError) {
        switch target {
        case .name(let n):
            scope.vars[n] = v
        case .names(let names):
            let parts = try iterate(v)
            if parts.count < names.count { throw .type("not enough values to unpack (expected \(names.count), got \(parts.count))") }
            if parts.count > names.count { throw .type("too many values to unpack (expected \(names.count))") }
            for (n, p) in zip(names, parts) { scope.vars[n] = p }
        case .attribute(let n, let attribute):
            guard case .namespace(let ns)? = scope.lookup(n) else {
                throw .type("cannot assign attribute on non-namespace object")
            }
            if attribute.hasPrefix("_") { throw JinjaBuiltins.underscoreAttribute(attribute) }
            let old = ns.attributes[attribute]
            ns.attributes[attribute] = v
            do { try checkNesting(.namespace(ns)) } catch {
                ns.attributes[attribute] = old
                throw error
            }
        }
    }

    private func call(_ macro: JinjaMacro, _ defining: JinjaScope, _ args: JinjaCallArguments) throws(JinjaRuntimeError) -> Value {
        let scope = JinjaScope(parent: defining)
        let names = macro.parameters.map(\.name)
        if args.positional.count > names.count {
            throw .type("macro '\(macro.name)' takes not more than \(names.count) argument(s)")
        }
        for (k, _) in args.keyword where !names.contains(k) {
            throw .type("macro '\(macro.name)' takes no keyword argument '\(k)'")
        }
        for (i, p) in macro.parameters.enumerated() {
            let keyword = args.keyword.first { $0.name == p.name }?.value
            if i < args.positional.count {
                if keyword != nil { throw .type("macro '\(macro.name)' got multiple values for argument '\(p.name)'") }
                scope.vars[p.name] = args.positional[i]
            } else if let keyword {
                scope.vars[p.name] = keyword
            } else if let d = p.defaultValue {
                scope.vars[p.name] = try eval(d, scope)
            } else {
                scope.vars[p.name] = .undefined("parameter '\(p.name)' was not provided")
            }
        }
        var out = ""
        _ = try render(macro.body, scope, &out)
        return .string(out)
    }

    // MARK: - Expressions

    func eval(_ e: JinjaExpr, _ scope: JinjaScope) throws(JinjaRuntimeError) -> Value {
        depth += 1
        defer { depth -= 1 }
        do throws(JinjaRuntimeError) {
            try step()
            if depth > limits.depth { throw JinjaRuntimeError.limit("evaluation nested more than \(limits.depth) deep (ChatTemplate.Limits.depth; a recursive macro?)") }
            return try evalKind(e, scope)
        } catch {
            throw locate(error, e.pos)
        }
    }

    private func evalKind(_ e: JinjaExpr, _ scope: JinjaScope) throws(JinjaRuntimeError) -> Value {
        switch e.kind {
        case .constant(let c):
            return Value(c)
        case .name(let n):
            return scope.lookup(n) ?? .undefinedName(n)
        case .list(let es):
            var out: [Value] = []
            for x in es { out.append(try eval(x, scope)) }
            let v = Value.list(out)
            try checkNesting(v)
            return v
        case .tuple(let es):
            var out: [Value] = []
            for x in es { out.append(try eval(x, scope)) }
            let v = Value.tuple(out)
            try checkNesting(v)
            return v
        case .dict(let pairs):
            var d = JinjaDict()
            for (k, x) in pairs {
                let key = try eval(k, scope)
                guard JinjaKey(key) != nil else {
                    throw JinjaRuntimeError.type("unhashable type: '\(key.typeName)'").locatedIfNeeded(self, k.pos)
                }
                d[key] = try eval(x, scope)
            }
            let v = Value.dict(d)
            try checkNesting(v)
            return v
        case .attribute(let base, let name):
            return try attribute(try eval(base, scope), name)
        case .item(let base, let key):
            let b = try eval(base, scope)
            return try item(b, try eval(key, scope))
        case .slice(let base, let start, let stop, let stepExpr):
            let b = try eval(base, scope)
            func bound(_ x: JinjaExpr?) throws(JinjaRuntimeError) -> Int? {
                guard let x else { return nil }
                switch try eval(x, scope) {
                case .none: return nil
                case .int(let i): return i
                case .bool(let b): return b ? 1 : 0
                case let v: throw .type("slice indices must be integers or None, not \(v.typeName)")
                }
            }
            return try slice(b, try bound(start), try bound(stop), try bound(stepExpr))
        case .call(let callee, let arguments):
            let f = try eval(callee, scope)
            let args = try evalArguments(arguments, scope)
            switch f {
            case .function(let fn):
                for a in args.positional { try charge(a) }
                let result = try fn.call(self, args)
                try charge(result)
                return result
            case .undefined(let message): throw .undefined(message)
            default: throw .type("'\(f.typeName)' object is not callable")
            }
        case .filter(let base, let name, let arguments):
            return try applyFilter(name, try eval(base, scope), arguments, scope, at: e.pos)
        case .test(let base, let name, let arguments):
            let v = try eval(base, scope)
            return .bool(try JinjaBuiltins.test(name, v, try evalArguments(arguments, scope), self))
        case .not(let x):
            return .bool(!(try eval(x, scope).isTruthy))
        case .negate(let x):
            switch try eval(x, scope) {
            case .int(let i):
                guard i != .min else { throw .type("integer overflow in -x") }
                return .int(-i)
            case .bool(let b): return .int(b ? -1 : 0)
            case .double(let d): return .double(-d)
            case .undefined(let m): throw .undefined(m)
            case let v: throw .type("bad operand type for unary -: '\(v.typeName)'")
            }
        case .plus(let x):
            switch try eval(x, scope) {
            case .int(let i): return .int(i)
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return .double(d)
            case .undefined(let m): throw .undefined(m)
            case let v: throw .type("bad operand type for unary +: '\(v.typeName)'")
            }
        case .binary(let op, let a, let b):
            let x = try eval(a, scope)
            return try binary(op, x, try eval(b, scope))
        case .concat(let es):
            var s = ""
            for x in es {
                let piece = try eval(x, scope).pythonString()
                try step(piece.utf8.count / 16)
                s += piece
                _ = try checkSize(s)
            }
            return .string(s)
        case .and(let a, let b):
            let x = try eval(a, scope)
            return x.isTruthy ? try eval(b, scope) : x
        case .or(let a, let b):
            let x = try eval(a, scope)
            return x.isTruthy ? x : try eval(b, scope)
        case .compare(let first, let ops):
            var left = try eval(first, scope)
            for (op, operandExpr) in ops {
                let right = try eval(operandExpr, scope)
                if !(try compare(op, left, right)) { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let test, let then, let otherwise):
            if try eval(test, scope).isTruthy { return try eval(then, scope) }
            guard let otherwise else { return .undefined("the inline if expression evaluated to false and no else section was defined") }
            return try eval(otherwise, scope)
        }
    }

    func evalArguments(_ a: JinjaArguments, _ scope: JinjaScope) throws(JinjaRuntimeError) -> JinjaCallArguments {
        var out = JinjaCallArguments()
        for x in a.positional { out.positional.append(try eval(x, scope)) }
        for (k, x) in a.keyword { out.keyword.append((k, try eval(x, scope))) }
        return out
    }

    func applyFilter(_ name: String, _ v: Value, _ arguments: JinjaArguments, _ scope: JinjaScope, at pos: Int) throws(JinjaRuntimeError) -> Value {
        let args = try evalArguments(arguments, scope)
        do {
            // Filters that only look at the first or last element, or the size, cost nothing more.
            if !["length", "count", "first", "last", "default", "d", "attr", "string", "safe"].contains(name) { try charge(v) }
            let result = try JinjaBuiltins.filter(name, v, args, self)
            try charge(result)
            return result
        } catch { throw locate(error, pos) }
    }

    // MARK: - Access

    /// `base.name`: a method of strings, lists and dicts first, then the dict's key (jinja2's
    /// `getattr`); missing ones are undefined.
    func attribute(_ value: Value, _ name: String) throws(JinjaRuntimeError) -> Value {
        let base = value.plain
        // String methods see the text as an array of code points.
        if case .string(let s) = base { try step(s.utf8.count / 16) }
        switch base {
        case .undefined(let message):
            throw .undefined(message)
        case .dict(let d):
            if let m = JinjaBuiltins.method(base, name) { return m }
            return d[name] ?? Self.missingAttribute(base, name)
        case .namespace(let ns):
            return ns.attributes[name] ?? Self.missingAttribute(base, name)
        case .loop(let l):
            return l.attribute(name)
        case .none:
            return Self.missingAttribute(base, name)
        default:
            if let m = JinjaBuiltins.method(base, name) { return m }
            return Self.missingAttribute(base, name)
        }
    }

    /// jinja2's names for an object in undefined messages: `None`, `dict object`.
    static func objectTypeRepr(_ v: Value) -> String {
        if case .none = v { return "None" }
        return "\(v.typeName) object"
    }

    static func missingAttribute(_ base: Value, _ name: String) -> Value {
        .undefined("\(pythonStringRepr(objectTypeRepr(base))) has no attribute \(pythonStringRepr(name))")
    }

    static func missingElement(_ base: Value, _ key: Value) -> Value {
        .undefined("\(objectTypeRepr(base)) has no element \((try? key.pythonRepr()) ?? "?")")
    }

    /// `base[key]`: the dict's key or the sequence's element first, then an attribute (jinja2's
    /// `getitem`); missing ones are undefined.
    func item(_ value: Value, _ index: Value) throws(JinjaRuntimeError) -> Value {
        let base = value.plain, key = index.plain
        switch (base, key) {
        case (.undefined(let message), _):
            throw .undefined(message)
        case (.dict(let d), _):
            if let v = d[key] { return v }
            guard case .string(let k) = key else { return Self.missingElement(base, key) }
            return JinjaBuiltins.method(base, k) ?? Self.missingAttribute(base, k)
        case (.list(let a), _), (.tuple(let a), _):
            if let i = Self.index(key), let v = Self.element(a, i) { return v }
            if case .string(let k) = key { return try attribute(base, k) }
            return Self.missingElement(base, key)
        case (.string(let s), _):
            try step(s.utf8.count / 16)
            if let i = Self.index(key) {
                let scalars = Array(s.unicodeScalars)
                if let v = Self.element(scalars, i) { return .string(String(v)) }
            }
            if case .string(let k) = key { return try attribute(base, k) }
            return Self.missingElement(base, key)
        case (_, .string(let k)):
            return try attribute(base, k)
        default:
            return Self.missingElement(base, key)
        }
    }

    private static func index(_ key: Value) -> Int? {
        switch key {
        case .int(let i): i
        case .bool(let b): b ? 1 : 0
        default: nil
        }
    }

    private static func element<T>(_ a: [T], _ i: Int) -> T? {
        let k = i < 0 ? a.count + i : i
        return k >= 0 && k < a.count ? a[k] : nil
    }

    /// Python's slicing of lists, tuples and strings.
    func slice(_ value: Value, _ start: Int?, _ stop: Int?, _ stride: Int?) throws(JinjaRuntimeError) -> Value {
        let base = value.plain
        func indices(_ n: Int) throws(JinjaRuntimeError) -> [Int] {
            let st = stride ?? 1
            guard st != 0 else { throw .type("slice step cannot be zero") }
            func adjust(_ v: Int?, _ dflt: Int) -> Int {
                guard var v else { return dflt }
                if v < 0 {
                    v += n
                    if v < 0 { v = st < 0 ? -1 : 0 }
                } else if v >= n {
                    v = st < 0 ? n - 1 : n
                }
                return v
            }
            let a = adjust(start, st < 0 ? n - 1 : 0), b = adjust(stop, st < 0 ? -1 : n)
            return Array(Swift.stride(from: a, to: b, by: st))
        }
        switch base {
        case .list(let xs):
            try step(xs.count)
            return .list(try indices(xs.count).map { xs[$0] })
        case .tuple(let xs):
            try step(xs.count)
            return .tuple(try indices(xs.count).map { xs[$0] })
        case .string(let s):
            try step(s.utf8.count / 16)
            let scalars = Array(s.unicodeScalars)
            var out = String.UnicodeScalarView()
            for i in try indices(scalars.count) { out.append(scalars[i]) }
            return .string(String(out))
        case .undefined(let message): throw .undefined(message)
        default:
            // jinja2 turns a failed subscript into an undefined value.
            return .undefined("\(Self.objectTypeRepr(base)) has no element slice")
        }
    }
}

extension Value {
    var isStringValue: Bool { if case .string = self { true } else { false } }
    var isIntValue: Bool { if case .int = self { true } else { false } }
}

extension JinjaRuntimeError {
    func locatedIfNeeded(_ interpreter: JinjaInterpreter, _ pos: Int) -> JinjaRuntimeError {
        if case .located = self { return self }
        return .located(ChatTemplateError(kind, message, source: interpreter.template.normalized, offset: pos))
    }
}
