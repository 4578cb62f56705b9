// A recursive-descent parser with jinja2's grammar and operator precedence (lowest first):
// `a if c else b`, `or`, `and`, `not`, comparisons and `in` (chained as in Python), `+ -`,
// `~`, `* / // %`, `**` (left-associative, as in jinja2), unary `- +`, then postfix `.attr`,
// `[item]`, `[a:b:c]`, `(call)`, `| filter`, `is test`.

struct JinjaParser {
    private let src: [Unicode.Scalar]
    private let tokens: [JinjaToken]
    private var i = 0
    /// Open blocks (tag name and offset), innermost last, for error messages.
    private var openBlocks: [(name: String, pos: Int)] = []
    private var loopDepth = 0
    /// Current recursion depth of the parser, bounded so that no template can exhaust the stack.
    private var nesting = 0
    static let maxNesting = 64

    init(source: [Unicode.Scalar], tokens: [JinjaToken]) {
        self.src = source
        self.tokens = tokens
    }

    static func parse(_ source: [Unicode.Scalar]) throws(ChatTemplateError) -> [JinjaNode] {
        var parser = JinjaParser(source: source, tokens: try JinjaLexer.tokenize(source))
        let (nodes, end) = try parser.parseBody(until: [])
        precondition(end == nil)
        try parser.checkNames(nodes, soft: false)
        return nodes
    }

    // MARK: - Filter and test names

    /// jinja2 refuses an unknown filter or test when compiling, except inside `if` bodies and
    /// tests and inline `… if … else …` (its "soft" frames), where the error waits until the
    /// filter is applied (a DeepSeek template uses a `from_json` filter only in an `if` that
    /// transformers' own conversations never take). Loops, macros and block sets start a frame of
    /// their own that is not soft.
    private func checkNames(_ nodes: [JinjaNode], soft: Bool) throws(ChatTemplateError) {
        for node in nodes {
            switch node {
            case .text, .loopControl: break
            case .output(let e): try checkNames(e, soft: soft)
            case .conditional(let branches, let otherwise):
                for (test, body) in branches {
                    try checkNames(test, soft: true)
                    try checkNames(body, soft: true)
                }
                try checkNames(otherwise ?? [], soft: true)
            case .forLoop(let loop):
                try checkNames(loop.iterable, soft: soft)
                if let c = loop.condition { try checkNames(c, soft: false) }
                try checkNames(loop.body, soft: false)
                try checkNames(loop.otherwise ?? [], soft: false)
            case .set(_, let e, _): try checkNames(e, soft: soft)
            case .setBlock(_, let filters, let body, _):
                try checkFilters(filters)
                try checkNames(body, soft: false)
            case .macro(let m):
                for p in m.parameters { if let d = p.defaultValue { try checkNames(d, soft: false) } }
                try checkNames(m.body, soft: false)
            case .scoped(let assignments, let body):
                for a in assignments { try checkNames(a.value, soft: soft) }
                try checkNames(body, soft: false)
            case .filterBlock(let filters, let body):
                try checkFilters(filters)
                try checkNames(body, soft: false)
            case .generation(let body): try checkNames(body, soft: false)
            }
        }
    }

    private func checkFilters(_ filters: [JinjaFilterCall]) throws(ChatTemplateError) {
        for f in filters where !JinjaBuiltins.filterNames.contains(f.name) {
            throw error("no filter named '\(f.name)'", at: f.pos, kind: .unsupported)
        }
    }

