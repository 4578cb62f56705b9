import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Models and data sets are looked up by name in registries; adding one is one registration.
final class RegistryTests: XCTestCase {
    func testUnknownNamesListTheKnownOnes() {
        XCTAssertThrowsError(try Recipe.parse("model: {name: digits-rnn}", file: "r.yaml")) { error in
            XCTAssertTrue("\(error)".hasPrefix("r.yaml: model.name: 'digits-rnn' is not one of digits-mlp, digits-cnn, small-resnet, char-gpt"), "\(error)")
        }
        XCTAssertThrowsError(try Recipe.parse("data: {name: mnist}", file: "r.yaml")) { error in
            XCTAssertTrue("\(error)".hasPrefix("r.yaml: data.name: 'mnist' is not one of digits, fashion-mnist, csv, shakespeare"), "\(error)")
        }
        let registry = Registry<Int>(kind: "thing")
        registry.register("a", 1)
        registry.register("b", 2)
        registry.register("a", 3)
        XCTAssertEqual(registry.names, ["a", "b"])
        XCTAssertEqual(registry["a"], 3)
        XCTAssertThrowsError(try registry.lookup("c")) { error in
            XCTAssertEqual("\(error)", "unknown thing 'c' (known: a, b)")
        }
    }

    /// A model registered by the caller is a recipe's `model.name` like the built-in ones.
    func testARegisteredModelTrainsFromARecipe() throws {
        ModelRegistry.shared.register("test-linear", ModelEntry(summary: "one linear layer", flattensInput: true) { recipe, task in
            guard let c = task as? ClassificationTask else { throw RecipeError(file: "recipe", key: "model.name", message: "classifies only") }
            var g = RandomGenerator(seed: recipe.seed)
            return Sequential(Linear(c.train.sampleShape.reduce(1, *), c.classes, generator: &g))
        })
        let directory = try temporaryDirectory()
        let recipe = try Recipe.parse("""
            model: {name: test-linear}
            data: {name: digits}
            optimizer: {name: adamw, lr: 0.01}
            training: {steps: 40, batch_size: 32, eval_every: 20}
            output: \(directory.path)
            """)
        let trainer = try Trainer(recipe: recipe)
        XCTAssertTrue(trainer.model is Sequential)
        var splits: [MetricSplit] = []
        trainer.onMetrics = { _, _, split, _ in splits.append(split) }
        let summary = try trainer.run()
        XCTAssertGreaterThan(summary.test?.accuracy ?? 0, 0.3, "a linear classifier of the digits beats chance after 40 steps")
        XCTAssertEqual(splits.filter { $0 == .validation }.count, 2)
        XCTAssertEqual(splits.filter { $0 == .train }.count, 40)
        XCTAssertThrowsError(try Trainer(recipe: Recipe.parse("model: {name: test-linear}\ndata: {name: shakespeare}\ntraining: {steps: 1}"))) { error in
            XCTAssertEqual("\(error)", "recipe: model.name: classifies only")
        }
    }
}
