import ArgumentParser
import Foundation
import Lathe

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the small CNN on the bundled 8x8 digits, evaluate it and save it (Recipes/digits-cnn.yaml)."
    )

    @Option(help: "Where to write the model and logs.") var output: String = "runs/demo"
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try threadOptions.apply()
        let recipe = try Recipe.parse(Recipe.demoYAML, file: "demo recipe", overrides: ["output=\(output)"])
        let trainer = try Trainer(recipe: recipe)
        let summary = try runTraining(trainer, resume: false, label: "lathe demo")
        if let test = summary.test?.accuracy {
            print(String(format: "demo done: test accuracy %.2f%% in %.1f s", 100 * test, summary.seconds))
        }
    }
}