    private func checkNames(_ e: JinjaExpr, soft: Bool) throws(ChatTemplateError) {
        func all(_ es: [JinjaExpr], _ soft: Bool) throws(ChatTemplateError) { for x in es { try checkNames(x, soft: soft) } }
        func arguments(_ a: JinjaArguments) throws(ChatTemplateError) { try all(a.positional + a.keyword.map(\.value), soft) }
        switch e.kind {
        case .constant, .name: break
        case .list(let es), .tuple(let es), .concat(let es): try all(es, soft)
        case .dict(let pairs): try all(pairs.flatMap { [$0.key, $0.value] }, soft)
        case .attribute(let x, _), .not(let x), .negate(let x), .plus(let x): try checkNames(x, soft: soft)
        case .item(let a, let b), .binary(_, let a, let b), .and(let a, let b), .or(let a, let b): try all([a, b], soft)
        case .slice(let x, let a, let b, let c): try all([x] + [a, b, c].compactMap { $0 }, soft)
        case .call(let x, let args):
            try checkNames(x, soft: soft)
            try arguments(args)
        case .filter(let x, let name, let args):
            if !soft && !JinjaBuiltins.filterNames.contains(name) { throw error("no filter named '\(name)'", at: e.pos, kind: .unsupported) }
            try checkNames(x, soft: soft)
            try arguments(args)
        case .test(let x, let name, let args):
            if !soft && !JinjaBuiltins.testNames.contains(name) { throw error("no test named '\(name)'", at: e.pos, kind: .unsupported) }
            try checkNames(x, soft: soft)
            try arguments(args)
        case .compare(let x, let ops): try all([x] + ops.map(\.operand), soft)
        case .conditional(let test, let then, let otherwise): try all([test, then] + (otherwise.map { [$0] } ?? []), true)
        }
    }

    // MARK: - Tokens

    private var current: JinjaToken { tokens[i] }
    private func peek(_ k: Int = 1) -> JinjaToken { tokens[min(i + k, tokens.count - 1)] }
    private mutating func advance() { if i < tokens.count - 1 { i += 1 } }

    private func error(_ message: String, at pos: Int? = nil, kind: ChatTemplateError.Kind = .syntax) -> ChatTemplateError {
        ChatTemplateError(kind, message, source: src, offset: pos ?? current.pos)
    }

    private func isName(_ n: String, _ t: JinjaToken? = nil) -> Bool { (t ?? current).kind == .name(n) }
    private func isOp(_ o: String, _ t: JinjaToken? = nil) -> Bool { (t ?? current).kind == .op(o) }

    private mutating func skipOp(_ o: String) -> Bool {
        guard isOp(o) else { return false }
        advance()
        return true
    }

    private mutating func skipName(_ n: String) -> Bool {
        guard isName(n) else { return false }
        advance()
        return true
    }

    private mutating func expectOp(_ o: String, _ what: String? = nil) throws(ChatTemplateError) {
        guard skipOp(o) else { throw error("expected '\(o)'\(what.map { " " + $0 } ?? ""), got \(current.described)") }
    }

    private mutating func expectName() throws(ChatTemplateError) -> String {
        guard case .name(let n) = current.kind else { throw error("expected a name, got \(current.described)") }
        advance()
        return n
    }

    private mutating func expectBlockEnd(_ tag: String) throws(ChatTemplateError) {
        guard current.kind == .blockEnd else { throw error("expected '%}' to end the '\(tag)' tag, got \(current.described)") }
        advance()
    }

    private mutating func enter(at pos: Int) throws(ChatTemplateError) {
        nesting += 1
        if nesting > Self.maxNesting {
            throw error("the template nests blocks or expressions more than \(Self.maxNesting) deep", at: pos, kind: .limit)
        }
    }

    private mutating func leave() { nesting -= 1 }

    private func checked(_ e: JinjaExpr) throws(ChatTemplateError) -> JinjaExpr {
        guard e.depth <= Self.maxNesting * 2 else {
            throw error("expression nested more than \(Self.maxNesting * 2) deep", at: e.pos, kind: .limit)
        }
        return e
    }

    // MARK: - Statements

