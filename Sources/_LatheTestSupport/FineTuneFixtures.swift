import Foundation

/// A tiny fine-tuning setup: llama-tiny with the one-token-per-character tokenizer of
/// `Fixtures/sft`, prompt/completion data whose answer follows from the prompt, and a recipe.
public enum FineTuneFixtures {
    /// A Hugging Face folder in `directory/model`: llama-tiny's config and weights, `Fixtures/sft`'s tokenizer.
    public static func model(in directory: URL) throws -> URL {
        let folder = directory.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (from, name) in [("llm/llama-tiny/config.json", "config.json"), ("llm/llama-tiny/model.safetensors", "model.safetensors"),
                             ("sft/tokenizer.json", "tokenizer.json"), ("sft/tokenizer_config.json", "tokenizer_config.json")] {
            let target = folder.appendingPathComponent(name)
            if !FileManager.default.fileExists(atPath: target.path) {
                try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent(from), to: target)
            }
        }
        return folder
    }

    /// `count` prompt/completion lines: "w1 w2 w3:" → " yes" when the words hold more "a" than "o", else " no".
    public static func lines(count: Int, seed: Int) -> [String] {
        let words = ["aa", "ab", "ba", "oo", "ob", "bo", "ca", "co", "da", "do"]
        var state = UInt64(seed) &* 0x9e37_79b9_7f4a_7c15 &+ 1
        func next() -> Int {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return Int(state % UInt64(words.count))
        }
        return (0..<count).map { _ in
            let w = (0..<3).map { _ in words[next()] }
            let a = w.joined().filter { $0 == "a" }.count, o = w.joined().filter { $0 == "o" }.count
            return #"{"prompt": "\#(w.joined(separator: " ")):", "completion": "\#(a > o ? " yes" : " no")"}"#
        }
    }

    /// Writes `train.jsonl` (`trainCount` lines) and `valid.jsonl` (`validCount`) to `directory`.
    public static func data(in directory: URL, trainCount: Int = 48, validCount: Int = 16) throws -> (train: URL, valid: URL) {
        let train = directory.appendingPathComponent("train.jsonl"), valid = directory.appendingPathComponent("valid.jsonl")
        try (lines(count: trainCount, seed: 1).joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        try (lines(count: validCount, seed: 2).joined(separator: "\n") + "\n").write(to: valid, atomically: true, encoding: .utf8)
        return (train, valid)
    }

    /// A recipe for the tiny model and data in `directory` (made if missing), writing to `directory/output`.
    public static func recipe(in directory: URL, output: String, steps: Int = 12, extra: String = "",
                              lora: String = "{r: 4, alpha: 8, dropout: 0.1, targets: all-linear}",
                              schedule: String = "{name: constant}", training: String = "") throws -> String {
        let model = try self.model(in: directory)
        let (train, valid) = try data(in: directory)
        return """
        model: \(model.path)
        adapter: lora
        lora: \(lora)
        data: {train: \(train.path), valid: \(valid.path), test: \(valid.path), max_length: 64}
        optimizer: {name: adamw, lr: 0.01}
        schedule: \(schedule)
        training: {steps: \(steps), batch_size: 2, eval_every: 4, checkpoint_every: 1, log_every: 2\(training)}
        threads: 1
        output: \(directory.appendingPathComponent(output).path)
        \(extra)
        """
    }
}
