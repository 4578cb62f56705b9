// Metadata values of GGUF files (`gguf_type` in ggml's `include/gguf.h`).

/// The type of a GGUF metadata value, with the file format's ids.
public enum GGUFValueType: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// The short name gguf.cpp prints (`u8`, `i32`, `f32`, `str`, `arr`, ...).
    public var name: String {
        switch self {
        case .uint8: "u8"
        case .int8: "i8"
        case .uint16: "u16"
        case .int16: "i16"
        case .uint32: "u32"
        case .int32: "i32"
        case .float32: "f32"
        case .bool: "bool"
        case .string: "str"
        case .array: "arr"
        case .uint64: "u64"
        case .int64: "i64"
        case .float64: "f64"
        }
    }

    public var description: String { name }

    /// Bytes one value of the type takes in the file; for strings and arrays, the least it can
    /// take (a string's 8-byte length; an array's 4-byte element type and 8-byte count).
    var minimumByteCount: Int {
        switch self {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64, .string: 8
        case .array: 12
        }
    }
}

/// One metadata value of a GGUF file.
///
/// Integers keep their width and signedness as stored; ``GGUFFile/int(_:)`` reads any of them as
/// `Int`. Arrays hold one element type each (``GGUFArray``) and may nest.
public enum GGUFValue: Sendable, Equatable, CustomStringConvertible {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    case array(GGUFArray)