    /// Nodes up to a block tag named in `until` (returned, the rest of that tag unread) or the
    /// end of the template (only when `until` is empty).
    private mutating func parseBody(until: Set<String>) throws(ChatTemplateError) -> ([JinjaNode], String?) {
        var nodes: [JinjaNode] = []
        while true {
            let t = current
            switch t.kind {
            case .text(let s):
                nodes.append(.text(s))
                advance()
            case .variableBegin:
                advance()
                let e = try parseTuple(withCondexpr: true)
                guard current.kind == .variableEnd else { throw error("expected '}}', got \(current.described)") }
                advance()
                nodes.append(.output(e))
            case .blockBegin:
                advance()
                guard case .name(let tag) = current.kind else { throw error("expected a tag name after '{%', got \(current.described)") }
                if until.contains(tag) {
                    advance()
                    return (nodes, tag)
                }
                try enter(at: t.pos)
                nodes.append(try parseStatement(tag, at: t.pos))
                leave()
            case .eof:
                if let open = openBlocks.last {
                    let (line, column) = ChatTemplateError.lineColumn(src, open.pos)
                    throw error("unclosed '\(open.name)' block (opened at \(line):\(column)): expected \(Self.list(until)) before the end of the template")
                }
                return (nodes, nil)
            default:
                throw error("unexpected \(t.described)")
            }
        }
    }

    private static func list(_ names: Set<String>) -> String {
        let sorted = names.sorted { $0.hasPrefix("end") == $1.hasPrefix("end") ? $0 < $1 : !$0.hasPrefix("end") }
        return sorted.map { "'\($0)'" }.joined(separator: " or ")
    }

    /// The body of a block up to one of `ends`, with the error jinja2 gives for a stray end tag.
    private mutating func parseBlock(_ name: String, at pos: Int, until ends: Set<String>) throws(ChatTemplateError) -> ([JinjaNode], String) {
        openBlocks.append((name, pos))
        defer { openBlocks.removeLast() }
        let (nodes, end) = try parseBody(until: ends)
        return (nodes, end!)
    }

    private static let blockEnds: Set<String> = ["endif", "endfor", "endset", "endmacro", "endwith", "endfilter", "endgeneration", "elif", "else", "endraw"]

