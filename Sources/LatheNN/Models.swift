import LatheTensor

/// Reference models. Their `state_dict` keys match the PyTorch definitions in
/// `Tools/reference/models.py`, so weights move between the two unchanged.
public enum Models {
    /// `Linear(64,128) ReLU Linear(128,64) ReLU Linear(64,10)` on flat 8x8 digits.
    public static func digitsMLP(inFeatures: Int = 64, hidden: Int = 128, classes: Int = 10, seed: UInt64 = 0) -> Sequential {
        var g = RandomGenerator(seed: seed)
        return Sequential(Linear(inFeatures, hidden, generator: &g), ReLU(), Linear(hidden, hidden / 2, generator: &g), ReLU(),
                          Linear(hidden / 2, classes, generator: &g))
    }
}

/// Two conv-BN-ReLU-pool stages and two linear layers, for 8x8 digits or 28x28 images.
public final class DigitsCNN: Module {
    @Child public var conv1: Conv2d
    @Child public var bn1: BatchNorm
    @Child public var conv2: Conv2d
    @Child public var bn2: BatchNorm
    @Child public var fc1: Linear
    @Child public var fc2: Linear
    public let dropout: Dropout

    public init(inChannels: Int = 1, classes: Int = 10, image: Int = 8, channels: (Int, Int) = (32, 64), hidden: Int = 128,
                dropout p: Float = 0, seed: UInt64 = 0) {
        var g = RandomGenerator(seed: seed)
        conv1 = Conv2d(inChannels, channels.0, kernelSize: 3, padding: 1, generator: &g)
        bn1 = BatchNorm(channels.0)
        conv2 = Conv2d(channels.0, channels.1, kernelSize: 3, padding: 1, generator: &g)
        bn2 = BatchNorm(channels.1)
        fc1 = Linear(channels.1 * (image / 4) * (image / 4), hidden, generator: &g)
        fc2 = Linear(hidden, classes, generator: &g)
        dropout = Dropout(p, seed: seed &+ 1)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        var h = $bn1($conv1(x)).relu().maxPool2d(kernel: (2, 2))
        h = $bn2($conv2(h)).relu().maxPool2d(kernel: (2, 2))
        return $fc2(dropout($fc1(h.flattened(from: 1)).relu()))
    }
}

/// The ResNet basic block (He et al. 2016): two 3x3 conv-BN layers and a shortcut
/// (a strided 1x1 conv-BN when the shape changes).
public final class BasicBlock: Module {
    @Child public var conv1: Conv2d
    @Child public var bn1: BatchNorm
    @Child public var conv2: Conv2d
    @Child public var bn2: BatchNorm
    public let downsample: Sequential?

    public init(_ inChannels: Int, _ outChannels: Int, stride: Int = 1, generator: inout RandomGenerator) {
        conv1 = Conv2d(inChannels, outChannels, kernelSize: 3, stride: stride, padding: 1, bias: false, generator: &generator)
        bn1 = BatchNorm(outChannels)
        conv2 = Conv2d(outChannels, outChannels, kernelSize: 3, padding: 1, bias: false, generator: &generator)
        bn2 = BatchNorm(outChannels)
        downsample = stride != 1 || inChannels != outChannels
            ? Sequential(Conv2d(inChannels, outChannels, kernelSize: 1, stride: stride, bias: false, generator: &generator),
                         BatchNorm(outChannels))
            : nil
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let h = $bn2($conv2($bn1($conv1(x)).relu()))
        return (h + (downsample?(x) ?? x)).relu()
    }
}

/// A small ResNet: a 3x3 stem, two basic blocks (the second strided), global average
/// pooling and a linear classifier.
public final class SmallResNet: Module {
    @Child public var conv1: Conv2d
    @Child public var bn1: BatchNorm
    public let layer1: BasicBlock
    public let layer2: BasicBlock
    @Child public var fc: Linear

    public init(inChannels: Int = 1, classes: Int = 10, widths: (Int, Int) = (16, 32), seed: UInt64 = 0) {
        var g = RandomGenerator(seed: seed)
        conv1 = Conv2d(inChannels, widths.0, kernelSize: 3, padding: 1, bias: false, generator: &g)
        bn1 = BatchNorm(widths.0)
        layer1 = BasicBlock(widths.0, widths.0, generator: &g)
        layer2 = BasicBlock(widths.0, widths.1, stride: 2, generator: &g)
        fc = Linear(widths.1, classes, generator: &g)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let h = layer2(layer1($bn1($conv1(x)).relu()))
        return $fc(h.adaptiveAvgPool2d(outputSize: (1, 1)).flattened(from: 1))
    }
}

/// A GPT-style character language model: token embedding (plus learned positions when
/// rotary embeddings are off), pre-norm transformer blocks, a final LayerNorm and an
/// untied output head.
public final class CharGPT: Module {
    public struct Config: Sendable, Equatable, Codable {
        public var vocab = 65, context = 64, dModel = 128, heads = 4, layers = 4, rope = true
        public init(vocab: Int = 65, context: Int = 64, dModel: Int = 128, heads: Int = 4, layers: Int = 4, rope: Bool = true) {
            (self.vocab, self.context, self.dModel, self.heads, self.layers, self.rope) = (vocab, context, dModel, heads, layers, rope)
        }
    }

    public let config: Config
    public let tokEmb: Embedding
    public let posEmb: Embedding?
    public let blocks: [TransformerBlock]
    public let lnF: LayerNorm
    @Child public var head: Linear

    public init(_ config: Config = Config(), seed: UInt64 = 0) {
        var g = RandomGenerator(seed: seed)
        self.config = config
        tokEmb = Embedding(config.vocab, config.dModel, generator: &g)
        posEmb = config.rope ? nil : Embedding(config.context, config.dModel, generator: &g)
        blocks = (0..<config.layers).map { _ in
            TransformerBlock(dModel: config.dModel, heads: config.heads, rope: config.rope, generator: &g)
        }
        lnF = LayerNorm(config.dModel)
        head = Linear(config.dModel, config.vocab, bias: false, generator: &g)
    }

    /// Gradient checkpointing of every block but the last: the backward pass starts with the
    /// last block, so recomputing it would cost time and save nothing at the peak. (A one-block
    /// model has nothing to checkpoint.)
    public var checkpointing: Bool {
        get { _checkpointing }
        set {
            _checkpointing = newValue
            for (i, b) in blocks.enumerated() { b.checkpointing = newValue && i < blocks.count - 1 }
        }
    }
    private var _checkpointing = false

    /// Token ids `[B, T]` (int64, `T <= context`) to logits `[B, T, vocab]`.
    public override func forward(_ ids: Tensor) -> Tensor {
        precondition(ids.rank == 2 && ids.shape[1] <= config.context,
                     "CharGPT: expected ids [B, T] with T <= \(config.context), got \(ids.shape)")
        var x = tokEmb(ids)
        if let posEmb { x = x + posEmb(Tensor.arange(ids.shape[1])) }
        for block in blocks { x = block(x) }
        return $head(lnF(x))
    }
}
