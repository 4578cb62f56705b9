import Foundation
import LatheIO
import LatheLM
import LatheTensor
import LatheText
import XCTest
import _LatheTestSupport

/// Fine-tuning data: format detection, prompt masking, packing, truncation, errors. The tokenizer
/// (`Fixtures/sft`) has one token per character, so positions can be checked by hand.
final class SFTDataTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try temporaryDirectory(name) }

    func sftTokenizer(_ options: SFTOptions = SFTOptions()) throws -> SFTTokenizer {
        let folder = fixturesDirectory.appendingPathComponent("sft")
        let tokenizer = try loadTokenizer(contentsOf: folder.appendingPathComponent("tokenizer.json"))
        let config = try JSONParser.parse([UInt8](Data(contentsOf: folder.appendingPathComponent("tokenizer_config.json"))))
        let template = try ChatTemplate(source: XCTUnwrap(config["chat_template"]?.stringValue))
        return SFTTokenizer(tokenizer: tokenizer, template: template, options: options)
    }

    func write(_ lines: [String], _ name: String = "data.jsonl") throws -> URL {
        let url = directory.appendingPathComponent(name)
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func read(_ lines: [String], _ options: SFTOptions = SFTOptions()) throws -> (SFTFormat, [SFTExample], [String]) {
        var warnings: [String] = []
        let (format, examples) = try sftTokenizer(options).read(write(lines), warnings: &warnings)
        return (format, examples, warnings)
    }

    func decode(_ ids: [Int]) throws -> String { try sftTokenizer().tokenizer.decode(ids, skipSpecialTokens: false) }

    func testFormatIsDetectedFromTheFirstLine() throws {
        XCTAssertEqual(try read([#"{"text": "abc"}"#]).0, .text)
        XCTAssertEqual(try read([#"{"prompt": "a", "completion": "b", "id": 3}"#]).0, .completion)
        XCTAssertEqual(try read([#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#]).0, .chat)
        // A later line of another format is an error naming it.
        XCTAssertThrowsError(try read([#"{"text": "abc"}"#, "", #"{"prompt": "a", "completion": "b"}"#])) { error in
            XCTAssertTrue("\(error)".hasSuffix("data.jsonl:3: this line is prompt_completion data but the file is text data (detected from its first line)"), "\(error)")
        }
        // A format forced by the recipe wins over detection.
        XCTAssertThrowsError(try read([#"{"text": "abc"}"#], SFTOptions(format: .chat))) { error in
            XCTAssertTrue("\(error)".contains("data.jsonl:1: this line is text data but the file is messages data"), "\(error)")
        }
    }

    func testBadFilesAreClearErrors() throws {
        let tokenizer = try sftTokenizer()
        var warnings: [String] = []
        XCTAssertThrowsError(try tokenizer.read(directory.appendingPathComponent("none.jsonl"), warnings: &warnings)) { error in
            XCTAssertTrue("\(error)".hasSuffix("none.jsonl: no such file"), "\(error)")
        }
        XCTAssertThrowsError(try read([#"{"text": "abc"}"#, #"{"text": "ab"#])) { error in
            XCTAssertTrue("\(error)".contains("data.jsonl:2: not valid JSON"), "\(error)")
        }
        XCTAssertThrowsError(try read([#"{"input": "abc", "output": "x"}"#])) { error in
            XCTAssertTrue("\(error)".contains("data.jsonl:1: unknown format: the keys are {input, output}"), "\(error)")
        }
        XCTAssertThrowsError(try read(["[1, 2]"])) { error in
            XCTAssertTrue("\(error)".contains("data.jsonl:1: expected a JSON object, got an array"), "\(error)")
        }
        XCTAssertThrowsError(try read([#"{"prompt": "a", "completion": 4}"#])) { error in
            XCTAssertTrue("\(error)".contains("data.jsonl:1: \"completion\" must be a string, got a number"), "\(error)")
        }
        XCTAssertThrowsError(try read(["", "  "])) { error in
            XCTAssertTrue("\(error)".hasSuffix("data.jsonl: no examples (the file has no usable line)"), "\(error)")
        }
        XCTAssertThrowsError(try read([#"{"text": "abc"}"#], SFTOptions(maskPrompt: true))) { error in
            XCTAssertTrue("\(error)".contains("mask_prompt is set but text data has no prompt to mask"), "\(error)")
        }
        XCTAssertThrowsError(try read([#"{"messages": [{"role": "user", "content": "hi"}]}"#])) { error in
            XCTAssertTrue("\(error)".contains("data.jsonl:1: the conversation has no assistant message to learn"), "\(error)")
        }
    }

    func testCompletionLabelsCoverTheCompletionAndEOS() throws {
        let (_, examples, _) = try read([#"{"prompt": "Q: 2+2?\nA:", "completion": " four"}"#])
        let e = try XCTUnwrap(examples.first)
        // One token per character, then EOS (<|im_end|>, id 2).
        XCTAssertEqual(e.ids.count, "Q: 2+2?\nA:".count + " four".count + 1)
        XCTAssertEqual(e.ids.last, 2)
        let masked = e.labels.prefix { $0 == -100 }.count
        XCTAssertEqual(masked, "Q: 2+2?\nA:".count, "the prompt is masked, nothing more")
        XCTAssertEqual(try decode(Array(e.ids.prefix(masked))), "Q: 2<unk>2?\nA:")
        XCTAssertEqual(Array(e.labels.dropFirst(masked)), Array(e.ids.dropFirst(masked)))
        XCTAssertEqual(try decode(e.labels.filter { $0 != -100 }), " four<|im_end|>")
        // Without the mask everything but the first token counts.
        let (_, unmasked, _) = try read([#"{"prompt": "Q: 2+2?\nA:", "completion": " four"}"#], SFTOptions(maskPrompt: false))
        XCTAssertEqual(unmasked[0].labels, [-100] + Array(unmasked[0].ids.dropFirst()))
    }

    func testChatMaskingKeepsOnlyTheAssistantTurns() throws {
        let line = #"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, "#
            + #"{"role": "user", "content": "Name?"}, {"role": "assistant", "content": "Tiny."}]}"#
        let (_, examples, _) = try read([line])
        let e = try XCTUnwrap(examples.first)
        let rendered = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            + "<|im_start|>user\nName?<|im_end|>\n<|im_start|>assistant\nTiny.<|im_end|>\n"
        XCTAssertEqual(try decode(e.ids), rendered)
        // The learned spans, found from the labels: exactly the two replies with their end-of-turn and newline.
        var spans: [(Int, Int)] = []
        for (i, l) in e.labels.enumerated() where l != -100 {
            if let last = spans.last, last.1 == i { spans[spans.count - 1].1 = i + 1 } else { spans.append((i, i + 1)) }
        }
        XCTAssertEqual(spans.count, 2)
        XCTAssertEqual(try spans.map { try decode(Array(e.ids[$0.0..<$0.1])) }, ["Hello!<|im_end|>\n", "Tiny.<|im_end|>\n"])
        // Each span starts right after the generation header, which is masked.
        for (start, _) in spans { XCTAssertTrue(try decode(Array(e.ids[..<start])).hasSuffix("<|im_start|>assistant\n")) }
        // Positions by hand: the default system turn (78 tokens, special tokens one each), "<|im_start|>user\nHi<|im_end|>\n"
        // (10), "<|im_start|>assistant\n" (11): the first reply starts at 99.
        XCTAssertEqual(spans[0].0, 99)
        XCTAssertEqual(spans[0].1 - spans[0].0, "Hello!".count + 2)
    }

    func testLongExamplesAreTruncatedWithAWarningNamingTheLine() throws {
        let long = String(repeating: "a", count: 40)
        let (_, examples, warnings) = try read([#"{"text": "abc"}"#, #"{"text": "\#(long)"}"#], SFTOptions(maxLength: 16))
        XCTAssertEqual(examples.map(\.ids.count), [4, 16])
        XCTAssertEqual(examples.map(\.line), [1, 2])
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].hasSuffix("data.jsonl:2: 41 tokens, truncated to max_length 16"), warnings[0])
        // A prompt that fills max_length leaves nothing to learn: the line is skipped, with a warning.
        let (_, kept, skipped) = try read([#"{"prompt": "\#(long)", "completion": "b"}"#, #"{"prompt": "a", "completion": "b"}"#],
                                          SFTOptions(maxLength: 16))
        XCTAssertEqual(kept.map(\.line), [2])
        XCTAssertEqual(skipped.count, 2)
        XCTAssertTrue(skipped[1].hasSuffix("data.jsonl:1: no token left to learn from (16 tokens, all masked); skipped"), skipped[1])
    }

    func testPackingKeepsExamplesApart() throws {
        func example(_ n: Int, line: Int) -> SFTExample {
            SFTExample(ids: (0..<n).map { 10 + line * 5 + $0 }, labels: [-100] + (1..<n).map { 10 + line * 5 + $0 }, line: line)
        }
        let examples = [example(5, line: 1), example(3, line: 2), example(4, line: 3), example(2, line: 4), example(6, line: 5)]
        let rows = SFTPacking.pack(examples, length: 8, pad: 0)
        // First fit by decreasing length: 6+2, 5+3, 4.
        XCTAssertEqual(rows.map(\.lines), [[5, 4], [1, 2], [3]])
        XCTAssertEqual(rows[0].segments, [1, 1, 1, 1, 1, 1, 2, 2])
        XCTAssertEqual(rows[2].segments, [1, 1, 1, 1, 0, 0, 0, 0])
        XCTAssertEqual(rows[2].labels.suffix(4), [-100, -100, -100, -100])
        XCTAssertEqual(rows[2].ids.suffix(4), [0, 0, 0, 0])
        XCTAssertTrue(rows.allSatisfy { $0.ids.count == 8 && $0.labels.count == 8 })
        // The first token of each packed example is never a target (it cannot be predicted from its own segment).
        XCTAssertEqual(rows[1].labels[5], -100)
        XCTAssertEqual(rows[1].ids[5], examples[1].ids[0])
    }

    func testPackedRowGivesEachExampleItsOwnLogits() throws {
        let model = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/llama-tiny"))
        let a = SFTExample(ids: [5, 17, 33, 8, 61], labels: [-100, 17, 33, 8, 61], line: 1)
        let b = SFTExample(ids: [40, 2, 77], labels: [-100, 2, 77], line: 2)
        let row = SFTPacking.pack([a, b], length: 10, pad: 0)[0]
        XCTAssertEqual(row.segments, [1, 1, 1, 1, 1, 2, 2, 2, 0, 0])
        let packed = try model.trainingLogits(Tensor(row.ids, shape: [1, 10], dtype: .int64),
                                              segmentIDs: Tensor(row.segments, shape: [1, 10], dtype: .int64))
        let alone = try model.trainingLogits(Tensor(b.ids, shape: [1, 3], dtype: .int64))
        // b's logits inside the row (positions restart, attention stays in the segment) match b alone.
        assertClose(packed.sliced(dim: 1, start: 5, end: 8), alone, rtol: 1e-4, atol: 1e-4)
        // The loss over the packed row with only its labelled positions projected equals the full loss.
        let ids = Tensor(row.ids, shape: [1, 10], dtype: .int64), labels = Tensor(row.labels, shape: [1, 10], dtype: .int64)
        let segments = Tensor(row.segments, shape: [1, 10], dtype: .int64)
        let full = try model.loss(ids, labels: labels, segmentIDs: segments).item
        let labelled = try model.labelledLoss(ids, labels: labels, segmentIDs: segments).item
        XCTAssertEqual(labelled, full, accuracy: 1e-5 * Swift.max(1, abs(full)))
        XCTAssertThrowsError(try model.labelledLoss(ids, labels: Tensor([Int](repeating: -100, count: 10), shape: [1, 10], dtype: .int64)))
        // The sum (head and loss fused) against the per-position losses on the projected logits
        // (`.none` keeps the unfused path), value and gradients of every weight.
        model.train()
        let fused = try model.labelledLoss(ids, labels: labels, segmentIDs: segments, reduction: .sum)
        fused.backward()
        let fusedGrads = model.parameters.map { $0.grad?.scalars }
        model.zeroGrad()
        let perPosition = try model.labelledLoss(ids, labels: labels, segmentIDs: segments, reduction: .none)
        XCTAssertEqual(perPosition.shape, [6], "a, b: 4 + 2 counted labels")
        let summed = perPosition.sum()
        XCTAssertEqual(fused.item, summed.item, accuracy: 1e-5 * Swift.max(1, abs(summed.item)))
        summed.backward()
        for (p, g) in zip(model.parameters, fusedGrads) {
            assertClose(try XCTUnwrap(g.map { Tensor($0, shape: p.value.shape) }), try XCTUnwrap(p.grad), rtol: 1e-3, atol: 1e-6)
        }
    }

    func testWilsonInterval() {
        // 8 of 10: the interval in Wilson's and Newcombe's tables, [0.4902, 0.9433].
        let w = WilsonInterval(successes: 8, count: 10).bounds
        XCTAssertEqual(w.low, 0.4902, accuracy: 1e-4)
        XCTAssertEqual(w.high, 0.9433, accuracy: 1e-4)
        let all = WilsonInterval(successes: 500, count: 500).bounds
        XCTAssertEqual(all.high, 1, accuracy: 1e-12)
        XCTAssertEqual(all.low, 0.99238, accuracy: 1e-4)
        XCTAssertTrue(WilsonInterval(successes: 0, count: 0).proportion.isNaN)
    }

    func testFinalNumberMatching() {
        let reference = "4 muffins cost 4 * 3 = 12.\nThe loaves cost 40 - 12 = 28 more.\n#### 28"
        XCTAssertEqual(AnswerMatch.detect(reference: reference), .finalNumber)
        XCTAssertEqual(AnswerMatch.detect(reference: " positive"), .firstLine)
        XCTAssertEqual(SFTTokenizer.finalNumber("x\n#### 1,234.5"), 1234.5)
        XCTAssertEqual(SFTTokenizer.finalNumber("#### 3 #### -7."), -7)
        XCTAssertNil(SFTTokenizer.finalNumber("#### about ten"))
        XCTAssertEqual(SFTTokenizer.lastNumber("costs $40, then 12 and finally 28."), 28)
        XCTAssertEqual(SFTTokenizer.lastNumber("a drop of -3"), -3)
        XCTAssertNil(SFTTokenizer.lastNumber("no digits"))

        func score(_ answer: String) -> (Bool, Bool) {
            let s = SFTTokenizer.score(answer, reference: reference, match: .finalNumber)
            return (s.exact, s.lenient)
        }
        XCTAssert(score("5 * 8 = 40\n#### 28") == (true, true))
        XCTAssert(score("#### 28.0") == (true, true))          // compared as numbers
        XCTAssert(score("The answer is 28.") == (false, true)) // no ####: only the lenient figure
        XCTAssert(score("#### 27\nor maybe 28") == (false, false))
        XCTAssert(score("I do not know") == (false, false))
        XCTAssert(SFTTokenizer.score(" Positive.", reference: " positive", match: .firstLine) == (false, true, "Positive."))
        XCTAssert(SFTTokenizer.score("positive\nmore", reference: " positive", match: .firstLine) == (true, true, "positive"))
    }
}
