import Foundation
import LatheCompress
import LatheData
import LatheIO
import LatheNN
import LatheTensor

/// Metadata keys that variant files carry so that `lathe report` can rebuild them.
public enum VariantMetadata {
    /// A one-line description of how the variant was made.
    public static let description = "lathe.variant"
    /// `--set` overrides of the recipe's model (a distilled student), one per line.
    public static let modelOverrides = "lathe.model_overrides"
    /// "1" when the file holds the smaller shapes of structured pruning.
    public static let structured = "lathe.structured"
}

/// One model file measured for the report.
public struct VariantRow: Sendable, Equatable {
    public var name: String
    public var description: String
    public var parameters: Int
    public var nonZero: Int
    public var fileBytes: Int
    public var evaluation: Evaluation
    /// Median milliseconds of one forward pass at batch 1 and batch 64.
    public var latency1: Double
    public var latency64: Double

    public init(name: String, description: String, parameters: Int, nonZero: Int, fileBytes: Int, evaluation: Evaluation,
                latency1: Double, latency64: Double) {
        (self.name, self.description, self.parameters, self.nonZero, self.fileBytes) = (name, description, parameters, nonZero, fileBytes)
        (self.evaluation, self.latency1, self.latency64) = (evaluation, latency1, latency64)
    }
}

/// Builds the recipe's model (with the file's model overrides) and loads a variant file into it:
/// a quantized file, a structurally pruned state dict or a plain one.
public func loadVariant(_ url: URL, recipe: Recipe, source: RecipeSource, task: TrainingTask) throws -> (Module, SafeTensorsHeader) {
    let header = try SafeTensors.readHeader(contentsOf: url)
    var r = recipe
    if let o = header.metadata[VariantMetadata.modelOverrides], !o.isEmpty {
        r = try source.recipe(extra: o.split(separator: "\n").map(String.init))
        r.threads = recipe.threads  // the command line's --threads, if any
    }
    let model = try Trainer(recipe: r, task: task).model
    if header.metadata[QuantizationManifest.metadataKey] != nil {
        try QuantizedModelFile.load(into: model, from: url)
    } else if header.metadata[VariantMetadata.structured] == "1" {
        try loadPrunedStateDict(SafeTensors.read(contentsOf: url).tensors, into: model)
    } else {
        try model.loadStateDict(SafeTensors.read(contentsOf: url).tensors)
    }
    model.eval()
    return (model, header)
}

/// Weights a model holds (float parameters plus the weights and biases of quantized layers)
/// and how many of them are non-zero.
public func weightCounts(_ model: Module) -> (total: Int, nonZero: Int) {
    var total = 0, nonZero = 0
    func add(_ values: [Float]) { total += values.count; nonZero += values.reduce(0) { $1 != 0 ? $0 + 1 : $0 } }
    for (_, p) in model.namedParameters { add(p.value.detached().scalars) }
    for (_, m) in model.namedModules {
        switch m {
        case let q as QuantizedLinear: add(q.weight.codes.map(Float.init)); add(q.bias ?? [])
        case let q as DynamicQuantizedLinear: add(q.weight.codes.map(Float.init)); add(q.bias ?? [])
        case let q as QuantizedConv2d: add(q.weight.codes.map(Float.init)); add(q.bias ?? [])
        case let q as WeightOnlyLinear: add(q.weight.dequantized()); add(q.bias ?? [])
        default: break
        }
    }
    return (total, nonZero)
}

/// Median milliseconds per call of each model on `input` (eval mode, no tape); the models
/// take turns (``Timing/interleaved(_:rounds:minTime:warmupTime:)``).
public func latencies(_ models: [Module], input: Tensor, rounds: Int = 7) -> [Double] {
    for m in models { m.eval() }
    return Timing.interleaved(models.map { model in { _ = noGrad { model(input) } } }, rounds: rounds).map { $0.median * 1000 }
}

/// The first `n` samples of the split `lathe report` measures on.
public func sampleBatch(_ task: TrainingTask, _ n: Int) -> Tensor? {
    guard let c = task as? ClassificationTask else { return nil }
    let set = c.test ?? c.validation
    guard set.count > 0 else { return nil }
    // A split smaller than the batch is repeated to fill it.
    let index = Tensor((0..<n).map { Float($0 % set.count) }).to(.int64)
    let x = set.features.indexSelect(dim: 0, index: index).contiguous()
    return c.flatten ? x.reshaped([n, -1]) : x
}

