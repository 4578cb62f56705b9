import Lathe
import XCTest
import _LatheTestSupport

/// Unstructured magnitude pruning: masks, scopes, the cubic schedule, reports, 2:4 and the
/// sensitivity scan.
final class PruningTests: XCTestCase {
    /// Positions where `mask` is 0 hold exactly zero in `value`.
    func assertPrunedAreZero(_ value: Tensor, _ mask: Tensor, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        let v = value.scalars, m = mask.scalars
        let bad = v.indices.filter { m[$0] == 0 && v[$0] != 0 }
        XCTAssertTrue(bad.isEmpty, "\(name): \(bad.count) pruned entries are nonzero, e.g. \(bad.first.map { v[$0] } ?? 0)", file: file, line: line)
    }

    func testMasksSurviveAdamWFineTuning() {
        let model = DigitsCNN(seed: 1)
        let masks = pruneMagnitude(model, sparsity: 0.7)
        XCTAssertEqual(masks.names, ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"])
        let before = model.stateDict()
        let optimizer = AdamW(model.namedParameters, learningRate: 1e-2, weightDecay: 0.1)
        var rng = RandomGenerator(seed: 5)
        let x = Tensor.normal([16, 1, 8, 8], generator: &rng)
        let y = Tensor.randint([16], low: 0, high: 10, generator: &rng)
        // A few steps where the gradients of pruned weights are not masked (Adam moments build
        // up), then masked steps: the weights must still be exactly zero.
        for i in 0..<6 {
            optimizer.zeroGrad()
            Loss.crossEntropy(model(x), y).backward()
            if i < 2 { optimizer.step(); masks.apply(to: model) } else { masks.step(optimizer, model: model) }
        }
        let params = Dictionary(uniqueKeysWithValues: model.namedParameters)
        for name in masks.names {
            assertPrunedAreZero(params[name]!.value, masks[name]!, name)
            XCTAssertNotEqual(params[name]!.value.scalars, before[name]!.scalars, "\(name) did not train")
        }
        let report = sparsityReport(model)
        for row in report.rows { XCTAssertEqual(row.sparsity, 0.7, accuracy: 0.5 / Double(row.total), row.name) }
        XCTAssertEqual(report.overall.total, model.fc1.weight.value.count + model.fc2.weight.value.count
                       + model.conv1.weight.value.count + model.conv2.weight.value.count)
    }

    func testMaskStateDictRoundTrip() {
        let model = Models.digitsMLP(hidden: 16)
        let masks = magnitudeMasks(model, sparsity: 0.5)
        let state = masks.stateDict()
        XCTAssertEqual(Set(state.keys), ["0.weight_mask", "2.weight_mask", "4.weight_mask"])
        let back = PruningMasks(stateDict: state)
        XCTAssertEqual(back.names, masks.names)
        for n in masks.names { XCTAssertEqual(back[n]!.scalars, masks[n]!.scalars) }
        XCTAssertEqual(back.sparsity, 0.5, accuracy: 1e-3)
    }

    /// Two layers, one with small weights: global pruning takes all of it, layer-wise half of each.
    func testGlobalVersusLayerwiseThresholds() {
        var g = RandomGenerator(seed: 0)
        let a = Linear(4, 2, generator: &g), b = Linear(4, 2, generator: &g)
        a.weight.value = Tensor([0.01, -0.02, 0.03, -0.04, 0.05, 0.06, -0.07, 0.08], shape: [2, 4])
        b.weight.value = Tensor([1, -2, 3, -4, 5, 6, -7, 8] as [Float], shape: [2, 4])
        let model = Sequential(a, ReLU(), b)
        let layerwise = magnitudeMasks(model, sparsity: 0.5, scope: .layerwise)
        XCTAssertEqual(layerwise["0.weight"]!.scalars, [0, 0, 0, 0, 1, 1, 1, 1])
        XCTAssertEqual(layerwise["2.weight"]!.scalars, [0, 0, 0, 0, 1, 1, 1, 1])
        let global = magnitudeMasks(model, sparsity: 0.5, scope: .global)
        XCTAssertEqual(global["0.weight"]!.scalars, [0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(global["2.weight"]!.scalars, [1, 1, 1, 1, 1, 1, 1, 1])
        // 0.625 of 16 = 10 entries: all of layer 0 and the two smallest of layer 2.
        let more = magnitudeMasks(model, sparsity: 0.625, scope: .global)
        XCTAssertEqual(more["2.weight"]!.scalars, [0, 0, 1, 1, 1, 1, 1, 1])
        // Global threshold: every kept magnitude is >= every pruned one.
        let model2 = DigitsCNN(seed: 3)
        let masks = magnitudeMasks(model2, sparsity: 0.8, scope: .global)
        var kept: Float = .infinity, pruned: Float = 0, zeros = 0, total = 0
        let params = Dictionary(uniqueKeysWithValues: model2.namedParameters)
        for n in masks.names {
            for (w, m) in zip(params[n]!.value.scalars, masks[n]!.scalars) {
                if m == 0 { pruned = max(pruned, abs(w)); zeros += 1 } else { kept = min(kept, abs(w)) }
                total += 1
            }
        }
        XCTAssertLessThanOrEqual(pruned, kept)
        XCTAssertEqual(zeros, Int((0.8 * Double(total)).rounded()))
        XCTAssertNotEqual(masks["conv1.weight"]!.scalars.filter { $0 == 0 }.count,
                          Int((0.8 * 288).rounded()), "global and layer-wise should differ on conv1")
    }

    func testCubicSchedule() {
        let s = CubicSparsitySchedule(initial: 0, final: 0.8, steps: 10)
        XCTAssertEqual(s.sparsity(at: 0), 0)
        XCTAssertEqual(s.sparsity(at: 5), 0.8 - 0.8 * 0.125, accuracy: 1e-12)
        XCTAssertEqual(s.sparsity(at: 10), 0.8, accuracy: 1e-12)
        XCTAssertEqual(s.sparsity(at: 50), 0.8, accuracy: 1e-12)
        let t = CubicSparsitySchedule(initial: 0.2, final: 0.9, begin: 4, steps: 20, frequency: 5)
        XCTAssertEqual(t.sparsity(at: 0), 0.2, accuracy: 1e-12)
        XCTAssertEqual(t.sparsity(at: 4), 0.2, accuracy: 1e-12)
        XCTAssertEqual(t.sparsity(at: 8), 0.2, accuracy: 1e-12)    // t = 4 rounds down to 0
        XCTAssertEqual(t.sparsity(at: 9), 0.9 - 0.7 * 0.421875, accuracy: 1e-12)   // t = 5: (1 - 1/4)^3
        XCTAssertEqual(t.sparsity(at: 14), 0.9 - 0.7 * 0.125, accuracy: 1e-12)     // t = 10
        XCTAssertEqual(t.sparsity(at: 24), 0.9, accuracy: 1e-12)
        // The final value is reached even when `steps` is not a multiple of `frequency`.
        let u = CubicSparsitySchedule(final: 0.5, steps: 8, frequency: 3)
        XCTAssertEqual(u.sparsity(at: 7), 0.5 - 0.5 * 0.015625, accuracy: 1e-12)   // t = 6
        XCTAssertEqual(u.sparsity(at: 8), 0.5)
        // Increasing, fastest at first.
        let values = (0...10).map { s.sparsity(at: $0) }
        for i in 1..<values.count { XCTAssertGreaterThanOrEqual(values[i], values[i - 1]) }
        XCTAssertGreaterThan(values[1] - values[0], values[10] - values[9])
    }

    func testGradualPrunerGrowsMasksDuringTraining() {
        let model = Models.digitsMLP(hidden: 32, seed: 2)
        let pruner = GradualPruner(model, schedule: CubicSparsitySchedule(final: 0.9, steps: 8, frequency: 2), scope: .global)
        XCTAssertEqual(pruner.currentSparsity, 0)
        let optimizer = AdamW(model.namedParameters, learningRate: 1e-2)
        var rng = RandomGenerator(seed: 1)
        let x = Tensor.normal([32, 64], generator: &rng), y = Tensor.randint([32], low: 0, high: 10, generator: &rng)
        var previous = pruner.masks
        for _ in 0..<12 {
            optimizer.zeroGrad()
            Loss.crossEntropy(model(x), y).backward()
            pruner.step(optimizer)
            let params = Dictionary(uniqueKeysWithValues: model.namedParameters)
            for n in pruner.masks.names {
                // Masks only grow: once pruned, always pruned.
                for (old, new) in zip(previous[n]!.scalars, pruner.masks[n]!.scalars) where old == 0 { XCTAssertEqual(new, 0) }
                assertPrunedAreZero(params[n]!.value, pruner.masks[n]!, n)
            }
            previous = pruner.masks
        }
        XCTAssertEqual(pruner.currentSparsity, 0.9)
        XCTAssertEqual(sparsityReport(model).overall.sparsity, 0.9, accuracy: 1e-3)
    }

    func testSparsityReportCountsExactZeros() {
        var g = RandomGenerator(seed: 0)
        let l = Linear(3, 2, generator: &g)
        l.weight.value = Tensor([0, 1, 0, 2, 0, 3] as [Float], shape: [2, 3])
        let report = sparsityReport(Sequential(l))
        XCTAssertEqual(report.rows, [SparsityRow(name: "0.weight", zeros: 3, total: 6)])
        XCTAssertEqual(report.overall.sparsity, 0.5)
        XCTAssertTrue(report.description.contains("50.00%"))
    }

    // MARK: - 2:4

    func testNMSparsityMaskKeepsTheLargestTwoOfFour() {
        let w = Tensor([0.1, -0.5, 0.3, 0.2, /**/ 1, 1, -1, 0, /**/ 0, 0, 0, 0, /**/ -4, 3, -2, 1], shape: [2, 8])
        XCTAssertEqual(nmSparsityMask(w).scalars, [0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0])
        XCTAssertTrue(is2to4Sparse(w * nmSparsityMask(w)))
        XCTAssertFalse(is2to4Sparse(w))
        XCTAssertEqual(nmSparsityMask(w, n: 1, m: 8).scalars.filter { $0 == 1 }.count, 2)
    }

    func testSemiStructuredPruningOfTheCNN() {
        let model = DigitsCNN(seed: 4)
        let masks = semiStructuredMasks(model)
        XCTAssertEqual(masks.names, ["conv2.weight", "fc1.weight", "fc2.weight"], "conv1 has 9 inputs per filter: skipped")
        masks.apply(to: model)
        for n in masks.names {
            let w = Dictionary(uniqueKeysWithValues: model.namedParameters)[n]!.value
            XCTAssertTrue(is2to4Sparse(w), n)
            XCTAssertEqual(sparsityReport(model, parameters: [n]).overall.sparsity, 0.5, n)
        }
        XCTAssertFalse(is2to4Sparse(model.conv1.weight.value))
    }

    // MARK: - Sensitivity

    func testSensitivityScanRestoresWeightsAndPicksRatios() {
        let model = Models.digitsMLP(hidden: 16, seed: 3)
        var rng = RandomGenerator(seed: 2)
        let x = Tensor.normal([20, 64], generator: &rng)
        let reference = model(x).detached()
        let before = model.stateDict()
        // Metric: negative distance to the unpruned outputs (0 at baseline).
        let scan = sensitivityScan(model, sparsities: [0.25, 0.5, 0.75]) {
            -Double(noGrad { (model(x) - reference).square().mean().item })
        }
        XCTAssertEqual(scan.baseline, 0)
        XCTAssertEqual(scan.rows.count, 9)
        for (k, v) in model.stateDict() { XCTAssertEqual(v.scalars, before[k]!.scalars, "\(k) not restored") }
        for name in prunableParameters(model) {
            let drops = scan.rows(for: name).map(\.drop)
            XCTAssertEqual(drops, drops.sorted(), "\(name): more pruning should hurt more")
        }
        let table = SensitivityScan(baseline: 0.9, rows: [
            SensitivityRow(parameter: "a", sparsity: 0.5, metric: 0.89, drop: 0.01),
            SensitivityRow(parameter: "a", sparsity: 0.7, metric: 0.85, drop: 0.05),
            SensitivityRow(parameter: "a", sparsity: 0.9, metric: 0.89, drop: 0.01),
            SensitivityRow(parameter: "b", sparsity: 0.5, metric: 0.8, drop: 0.1),
        ])
        XCTAssertEqual(table.ratios(maxDrop: 0.02), ["a": 0.5, "b": 0])
        XCTAssertEqual(table.ratios(maxDrop: 0.1), ["a": 0.9, "b": 0.5])
    }
}
