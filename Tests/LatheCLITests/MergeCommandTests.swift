import Foundation
import XCTest
import _LatheTestSupport

/// `lathe merge` end to end: a fixture config merged, progress on stderr, and bad input's errors.
final class MergeCommandTests: XCTestCase {
    func testMergeWritesAFolderAndReportsErrors() throws {
        let configs = fixturesDirectory.appendingPathComponent("merge/configs")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-merge-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("merged")
        let ok = try runLathe(["merge", configs.appendingPathComponent("ties.yaml").path, "--output", out.path])
        XCTAssertEqual(ok.status, 0, ok.err)
        XCTAssertTrue(ok.err.contains("merged 39/39 tensors (100%)"), ok.err)
        XCTAssertTrue(ok.out.contains("merged 39 tensors") && ok.out.contains("with ties"), ok.out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))

        // A vocabulary mismatch: exit status 1 and a message naming the tensor and the fix.
        let bad = dir.appendingPathComponent("bad.yaml")
        try "merge_method: linear\nmodels:\n  - {model: \(configs.path)/../models/base, parameters: {weight: 1}}\n  - {model: \(configs.path)/../models/vocab40, parameters: {weight: 1}}\n"
            .write(to: bad, atomically: true, encoding: .utf8)
        let mismatch = try runLathe(["merge", bad.path, "--output", dir.appendingPathComponent("x").path])
        XCTAssertEqual(mismatch.status, 1)
        XCTAssertTrue(mismatch.err.contains("model.embed_tokens.weight") && mismatch.err.contains("resize"), mismatch.err)
        // A .gguf output needs --type.
        let noType = try runLathe(["merge", bad.path, "--output", dir.appendingPathComponent("x.gguf").path])
        XCTAssertEqual(noType.status, 64)
        XCTAssertTrue(noType.err.contains("--type"), noType.err)
    }
}