/// Measures each variant file on the recipe's test split.
public func measureVariants(_ files: [VariantFile], recipe: Recipe, source: RecipeSource, task: TrainingTask,
                     log: (String) -> Void = { _ in }) throws -> [VariantRow] {
    guard let x1 = sampleBatch(task, 1), let x64 = sampleBatch(task, 64) else {
        throw CompressError("the report compares classifiers; \(recipe.model.name) on \(recipe.data.name) is not one")
    }
    var rows: [VariantRow] = [], models: [Module] = []
    for file in files {
        let name = file.name
        let (model, header) = try loadVariant(file.url, recipe: recipe, source: source, task: task)
        let evaluation = noGrad { task.evaluate(model, split: .test) }
        let counts = weightCounts(model)
        rows.append(VariantRow(name: name, description: header.metadata[VariantMetadata.description] ?? "", parameters: counts.total,
                               nonZero: counts.nonZero, fileBytes: header.fileSize, evaluation: evaluation, latency1: 0, latency64: 0))
        models.append(model)
        log("\(name): \(scoreText(evaluation))")
    }
    log("timing \(models.count) models at batch 1 and 64, in turns")
    for (i, (l1, l64)) in zip(latencies(models, input: x1), latencies(models, input: x64)).enumerated() {
        (rows[i].latency1, rows[i].latency64) = (l1, l64)
    }
    return rows
}

/// The markdown report: a table of the variants against the first one (the baseline).
public func reportMarkdown(_ rows: [VariantRow], title: String, split: String, threads: Int, notes: [String], svgName: String?) -> String {
    guard let base = rows.first else { return "" }
    func acc(_ e: Evaluation) -> String { e.accuracy.map { String(format: "%.2f%%", 100 * $0) } ?? String(format: "loss %.4f", e.loss) }
    var out = "# \(title)\n\n"
    out += "Accuracy on the \(split) split (\(base.evaluation.count) samples); latency is the median time of one forward pass "
    out += "on \(threads) thread\(threads == 1 ? "" : "s") (evaluation mode, no autodiff tape; 7 rounds in which the variants take turns); "
    out += "speed-up and size are against `\(base.name)`.\n\n"
    out += "| variant | parameters | non-zero | file bytes | smaller | accuracy | Δ points | latency b1 (ms) | latency b64 (ms) | speed-up b1 | speed-up b64 |\n"
    out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    for r in rows {
        let drop = (r.evaluation.accuracy ?? 0) - (base.evaluation.accuracy ?? 0)
        out += "| \(r.name) | \(r.parameters) | \(r.nonZero) | \(r.fileBytes) | "
        out += String(format: "%.2fx | %@ | %+.2f | %.3f | %.3f | %.2fx | %.2fx |\n", Double(base.fileBytes) / Double(r.fileBytes), acc(r.evaluation),
                      100 * drop, r.latency1, r.latency64, base.latency1 / r.latency1, base.latency64 / r.latency64)
    }
    out += "\nVariants:\n\n"
    for r in rows { out += "- `\(r.name)`: \(r.description.isEmpty ? "(no description)" : r.description)\n" }
    if !notes.isEmpty { out += "\nNotes:\n\n" + notes.map { "- \($0)\n" }.joined() }
    if let svgName { out += "\n![accuracy against file size](\(svgName))\n" }
    return out
}

/// The variants that no other beats on both file size and accuracy, smallest first.
public func paretoFront(_ rows: [VariantRow]) -> [VariantRow] {
    let sorted = rows.sorted { ($0.fileBytes, -($0.evaluation.accuracy ?? 0)) < ($1.fileBytes, -($1.evaluation.accuracy ?? 0)) }
    var front: [VariantRow] = []
    for r in sorted where front.last.map({ (r.evaluation.accuracy ?? 0) > ($0.evaluation.accuracy ?? 0) }) ?? true { front.append(r) }
    return front
}