    /// The type as the file declares it (`.array` for arrays; see ``GGUFArray/elementType``).
    public var type: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .uint64: .uint64
        case .int64: .int64
        case .float32: .float32
        case .float64: .float64
        case .bool: .bool
        case .string: .string
        case .array: .array
        }
    }

    /// The type with array element types spelled out: `u32`, `arr[str]`, `arr[arr[i32]]`.
    public var typeName: String {
        if case .array(let a) = self { return a.typeName }
        return type.name
    }

    /// The value as `Int` if it is an integer of any width that fits (a `u64` above `Int.max`
    /// does not); `nil` otherwise.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint64(let v): Int(exactly: v)
        case .int64(let v): Int(exactly: v)
        default: nil
        }
    }

    /// The value as `Double` if it is an `f32` or `f64` (exact in both cases).
    public var doubleValue: Double? {
        switch self {
        case .float32(let v): Double(v)
        case .float64(let v): v
        default: nil
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: GGUFArray? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The value as `lathe inspect` shows it; long arrays and strings are cut (see
    /// ``formatted(maxElements:maxStringLength:)``).
    public var description: String { formatted() }

    /// The value as text: strings quoted and escaped, arrays as `[a, b, c]`. Arrays longer than
    /// `maxElements` show their first `maxElements` elements and `...`; strings longer than
    /// `maxStringLength` characters are cut with `...` and their length in characters.
    public func formatted(maxElements: Int = 8, maxStringLength: Int = 120) -> String {
        switch self {
        case .uint8(let v): "\(v)"
        case .int8(let v): "\(v)"
        case .uint16(let v): "\(v)"
        case .int16(let v): "\(v)"
        case .uint32(let v): "\(v)"
        case .int32(let v): "\(v)"
        case .uint64(let v): "\(v)"
        case .int64(let v): "\(v)"
        case .float32(let v): "\(v)"
        case .float64(let v): "\(v)"
        case .bool(let v): v ? "true" : "false"
        case .string(let s): GGUFValue.quoted(s, maxLength: maxStringLength)
        case .array(let a): a.formatted(maxElements: maxElements, maxStringLength: maxStringLength)
        }
    }

    /// `s` in double quotes with `"`, `\` and control characters escaped, cut after `maxLength`
    /// characters.
    static func quoted(_ s: String, maxLength: Int) -> String {
        var out = "\""
        var n = 0
        for c in s.unicodeScalars {
            if n == maxLength {
                out += "\"... (\(s.count) characters)"
                return out
            }
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if c.value < 0x20 || c.value == 0x7F {
                    out += "\\u{" + String(c.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(c)
                }
            }
            n += 1
        }
        return out + "\""
    }
}

/// A GGUF metadata array: elements of one type, stored compactly by type. Arrays of arrays may
/// mix element types between the inner arrays.
public enum GGUFArray: Sendable, Equatable {
    case uint8([UInt8]), int8([Int8]), uint16([UInt16]), int16([Int16]), uint32([UInt32]), int32([Int32])
    case uint64([UInt64]), int64([Int64]), float32([Float]), float64([Double]), bool([Bool]), string([String])
    case array([GGUFArray])

    public var elementType: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .uint64: .uint64
        case .int64: .int64
        case .float32: .float32
        case .float64: .float64
        case .bool: .bool
        case .string: .string
        case .array: .array
        }
    }

    public var count: Int {
        switch self {
        case .uint8(let a): a.count
        case .int8(let a): a.count
        case .uint16(let a): a.count
        case .int16(let a): a.count
        case .uint32(let a): a.count
        case .int32(let a): a.count
        case .uint64(let a): a.count
        case .int64(let a): a.count
        case .float32(let a): a.count
        case .float64(let a): a.count
        case .bool(let a): a.count
        case .string(let a): a.count
        case .array(let a): a.count
        }
    }

    /// Element `i` as a ``GGUFValue`` (precondition: `0 <= i < count`).
    public subscript(i: Int) -> GGUFValue {
        switch self {
        case .uint8(let a): .uint8(a[i])
        case .int8(let a): .int8(a[i])
        case .uint16(let a): .uint16(a[i])
        case .int16(let a): .int16(a[i])
        case .uint32(let a): .uint32(a[i])
        case .int32(let a): .int32(a[i])
        case .uint64(let a): .uint64(a[i])
        case .int64(let a): .int64(a[i])
        case .float32(let a): .float32(a[i])
        case .float64(let a): .float64(a[i])
        case .bool(let a): .bool(a[i])
        case .string(let a): .string(a[i])
        case .array(let a): .array(a[i])
        }
    }

    /// The elements as ``GGUFValue``s.
    public var values: [GGUFValue] { (0..<count).map { self[$0] } }

    /// `arr[u8]`, `arr[str]`; a nested array names the type of its first inner array
    /// (`arr[arr[i32]]`, `arr[arr]` when it is empty).
    public var typeName: String {
        if case .array(let inner) = self {
            return "arr[" + (inner.first?.typeName ?? "arr") + "]"
        }
        return "arr[" + elementType.name + "]"
    }

    /// The elements as `Int`s if they are integers that all fit.
    public var intValues: [Int]? {
        switch self {
        case .uint8(let a): a.map(Int.init)
        case .int8(let a): a.map(Int.init)
        case .uint16(let a): a.map(Int.init)
        case .int16(let a): a.map(Int.init)
        case .uint32(let a): a.map(Int.init)
        case .int32(let a): a.map(Int.init)
        case .uint64(let a): a.allSatisfy { $0 <= UInt64(Int.max) } ? a.map { Int($0) } : nil
        case .int64(let a): a.map { Int($0) }
        default: nil
        }
    }

    /// The elements as `Float`s if they are `f32` (or `f64`, rounded to the nearest `Float`).
    public var floatValues: [Float]? {
        switch self {
        case .float32(let a): a
        case .float64(let a): a.map { Float($0) }
        default: nil
        }
    }

    public var stringValues: [String]? {
        if case .string(let a) = self { return a }
        return nil
    }

    func formatted(maxElements: Int, maxStringLength: Int) -> String {
        let shown = min(count, maxElements)
        var parts = (0..<shown).map { self[$0].formatted(maxElements: maxElements, maxStringLength: maxStringLength) }
        if count > shown { parts.append("... (\(count) elements)") }
        return "[" + parts.joined(separator: ", ") + "]"
    }
}

/// One metadata key and its value, in file order.
public struct GGUFKeyValue: Sendable, Equatable {
    public let key: String
    public let value: GGUFValue

    public init(key: String, value: GGUFValue) { (self.key, self.value) = (key, value) }
}