    private mutating func parseStatement(_ tag: String, at pos: Int) throws(ChatTemplateError) -> JinjaNode {
        advance()  // the tag name
        switch tag {
        case "if":
            var branches: [(test: JinjaExpr, body: [JinjaNode])] = []
            var test = try parseTuple(withCondexpr: false)
            try expectBlockEnd("if")
            while true {
                let (body, end) = try parseBlock("if", at: pos, until: ["elif", "else", "endif"])
                branches.append((test, body))
                switch end {
                case "elif":
                    test = try parseTuple(withCondexpr: false)
                    try expectBlockEnd("elif")
                case "else":
                    try expectBlockEnd("else")
                    let (otherwise, _) = try parseBlock("if", at: pos, until: ["endif"])
                    try expectBlockEnd("endif")
                    return .conditional(branches, otherwise: otherwise)
                default:
                    try expectBlockEnd("endif")
                    return .conditional(branches, otherwise: nil)
                }
            }
        case "for":
            let target = try parseAssignTarget(extraEnd: ["in"], withNamespace: false)
            guard skipName("in") else { throw error("expected 'in' in the for loop, got \(current.described)") }
            let iterable = try parseTuple(withCondexpr: false, extraEnd: ["recursive"])
            var condition: JinjaExpr?
            if skipName("if") { condition = try parseExpression() }
            if isName("recursive") { throw error("recursive for loops are not supported", kind: .unsupported) }
            try expectBlockEnd("for")
            loopDepth += 1
            let (body, end) = try parseBlock("for", at: pos, until: ["endfor", "else"])
            loopDepth -= 1
            var otherwise: [JinjaNode]?
            if end == "else" {
                try expectBlockEnd("else")
                otherwise = try parseBlock("for", at: pos, until: ["endfor"]).0
            }
            try expectBlockEnd("endfor")
            return .forLoop(JinjaForLoop(target: target, iterable: iterable, condition: condition, body: body, otherwise: otherwise, pos: pos))
        case "set":
            let target = try parseAssignTarget(extraEnd: [], withNamespace: true)
            if skipOp("=") {
                let value = try parseTuple(withCondexpr: true)
                try expectBlockEnd("set")
                return .set(target, value, pos: pos)
            }
            let filters = try parseFilterCalls()
            try expectBlockEnd("set")
            let (body, _) = try parseBlock("set", at: pos, until: ["endset"])
            try expectBlockEnd("endset")
            return .setBlock(target, filters: filters, body: body, pos: pos)
        case "macro":
            let name = try expectName()
            try expectOp("(", "after the macro name")
            var parameters: [(name: String, defaultValue: JinjaExpr?)] = []
            while !skipOp(")") {
                if !parameters.isEmpty { try expectOp(",", "between macro parameters") }
                if skipOp(")") { break }
                let p = try expectName()
                parameters.append((p, skipOp("=") ? try parseExpression() : nil))
            }
            try expectBlockEnd("macro")
            let savedLoops = loopDepth
            loopDepth = 0
            let (body, _) = try parseBlock("macro", at: pos, until: ["endmacro"])
            loopDepth = savedLoops
            try expectBlockEnd("endmacro")
            return .macro(JinjaMacro(name: name, parameters: parameters, body: body, pos: pos))
        case "break", "continue":
            guard loopDepth > 0 else { throw error("'\(tag)' outside a for loop", at: pos) }
            try expectBlockEnd(tag)
            return .loopControl(isBreak: tag == "break", pos: pos)
        case "with":
            var assignments: [(name: String, value: JinjaExpr)] = []
            while current.kind != .blockEnd {
                if !assignments.isEmpty { try expectOp(",", "between assignments") }
                let name = try expectName()
                try expectOp("=", "in the with tag")
                assignments.append((name, try parseExpression()))
            }
            try expectBlockEnd("with")
            let (body, _) = try parseBlock("with", at: pos, until: ["endwith"])
            try expectBlockEnd("endwith")
            return .scoped(assignments, body: body)
        case "filter":
            let filters = try parseFilterCalls(leadingPipe: false)
            try expectBlockEnd("filter")
            let (body, _) = try parseBlock("filter", at: pos, until: ["endfilter"])
            try expectBlockEnd("endfilter")
            return .filterBlock(filters, body: body)
        case "generation":
            try expectBlockEnd("generation")
            let (body, _) = try parseBlock("generation", at: pos, until: ["endgeneration"])
            try expectBlockEnd("endgeneration")
            return .generation(body)
        case "include", "import", "from", "extends", "block", "call", "autoescape", "do", "trans":
            throw error("the '\(tag)' tag is not supported (chat templates here are single files without extensions)", at: pos, kind: .unsupported)
        default:
            if Self.blockEnds.contains(tag) {
                if let open = openBlocks.last {
                    let (line, column) = ChatTemplateError.lineColumn(src, open.pos)
                    throw error("unexpected '\(tag)': the innermost open block is '\(open.name)' (opened at \(line):\(column))", at: pos)
                }
                throw error("unexpected '\(tag)': no block is open", at: pos)
            }
            throw error("unknown tag '\(tag)'", at: pos, kind: .unsupported)
        }
    }

    /// `x`, `a, b`, `(a, b)` or (with `withNamespace`) `ns.attr`.
    private mutating func parseAssignTarget(extraEnd: Set<String>, withNamespace: Bool) throws(ChatTemplateError) -> JinjaTarget {
        if withNamespace, case .name(let n) = current.kind, isOp(".", peek()) {
            advance()
            advance()
            return .attribute(n, try expectName())
        }
        var names: [String] = []
        var isTuple = false
        let parenthesised = skipOp("(")
        while true {
            if !names.isEmpty { try expectOp(",") }
            if case .name(let n) = current.kind, !extraEnd.contains(n) {
                names.append(n)
                advance()
            } else if names.isEmpty || !isTuple {
                throw error("cannot assign to \(current.described)")
            } else {
                break
            }
            if isOp(",") { isTuple = true } else { break }
        }
        if parenthesised { try expectOp(")") }
        return isTuple || parenthesised && names.count > 1 ? .names(names) : .name(names[0])
    }

    /// `| f(args) | g` after `{% set x` or (without the leading pipe) after `{% filter`.
    private mutating func parseFilterCalls(leadingPipe: Bool = true) throws(ChatTemplateError) -> [JinjaFilterCall] {
        var calls: [JinjaFilterCall] = []
        var first = !leadingPipe
        while first || skipOp("|") {
            first = false
            let pos = current.pos
            let name = try parseFilterName()
            let args = isOp("(") ? try parseCallArguments() : .empty
            calls.append(JinjaFilterCall(name: name, arguments: args, pos: pos))
        }
        return calls
    }

