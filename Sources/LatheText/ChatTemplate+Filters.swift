import Foundation

// jinja2 3.1's filters as chat templates use them, and transformers' `tojson`.

extension JinjaBuiltins {
    // MARK: - Filters

    static func filter(_ name: String, _ v: Value, _ args: JinjaCallArguments, _ interpreter: JinjaInterpreter) throws(JinjaRuntimeError) -> Value {
        func text(_ x: Value) throws(JinjaRuntimeError) -> [Unicode.Scalar] { Array(try x.pythonString().unicodeScalars) }
        func scalarsString(_ s: [Unicode.Scalar]) -> Value { .string(String(String.UnicodeScalarView(s))) }
        switch name {
        case "abs":
            _ = try bind(args, [], name)
            switch v {
            case .int(let i):
                guard i != .min else { throw .unsupported("integers beyond 64 bits") }
                return .int(abs(i))
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return .double(abs(d))
            case .undefined(let m): throw .undefined(m)
            default: throw .type("bad operand type for abs(): '\(v.typeName)'")
            }
        case "attr":
            let a = try bind(args, ["name"], name)
            guard let n = try string(a[0], "attr() name") else { throw .type("attr() missing required argument 'name'") }
            switch v {
            case .namespace(let ns): return ns.attributes[n] ?? JinjaInterpreter.missingAttribute(v, n)
            case .undefined(let m): throw .undefined(m)
            default: return method(v, n) ?? JinjaInterpreter.missingAttribute(v, n)
            }
        case "capitalize":
            _ = try bind(args, [], name)
            return .string(pythonCapitalize(try v.pythonString()))
        case "center":
            let a = try bind(args, ["width"], name)
            let width = try interpreter.checkWidth(try int(a[0], "center() width") ?? 80)
            return .string(try interpreter.checkSize(pythonCenter(try text(v), width, " ")))
        case "count", "length":
            _ = try bind(args, [], name)
            return .int(try length(v))
        case "d", "default":
            let a = try bind(args, ["default_value", "boolean"], name)
            let useDefault = v.isUndefined || ((a[1]?.isTruthy ?? false) && !v.isTruthy)
            return useDefault ? (a[0] ?? .string("")) : v
        case "dictsort":
            let a = try bind(args, ["case_sensitive", "by", "reverse"], name)
            guard case .dict(let d) = v else { throw .type("You can only sort by either \"key\" or \"value\"") }
            let byValue: Bool
            switch try string(a[1], "dictsort() by") ?? "key" {
            case "key": byValue = false
            case "value": byValue = true
            default: throw .type("You can only sort by either \"key\" or \"value\"")
            }
            let caseSensitive = a[0]?.isTruthy ?? false
            let pairs = d.items.map { Value.tuple([$0.key, $0.value]) }
            let sorted = try sortValues(pairs, reverse: a[2]?.isTruthy ?? false, interpreter) { p throws(JinjaRuntimeError) in
                let x = p.sequence![byValue ? 1 : 0]
                return caseSensitive ? x : ignoreCase(x)
            }
            return .list(sorted)
        case "e", "escape":
            _ = try bind(args, [], name)
            if case .markup = v { return v }
            return .markup(htmlEscaped(try v.pythonString()))
        case "first":
            _ = try bind(args, [], name)
            if case .iterator(let it) = v { return it.next() ?? .undefined("No first item, sequence was empty.") }
            return try interpreter.iterate(v).first ?? .undefined("No first item, sequence was empty.")
        case "last":
            _ = try bind(args, [], name)
            if case .iterator(let it) = v, !it.isView { throw .type("'\(it.typeName)' object is not reversible") }
            return try interpreter.iterate(v).last ?? .undefined("No last item, sequence was empty.")
        case "float":
            let a = try bind(args, ["default"], name)
            return pythonFloat(v).map { .double($0) } ?? (a[0] ?? .double(0))
        case "int":
            let a = try bind(args, ["default", "base"], name)
            return try pythonInt(v, base: try int(a[1], "int() base") ?? 10).map { .int($0) } ?? (a[0] ?? .int(0))
        case "indent":
            let a = try bind(args, ["width", "first", "blank"], name)
            let indentation: String
            switch a[0] {
            case .string(let s)?: indentation = s
            default: indentation = String(repeating: " ", count: try interpreter.checkWidth(try int(a[0], "indent() width") ?? 4))
            }
            var lines = pythonSplitlines(try v.pythonString() + "\n")
            let (size, overflow) = lines.count.multipliedReportingOverflow(by: indentation.utf8.count)
            if overflow || size > interpreter.limits.outputBytes {
                throw .limit("a string of more than \(interpreter.limits.outputBytes) bytes (ChatTemplate.Limits.outputBytes)")
            }
            var out: String
            if a[2]?.isTruthy ?? false {
                out = lines.joined(separator: "\n" + indentation)
            } else {
                out = lines.removeFirst()
                if !lines.isEmpty { out += "\n" + lines.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n") }
            }
            if a[1]?.isTruthy ?? false { out = indentation + out }
            return .string(try interpreter.checkSize(out))
        case "items":
            _ = try bind(args, [], name)
            switch v {
            case .dict(let d): return .iterator(JinjaIterator(generator: d.items.map { .tuple([$0.key, $0.value]) }))
            case .undefined: return .iterator(JinjaIterator(generator: []))
            default: throw .type("Can only get item pairs from a mapping.")
            }
        case "join":
            let a = try bind(args, ["d", "attribute"], name)
            var items = try interpreter.iterate(v)
            if let attribute = a[1], !attribute.isNone { items = try items.map { x throws(JinjaRuntimeError) in try getPath(x, attribute, interpreter) } }
            let separator = try (a[0] ?? .string("")).pythonString()
            var parts: [String] = []
            var size = 0
            for x in items {
                let p = try x.pythonString()
                size += p.utf8.count + (parts.isEmpty ? 0 : separator.utf8.count)
                if size > interpreter.limits.outputBytes { throw .limit("a string of more than \(interpreter.limits.outputBytes) bytes (ChatTemplate.Limits.outputBytes)") }
                parts.append(p)
            }
            return .string(parts.joined(separator: separator))
        case "list":
            _ = try bind(args, [], name)
            return .list(try interpreter.iterate(v))
        case "lower":
            _ = try bind(args, [], name)
            return .string(try v.pythonString().lowercased())
        case "upper":
            _ = try bind(args, [], name)
            return .string(try v.pythonString().uppercased())
        case "map":
            // jinja2 maps nothing over a false value (None, an empty list) instead of failing.
            let items = v.isTruthy ? try interpreter.iterate(v) : []
            if let attribute = args.keyword.first(where: { $0.name == "attribute" })?.value {
                guard args.positional.isEmpty else { throw .type("map() takes either a filter name or attribute=…") }
                let dflt = args.keyword.first { $0.name == "default" }?.value
                for k in args.keyword where k.name != "attribute" && k.name != "default" {
                    throw .type("Unexpected keyword argument '\(k.name)'")
                }
                return .iterator(JinjaIterator(generator: try items.map { x throws(JinjaRuntimeError) in
                    let r = try getPath(x, attribute, interpreter)
                    if r.isUndefined, let dflt { return dflt }
                    return r
                }))
            }
            guard case .string(let filterName)? = args.positional.first else { throw .type("map requires a filter argument") }
            guard filterNames.contains(filterName) else { throw .unsupported("no filter named '\(filterName)'") }
            let rest = JinjaCallArguments(positional: Array(args.positional.dropFirst()), keyword: args.keyword)
            return .iterator(JinjaIterator(generator: try items.map { x throws(JinjaRuntimeError) in try filter(filterName, x, rest, interpreter) }))
        case "max", "min":
            let a = try bind(args, ["case_sensitive", "attribute"], name)
            let caseSensitive = a[0]?.isTruthy ?? false
            let items = try interpreter.iterate(v)
            guard var best = items.first else { return .undefined("No aggregated item, sequence was empty.") }
            func key(_ x: Value) throws(JinjaRuntimeError) -> Value {
                let k = a[1].map { !$0.isNone } == true ? try getPath(x, a[1]!, interpreter) : x
                return caseSensitive ? k : ignoreCase(k)
            }
            var bestKey = try key(best)
            for x in items.dropFirst() {
                let k = try key(x)
                if name == "max" ? try bestKey.pythonLess(k) : try k.pythonLess(bestKey) { best = x; bestKey = k }
            }
            return best
        case "reject", "select":
            return .iterator(JinjaIterator(generator: try selectItems(v, args, attribute: false, keep: name == "select", interpreter)))
        case "rejectattr", "selectattr":
            return .iterator(JinjaIterator(generator: try selectItems(v, args, attribute: true, keep: name == "selectattr", interpreter)))
        case "replace":
            let a = try bind(args, ["old", "new", "count"], name)
            guard let old = a[0], let new = a[1] else { throw .type("replace() missing required arguments 'old' and 'new'") }
            let s = try pythonReplace(try v.pythonString(), try old.pythonString(), try new.pythonString(), try int(a[2], "replace() count") ?? -1,
                                      limit: interpreter.limits.outputBytes)
            return .string(s)
        case "reverse":
            _ = try bind(args, [], name)
            switch v {
            case .string(let s), .markup(let s): return scalarsString(Array(s.unicodeScalars.reversed()))
            case .list(let a): return .iterator(JinjaIterator(generator: a.reversed(), typeName: "list_reverseiterator"))
            case .tuple(let a): return .iterator(JinjaIterator(generator: a.reversed(), typeName: "reversed"))
            case .dict(let d): return .iterator(JinjaIterator(generator: d.keys.reversed(), typeName: "dict_reversekeyiterator"))
            case .iterator(let it) where it.isView: return .iterator(JinjaIterator(generator: it.items.reversed(), typeName: "dict_reverseiterator"))
            default: return .list(try interpreter.iterate(v).reversed())
            }
        case "round":
            let a = try bind(args, ["precision", "method"], name)
            let precision = try int(a[0], "round() precision") ?? 0
            let x = v.numericValue?.asDouble ?? .nan
            guard v.numericValue != nil else { throw .type("type \(v.typeName) doesn't define __round__ method") }
            let scale = pow(10, Double(precision))
            switch try string(a[1], "round() method") ?? "common" {
            case "common": return .double((x * scale).rounded(.toNearestOrEven) / scale)
            case "ceil": return .double((x * scale).rounded(.up) / scale)
            case "floor": return .double((x * scale).rounded(.down) / scale)
            default: throw .type("method must be common, ceil or floor")
            }
        case "safe":
            _ = try bind(args, [], name)
            return .markup(try v.pythonString())
        case "string":
            _ = try bind(args, [], name)
            if case .markup = v { return v }
            return .string(try v.pythonString())
        case "sort":
            let a = try bind(args, ["reverse", "case_sensitive", "attribute"], name)
            let caseSensitive = a[1]?.isTruthy ?? false
            let attribute = a[2].flatMap { $0.isNone ? nil : $0 }
            return .list(try sortValues(try interpreter.iterate(v), reverse: a[0]?.isTruthy ?? false, interpreter) { x throws(JinjaRuntimeError) in
                let k = try attribute.map { p throws(JinjaRuntimeError) in try getPath(x, p, interpreter) } ?? x
                return caseSensitive ? k : ignoreCase(k)
            })
        case "sum":
            let a = try bind(args, ["attribute", "start"], name)
            var total = a[1] ?? .int(0)
            for x in try interpreter.iterate(v) {
                let item = try a[0].map { p throws(JinjaRuntimeError) in p.isNone ? x : try getPath(x, p, interpreter) } ?? x
                if case .string = item { throw .type("unsupported operand type(s) for +: '\(total.typeName)' and 'str'") }
                guard let p = total.numericValue, let q = item.numericValue else {
                    throw .type("unsupported operand type(s) for +: '\(total.typeName)' and '\(item.typeName)'")
                }
                if case .int(let i) = p, case .int(let j) = q {
                    let (s, o) = i.addingReportingOverflow(j)
                    if o { throw .unsupported("integers beyond 64 bits") }
                    total = .int(s)
                } else {
                    total = .double(p.asDouble + q.asDouble)
                }
            }
            return total
        case "title":
            _ = try bind(args, [], name)
            return .string(jinjaTitle(try v.pythonString()))
        case "tojson":
            let a = try bind(args, ["ensure_ascii", "indent", "separators", "sort_keys"], name)
            var indent: String?
            switch a[1] {
            case nil, .none?: indent = nil
            case .string(let s)?: indent = s
            case let x?: indent = String(repeating: " ", count: try interpreter.checkWidth(try int(x, "tojson() indent") ?? 0))
            }
            var separators: (String, String)?
            if let s = a[2], !s.isNone {
                guard let pair = s.sequence, pair.count == 2, case .string(let item) = pair[0], case .string(let key) = pair[1] else {
                    throw .type("tojson() separators must be a pair of strings")
                }
                separators = (item, key)
            }
            var dumper = PythonJSONDumper(indent: indent, separators: separators, sortKeys: a[3]?.isTruthy ?? false)
            dumper.ensureASCII = a[0]?.isTruthy ?? false
            return .string(try interpreter.checkSize(try dumper.dump(v)))
        case "trim":
            let a = try bind(args, ["chars"], name)
            return scalarsString(pythonStrip(try text(v), chars: try string(a[0], "trim() chars"), left: true, right: true))
        case "unique":
            let a = try bind(args, ["case_sensitive", "attribute"], name)
            let caseSensitive = a[0]?.isTruthy ?? false
            var seen: [Value] = [], out: [Value] = []
            for x in try interpreter.iterate(v) {
                var k = a[1].map { !$0.isNone } == true ? try getPath(x, a[1]!, interpreter) : x
                if !caseSensitive { k = ignoreCase(k) }
                var found = false
                for s in seen {
                    try interpreter.step()
                    if try s.pythonEquals(k) { found = true; break }
                }
                if !found { seen.append(k); out.append(x) }
            }
            return .iterator(JinjaIterator(generator: out))
        default:
            throw .unsupported("no filter named '\(name)'")
        }
    }

    /// Python's `len()`.
    static func length(_ v: Value) throws(JinjaRuntimeError) -> Int {
        switch v {
        case .string(let s), .markup(let s): return s.unicodeScalars.count
        case .iterator(let it) where it.isView: return it.items.count
        case .list(let a), .tuple(let a): return a.count
        case .dict(let d): return d.count
        case .undefined: return 0
        default: throw .type("object of type '\(v.typeName)' has no len()")
        }
    }

    private static func ignoreCase(_ v: Value) -> Value {
        if let s = v.text { return .string(s.lowercased()) }
        return v
    }

    /// markupsafe's `escape`.
    static func htmlEscaped(_ s: String) -> String {
        var out = ""
        for ch in s.unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    /// A stable sort by key, as Python's `sorted(key=…, reverse=…)`.
    private static func sortValues(_ items: [Value], reverse: Bool, _ interpreter: JinjaInterpreter,
                                   key: (Value) throws(JinjaRuntimeError) -> Value) throws(JinjaRuntimeError) -> [Value] {
        // n log n comparisons.
        try interpreter.step(items.count * (Int.bitWidth - max(1, items.count).leadingZeroBitCount))
        var keyed: [(key: Value, value: Value, index: Int)] = []
        for (i, x) in items.enumerated() { keyed.append((try key(x), x, i)) }
        // Merge sort so that comparisons may throw.
        func merge(_ a: ArraySlice<(key: Value, value: Value, index: Int)>) throws(JinjaRuntimeError) -> [(key: Value, value: Value, index: Int)] {
            if a.count <= 1 { return Array(a) }
            let mid = a.startIndex + a.count / 2
            let l = try merge(a[..<mid]), r = try merge(a[mid...])
            var out: [(key: Value, value: Value, index: Int)] = []
            out.reserveCapacity(a.count)
            var i = 0, j = 0
            while i < l.count && j < r.count {
                // Python's reverse sort keeps equal items in their original order.
                let takeRight = reverse ? try l[i].key.pythonLess(r[j].key) : try r[j].key.pythonLess(l[i].key)
                if takeRight { out.append(r[j]); j += 1 } else { out.append(l[i]); i += 1 }
            }
            out += l[i...]
            out += r[j...]
            return out
        }
        return try merge(keyed[...]).map(\.value)
    }

    /// jinja2's attribute getter for `map(attribute=…)`, `sort(attribute=…)`: dotted paths,
    /// integer parts as indices, each part looked up as an item first.
    static func getPath(_ x: Value, _ path: Value, _ interpreter: JinjaInterpreter) throws(JinjaRuntimeError) -> Value {
        switch path {
        case .int: return try interpreter.item(x, path)
        case .string(let p):
            var v = x
            for part in p.split(separator: ".", omittingEmptySubsequences: false) {
                let key: Value = Int(part).map { .int($0) } ?? .string(String(part))
                v = try interpreter.item(v, key)
            }
            return v
        default: throw .type("attribute must be a string or an integer, not \(path.typeName)")
        }
    }

    /// `select`/`reject` (a test on each item, or its truth) and `selectattr`/`rejectattr` (on an
    /// attribute of each item).
    private static func selectItems(_ v: Value, _ args: JinjaCallArguments, attribute: Bool, keep: Bool,
                                    _ interpreter: JinjaInterpreter) throws(JinjaRuntimeError) -> [Value] {
        var positional = args.positional[...]
        var path: Value?
        if attribute {
            guard let p = positional.popFirst() else { throw .type("Missing parameter for attribute name") }
            path = p
        }
        // jinja2 selects nothing from a false value (None, an empty list) instead of failing.
        guard v.isTruthy else { return [] }
        var testName: String?
        if let t = positional.popFirst() {
            guard case .string(let n) = t else { throw .type("the test name must be a string") }
            guard testNames.contains(n) else { throw .unsupported("no test named '\(n)'") }
            testName = n
        }
        let rest = JinjaCallArguments(positional: Array(positional), keyword: args.keyword)
        var out: [Value] = []
        for x in try interpreter.iterate(v) {
            try interpreter.step()
            let subject = try path.map { p throws(JinjaRuntimeError) in try getPath(x, p, interpreter) } ?? x
            let passes = try testName.map { n throws(JinjaRuntimeError) in try test(n, subject, rest, interpreter) } ?? subject.isTruthy
            if passes == keep { out.append(x) }
        }
        return out
    }
}
