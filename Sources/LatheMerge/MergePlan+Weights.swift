import Foundation
import LatheIO
import LatheLM

extension MergePlan.InputLayout {
    /// The layout of an opened model: its tensors' shapes and its config's `num_hidden_layers`.
    public init(_ weights: HuggingFaceWeights) {
        var shapes: [String: [Int]] = [:]
        for name in weights.tensorNames { shapes[name] = weights.shape(of: name) }
        self.init(shapes: shapes, declaredLayers: weights.config?["num_hidden_layers"]?.intValue)
    }
}

extension MergePlan {
    /// Builds the plan; `sources[i]` is the opened model `models[i]`.
    public init(config: MergeConfig, file: String, models: [String], sources: [HuggingFaceWeights]) throws {
        try self.init(config: config, file: file, models: models, sources: sources.map(InputLayout.init))
    }
}
