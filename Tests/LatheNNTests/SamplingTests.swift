import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Temperature, top-k and top-p sampling, and text generation with the char GPT.
final class SamplingTests: XCTestCase {
    func randomLogits(_ n: Int, seed: UInt64) -> [Float] {
        var g = RandomGenerator(seed: seed)
        return (Tensor.normal([n], generator: &g) * Tensor(Float(3))).scalars
    }

    func testTopKOneIsGreedy() {
        var g = RandomGenerator(seed: 1)
        for seed in 0..<50 as Range<UInt64> {
            let logits = randomLogits(17, seed: seed)
            let best = Sampling.argmax(logits)
            XCTAssertEqual(Sampling.sample(logits: logits, options: SamplingOptions(temperature: 1.5, topK: 1), generator: &g), best)
            XCTAssertEqual(Sampling.sample(logits: logits, options: .greedy, generator: &g), best)
        }
        XCTAssertEqual(Sampling.argmax([1, 3, 3, 2]), 1, "first on ties")
    }

    func testTopPKeepsTheSmallestSetReachingP() {
        let p: [Float] = [0.1, 0.4, 0.05, 0.3, 0.15]
        XCTAssertEqual(Sampling.nucleus(p, p: 0.05), [1])
        XCTAssertEqual(Sampling.nucleus(p, p: 0.41), [1, 3])
        XCTAssertEqual(Sampling.nucleus(p, p: 0.65), [1, 3])
        XCTAssertEqual(Sampling.nucleus(p, p: 0.75), [1, 3, 4])
        XCTAssertEqual(Sampling.nucleus(p, p: 0.9), [1, 3, 4, 0])
        XCTAssertEqual(Sampling.nucleus(p, p: 1), [1, 3, 4, 0, 2])
        // From logits: the nucleus renormalised, everything else zero.
        let logits = p.map { Float(Foundation.log(Double($0))) }
        let q = Sampling.probabilities(logits: logits, options: SamplingOptions(topP: 0.65))
        for (a, b) in zip(q, [0, 4.0 / 7, 0, 3.0 / 7, 0] as [Float]) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        // Top-k first, then top-p within the kept tokens (0.9 of their 0.85).
        let kq = Sampling.probabilities(logits: logits, options: SamplingOptions(topK: 3, topP: 0.9))
        for (a, b) in zip(kq, [0, 0.4 / 0.85, 0, 0.3 / 0.85, 0.15 / 0.85] as [Float]) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        // Draws never leave the nucleus.
        var g = RandomGenerator(seed: 7)
        let drawn = Set((0..<300).map { _ in Sampling.sample(logits: logits, options: SamplingOptions(topP: 0.65), generator: &g) })
        XCTAssertEqual(drawn, [1, 3])
    }

    func testTemperatureScalesTheLogits() {
        let logits: [Float] = [1, 2, 0.5, -1]
        for t: Float in [0.5, 1, 2] {
            let q = Sampling.probabilities(logits: logits, options: SamplingOptions(temperature: t))
            let e = logits.map { Foundation.exp(Double($0 / t)) }, s = e.reduce(0, +)
            for (a, b) in zip(q, e) { XCTAssertEqual(Double(a), b / s, accuracy: 1e-6) }
        }
        XCTAssertEqual(Sampling.probabilities(logits: logits, options: .greedy), [0, 1, 0, 0])
        // Sampled frequencies follow the distribution.
        var g = RandomGenerator(seed: 3)
        var counts = [0, 0, 0, 0]
        for _ in 0..<4000 { counts[Sampling.sample(logits: logits, options: SamplingOptions(), generator: &g)] += 1 }
        let q = Sampling.probabilities(logits: logits, options: SamplingOptions())
        for (c, p) in zip(counts, q) { XCTAssertEqual(Double(c) / 4000, Double(p), accuracy: 0.03) }
    }

    func testGenerateIsSeededGreedyMatchesTopKOneAndCropsTheContext() {
        let gpt = CharGPT(CharGPT.Config(vocab: 13, context: 8, dModel: 16, heads: 2, layers: 1), seed: 4)
        let prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]  // longer than the context
        func run(_ seed: UInt64, _ t: Float = 1, topK: Int? = nil, topP: Float? = nil) -> [Int] {
            var g = RandomGenerator(seed: seed)
            return gpt.generate(prompt, maxNewTokens: 20, temperature: t, topK: topK, topP: topP, generator: &g)
        }
        let a = run(1)
        XCTAssertEqual(a.count, prompt.count + 20)
        XCTAssertEqual(Array(a.prefix(prompt.count)), prompt)
        XCTAssertTrue(a.allSatisfy { (0..<13).contains($0) })
        XCTAssertEqual(run(1), a, "same seed, same tokens")
        XCTAssertNotEqual(run(2), a, "another seed, other tokens")
        XCTAssertEqual(run(5, 0.7, topK: 1), run(6, 0), "top-k 1 is greedy")
        // Greedy by hand, with the context cropped to the last 8 tokens.
        var tokens = prompt
        for _ in 0..<20 {
            let window = Array(tokens.suffix(8))
            let logits = noGrad { gpt(Tensor(window, shape: [1, window.count])) }.scalars
            tokens.append(Sampling.argmax(Array(logits[(window.count - 1) * 13..<window.count * 13])))
        }
        XCTAssertEqual(run(9, 0), tokens)
        XCTAssertTrue(gpt.isTraining, "generate restores the mode")
    }
}
