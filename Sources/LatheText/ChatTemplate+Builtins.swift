import Foundation

// What templates can call: the names of the filters and tests (checked when parsing), argument
// binding as in Python, jinja2 3.1's tests, and the methods of strings, lists and dicts as
// Python 3 has them (under jinja2's immutable sandbox). Globals, filters and Python's text
// operations are in ChatTemplate+Globals, +Filters and +PythonText.

enum JinjaBuiltins {
    static let filterNames: Set<String> = [
        "abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
        "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
        "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim",
        "unique", "upper",
    ]

    static let testNames: Set<String> = [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "filter", "float",
        "ge", "greaterthan", "gt", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none",
        "number", "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper", "==", "!=", "<", "<=", ">", ">=",
    ]

    // MARK: - Arguments

    /// The arguments of `function(names…)` in order, nil where not given; extra or unknown
    /// arguments are errors as in Python.
    static func bind(_ args: JinjaCallArguments, _ names: [String], _ function: String) throws(JinjaRuntimeError) -> [Value?] {
        if args.positional.count > names.count {
            throw .type("\(function)() takes at most \(names.count) argument(s) (\(args.positional.count) given)")
        }
        var out = [Value?](repeating: nil, count: names.count)
        for (i, v) in args.positional.enumerated() { out[i] = v }
        for (k, v) in args.keyword {
            guard let i = names.firstIndex(of: k) else { throw .type("\(function)() got an unexpected keyword argument '\(k)'") }
            if out[i] != nil { throw .type("\(function)() got multiple values for argument '\(k)'") }
            out[i] = v
        }
        return out
    }

    static func int(_ v: Value?, _ what: String) throws(JinjaRuntimeError) -> Int? {
        switch v {
        case nil, .none?: return nil
        case .int(let i)?: return i
        case .bool(let b)?: return b ? 1 : 0
        case let x?: throw .type("\(what) must be an integer, not \(x.typeName)")
        }
    }

    static func string(_ v: Value?, _ what: String) throws(JinjaRuntimeError) -> String? {
        switch v {
        case nil, .none?: return nil
        case .string(let s)?, .markup(let s)?: return s
        case let x?: throw .type("\(what) must be a string, not \(x.typeName)")
        }
    }

    // MARK: - Tests

    static func test(_ name: String, _ v: Value, _ args: JinjaCallArguments, _ interpreter: JinjaInterpreter) throws(JinjaRuntimeError) -> Bool {
        func other() throws(JinjaRuntimeError) -> Value {
            guard args.positional.count == 1, args.keyword.isEmpty else { throw .type("the '\(name)' test takes one argument") }
            return args.positional[0]
        }
        func none() throws(JinjaRuntimeError) {
            guard args.positional.isEmpty, args.keyword.isEmpty else { throw .type("the '\(name)' test takes no arguments") }
        }
        switch name {
        case "defined": try none(); return !v.isUndefined
        case "undefined": try none(); return v.isUndefined
        case "none": try none(); if case .none = v { return true }; return false
        case "boolean": try none(); if case .bool = v { return true }; return false
        case "true": try none(); if case .bool(true) = v { return true }; return false
        case "false": try none(); if case .bool(false) = v { return true }; return false
        case "integer": try none(); if case .int = v { return true }; return false
        case "float": try none(); if case .double = v { return true }; return false
        case "number": try none(); return v.numericValue != nil
        case "string": try none(); return v.text != nil
        case "mapping": try none(); if case .dict = v { return true }; return false
        case "iterable", "sequence":
            try none()
            switch v {
            case .string, .markup, .list, .tuple, .dict, .undefined: return true
            case .iterator: return name == "iterable"
            default: return false
            }
        case "callable": try none(); if case .function = v { return true }; return false
        case "escaped": try none(); return false
        case "lower":
            try none()
            let s = try v.pythonString()
            return s.unicodeScalars.contains { $0.properties.isCased } && !s.unicodeScalars.contains { $0.properties.isUppercase || $0.properties.generalCategory == .titlecaseLetter }
        case "upper":
            try none()
            let s = try v.pythonString()
            return s.unicodeScalars.contains { $0.properties.isCased } && !s.unicodeScalars.contains { $0.properties.isLowercase || $0.properties.generalCategory == .titlecaseLetter }
        case "odd", "even":
            try none()
            let r = try interpreter.binaryForTest(.modulo, v, .int(2))
            return try r.pythonEquals(.int(name == "odd" ? 1 : 0))
        case "divisibleby":
            return try interpreter.binaryForTest(.modulo, v, try other()).pythonEquals(.int(0))
        case "in": return try interpreter.contains(try other(), v)
        case "eq", "equalto", "==": return try interpreter.compare(.equal, v, try other())
        case "ne", "!=": return try interpreter.compare(.notEqual, v, try other())
        case "lt", "lessthan", "<": return try interpreter.compare(.less, v, try other())
        case "le", "<=": return try interpreter.compare(.lessEqual, v, try other())
        case "gt", "greaterthan", ">": return try interpreter.compare(.greater, v, try other())
        case "ge", ">=": return try interpreter.compare(.greaterEqual, v, try other())
        case "sameas":
            let o = try other()
            switch (v, o) {
            case (.none, .none): return true
            case let (.bool(a), .bool(b)): return a == b
            case let (.int(a), .int(b)): return a == b && (-5...256).contains(a)
            case let (.namespace(a), .namespace(b)): return a === b
            case let (.function(a), .function(b)): return a === b
            default: return false
            }
        case "filter":
            guard case .string(let n) = v else { return false }
            try none()
            return filterNames.contains(n)
        case "test":
            guard case .string(let n) = v else { return false }
            try none()
            return testNames.contains(n)
        default:
            throw .unsupported("no test named '\(name)'")
        }
    }