/// Accuracy against file size (log scale), every variant a labelled point, the Pareto front a line.
public func paretoSVG(_ rows: [VariantRow], title: String) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 450.0, 70.0, 30.0, 54.0, 60.0)
    let sizes = rows.map { Double($0.fileBytes) }, accs = rows.map { 100 * ($0.evaluation.accuracy ?? 0) }
    let lx0 = log10(sizes.min()! / 1.3), lx1 = log10(sizes.max()! * 1.3)
    var y0 = (accs.min()! - 0.5).rounded(.down), y1 = (accs.max()! + 0.5).rounded(.up)
    if y1 - y0 < 2 { y0 -= 1; y1 += 1 }
    func px(_ s: Double) -> Double { left + (log10(s) - lx0) / (lx1 - lx0) * (w - left - right) }
    func py(_ a: Double) -> Double { top + (y1 - a) / (y1 - y0) * (h - top - bottom) }
    func esc(_ s: String) -> String { s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;") }
    var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
    svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    svg += "<text x=\"\(w / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(esc(title))</text>\n"
    // Axes, grid and ticks.
    svg += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - right)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
    svg += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
    let ystep = y1 - y0 > 10 ? 2.0 : (y1 - y0 > 4 ? 1.0 : 0.5)
    for a in stride(from: y0, through: y1, by: ystep) {
        svg += "<line x1=\"\(left)\" y1=\"\(py(a))\" x2=\"\(w - right)\" y2=\"\(py(a))\" stroke=\"#ddd\"/>"
        svg += "<text x=\"\(left - 6)\" y=\"\(py(a) + 4)\" text-anchor=\"end\">\(String(format: "%g", a))</text>\n"
    }
    for e in Int(lx0.rounded(.down))...Int(lx1.rounded(.up)) {
        for m in [1.0, 2, 5] {
            let s = m * pow(10, Double(e))
            guard log10(s) >= lx0, log10(s) <= lx1 else { continue }
            let label = s >= 1e6 ? String(format: "%g MB", s / 1e6) : s >= 1e3 ? String(format: "%g kB", s / 1e3) : String(format: "%g B", s)
            svg += "<line x1=\"\(px(s))\" y1=\"\(top)\" x2=\"\(px(s))\" y2=\"\(h - bottom)\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(px(s))\" y=\"\(h - bottom + 16)\" text-anchor=\"middle\">\(label)</text>\n"
        }
    }
    svg += "<text x=\"\((left + w - right) / 2)\" y=\"\(h - 18)\" text-anchor=\"middle\">file size (log scale)</text>\n"
    svg += "<text transform=\"translate(18 \((top + h - bottom) / 2)) rotate(-90)\" text-anchor=\"middle\">accuracy (%)</text>\n"
    let front = paretoFront(rows)
    svg += "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\""
        + front.map { "\(px(Double($0.fileBytes))),\(py(100 * ($0.evaluation.accuracy ?? 0)))" }.joined(separator: " ") + "\"/>\n"
    let onFront = Set(front.map(\.name))
    var labels: [(x: Double, y: Double)] = []
    // Front points last, so that they show on top of points they coincide with.
    for r in rows.filter({ !onFront.contains($0.name) }) + front {
        let (x, y) = (px(Double(r.fileBytes)), py(100 * (r.evaluation.accuracy ?? 0)))
        svg += "<circle cx=\"\(x)\" cy=\"\(y)\" r=\"5\" fill=\"\(onFront.contains(r.name) ? "#d62728" : "#1f77b4")\"/>"
        // Labels of points that (nearly) coincide go one under the other.
        var ly = y - 6
        while labels.contains(where: { abs($0.x - (x + 8)) < 60 && abs($0.y - ly) < 13 }) { ly += 14 }
        labels.append((x + 8, ly))
        svg += "<text x=\"\(x + 8)\" y=\"\(ly)\">\(esc(r.name))</text>\n"
    }
    svg += "<text x=\"\(w - right)\" y=\"\(top - 8)\" text-anchor=\"end\" fill=\"#d62728\">red: Pareto front (no variant is both smaller and more accurate)</text>\n"
    return svg + "</svg>\n"
}

/// Writes `report.md`-style markdown and its SVG next to it.
public func writeReport(_ rows: [VariantRow], markdown: URL, svg: URL?, title: String, split: String, notes: [String]) throws {
    try FileManager.default.createDirectory(at: markdown.deletingLastPathComponent(), withIntermediateDirectories: true)
    let svgName = svg.map { s in
        s.deletingLastPathComponent().standardizedFileURL == markdown.deletingLastPathComponent().standardizedFileURL ? s.lastPathComponent : s.path
    }
    try AtomicFile.write(reportMarkdown(rows, title: title, split: split, threads: ThreadPool.threadCount, notes: notes, svgName: svgName),
                         to: markdown)
    if let svg { try AtomicFile.write(paretoSVG(rows, title: title), to: svg) }
}

