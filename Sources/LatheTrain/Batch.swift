import LatheTensor

/// One micro-batch as named tensors: what a ``TrainingTask`` gives the ``Trainer`` and reads back
/// in ``TrainingTask/loss(_:on:)``.
///
/// The names follow Hugging Face's (`input_ids`, `labels`, `attention_mask`, `position_ids`);
/// a task may add its own. Classifiers use `inputs` and `targets`. Labels equal to
/// ``ignoreIndex`` (-100, PyTorch's default) are not scored.
///
/// ``counts`` carries sizes the trainer sums over a step for throughput (`tokens`, `labelled`),
/// without reading the tensors again.
public struct Batch {
    public var tensors: [String: Tensor]
    /// Sizes of the batch by name (`tokens`: tokens without padding, `labelled`: scored labels).
    public var counts: [String: Int]

    /// The label value that is not scored (PyTorch's `ignore_index`).
    public static let ignoreIndex = -100

    /// Well-known tensor names.
    public enum Key {
        public static let inputs = "inputs"
        public static let targets = "targets"
        public static let inputIDs = "input_ids"
        public static let labels = "labels"
        public static let segmentIDs = "segment_ids"
        public static let positionIDs = "position_ids"
        public static let attentionMask = "attention_mask"
    }

    public init(_ tensors: [String: Tensor] = [:], counts: [String: Int] = [:]) {
        (self.tensors, self.counts) = (tensors, counts)
    }

    /// A supervised batch: `inputs` and `targets`.
    public init(inputs: Tensor, targets: Tensor) {
        self.init([Key.inputs: inputs, Key.targets: targets])
    }

    public subscript(_ name: String) -> Tensor? {
        get { tensors[name] }
        set { tensors[name] = newValue }
    }

    /// The tensor `name`; stops with a message naming the batch's tensors when it is missing
    /// (a task that reads a tensor its batches do not hold is a programmer error).
    public func required(_ name: String) -> Tensor {
        guard let t = tensors[name] else {
            preconditionFailure("Batch: no tensor '\(name)' (the batch holds \(tensors.keys.sorted().joined(separator: ", ")))")
        }
        return t
    }

    /// Model inputs of a supervised batch.
    public var inputs: Tensor { required(Key.inputs) }
    /// Targets of a supervised batch (class indices, next tokens, values).
    public var targets: Tensor { required(Key.targets) }
    /// Token ids `[B, L]` (int64).
    public var inputIDs: Tensor { required(Key.inputIDs) }
    /// Labels `[B, L]` (int64), ``ignoreIndex`` where not scored.
    public var labels: Tensor { required(Key.labels) }
    /// Segment ids `[B, L]` of packed rows (0: padding), if the batch is packed.
    public var segmentIDs: Tensor? { tensors[Key.segmentIDs] }
    /// Positions `[B, L]`, if the batch gives them.
    public var positionIDs: Tensor? { tensors[Key.positionIDs] }
    /// Attention mask `[B, L]` (1: attend, 0: padding), if the batch gives one.
    public var attentionMask: Tensor? { tensors[Key.attentionMask] }
}

/// What a ``TrainingTask`` computes on one batch: the loss, still on the tape for `backward`,
/// and any metrics of the batch to log beside it.
public struct TaskLoss {
    public var loss: Tensor
    public var metrics: [String: Double]

    public init(_ loss: Tensor, metrics: [String: Double] = [:]) { (self.loss, self.metrics) = (loss, metrics) }
}
