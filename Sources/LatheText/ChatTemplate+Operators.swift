import Foundation

// Python's operators on template values: arithmetic (64-bit integers, floor division and modulo
// with the divisor's sign, `**`), `+` and `*` on strings and lists (bounded in size),
// comparisons (chained as in Python) and `in`.

extension JinjaInterpreter {
    func binary(_ op: JinjaBinaryOperator, _ a: Value, _ b: Value) throws(JinjaRuntimeError) -> Value {
        if case .undefined(let m) = a { throw .undefined(m) }
        if case .undefined(let m) = b { throw .undefined(m) }
        let result = try binaryUncharged(op, a, b)
        try charge(result)
        return result
    }

    private func binaryUncharged(_ op: JinjaBinaryOperator, _ a: Value, _ b: Value) throws(JinjaRuntimeError) -> Value {
        func unsupported() -> JinjaRuntimeError {
            .type("unsupported operand type(s) for \(op.rawValue): '\(a.typeName)' and '\(b.typeName)'")
        }
        // Markup + text escapes the text (markupsafe); Markup * n stays Markup.
        switch (op, a, b) {
        case let (.add, .markup(x), .markup(y)): return .markup(try checkSize(x + y))
        case let (.add, .markup(x), .string(y)): return .markup(try checkSize(x + JinjaBuiltins.htmlEscaped(y)))
        case let (.add, .string(x), .markup(y)): return .markup(try checkSize(JinjaBuiltins.htmlEscaped(x) + y))
        case (.add, .markup, _), (.add, _, .markup): throw unsupported()
        case (.multiply, .markup, _), (.multiply, _, .markup):
            if case .string(let r) = try binary(op, a.plain, b.plain) { return .markup(r) }
            throw unsupported()
        default: break
        }
        switch (op, a, b) {
        case (.add, .string(let x), .string(let y)):
            return .string(try checkSize(x + y))
        case (.add, .string, _):
            throw .type("can only concatenate str (not \"\(b.typeName)\") to str")
        case (.add, .list(let x), .list(let y)):
            try checkCount(x.count + y.count)
            return .list(x + y)
        case (.add, .list, _):
            throw .type("can only concatenate list (not \"\(b.typeName)\") to list")
        case (.add, .tuple(let x), .tuple(let y)):
            try checkCount(x.count + y.count)
            return .tuple(x + y)
        case (.multiply, .string(let s), _), (.multiply, _, .string(let s)):
            guard let n = (op == .multiply && a.isStringValue ? b : a).numericValue, case .int(let k) = n else { throw unsupported() }
            guard k > 0 else { return .string("") }
            let (size, overflow) = s.utf8.count.multipliedReportingOverflow(by: k)
            if overflow || size > limits.outputBytes { throw .limit("a string of more than \(limits.outputBytes) bytes (ChatTemplate.Limits.outputBytes)") }
            return .string(String(repeating: s, count: k))
        case (.multiply, .list(let xs), _), (.multiply, _, .list(let xs)):
            let other = a.sequence != nil ? b : a
            guard let n = other.numericValue, case .int(let k) = n else { throw unsupported() }
            guard k > 0, !xs.isEmpty else { return .list([]) }
            let (count, overflow) = xs.count.multipliedReportingOverflow(by: k)
            if overflow { throw .limit("a list of more than \(JinjaLimits.listElements) elements") }
            try checkCount(count)
            try step(count)
            // Built in place: [] * 10**12 once made an array of 10**12 empty arrays first.
            var out: [Value] = []
            out.reserveCapacity(count)
            for _ in 0..<k { out.append(contentsOf: xs) }
            return .list(out)
        default:
            break
        }
        guard let x = a.numericValue, let y = b.numericValue else { throw unsupported() }
        if case .int(let i) = x, case .int(let j) = y {
            switch op {
            case .add: return try checked(i.addingReportingOverflow(j))
            case .subtract: return try checked(i.subtractingReportingOverflow(j))
            case .multiply: return try checked(i.multipliedReportingOverflow(by: j))
            case .divide:
                guard j != 0 else { throw .type("division by zero") }
                return .double(Double(i) / Double(j))
            case .floorDivide:
                guard j != 0 else { throw .type("integer division or modulo by zero") }
                guard !(i == .min && j == -1) else { throw .type("integer overflow") }
                let q = i / j
                return .int((i % j != 0) && ((i < 0) != (j < 0)) ? q - 1 : q)
            case .modulo:
                guard j != 0 else { throw .type("integer division or modulo by zero") }
                guard !(i == .min && j == -1) else { return .int(0) }
                let r = i % j
                return .int(r != 0 && ((r < 0) != (j < 0)) ? r + j : r)
            case .power:
                if j < 0 { return .double(pow(Double(i), Double(j))) }
                var result = 1, base = i, e = j
                while e > 0 {
                    if e & 1 == 1 { result = try checkedInt(result.multipliedReportingOverflow(by: base)) }
                    e >>= 1
                    if e > 0 { base = try checkedInt(base.multipliedReportingOverflow(by: base)) }
                }
                return .int(result)
            }
        }
        let p = x.asDouble, q = y.asDouble
        switch op {
        case .add: return .double(p + q)
        case .subtract: return .double(p - q)
        case .multiply: return .double(p * q)
        case .divide:
            guard q != 0 else { throw .type("float division by zero") }
            return .double(p / q)
        case .floorDivide:
            guard q != 0 else { throw .type("float floor division by zero") }
            return .double(Self.pythonFloatMod(p, q).div)
        case .modulo:
            guard q != 0 else { throw .type("float modulo") }
            return .double(Self.pythonFloatMod(p, q).mod)
        case .power:
            if p == 0 && q < 0 { throw .type("0.0 cannot be raised to a negative power") }
            return .double(pow(p, q))
        }
    }

