import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// `lathe sample` end to end on a tiny char GPT trained for a few steps.
final class SampleCommandTests: XCTestCase {
    func testSampleCommand() throws {
        let directory = try temporaryDirectory()
        let recipe = directory.appendingPathComponent("gpt.yaml")
        try """
        model: {name: char-gpt, d_model: 16, layers: 1, heads: 2, context: 16}
        data: {name: shakespeare}
        optimizer: {name: adamw, lr: 0.01}
        training: {steps: 3, batch_size: 4, eval_batches: 1}
        seed: 2
        threads: 1
        output: \(directory.appendingPathComponent("run").path)
        """.write(to: recipe, atomically: false, encoding: .utf8)
        let trainer = try Trainer(recipe: Recipe.load(contentsOf: recipe))
        try trainer.run()

        let args = ["sample", recipe.path, "--prompt", "ROMEO:", "--tokens", "40", "--seed", "5", "--top-k", "10", "--top-p", "0.9"]
        let a = try runLathe(args)
        XCTAssertEqual(a.status, 0, a.err)
        XCTAssertTrue(a.out.hasPrefix("ROMEO:"), a.out)
        XCTAssertEqual(a.out.unicodeScalars.count, 6 + 40 + 1, "prompt, 40 characters and a newline: \(a.out)")
        let again = try runLathe(args)
        XCTAssertEqual(again.out, a.out, "the same seed gives the same text")
        let other = try runLathe(["sample", recipe.path, "--prompt", "ROMEO:", "--tokens", "40", "--seed", "6", "--top-k", "10", "--top-p", "0.9"])
        XCTAssertEqual(other.status, 0, other.err)
        XCTAssertNotEqual(other.out, a.out)

        // The same text in process: best.safetensors, the corpus vocabulary, the same generator.
        let task = trainer.task as! LanguageModelTask, gpt = trainer.model as! CharGPT
        try gpt.loadStateDict(SafeTensors.read(contentsOf: directory.appendingPathComponent("run/best.safetensors")).tensors)
        var g = RandomGenerator(seed: 5)
        let ids = gpt.generate(task.train.encode("ROMEO:"), maxNewTokens: 40, temperature: 1, topK: 10, topP: 0.9, generator: &g)
        XCTAssertEqual(task.train.decode(ids) + "\n", a.out)

        // Greedy decoding with an explicit --model.
        let greedy = try runLathe(["sample", recipe.path, "--model", directory.appendingPathComponent("run/model.safetensors").path,
                                   "--temperature", "0", "--tokens", "10"])
        XCTAssertEqual(greedy.status, 0, greedy.err)
        XCTAssertEqual(greedy.out.unicodeScalars.count, 1 + 10 + 1)

        // Characters outside the corpus are a clear error.
        let bad = try runLathe(["sample", recipe.path, "--prompt", "caf\u{E9} \u{20AC}"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("not in the shakespeare vocabulary") && bad.err.contains("U+20AC"), bad.err)
        // A classifier recipe is refused.
        let cnn = directory.appendingPathComponent("cnn.yaml")
        try "model: {name: digits-cnn}\ntraining: {steps: 1}\n".write(to: cnn, atomically: false, encoding: .utf8)
        let wrong = try runLathe(["sample", cnn.path])
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.err.contains("needs a char-gpt recipe"), wrong.err)
    }
}
