import Foundation
import LatheTensor
import XCTest

/// The repository's `Tests/Fixtures` folder, found from this source file's path.
public let fixturesDirectory: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Tests/Fixtures")

/// One golden case written by `Tools/reference/make_op_fixtures.py`.
public struct OpCase: @unchecked Sendable {
    public let name: String
    public let op: String
    public let args: [String: Any]
    public let inputs: [Tensor]
    public let requiresGrad: [Bool]
    public let outputs: [Tensor]
    public let gradOutputs: [Tensor?]
    public let grads: [Tensor?]
    public let bits: [Int]?

    public func int(_ key: String) -> Int { (args[key] as! NSNumber).intValue }
    public func float(_ key: String) -> Float { (args[key] as! NSNumber).floatValue }
    public func bool(_ key: String) -> Bool { (args[key] as! NSNumber).boolValue }
    public func ints(_ key: String) -> [Int]? { (args[key] as? [NSNumber])?.map(\.intValue) }
    public func pair(_ key: String) -> (Int, Int) { let v = ints(key)!; return (v[0], v[1]) }
    public func string(_ key: String) -> String? { args[key] as? String }
}

public enum FixtureError: Error, CustomStringConvertible {
    case missing(String), malformed(String)
    public var description: String {
        switch self {
        case .missing(let p): "fixture \(p) not found; regenerate with Tools/reference/make_op_fixtures.py"
        case .malformed(let m): "malformed fixture: \(m)"
        }
    }
}

/// Loads the op cases of a fixture file (default `ops.json`).
public func loadOpCases(_ file: String = "ops.json") throws -> [OpCase] {
    let url = fixturesDirectory.appendingPathComponent(file)
    guard let data = try? Data(contentsOf: url) else { throw FixtureError.missing(url.path) }
    guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
          let cases = root["cases"] as? [[String: Any]] else { throw FixtureError.malformed("no cases in \(file)") }
    return try cases.map { c in
        func tensor(_ any: Any?) throws -> Tensor? {
            guard let d = any as? [String: Any] else { return nil }
            guard let shape = (d["shape"] as? [NSNumber])?.map(\.intValue), let dtype = d["dtype"] as? String,
                  let values = d["data"] as? [Any] else { throw FixtureError.malformed("bad tensor in \(c["name"] ?? "?")") }
            let floats: [Float] = values.map { v in
                if let n = v as? NSNumber { return n.floatValue }
                switch v as? String { case "inf": return .infinity; case "-inf": return -.infinity; default: return .nan }
            }
            switch dtype {
            case "float32": return Tensor(floats, shape: shape)
            case "int64": return Tensor(floats.map { Int($0) }, shape: shape, dtype: .int64)
            case "bool": return Tensor(floats.map { Int($0) }, shape: shape, dtype: .bool)
            default: throw FixtureError.malformed("dtype \(dtype)")
            }
        }
        func tensors(_ key: String) throws -> [Tensor?] { try ((c[key] as? [Any]) ?? []).map { try tensor($0) } }
        return OpCase(
            name: c["name"] as? String ?? "?", op: c["op"] as? String ?? "?", args: c["args"] as? [String: Any] ?? [:],
            inputs: try tensors("inputs").map { $0! }, requiresGrad: (c["requires_grad"] as? [Bool]) ?? [],
            outputs: try tensors("outputs").map { $0! }, gradOutputs: try tensors("grad_outputs"), grads: try tensors("grads"),
            bits: (c["bits"] as? [NSNumber])?.map(\.intValue))
    }
}

/// The folder `Tools/fetch-models` fetches pretrained models into: `$LATHE_MODELS`, else
/// `~/.cache/lathe/models`.
public let modelsDirectory: URL = ProcessInfo.processInfo.environment["LATHE_MODELS"].map { URL(fileURLWithPath: $0) }
    ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/lathe/models")

/// A fetched model file or folder; a clear failure (never a skip) when it is missing.
public func fetchedModel(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> URL {
    let url = modelsDirectory.appendingPathComponent(name)
    guard FileManager.default.fileExists(atPath: url.path) else {
        XCTFail("\(url.path) is missing: run Tools/fetch-models (it fetches the public models the real-model tests use)", file: file, line: line)
        throw FixtureError.missing(url.path)
    }
    return url
}