    /// Python's `divmod` for floats.
    private static func pythonFloatMod(_ x: Double, _ y: Double) -> (div: Double, mod: Double) {
        var mod = fmod(x, y)
        var div = (x - mod) / y
        if mod != 0 {
            if (y < 0) != (mod < 0) { mod += y; div -= 1 }
        } else {
            mod = copysign(0, y)
        }
        var floordiv: Double
        if div != 0 {
            floordiv = div.rounded(.down)
            if div - floordiv > 0.5 { floordiv += 1 }
        } else {
            floordiv = copysign(0, x / y)
        }
        return (floordiv, mod)
    }

    private func checked(_ r: (partialValue: Int, overflow: Bool)) throws(JinjaRuntimeError) -> Value {
        .int(try checkedInt(r))
    }

    private func checkedInt(_ r: (partialValue: Int, overflow: Bool)) throws(JinjaRuntimeError) -> Int {
        if r.overflow { throw .unsupported("integers beyond 64 bits") }
        return r.partialValue
    }

    private static func checkOrderable(_ a: Value, _ b: Value, _ op: String) throws(JinjaRuntimeError) {
        if case .undefined(let m) = a { throw .undefined(m) }
        if case .undefined(let m) = b { throw .undefined(m) }
        switch (a.plain, b.plain) {
        case (.string, .string), (.list, .list), (.tuple, .tuple): return
        default:
            if a.numericValue != nil && b.numericValue != nil { return }
            throw .type("'\(op)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
        }
    }

    func compare(_ op: JinjaCompareOperator, _ a: Value, _ b: Value) throws(JinjaRuntimeError) -> Bool {
        try step(min(Self.cost(a), Self.cost(b)))
        switch op {
        case .equal: return try a.pythonEquals(b)
        case .notEqual: return !(try a.pythonEquals(b))
        case .isIn: return try contains(b, a)
        case .notIn: return !(try contains(b, a))
        case .less, .greater, .lessEqual, .greaterEqual:
            try Self.checkOrderable(a, b, op.rawValue)
            if let x = a.numericValue, let y = b.numericValue, !(x.isIntValue && y.isIntValue) {
                let p = x.asDouble, q = y.asDouble
                switch op {
                case .less: return p < q
                case .greater: return p > q
                case .lessEqual: return p <= q
                default: return p >= q
                }
            }
            switch op {
            case .less: return try a.pythonLess(b, op: "<")
            case .greater: return try b.pythonLess(a, op: ">")
            case .lessEqual: return try !b.pythonLess(a, op: "<=")
            default: return try !a.pythonLess(b, op: ">=")
            }
        }
    }

    /// Python's `needle in haystack`.
    func contains(_ container: Value, _ item: Value) throws(JinjaRuntimeError) -> Bool {
        let haystack = container.plain, needle = item.plain
        try charge(haystack)
        switch haystack {
        case .iterator(let it):
            if it.isView { return try contains(.list(it.items), needle) }
            while let x = it.next() { if try x.pythonEquals(needle) { return true } }
            return false
        case .string(let s):
            guard case .string(let n) = needle else {
                if case .undefined(let m) = needle { throw .undefined(m) }
                throw .type("'in <string>' requires string as left operand, not \(needle.typeName)")
            }
            return textContains(s, n)
        case .list(let a), .tuple(let a):
            for x in a where try x.pythonEquals(needle) { return true }
            return false
        case .dict(let d):
            guard JinjaKey(needle) != nil else { throw .type("unhashable type: '\(needle.typeName)'") }
            return d[needle] != nil
        case .undefined:
            return false
        default:
            throw .type("argument of type '\(haystack.typeName)' is not iterable")
        }
    }
}