    // MARK: - Methods

    private static let unsafeDictMethods: Set<String> = ["clear", "pop", "popitem", "setdefault", "update"]
    private static let unsafeListMethods: Set<String> = ["append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"]
    private static let otherStringMethods: Set<String> = [
        "casefold", "encode", "expandtabs", "format_map", "index", "isascii", "isdecimal", "isidentifier", "isnumeric",
        "isprintable", "istitle", "ljust", "maketrans", "partition", "rindex", "rjust", "rpartition", "swapcase", "translate", "zfill",
    ]

    /// The method `name` of `base` bound to it, or nil when `base` has no such method.
    static func method(_ value: Value, _ name: String) -> Value? {
        let base = value.plain
        func bound(_ body: @escaping (JinjaInterpreter, JinjaCallArguments) throws(JinjaRuntimeError) -> Value) -> Value {
            .function(JinjaFunction(name, body))
        }
        switch base {
        case .dict(let d):
            if unsafeDictMethods.contains(name) { return .undefined("access to attribute '\(name)' of 'dict' object is unsafe.") }
            switch name {
            case "get":
                return bound { _, args throws(JinjaRuntimeError) in
                    guard (1...2).contains(args.positional.count), args.keyword.isEmpty else { throw .type("get expected 1 or 2 arguments") }
                    let key = args.positional[0]
                    guard JinjaKey(key) != nil else { throw .type("unhashable type: '\(key.typeName)'") }
                    return d[key] ?? (args.positional.count > 1 ? args.positional[1] : .none)
                }
            case "items":
                return bound { _, args throws(JinjaRuntimeError) in
                    _ = try bind(args, [], "items")
                    return .iterator(JinjaIterator(view: d.items.map { .tuple([$0.key, $0.value]) }, typeName: "dict_items"))
                }
            case "keys":
                return bound { _, args throws(JinjaRuntimeError) in
                    _ = try bind(args, [], "keys")
                    return .iterator(JinjaIterator(view: d.keys, typeName: "dict_keys"))
                }
            case "values":
                return bound { _, args throws(JinjaRuntimeError) in
                    _ = try bind(args, [], "values")
                    return .iterator(JinjaIterator(view: d.values, typeName: "dict_values"))
                }
            case "copy": return bound { _, args throws(JinjaRuntimeError) in _ = try bind(args, [], "copy"); return base }
            default: return nil
            }
        case .list(let a), .tuple(let a):
            if case .list = base, unsafeListMethods.contains(name) { return .undefined("access to attribute '\(name)' of 'list' object is unsafe.") }
            switch name {
            case "count":
                return bound { interpreter, args throws(JinjaRuntimeError) in
                    try interpreter.step(a.count)
                    let x = try bind(args, ["value"], "count")[0] ?? .none
                    var n = 0
                    for y in a where try y.pythonEquals(x) { n += 1 }
                    return .int(n)
                }
            case "index":
                return bound { interpreter, args throws(JinjaRuntimeError) in
                    try interpreter.step(a.count)
                    let x = try bind(args, ["value"], "index")[0] ?? .none
                    for (i, y) in a.enumerated() where try y.pythonEquals(x) { return .int(i) }
                    throw .type("\((try? x.pythonRepr()) ?? "?") is not in list")
                }
            case "copy" where base.isListValue: return bound { _, _ throws(JinjaRuntimeError) in base }
            default: return nil
            }
        case .string(let s):
            return stringMethod(s, name)
        default:
            return nil
        }
    }

