import Foundation
import LatheData
import LatheTensor
import XCTest
import _LatheTestSupport

/// Fixtures made by `Tools/reference/make_data_fixtures.py`.
let dataFixtures = fixturesDirectory.appendingPathComponent("data")

func fixture(_ name: String) -> URL { dataFixtures.appendingPathComponent(name) }

/// Runs `body`, expects a DataError, and returns it (nil and a failure otherwise).
@discardableResult
func expectDataError<T>(_ body: () throws -> T, file: StaticString = #filePath, line: UInt = #line) -> DataError? {
    do {
        _ = try body()
        XCTFail("expected a DataError, got success", file: file, line: line)
    } catch let e as DataError {
        return e
    } catch {
        XCTFail("expected a DataError, got \(error)", file: file, line: line)
    }
    return nil
}

func milliseconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
}

final class DatasetAndLoaderTests: XCTestCase {
    /// Sample i has features [i, -i] and label i % 7.
    func numbered(_ n: Int) -> TensorDataset {
        let f = (0..<n).flatMap { [Float($0), -Float($0)] }
        return TensorDataset(features: Tensor(f, shape: [n, 2]), labels: Tensor((0..<n).map { $0 % 7 }), classes: 7)
    }

    func ids(_ batch: (x: Tensor, y: Tensor)) -> [Int] {
        let x = batch.x.scalars
        return stride(from: 0, to: x.count, by: 2).map { Int(x[$0]) }
    }

    func testEveryEpochCoversEverySampleExactlyOnce() {
        let data = numbered(103)
        let loader = DataLoader(data, batchSize: 10, shuffle: true, seed: 42)
        XCTAssertEqual(loader.batchesPerEpoch, 11)
        for epoch in 0..<3 {
            var seen: [Int] = []
            var sizes: [Int] = []
            for batch in loader.batches(epoch: epoch) {
                XCTAssertEqual(batch.x.shape.dropFirst(), [2])
                XCTAssertEqual(batch.y.dtype, .int64)
                let i = ids(batch)
                XCTAssertEqual(batch.y.intScalars, i.map { $0 % 7 }, "labels travel with their features")
                XCTAssertEqual(batch.x.scalars.enumerated().filter { $0.offset % 2 == 1 }.map(\.element), i.map { -Float($0) })
                seen += i
                sizes.append(i.count)
            }
            XCTAssertEqual(seen.sorted(), Array(0..<103))
            XCTAssertNotEqual(seen, Array(0..<103), "shuffled")
            XCTAssertEqual(sizes, Array(repeating: 10, count: 10) + [3])
        }
    }

    func testDropLastAndNoShuffle() {
        let data = numbered(103)
        let dropping = DataLoader(data, batchSize: 10, shuffle: true, dropLast: true, seed: 1)
        XCTAssertEqual(dropping.batchesPerEpoch, 10)
        let batches = Array(dropping.batches(epoch: 0))
        XCTAssertEqual(batches.count, 10)
        XCTAssertTrue(batches.allSatisfy { $0.x.shape[0] == 10 && $0.y.shape == [10] })
        XCTAssertEqual(Set(batches.flatMap(ids)).count, 100)

        let ordered = DataLoader(data, batchSize: 25, shuffle: false)
        XCTAssertEqual(ordered.batches(epoch: 5).flatMap(ids), Array(0..<103))
        XCTAssertEqual(DataLoader(numbered(3), batchSize: 5, dropLast: true).batchesPerEpoch, 0)
        XCTAssertEqual(Array(DataLoader(numbered(3), batchSize: 5, dropLast: true).batches(epoch: 0)).count, 0)
    }

    func testOrderDependsOnlyOnSeedAndEpoch() {
        let data = numbered(200)
        let a = DataLoader(data, batchSize: 32, seed: 7), b = DataLoader(data, batchSize: 32, seed: 7)
        XCTAssertEqual(a.batches(epoch: 3).flatMap(ids), b.batches(epoch: 3).flatMap(ids))
        XCTAssertEqual(a.order(epoch: 3).intScalars, a.batches(epoch: 3).flatMap(ids))
        XCTAssertNotEqual(a.order(epoch: 3).intScalars, a.order(epoch: 4).intScalars)
        XCTAssertNotEqual(a.order(epoch: 0).intScalars, DataLoader(data, batchSize: 32, seed: 8).order(epoch: 0).intScalars)
        // The mixing is fixed: epoch orders are part of saved training state.
        XCTAssertEqual(DataLoader.mix(0), 0xE220_A839_7B1D_CDAF)
        // A single batch recomputed on its own is the one iteration gives.
        XCTAssertEqual(ids(a.batch(4, epoch: 3)), Array(a.batches(epoch: 3))[4].x.scalars.enumerated()
            .filter { $0.offset % 2 == 0 }.map { Int($0.element) })
    }

