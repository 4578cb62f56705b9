import ArgumentParser
import Foundation
import Lathe

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare model variants (fp32, quantized, pruned, distilled files) in a markdown table and an accuracy-vs-size chart.",
        discussion: """
        Each file is loaded into the recipe's model: a quantized file (lathe quantize), a state dict (lathe train, lathe prune), \
        a structurally pruned one, or a distilled student (lathe distill; the student's model keys are in the file). The first \
        file is the baseline of the size and speed-up columns. Name a variant with NAME=FILE; otherwise the file name is used.
        Example: lathe report Recipes/digits-cnn.yaml baseline=runs/digits-cnn/model.safetensors int8=q.safetensors --output report.md
        """
    )

    @Argument(help: "The recipe that describes the model and data.") var recipe: String
    @Argument(help: "Variant files, as FILE or NAME=FILE; the first is the baseline.") var variants: [String]
    @Option(help: "Where to write the markdown table.") var output: String = "report.md"
    @Option(help: "Where to write the accuracy-vs-size chart (SVG; default: next to the report, .svg).") var svg: String?
    @Option(name: .customLong("set"), help: "Override a recipe key: --set key.path=value.") var overrides: [String] = []
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        let source = try RecipeSource.file(URL(fileURLWithPath: recipe), overrides: overrides)
        var r = try source.recipe()
        try threadOptions.apply(to: &r)
        let trainer = try Trainer(recipe: r)
        let files = variants.map { v -> VariantFile in
            if let eq = v.firstIndex(of: "="), eq != v.startIndex {
                return VariantFile(name: String(v[..<eq]), url: URL(fileURLWithPath: String(v[v.index(after: eq)...])))
            }
            let url = URL(fileURLWithPath: v)
            return VariantFile(name: url.deletingPathExtension().lastPathComponent, url: url)
        }
        let rows = try measureVariants(files, recipe: r, source: source, task: trainer.task) { print($0) }
        let md = URL(fileURLWithPath: output)
        let svgURL = URL(fileURLWithPath: svg ?? md.deletingPathExtension().appendingPathExtension("svg").path)
        try writeReport(rows, markdown: md, svg: svgURL, title: "\(r.model.name) on \(r.data.name)", split: trainer.testSplitName, notes: [])
        print("wrote \(md.path) and \(svgURL.path)")
    }
}
