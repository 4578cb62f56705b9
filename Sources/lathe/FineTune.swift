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
        accuracy and 95% Wilson interval, plus the loss and perplexity there, for OUTPUT/adapter, --adapter DIR, or --base.
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
    @Option(help: "With --eval-only: the adapter, a PEFT or mlx-lm folder or a llama.cpp .gguf adapter (default: the recipe's output/adapter).")
    var adapter: String?
    @Flag(help: "With --eval-only: the model without an adapter.") var base = false
    @Option(help: "With --eval-only: test (data.test) or valid (data.valid).") var split = "test"
    @Option(help: "With --eval-only: the first N examples only.") var limit: Int?
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try threadOptions.apply()
        var r = try FineTuneRecipe.load(contentsOf: URL(fileURLWithPath: recipe), overrides: overrides)
        if let threads = threadOptions.threads { r.threads = threads }
        if evalOnly { return try evaluate(r) }
        if adapter != nil || base || limit != nil || split != "test" {
            throw ValidationError("--adapter, --base, --split and --limit go with --eval-only")
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
        let file: String
        switch split {
        case "test":
            guard let f = r.data.test else { throw CLIError("--eval-only: the recipe has no data.test file (or use --split valid)") }
            file = f
        case "valid":
            guard let f = r.data.valid else { throw CLIError("--eval-only --split valid: the recipe has no data.valid file") }
            file = f
        default: throw ValidationError("--split must be test or valid, not '\(split)'")
        }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        if base, adapter != nil { throw ValidationError("--base and --adapter exclude each other") }
        // The model as stored: a quantized file keeps its weights quantized (the fast decode kernel); an
        // adapter trained on its dequantised weights applies unchanged, as `lathe generate --adapter` runs it.
        let loaded = try PretrainedModel.load(r.model)
        let model = try loaded.decoder()
        var label = "base model"
        if !base {
            let folder = adapter ?? URL(fileURLWithPath: r.output).appendingPathComponent("adapter").path
            let (config, format) = try model.loadAdapter(at: URL(fileURLWithPath: folder))
            label = "\(format.rawValue) \(config.useDoRA ? "DoRA" : "LoRA") adapter \(folder) (\(model.loraLayers.count) layers)"
        }
        let template = loaded.chatTemplate == nil ? nil : try loaded.parsedChatTemplate()
        let sft = SFTTokenizer(tokenizer: loaded.tokenizer, template: template,
                               options: SFTOptions(format: r.data.format, maskPrompt: r.data.maskPrompt, maxLength: r.data.maxLength))
        let (format, questions) = try sft.questions(URL(fileURLWithPath: file), limit: limit)
        print("lathe finetune --eval-only: \(r.model) with \(label); \(questions.count) \(format.rawValue) examples of \(file); "
              + "threads \(ThreadPool.threadCount)")
        var warnings: [String] = []
        let examples = try sft.read(URL(fileURLWithPath: file), warnings: &warnings).examples.prefix(limit ?? Int.max)
        let pad = loaded.tokenizer.pad ?? loaded.tokenizer.eos ?? 0
        let rows = r.data.packing ? SFTPacking.pack(Array(examples), length: r.data.maxLength, pad: pad)
            : examples.map { SFTPacking.single($0, length: $0.ids.count, pad: pad) }
        let loss = FineTuner.evaluate(model, rows: rows, batchSize: r.training.batchSize, pad: pad, segments: r.data.packing)
        print(String(format: "loss %.4f, perplexity %.3f on %d labelled tokens", loss.loss, loss.perplexity, loss.tokens))
        let step = Swift.max(1, questions.count / 10)
        let accuracy = sft.accuracy(of: model, on: questions, stopTokens: loaded.chatStopTokens, maxTokens: r.evaluation.maxTokens,
                                       match: r.evaluation.match) { done, correct in
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
    }
}

private func duration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
}