    private mutating func parseFilterName() throws(ChatTemplateError) -> String {
        var name = try expectName()
        while skipOp(".") { name += "." + (try expectName()) }
        return name
    }

    // MARK: - Expressions

    private func isTupleEnd(_ extraEnd: Set<String>) -> Bool {
        switch current.kind {
        case .variableEnd, .blockEnd, .eof: return true
        case .op(")"): return true
        case .name(let n): return extraEnd.contains(n)
        default: return false
        }
    }

    /// jinja2's `parse_tuple`: one expression, or several separated by commas (a tuple).
    private mutating func parseTuple(simplified: Bool = false, withCondexpr: Bool = true, extraEnd: Set<String> = [],
                                     explicitParentheses: Bool = false) throws(ChatTemplateError) -> JinjaExpr {
        let pos = current.pos
        var items: [JinjaExpr] = []
        var isTuple = false
        while true {
            if !items.isEmpty { try expectOp(",") }
            if isTupleEnd(extraEnd) { break }
            items.append(simplified ? try parsePrimary() : try parseExpression(withCondexpr: withCondexpr))
            if isOp(",") { isTuple = true } else { break }
        }
        if !isTuple {
            if let only = items.first { return only }
            if !explicitParentheses { throw error("expected an expression, got \(current.described)") }
        }
        return try checked(JinjaExpr(.tuple(items), at: pos))
    }

    private mutating func parseExpression(withCondexpr: Bool = true) throws(ChatTemplateError) -> JinjaExpr {
        try enter(at: current.pos)
        defer { leave() }
        return withCondexpr ? try parseCondexpr() : try parseOr()
    }

    private mutating func parseCondexpr() throws(ChatTemplateError) -> JinjaExpr {
        var e = try parseOr()
        while isName("if") {
            let pos = current.pos
            advance()
            let test = try parseOr()
            let otherwise = skipName("else") ? try parseCondexpr() : nil
            e = try checked(JinjaExpr(.conditional(test: test, then: e, otherwise: otherwise), at: pos))
        }
        return e
    }

    private mutating func parseOr() throws(ChatTemplateError) -> JinjaExpr {
        var e = try parseAnd()
        while isName("or") {
            let pos = current.pos
            advance()
            e = try checked(JinjaExpr(.or(e, try parseAnd()), at: pos))
        }
        return e
    }

    private mutating func parseAnd() throws(ChatTemplateError) -> JinjaExpr {
        var e = try parseNot()
        while isName("and") {
            let pos = current.pos
            advance()
            e = try checked(JinjaExpr(.and(e, try parseNot()), at: pos))
        }
        return e
    }

    private mutating func parseNot() throws(ChatTemplateError) -> JinjaExpr {
        guard isName("not") else { return try parseCompare() }
        let pos = current.pos
        advance()
        try enter(at: pos)
        defer { leave() }
        return try checked(JinjaExpr(.not(try parseNot()), at: pos))
    }

