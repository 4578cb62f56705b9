import Foundation
import LatheLM
import LatheMerge
import LatheTensor
import XCTest
import _LatheTestSupport

/// Bad configs get errors, never traps: the fixture configs mutated many ways (a deterministic
/// sweep standing in for a fuzzer) are parsed, planned and, when accepted, merged.
final class MergeConfigSweepTests: XCTestCase {
    func testMutatedConfigsGiveErrorsNotCrashes() throws {
        let root = fixturesDirectory.appendingPathComponent("merge/configs")
        let names = try FileManager.default.contentsOfDirectory(atPath: root.path).filter { $0.hasSuffix(".yaml") }.sorted()
        let replacements = ["nan", ".nan", "-.inf", "1e308", "-1", "0", "2", "99999999999999999999", "[]", "{}", "[0, nan]", "\"x\"", "true",
                            "[{filter: mlp}]", "[{value: [1, nan]}]", "[0, 3]", "[3, 1]", "[-5, 2]", "null", "~"]
        var generator = RandomGenerator(seed: 3)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-merge-sweep-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        var accepted = 0, rejected = 0
        for name in names {
            let text = try String(contentsOf: root.appendingPathComponent(name), encoding: .utf8)
            let numbers = try NSRegularExpression(pattern: "-?[0-9]+(\\.[0-9]+)?|\\[[^\\[\\]]*\\]")
            let matches = numbers.matches(in: text, range: NSRange(text.startIndex..., in: text))
            for _ in 0..<12 {
                let draws = Tensor.randint([3], low: 0, high: 1 << 30, generator: &generator).intScalars
                var mutated = text
                if !matches.isEmpty {
                    let m = matches[draws[0] % matches.count]
                    let range = Range(m.range, in: text)!
                    mutated.replaceSubrange(range, with: replacements[draws[1] % replacements.count])
                }
                if draws[2] % 5 == 0 {  // cut the text short
                    mutated = String(mutated.prefix(draws[2] % max(1, mutated.count)))
                }
                let file = root.appendingPathComponent("sweep.yaml").path
                do {
                    let config = try MergeConfig.parse(mutated, file: file)
                    var options = Merger.Options()
                    options.format = .safetensors
                    try Merger.merge(config, file: file, output: out.appendingPathComponent("m.safetensors"), options: options)
                    accepted += 1
                } catch is MergeConfigError {
                    rejected += 1
                } catch is MergeError {
                    rejected += 1
                } catch {
                    XCTFail("\(name) mutated to\n\(mutated)\nthrew \(type(of: error)): \(error)")
                }
            }
        }
        XCTAssertGreaterThan(accepted, 0)
        XCTAssertGreaterThan(rejected, 0)
    }

    /// Inputs the fuzzer (Tools/fuzz/merge_config_fuzz.swift) found: each an error naming the
    /// problem, where Yams's own conversion trapped or built billions of values.
    func testYAMLTheFuzzerFoundGivesErrors() throws {
        var bomb = "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        for i in 1..<8 { bomb += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        let cases: [(String, String)] = [
            // 10^8 values once expanded (found as a 10 s timeout).
            (bomb + "merge_method: linear\nmodels: [a]\n", "aliases"),
            // A list as a key of a flow mapping (a trap in Yams's conversion).
            ("merge_method: passthrough\nslices:\n  - sources: [{model: a, [x, y]}]\n", "keys are plain names"),
            ("merge_method: linear\n? {a: 1}\n: 2\nmodels: [a]\n", "keys are plain names"),
            ("merge_method: linear\nmodels: [{model: a, model: b}]\n", "duplicated key(s): 'model'"),
            ("base: &b {model: a}\nmerge_method: linear\nmodels: [{<<: *b}]\n", "merge keys"),
        ]
        for (yaml, words) in cases {
            XCTAssertThrowsError(try MergeConfig.parse(yaml), words) { error in
                XCTAssertTrue(error is MergeConfigError && "\(error)".contains(words), "\(error)")
            }
        }
        // A base-60 integer that overflows (a trap in Yams's integer conversion) stays a string,
        // which the plan then rejects as a weight.
        let sexagesimal = try MergeConfig.parse("merge_method: linear\nmodels: [{model: a, parameters: {weight: 3333330033970226:6:1}}]\n")
        XCTAssertEqual(sexagesimal.models?.first?.parameters["weight"], .scalar(.string("3333330033970226:6:1")))
        // Aliases within the limit still work.
        let config = try MergeConfig.parse("merge_method: linear\np: &p {weight: 0.5}\nmodels: [{model: a, parameters: *p}, {model: b, parameters: *p}]\n".replacingOccurrences(of: "p: &p", with: "parameters: &p"))
        XCTAssertEqual(config.models?.map(\.parameters), Array(repeating: ["weight": .scalar(.number(0.5))], count: 2))
    }
}
