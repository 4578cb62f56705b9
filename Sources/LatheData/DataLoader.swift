import LatheTensor

/// Mini-batches over a ``TensorDataset``, reproducible and resumable without stored RNG state.
///
/// The order of epoch `e` is a permutation drawn from `RandomGenerator(seed: seed ^ mix(e))`
/// (`mix` is the SplitMix64 finaliser), so any epoch's order, and any batch of it, can be
/// recomputed from `(seed, epoch, batch)` alone. Save a ``Position`` to resume mid-epoch:
///
/// ```swift
/// let loader = DataLoader(train, batchSize: 64, shuffle: true, seed: 1)
/// for epoch in 0..<10 {
///     for (x, y) in loader.batches(epoch: epoch) { ... }
/// }
/// // resume after a checkpoint taken at `position`:
/// for (x, y) in loader.batches(epoch: position.epoch, startingAt: position.batch) { ... }
/// ```
///
/// Iterating the loader itself (`for (x, y) in loader`) gives the batches of ``position``'s
/// epoch from its batch on.
public struct DataLoader: Sequence, Sendable {
    public typealias Batch = (x: Tensor, y: Tensor)

    /// A place in the stream of batches: the next batch to produce.
    public struct Position: Hashable, Codable, Sendable, CustomStringConvertible {
        public var epoch: Int
        public var batch: Int
        public init(epoch: Int, batch: Int) {
            self.epoch = epoch
            self.batch = batch
        }
        public var description: String { "epoch \(epoch), batch \(batch)" }
    }

    public let dataset: TensorDataset
    public let batchSize: Int
    public let shuffle: Bool
    public let dropLast: Bool
    public let seed: UInt64
    /// Where iterating the loader itself starts.
    public var position: Position

    public init(_ dataset: TensorDataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false,
                seed: UInt64 = 0, position: Position = Position(epoch: 0, batch: 0)) {
        precondition(batchSize > 0, "DataLoader: batchSize must be positive, got \(batchSize)")
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
        self.position = position
    }

    /// Batches in one epoch (the last, smaller batch counts unless `dropLast`).
    public var batchesPerEpoch: Int {
        dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
    }

    /// SplitMix64's output for `epoch`: the finaliser applied to `(epoch + 1) * golden ratio`.
    /// Spreads epochs over the seed space; fixed forever (saved positions depend on it).
    public static func mix(_ epoch: Int) -> UInt64 {
        var z = (UInt64(bitPattern: Int64(epoch)) &+ 1) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The sample order of `epoch`: a seeded permutation (int64 `[N]`), or `0..<N` without shuffling.
    public func order(epoch: Int) -> Tensor {
        if !shuffle { return Tensor.arange(dataset.count) }
        var generator = RandomGenerator(seed: seed ^ DataLoader.mix(epoch))
        return Tensor.permutation(dataset.count, generator: &generator)
    }

    /// The batches of `epoch` from batch `start` on.
    public func batches(epoch: Int, startingAt start: Int = 0) -> EpochBatches {
        precondition(start >= 0 && start <= batchesPerEpoch,
                     "DataLoader: batch \(start) is outside epoch of \(batchesPerEpoch) batches")
        return EpochBatches(loader: self, epoch: epoch, start: start)
    }

    /// Batch `index` of `epoch`, computed on its own (recomputes the epoch's order).
    public func batch(_ index: Int, epoch: Int) -> Batch {
        precondition(index >= 0 && index < batchesPerEpoch, "DataLoader: no batch \(index) in an epoch of \(batchesPerEpoch)")
        return gather(order: order(epoch: epoch), batch: index)
    }

    func gather(order: Tensor, batch b: Int) -> Batch {
        let start = b * batchSize, end = Swift.min(start + batchSize, dataset.count)
        let index = order.sliced(dim: 0, start: start, end: end)
        return (dataset.features.indexSelect(dim: 0, index: index), dataset.labels.indexSelect(dim: 0, index: index))
    }

    public func makeIterator() -> EpochBatches.Iterator {
        batches(epoch: position.epoch, startingAt: position.batch).makeIterator()
    }

    /// The batches of one epoch from some batch on. The order is computed once per iterator.
    public struct EpochBatches: Sequence, Sendable {
        public let loader: DataLoader
        public let epoch: Int
        public let start: Int

        /// Batches this sequence yields.
        public var underestimatedCount: Int { Swift.max(0, loader.batchesPerEpoch - start) }

        public func makeIterator() -> Iterator {
            Iterator(loader: loader, order: loader.order(epoch: epoch),
                     position: Position(epoch: epoch, batch: start))
        }

        public struct Iterator: IteratorProtocol {
            let loader: DataLoader
            let order: Tensor
            /// The position of the next batch; save it to resume from there.
            public private(set) var position: Position

            init(loader: DataLoader, order: Tensor, position: Position) {
                self.loader = loader
                self.order = order
                self.position = position
            }

            public mutating func next() -> Batch? {
                guard position.batch < loader.batchesPerEpoch else { return nil }
                let b = loader.gather(order: order, batch: position.batch)
                position.batch += 1
                return b
            }
        }
    }
}
