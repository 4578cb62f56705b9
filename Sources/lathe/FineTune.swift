import ArgumentParser
import Foundation
import Lathe

struct FineTune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Fine-tune a language model (LoRA, DoRA or every weight) on jsonl data from a YAML recipe.",
        discussion: """
        Data: jsonl with "text", "messages" (chat, rendered with the model's template) or "prompt"/"completion" \
        (see Recipes/lora-sentiment.yaml). Writes OUTPUT/adapter (PEFT folder), OUTPUT/best-adapter (lowest \
        validation loss), OUTPUT/checkpoint.safetensors, metrics.csv and TensorBoard events.
        With --eval-only: greedy answers to the held-out set (data.test, or --split valid) with their exact-match \
        accuracy and 95% Wilson interval, plus the loss and perplexity there, for OUTPUT/adapter, --adapter DIR, or --base; \
        a full fine-tune (adapter: full, or --adapter FILE.safetensors) is evaluated in float32. --batch N answers N \
        questions together (the same answers as one at a time, faster).
        Examples:
          lathe finetune Recipes/lora-sentiment.yaml
          lathe finetune Recipes/lora-sentiment.yaml --eval-only
          lathe finetune Recipes/lora-sentiment.yaml --eval-only --base
        """
    )

    @Argument(help: "The recipe file (see Recipes/lora-sentiment.yaml).") var recipe: String
    @Option(name: .customLong("set"), help: "Override a recipe key: --set key.path=value (repeatable).") var overrides: [String] = []
    @Flag(help: "Continue from the output directory's checkpoint.") var resume = false
    @Flag(help: "Evaluate instead of training.") var evalOnly = false
    @Option(help: "With --eval-only: the adapter (a PEFT or mlx-lm folder, or a llama.cpp .gguf adapter), or a .safetensors file of full fine-tuned weights (default: the recipe's output/adapter, or output/model.safetensors for adapter: full).")
    var adapter: String?
    @Flag(help: "With --eval-only: the model without an adapter.") var base = false
    @Option(help: "With --eval-only: test (data.test) or valid (data.valid).") var split = "test"
    @Option(help: "With --eval-only: the first N examples only.") var limit: Int?
    @Option(help: "With --eval-only: questions decoded together (default 8; 1: one at a time; the same answers).") var batch: Int?
    @Option(help: "With --eval-only: write each answer (jsonl: line, answer, reference) to this file.") var answers: String?
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try threadOptions.apply()
        var r = try FineTuneRecipe.load(contentsOf: URL(fileURLWithPath: recipe), overrides: overrides)
        if let threads = threadOptions.threads { r.threads = threads }
        if evalOnly { return try evaluate(r) }
        if adapter != nil || base || limit != nil || split != "test" || answers != nil || batch != nil {
            throw ValidationError("--adapter, --base, --split, --limit, --batch and --answers go with --eval-only")
        }
        let tuner = try FineTuner(recipe: r)
        try report(tuner)
        let logger = try MetricLogger(directory: tuner.output, resume: resume)
        var logError: Error?
        tuner.onMetrics = { step, epoch, split, metrics in
            do { try logger.log(step: step, epoch: epoch, split: split, metrics: metrics) } catch { logError = error }
            if split == .validation {
                print(String(format: "step %d  validation loss %.4f  perplexity %.3f", step, metrics["loss"] ?? .nan, metrics["perplexity"] ?? .nan))
            }
        }
        let startStep = resume ? tuner.checkpointStep() ?? 0 : 0
        tuner.onProgress = { p in
            let eta = p.step > startStep ? p.elapsed / Double(p.step - startStep) * Double(p.totalSteps - p.step) : 0
            print(String(format: "step %d/%d  epoch %d  loss %.4f  lr %.2e  %.0f tok/s (%.1f labelled/s)  elapsed %@  eta %@",
                         p.step, p.totalSteps, p.epoch, p.loss, p.learningRate, p.tokensPerSecond, p.labelledPerSecond,
                         duration(p.elapsed), duration(eta)))
        }
        let summary = try tuner.run(resume: resume)
        try logger.close()
        if let logError { throw logError }
        print(String(format: "trained %d steps in %.1f s", summary.steps, summary.seconds))
        if let v = summary.validation {
            print(String(format: "validation: loss %.4f, perplexity %.3f (%d tokens)", v.loss, v.perplexity, v.tokens)
                  + (summary.bestStep.map { String(format: "; best loss %.4f at step %d", summary.bestLoss ?? .nan, $0) } ?? ""))
        }
        print("\(tuner.loraConfig == nil ? "model" : "adapter"): \(summary.outputPath) (best: \(tuner.bestPath.path)); "
              + "logs: \(tuner.output.path)/metrics.csv, TensorBoard events")
    }

    func report(_ t: FineTuner) throws {
        let r = t.recipe
        let trainable = t.trainableParameters.reduce(0) { $0 + $1.1.value.count }
        let what = t.loraConfig.map { c in
            "\(r.adapter.rawValue) r \(c.rank) alpha \(c.alpha.formatted()) on \(t.adaptedPaths.count) layers"
        } ?? "every weight"
        print("lathe finetune: \(r.model) (\(t.format.rawValue) data), \(what), \(trainable) trainable of \(t.model.parameterCount()) parameters")
        let rows = r.data.packing ? "packed into \(t.trainRows.count) rows of \(r.data.maxLength) tokens" : "\(t.trainRows.count) rows"
        print("data: \(t.trainExamples) training examples \(rows), \(t.validExamples) validation examples; \(t.totalSteps) steps of "
              + "\(r.training.batchSize)×\(r.training.accumulation) rows; kernels \(KernelInfo.isaName), threads \(ThreadPool.threadCount)")
        for w in t.warnings.prefix(5) { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
        if t.warnings.count > 5 { FileHandle.standardError.write(Data("warning: ... and \(t.warnings.count - 5) more\n".utf8)) }
    }

    func evaluate(_ r: FineTuneRecipe) throws {
        guard split == "test" || split == "valid" else { throw ValidationError("--split must be test or valid, not '\(split)'") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        let batch = self.batch ?? 8
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        if base, adapter != nil { throw ValidationError("--base and --adapter exclude each other") }
        let weights: AnswerEvaluation.Weights = base ? .base : adapter.map(AnswerEvaluation.Weights.at) ?? .output(of: r)
        let evaluation: AnswerEvaluation
        do { evaluation = try AnswerEvaluation(recipe: r, weights: weights, split: split, limit: limit) } catch let e as RecipeError {
            throw CLIError("--eval-only: \(e.message)")
        }
        let questions = evaluation.questions
        print("lathe finetune --eval-only: \(r.model) with \(evaluation.label); \(questions.count) \(evaluation.format.rawValue) examples of "
              + "\(evaluation.file); threads \(ThreadPool.threadCount), \(batch) answers decoded together")
        if evaluation.isFloat32 { print("every weight evaluated in float32, as trained") }
        let loss = try evaluation.loss()
        print(String(format: "loss %.4f, perplexity %.3f on %d labelled tokens", loss.loss, loss.perplexity, loss.tokens))
        let step = Swift.max(1, questions.count / 10)
        let accuracy = evaluation.accuracy(batchSize: batch) { done, correct in
            if done % step == 0 || done == questions.count {
                print(String(format: "  %d/%d answered, %d exact", done, questions.count, correct))
            }
        }
        func line(_ name: String, _ w: WilsonInterval) -> String {
            let (lo, hi) = w.bounds
            return String(format: "%@: %.2f%% (%d of %d), 95%% Wilson interval [%.2f%%, %.2f%%]", name, 100 * w.proportion, w.successes, w.count, 100 * lo, 100 * hi)
        }
        switch accuracy.match {
        case .firstLine:
            print(line("exact-match accuracy", accuracy.exact))
            print(line("first-word accuracy (case and punctuation ignored)", accuracy.lenient))
        case .finalNumber:
            print(line("exact-match accuracy (the number after ####)", accuracy.exact))
            print(line("final-number accuracy (or the last number when #### is missing)", accuracy.lenient))
        }
        print("most frequent answers: " + accuracy.answers.map { "\"\($0.0)\" \($0.1)" }.joined(separator: ", "))
        print(String(format: "answered in %.1f s", accuracy.seconds))
        if let answers {
            let lines = zip(questions, accuracy.given).map { q, given in
                JSONWriter.object([("line", "\(q.line)"), ("answer", JSONWriter.quoted(given)), ("reference", JSONWriter.quoted(q.answer))])
            }
            try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: answers))
            print("answers: \(answers)")
        }
    }
}

private func duration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
}