    private static func stringMethod(_ s: String, _ name: String) -> Value? {
        let scalars = Array(s.unicodeScalars)
        func bound(_ names: [String], _ body: @escaping ([Value?], JinjaInterpreter) throws(JinjaRuntimeError) -> Value) -> Value {
            .function(JinjaFunction(name) { interpreter, args throws(JinjaRuntimeError) in try body(try bind(args, names, name), interpreter) })
        }
        func str(_ v: [Unicode.Scalar]) -> Value { .string(String(String.UnicodeScalarView(v))) }
        func predicate(_ test: @escaping ([Unicode.Scalar]) -> Bool) -> Value {
            bound([]) { _, _ throws(JinjaRuntimeError) in .bool(!scalars.isEmpty && test(scalars)) }
        }
        switch name {
        case "startswith", "endswith":
            return bound(["prefix", "start", "end"]) { a, _ throws(JinjaRuntimeError) in
                let n = scalars.count
                func clamp(_ v: Int?, _ dflt: Int) -> Int {
                    guard let v else { return dflt }
                    return v < 0 ? max(0, v + n) : min(v, n)
                }
                let lo = clamp(try int(a[1], "start"), 0), hi = clamp(try int(a[2], "end"), n)
                let window = lo <= hi ? Array(scalars[lo..<hi]) : []
                var candidates: [String] = []
                switch a[0] {
                case .string(let p)?: candidates = [p]
                case let v? where v.sequence != nil:
                    for x in v.sequence! {
                        guard case .string(let p) = x else { throw .type("tuple for \(name) must only contain str, not \(x.typeName)") }
                        candidates.append(p)
                    }
                case let v: throw .type("\(name) first arg must be str or a tuple of str, not \(v?.typeName ?? "nothing")")
                }
                return .bool(candidates.contains { p in
                    let ps = Array(p.unicodeScalars)
                    guard ps.count <= window.count, lo <= hi else { return false }
                    return name == "startswith" ? window.starts(with: ps) : window.reversed().starts(with: ps.reversed())
                })
            }
        case "strip", "lstrip", "rstrip":
            return bound(["chars"]) { a, _ throws(JinjaRuntimeError) in
                str(pythonStrip(scalars, chars: try string(a[0], "\(name) arg"), left: name != "rstrip", right: name != "lstrip"))
            }
        case "split", "rsplit":
            return bound(["sep", "maxsplit"]) { a, interpreter throws(JinjaRuntimeError) in
                let parts = try pythonSplit(scalars, sep: try string(a[0], "sep"), maxsplit: try int(a[1], "maxsplit") ?? -1, fromRight: name == "rsplit")
                try interpreter.step(parts.count)
                return .list(parts.map(str))
            }
        case "splitlines":
            return bound(["keepends"]) { a, _ throws(JinjaRuntimeError) in
                guard !(a[0]?.isTruthy ?? false) else { throw .unsupported("splitlines(keepends=True)") }
                return .list(pythonSplitlines(s).map { .string($0) })
            }
        case "upper": return bound([]) { _, _ throws(JinjaRuntimeError) in .string(s.uppercased()) }
        case "lower", "casefold": return bound([]) { _, _ throws(JinjaRuntimeError) in .string(s.lowercased()) }
        case "title": return bound([]) { _, _ throws(JinjaRuntimeError) in .string(pythonTitle(s)) }
        case "capitalize": return bound([]) { _, _ throws(JinjaRuntimeError) in .string(pythonCapitalize(s)) }
        case "replace":
            return bound(["old", "new", "count"]) { a, interpreter throws(JinjaRuntimeError) in
                guard let old = try string(a[0], "replace() old"), let new = try string(a[1], "replace() new") else {
                    throw .type("replace() takes at least 2 arguments")
                }
                return .string(try pythonReplace(s, old, new, try int(a[2], "replace() count") ?? -1, limit: interpreter.limits.outputBytes))
            }
        case "find", "rfind", "count":
            return bound(["sub"]) { a, _ throws(JinjaRuntimeError) in
                guard let sub = try string(a[0], "\(name)() argument") else { throw .type("\(name)() takes at least 1 argument") }
                let ps = Array(sub.unicodeScalars)
                if name == "count" {
                    if ps.isEmpty { return .int(scalars.count + 1) }
                    var n = 0, i = 0
                    while i + ps.count <= scalars.count {
                        if scalars[i..<(i + ps.count)].elementsEqual(ps) { n += 1; i += ps.count } else { i += 1 }
                    }
                    return .int(n)
                }
                let starts = name == "find" ? Array(stride(from: 0, through: scalars.count - ps.count, by: 1))
                                            : Array(stride(from: scalars.count - ps.count, through: 0, by: -1))
                for i in starts where i >= 0 && scalars[i..<(i + ps.count)].elementsEqual(ps) { return .int(i) }
                return .int(-1)
            }
        case "join":
            return bound(["iterable"]) { a, interpreter throws(JinjaRuntimeError) in
                var parts: [String] = []
                for x in try interpreter.iterate(a[0] ?? .list([])) {
                    guard case .string(let p) = x else { throw .type("sequence item \(parts.count): expected str instance, \(x.typeName) found") }
                    parts.append(p)
                }
                return .string(try interpreter.checkSize(parts.joined(separator: s)))
            }
        case "center":
            return bound(["width", "fillchar"]) { a, interpreter throws(JinjaRuntimeError) in
                let fill = try string(a[1], "center() fillchar") ?? " "
                guard fill.unicodeScalars.count == 1 else { throw .type("The fill character must be exactly one character long") }
                let width = try interpreter.checkWidth(try int(a[0], "center() width") ?? 0)
                return .string(try interpreter.checkSize(pythonCenter(scalars, width, fill.unicodeScalars.first!)))
            }
        case "removeprefix", "removesuffix":
            return bound(["affix"]) { a, _ throws(JinjaRuntimeError) in
                let p = Array((try string(a[0], "\(name)() argument") ?? "").unicodeScalars)
                if name == "removeprefix", scalars.starts(with: p) { return str(Array(scalars.dropFirst(p.count))) }
                if name == "removesuffix", !p.isEmpty, scalars.reversed().starts(with: p.reversed()) { return str(Array(scalars.dropLast(p.count))) }
                return .string(s)
            }
        case "format":
            return .function(JinjaFunction(name) { interpreter, args throws(JinjaRuntimeError) in
                .string(try pythonFormat(s, args, limit: interpreter.limits.outputBytes))
            })
        case "isdigit": return predicate { $0.allSatisfy { $0.properties.numericType == .decimal || $0.properties.numericType == .digit } }
        case "isalpha": return predicate { $0.allSatisfy { $0.properties.isAlphabetic && $0.properties.generalCategory.isLetter } }
        case "isalnum": return predicate { $0.allSatisfy { $0.properties.generalCategory.isLetter || $0.properties.numericType != nil } }
        case "isspace": return predicate { $0.allSatisfy(isPythonSpace) }
        case "islower", "isupper":
            return bound([]) { _, interpreter throws(JinjaRuntimeError) in
                .bool(try test(name == "islower" ? "lower" : "upper", .string(s), JinjaCallArguments(), interpreter))
            }
        default:
            if otherStringMethods.contains(name) {
                return .function(JinjaFunction(name) { _, _ throws(JinjaRuntimeError) in throw .unsupported("the string method \(name)()") })
            }
            return nil
        }
    }

}

