import Foundation

// The global functions transformers gives chat templates: `raise_exception`, `range` (with
// jinja2's sandbox limit), `namespace`, `dict`, `strftime_now`.

extension JinjaBuiltins {
    // MARK: - Globals

    static func globals(_ template: ChatTemplate) -> [(String, JinjaFunction)] {
        let now = template.now, timeZone = template.timeZone
        return [
            ("raise_exception", JinjaFunction("raise_exception") { _, args throws(JinjaRuntimeError) in
                let a = try bind(args, ["message"], "raise_exception")
                throw .raised(try (a[0] ?? .none).pythonString())
            }),
            ("range", JinjaFunction("range") { interpreter, args throws(JinjaRuntimeError) in
                guard !args.positional.isEmpty, args.positional.count <= 3, args.keyword.isEmpty else {
                    throw .type("range expected 1 to 3 integer arguments")
                }
                var bounds: [Int] = []
                for v in args.positional { bounds.append(try int(v, "range() argument")!) }
                let (start, stop, step) = bounds.count == 1 ? (0, bounds[0], 1) : (bounds[0], bounds[1], bounds.count == 3 ? bounds[2] : 1)
                guard step != 0 else { throw .type("range() arg 3 must not be zero") }
                // Counted in UInt: stop - start and -step overflow Int for the widest ranges
                // (range(-2**63, 2**63 - 1), a step of -2**63).
                let span: UInt = step > 0 ? (stop > start ? UInt(bitPattern: stop &- start) : 0) : (start > stop ? UInt(bitPattern: start &- stop) : 0)
                let count = span == 0 ? 0 : (span - 1) / step.magnitude + 1
                if count > UInt(JinjaLimits.maxRange) {
                    throw .type("Range too big. The sandbox blocks ranges larger than MAX_RANGE (\(JinjaLimits.maxRange)).")
                }
                try interpreter.step(Int(count))
                return .list(stride(from: start, to: stop, by: step).map { .int($0) })
            }),
            ("namespace", JinjaFunction("namespace") { interpreter, args throws(JinjaRuntimeError) in
                let attributes = try dict(args, "namespace")
                for k in attributes.stringKeys where k.hasPrefix("_") { throw underscoreAttribute(k) }
                let v = Value.namespace(JinjaNamespace(attributes))
                try interpreter.checkNesting(v)
                return v
            }),
            ("dict", JinjaFunction("dict") { interpreter, args throws(JinjaRuntimeError) in
                let v = Value.dict(try dict(args, "dict"))
                try interpreter.checkNesting(v)
                return v
            }),
            ("strftime_now", JinjaFunction("strftime_now") { _, args throws(JinjaRuntimeError) in
                let a = try bind(args, ["format"], "strftime_now")
                guard let format = try string(a[0], "strftime_now() format") else { throw .type("strftime_now() missing required argument 'format'") }
                return .string(try strftime(format, now(), timeZone))
            }),
        ]
    }

    static func underscoreAttribute(_ name: String) -> JinjaRuntimeError {
        .type("Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(name)'. Please rename the attribute.")
    }

    /// `dict(mapping or pairs, key=value…)`.
    private static func dict(_ args: JinjaCallArguments, _ function: String) throws(JinjaRuntimeError) -> JinjaDict {
        guard args.positional.count <= 1 else { throw .type("\(function)() takes at most 1 positional argument") }
        var d = JinjaDict()
        switch args.positional.first {
        case nil: break
        case .dict(let m)?: d = m
        case let v?:
            guard let pairs = v.sequence else { throw .type("\(function)(): '\(v.typeName)' object is not a mapping") }
            for p in pairs {
                guard let kv = p.sequence, kv.count == 2, JinjaKey(kv[0]) != nil else {
                    throw .type("\(function)(): each element must be a (key, value) pair with a hashable key")
                }
                d[kv[0]] = kv[1]
            }
        }
        for (k, v) in args.keyword { d[k] = v }
        return d
    }

    // MARK: - strftime

    private static let weekdays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    private static let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]

    /// C's `strftime` in the POSIX locale for a naive local time (as Python's `datetime.now()`
    /// gives: `%z` and `%Z` are empty). glibc's `%-d` (no padding) is supported.
    static func strftime(_ format: String, _ date: Date, _ timeZone: TimeZone) throws(JinjaRuntimeError) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday, .nanosecond], from: date)
        let year = c.year!, month = c.month!, day = c.day!, hour = c.hour!, minute = c.minute!, second = c.second!
        let weekday = c.weekday! - 1  // 0 = Sunday
        let dayOfYear = calendar.ordinality(of: .day, in: .year, for: date) ?? 1
        func pad(_ v: Int, _ width: Int, _ noPad: Bool, _ fill: Character = "0") -> String {
            let s = String(v)
            return noPad || s.count >= width ? s : String(repeating: fill, count: width - s.count) + s
        }
        var out = ""
        var chars = Array(format)[...]
        while let ch = chars.popFirst() {
            guard ch == "%" else { out.append(ch); continue }
            var noPad = false
            if chars.first == "-" { noPad = true; chars.removeFirst() }
            guard let d = chars.popFirst() else { out.append("%"); break }
            switch d {
            case "%": out += "%"
            case "a": out += String(weekdays[weekday].prefix(3))
            case "A": out += weekdays[weekday]
            case "b", "h": out += String(months[month - 1].prefix(3))
            case "B": out += months[month - 1]
            case "d": out += pad(day, 2, noPad)
            case "e": out += pad(day, 2, noPad, " ")
            case "m": out += pad(month, 2, noPad)
            case "y": out += pad(year % 100, 2, noPad)
            case "Y": out += String(year)
            case "H": out += pad(hour, 2, noPad)
            case "I": out += pad(hour % 12 == 0 ? 12 : hour % 12, 2, noPad)
            case "M": out += pad(minute, 2, noPad)
            case "S": out += pad(second, 2, noPad)
            case "p": out += hour < 12 ? "AM" : "PM"
            case "j": out += pad(dayOfYear, 3, noPad)
            case "w": out += String(weekday)
            case "f": out += pad((c.nanosecond ?? 0) / 1000, 6, false)
            case "z", "Z": break
            case "F": out += "\(year)-\(pad(month, 2, false))-\(pad(day, 2, false))"
            case "T": out += "\(pad(hour, 2, false)):\(pad(minute, 2, false)):\(pad(second, 2, false))"
            case "R": out += "\(pad(hour, 2, false)):\(pad(minute, 2, false))"
            case "D": out += "\(pad(month, 2, false))/\(pad(day, 2, false))/\(pad(year % 100, 2, false))"
            default: throw .unsupported("the strftime directive %\(d)")
            }
        }
        return out
    }
}