    func testResumeMidEpochGivesTheSameRemainingBatches() {
        let data = numbered(150)
        let loader = DataLoader(data, batchSize: 16, seed: 99)
        // Run epoch 2 up to batch 4 and "checkpoint" the iterator's position.
        var it = loader.batches(epoch: 2).makeIterator()
        for _ in 0..<4 { _ = it.next() }
        let saved = it.position
        XCTAssertEqual(saved, DataLoader.Position(epoch: 2, batch: 4))
        let encoded = try! JSONEncoder().encode(saved)
        let restored = try! JSONDecoder().decode(DataLoader.Position.self, from: encoded)

        var rest: [[Float]] = [], restLabels: [[Int]] = []
        while let b = it.next() { rest.append(b.x.scalars); restLabels.append(b.y.intScalars) }

        // A new loader (new process) resumes from the saved position.
        let fresh = DataLoader(data, batchSize: 16, seed: 99)
        let resumed = Array(fresh.batches(epoch: restored.epoch, startingAt: restored.batch))
        XCTAssertEqual(resumed.map { $0.x.scalars }, rest)
        XCTAssertEqual(resumed.map { $0.y.intScalars }, restLabels)
        XCTAssertEqual(rest.count, loader.batchesPerEpoch - 4)
        XCTAssertEqual(it.position, DataLoader.Position(epoch: 2, batch: 10))
        XCTAssertEqual(loader.normalized(it.position), DataLoader.Position(epoch: 3, batch: 0))
        XCTAssertEqual(loader.normalized(saved), saved)
        // Iterating the loader itself starts at its position.
        var positioned = fresh
        positioned.position = restored
        XCTAssertEqual(positioned.map { $0.x.scalars }, rest)
    }

    func testSplitSizesDisjointAndSeeded() throws {
        let data = numbered(100)
        let parts = try data.split(fractions: [0.8, 0.1, 0.1], seed: 3)
        XCTAssertEqual(parts.map(\.count), [80, 10, 10])
        let all = parts.flatMap { p in stride(from: 0, to: p.features.count, by: 2).map { Int(p.features.scalars[$0]) } }
        XCTAssertEqual(all.count, 100)
        XCTAssertEqual(Set(all).count, 100, "parts are disjoint and cover everything")
        XCTAssertEqual(parts[0].labels.intScalars, stride(from: 0, to: 160, by: 2).map { Int(parts[0].features.scalars[$0]) % 7 })
        XCTAssertEqual(parts[0].classes, 7)
        XCTAssertEqual(try data.split(fractions: [0.8, 0.1, 0.1], seed: 3)[1].features.scalars, parts[1].features.scalars)
        XCTAssertNotEqual(try data.split(fractions: [0.8, 0.1, 0.1], seed: 4)[1].features.scalars, parts[1].features.scalars)
        XCTAssertEqual(try numbered(7).split(fractions: [0.5, 0.5], seed: 0).map(\.count).reduce(0, +), 7)
        XCTAssertEqual(try numbered(10).split(fractions: [1.0], seed: 0)[0].count, 10)

        let e = expectDataError { try data.split(fractions: [0.8, 0.1], seed: 0) }
        XCTAssertTrue(e?.description.contains("sum to") ?? false, e?.description ?? "")
        expectDataError { try data.split(fractions: [1.2, -0.2], seed: 0) }
        expectDataError { try data.split(fractions: [], seed: 0) }
        XCTAssertNoThrow(try data.split(fractions: [0.7, 0.2, 0.1 + 5e-7], seed: 0))
    }

    func testSplitRecordsTheIndicesItTook() throws {
        let data = numbered(50)
        XCTAssertNil(data.sourceIndices)
        XCTAssertEqual(data.indicesInSource, Array(0..<50))
        let indices = try data.splitIndices(fractions: [0.6, 0.2, 0.2], seed: 9)
        XCTAssertEqual(indices.map(\.count), [30, 10, 10])
        XCTAssertEqual(indices.flatMap { $0 }.sorted(), Array(0..<50))
        let parts = try data.split(fractions: [0.6, 0.2, 0.2], seed: 9)
        for (part, idx) in zip(parts, indices) {
            XCTAssertEqual(part.sourceIndices, idx)
            // Row i of the part is row idx[i] of the whole (numbered rows hold [i, -i]).
            XCTAssertEqual(part.features.scalars, idx.flatMap { [Float($0), -Float($0)] })
            XCTAssertEqual(part.labels.intScalars, idx.map { $0 % 7 })
        }
        // Subsets of subsets point back to the original data set.
        let nested = parts[0].subset(indices: [2, 0])
        XCTAssertEqual(nested.sourceIndices, [indices[0][2], indices[0][0]])
        XCTAssertEqual(nested.features.scalars, [indices[0][2], indices[0][0]].flatMap { [Float($0), -Float($0)] })
    }

    func testSubset() {
        let data = numbered(10)
        let s = data.subset(indices: [9, 0, 9])
        XCTAssertEqual(s.count, 3)
        XCTAssertEqual(s.features.scalars, [9, -9, 0, 0, 9, -9])
        XCTAssertEqual(s.labels.intScalars, [2, 0, 2])
        XCTAssertEqual(data.classCounts(), [2, 2, 2, 1, 1, 1, 1])
    }
}