extension Value {
    var isListValue: Bool { if case .list = self { true } else { false } }

    var isNone: Bool { if case .none = self { true } else { false } }
}

extension Unicode.GeneralCategory {
    var isLetter: Bool {
        switch self {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: true
        default: false
        }
    }
}

extension JinjaInterpreter {
    /// `%` for the `odd`, `even` and `divisibleby` tests.
    func binaryForTest(_ op: JinjaBinaryOperator, _ a: Value, _ b: Value) throws(JinjaRuntimeError) -> Value {
        if case .undefined(let m) = a { throw .undefined(m) }
        guard let x = a.numericValue, let y = b.numericValue else {
            throw .type("unsupported operand type(s) for %: '\(a.typeName)' and '\(b.typeName)'")
        }
        if case .int(let i) = x, case .int(let j) = y {
            guard j != 0 else { throw .type("integer division or modulo by zero") }
            // -2**63 % -1 overflows in Swift (it traps); Python's answer is 0.
            guard j != -1 else { return .int(0) }
            let r = i % j
            return .int(r != 0 && ((r < 0) != (j < 0)) ? r + j : r)
        }
        let q = y.asDouble
        guard q != 0 else { throw .type("float modulo") }
        var m = fmod(x.asDouble, q)
        if m != 0 && ((m < 0) != (q < 0)) { m += q }
        return .double(m)
    }
}
