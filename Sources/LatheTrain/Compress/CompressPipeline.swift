import Foundation
import LatheIO
import LatheTensor

/// What `lathe compress` produced: the baseline, each stage's output, the measured variants
/// and where the report went.
public struct CompressResult {
    /// The baseline's evaluation on the test split (validation when there is none).
    public var baseline: Evaluation
    /// How the baseline was obtained (trained, or loaded from a file).
    public var baselineDescription: String
    /// Stage outputs in the order the stages ran.
    public var stages: [(stage: CompressSpec.Stage, output: StageOutput)]
    /// One row per variant file, the baseline first.
    public var rows: [VariantRow]
    public var report: URL
    public var chart: URL
    public var seconds: Double
}

/// The whole compression pipeline of a recipe's `compress:` section: train (or load) the
/// baseline, make every variant from its weights, measure them all and write
/// `<output>/report.md` and `<output>/pareto.svg` (variant files in `<output>/variants/`).
public enum CompressPipeline {
    /// - Parameters:
    ///   - recipe: `source` parsed, with the caller's settings on top (`threads`).
    ///   - only: names of the stages to run (nil: all); an unknown name is an error.
    ///   - baselineWeights: trained fp32 weights to start from instead of training.
    ///   - log: progress lines.
    public static func run(source: RecipeSource, recipe r: Recipe, only: [String]? = nil, baselineWeights: URL? = nil,
                           log: @escaping (String) -> Void = { _ in }) throws -> CompressResult {
        guard let spec = r.compress else {
            throw CompressError("\(source.file) has no compress: section (see Recipes/compress-digits.yaml for one)")
        }
        let stages = try select(spec.stages, only: only, file: source.file)
        let output = URL(fileURLWithPath: r.output)
        let variants = output.appendingPathComponent("variants")
        try FileManager.default.createDirectory(at: variants, withIntermediateDirectories: true)
        let start = Timing.now()

        var base = r
        base.output = output.appendingPathComponent("baseline").path
        let trainer = try Trainer(recipe: base)
        try CompressionRun.checkStages(stages, task: trainer.task, data: r.data.name)
        let baselineURL = variants.appendingPathComponent("baseline.safetensors")
        let description: String
        if let baselineWeights {
            try trainer.model.loadStateDict(SafeTensors.read(contentsOf: baselineWeights).tensors)
            description = "fp32 weights from \(baselineWeights.path)"
        } else {
            log("training the baseline (\(trainer.totalSteps) steps)")
            let summary = try trainer.run()
            description = String(format: "fp32, trained by the recipe: %d steps in %.1f s, best validation step %d", summary.steps,
                                 summary.seconds, summary.bestStep ?? summary.steps)
        }
        try SafeTensors.write(trainer.model.stateDict(), metadata: ["lathe.recipe": source.file, "lathe.model": r.model.name,
                                                                    VariantMetadata.description: description], to: baselineURL)
        let baseline = trainer.evaluate(.test)
        log("baseline: \(trainer.testSplitName) \(scoreText(baseline))")

        let run = CompressionRun(source: source, recipe: r, task: trainer.task, baseline: trainer.model.stateDict(),
                                 directory: variants, calibrationBatches: spec.calibrationBatches, log: log)
        var files = [VariantFile(name: "baseline", url: baselineURL)]
        var notes: [String] = []
        var outputs: [(stage: CompressSpec.Stage, output: StageOutput)] = []
        for s in stages {
            let t0 = Timing.now()
            log("stage \(s.name) (\(s.method.rawValue))")
            let out = try run.run(s)
            files += out.files
            notes += out.notes
            outputs.append((s, out))
            log(String(format: "  done in %.1f s: %@", Timing.now() - t0, out.files.map { $0.url.lastPathComponent }.joined(separator: ", ")))
        }
        log("measuring \(files.count) variants")
        let rows = try measureVariants(files, recipe: r, source: source, task: trainer.task) { log("  " + $0) }
        let md = output.appendingPathComponent("report.md"), svg = output.appendingPathComponent("pareto.svg")
        try writeReport(rows, markdown: md, svg: svg, title: "\(r.model.name) on \(r.data.name): compression variants",
                        split: trainer.testSplitName, notes: notes)
        return CompressResult(baseline: baseline, baselineDescription: description, stages: outputs, rows: rows, report: md, chart: svg,
                              seconds: Timing.now() - start)
    }

    /// The stages named in `only` (all when nil), in the recipe's order.
    public static func select(_ stages: [CompressSpec.Stage], only: [String]?, file: String) throws -> [CompressSpec.Stage] {
        guard let only else { return stages }
        if let unknown = only.first(where: { n in !stages.contains { $0.name == n } }) {
            throw CompressError("--only: \(file) has no stage '\(unknown)' (stages: \(stages.map(\.name).joined(separator: ", ")))")
        }
        return stages.filter { only.contains($0.name) }
    }
}