    private mutating func parseCompare() throws(ChatTemplateError) -> JinjaExpr {
        let pos = current.pos
        let e = try parseMath1()
        var ops: [(op: JinjaCompareOperator, operand: JinjaExpr)] = []
        while true {
            if case .op(let o) = current.kind, let op = JinjaCompareOperator(rawValue: o), op != .isIn, op != .notIn {
                advance()
                ops.append((op, try parseMath1()))
            } else if isName("in") {
                advance()
                ops.append((.isIn, try parseMath1()))
            } else if isName("not"), isName("in", peek()) {
                advance()
                advance()
                ops.append((.notIn, try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? e : try checked(JinjaExpr(.compare(e, ops), at: pos))
    }

    private mutating func parseMath1() throws(ChatTemplateError) -> JinjaExpr {
        var e = try parseConcat()
        while case .op(let o) = current.kind, o == "+" || o == "-" {
            let pos = current.pos
            advance()
            e = try checked(JinjaExpr(.binary(o == "+" ? .add : .subtract, e, try parseConcat()), at: pos))
        }
        return e
    }

    private mutating func parseConcat() throws(ChatTemplateError) -> JinjaExpr {
        let pos = current.pos
        var items = [try parseMath2()]
        while skipOp("~") { items.append(try parseMath2()) }
        return items.count == 1 ? items[0] : try checked(JinjaExpr(.concat(items), at: pos))
    }

    private mutating func parseMath2() throws(ChatTemplateError) -> JinjaExpr {
        var e = try parsePow()
        while case .op(let o) = current.kind, let op = JinjaBinaryOperator(rawValue: o), [.multiply, .divide, .floorDivide, .modulo].contains(op) {
            let pos = current.pos
            advance()
            e = try checked(JinjaExpr(.binary(op, e, try parsePow()), at: pos))
        }
        return e
    }

    private mutating func parsePow() throws(ChatTemplateError) -> JinjaExpr {
        var e = try parseUnary()
        while isOp("**") {
            let pos = current.pos
            advance()
            e = try checked(JinjaExpr(.binary(.power, e, try parseUnary()), at: pos))
        }
        return e
    }

    private mutating func parseUnary(withFilter: Bool = true) throws(ChatTemplateError) -> JinjaExpr {
        let pos = current.pos
        var e: JinjaExpr
        if isOp("-") || isOp("+") {
            let minus = isOp("-")
            advance()
            try enter(at: pos)
            let operand = try parseUnary(withFilter: false)
            leave()
            e = try checked(JinjaExpr(minus ? .negate(operand) : .plus(operand), at: pos))
        } else {
            e = try parsePrimary()
        }
        e = try parsePostfix(e)
        if withFilter { e = try parseFilterExpression(e) }
        return e
    }

    private mutating func parsePrimary() throws(ChatTemplateError) -> JinjaExpr {
        let t = current
        switch t.kind {
        case .name(let n):
            advance()
            switch n {
            case "true", "True": return JinjaExpr(.constant(.bool(true)), at: t.pos)
            case "false", "False": return JinjaExpr(.constant(.bool(false)), at: t.pos)
            case "none", "None": return JinjaExpr(.constant(.none), at: t.pos)
            default: return JinjaExpr(.name(n), at: t.pos)
            }
        case .string(let s):
            advance()
            var text = s
            while case .string(let more) = current.kind {
                text += more
                advance()
            }
            return JinjaExpr(.constant(.string(text)), at: t.pos)
        case .integer(let v):
            advance()
            return JinjaExpr(.constant(.integer(v)), at: t.pos)
        case .float(let v):
            advance()
            return JinjaExpr(.constant(.float(v)), at: t.pos)
        case .op("("):
            advance()
            try enter(at: t.pos)
            let e = try parseTuple(explicitParentheses: true)
            leave()
            try expectOp(")")
            return e
        case .op("["):
            advance()
            try enter(at: t.pos)
            var items: [JinjaExpr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",", "in the list") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            leave()
            try expectOp("]")
            return try checked(JinjaExpr(.list(items), at: t.pos))
        case .op("{"):
            advance()
            try enter(at: t.pos)
            var pairs: [(key: JinjaExpr, value: JinjaExpr)] = []
            while !isOp("}") {
                if !pairs.isEmpty { try expectOp(",", "in the dict") }
                if isOp("}") { break }
                let key = try parseExpression()
                try expectOp(":", "after a dict key")
                pairs.append((key, try parseExpression()))
            }
            leave()
            try expectOp("}")
            return try checked(JinjaExpr(.dict(pairs), at: t.pos))
        default:
            throw error("expected an expression, got \(t.described)")
        }
    }

    private mutating func parsePostfix(_ start: JinjaExpr) throws(ChatTemplateError) -> JinjaExpr {
        var e = start
        while true {
            let pos = current.pos
            if skipOp(".") {
                switch current.kind {
                case .name(let n):
                    advance()
                    e = try checked(JinjaExpr(.attribute(e, n), at: pos))
                case .integer(let k):
                    advance()
                    e = try checked(JinjaExpr(.item(e, JinjaExpr(.constant(.integer(k)), at: pos)), at: pos))
                default:
                    throw error("expected an attribute name after '.', got \(current.described)")
                }
            } else if skipOp("[") {
                try enter(at: pos)
                e = try parseSubscript(e, at: pos)
                leave()
            } else if isOp("(") {
                e = try checked(JinjaExpr(.call(e, try parseCallArguments()), at: e.pos))
            } else {
                return e
            }
        }
    }

    /// After `[`: an item or a slice, then `]`.
    private mutating func parseSubscript(_ e: JinjaExpr, at pos: Int) throws(ChatTemplateError) -> JinjaExpr {
        var parts: [JinjaExpr?] = []
        var isSlice = false
        func endOfPart(_ p: JinjaParser) -> Bool { p.isOp(":") || p.isOp("]") }
        if !isOp(":") { parts.append(try parseExpression()) } else { parts.append(nil) }
        if skipOp(":") {
            isSlice = true
            parts.append(endOfPart(self) ? nil : try parseExpression())
            if skipOp(":") { parts.append(isOp("]") ? nil : try parseExpression()) }
        }
        guard skipOp("]") else {
            if isOp(",") { throw error("tuple subscripts (a[x, y]) are not supported", kind: .unsupported) }
            throw error("expected ']', got \(current.described)")
        }
        if !isSlice { return try checked(JinjaExpr(.item(e, parts[0]!), at: pos)) }
        while parts.count < 3 { parts.append(nil) }
        return try checked(JinjaExpr(.slice(e, start: parts[0], stop: parts[1], step: parts[2]), at: pos))
    }

    /// `(a, b, key=c)`; `*args` and `**kwargs` are not supported.
    private mutating func parseCallArguments() throws(ChatTemplateError) -> JinjaArguments {
        let open = current.pos
        try expectOp("(")
        try enter(at: open)
        defer { leave() }
        var args = JinjaArguments()
        var first = true
        while !isOp(")") {
            if !first { try expectOp(",", "between arguments") }
            first = false
            if isOp(")") { break }
            if isOp("*") || isOp("**") { throw error("*args and **kwargs in calls are not supported", kind: .unsupported) }
            if case .name(let n) = current.kind, isOp("=", peek()) {
                advance()
                advance()
                args.keyword.append((n, try parseExpression()))
            } else {
                if !args.keyword.isEmpty { throw error("a positional argument follows a keyword argument") }
                args.positional.append(try parseExpression())
            }
        }
        try expectOp(")")
        return args
    }

    private mutating func parseFilterExpression(_ start: JinjaExpr) throws(ChatTemplateError) -> JinjaExpr {
        var e = start
        while true {
            let pos = current.pos
            if skipOp("|") {
                let name = try parseFilterName()
                let args = isOp("(") ? try parseCallArguments() : .empty
                e = try checked(JinjaExpr(.filter(e, name: name, args), at: pos))
            } else if isName("is") {
                advance()
                let negated = skipName("not")
                var name = try expectName()
                while skipOp(".") { name += "." + (try expectName()) }
                var args = JinjaArguments()
                if isOp("(") {
                    args = try parseCallArguments()
                } else {
                    switch current.kind {
                    case .name(let n) where !["else", "or", "and"].contains(n):
                        if n == "is" { throw error("tests cannot be chained with 'is'") }
                        args.positional = [try parsePostfix(try parsePrimary())]
                    case .string, .integer, .float, .op("("), .op("["), .op("{"):
                        args.positional = [try parsePostfix(try parsePrimary())]
                    default: break
                    }
                }
                e = try checked(JinjaExpr(.test(e, name: name, args), at: pos))
                if negated { e = try checked(JinjaExpr(.not(e), at: pos)) }
            } else if isOp("(") {
                e = try checked(JinjaExpr(.call(e, try parseCallArguments()), at: e.pos))
            } else {
                return e
            }
        }
    }
}
