import Foundation
import Lathe
import XCTest
import _LatheTestSupport

final class QuantMathTests: XCTestCase {
    func testPerChannelRoundTripWithinHalfScale() {
        var rng = TestRNG(10)
        let (n, k) = (9, 37)
        var w = rng.floats(n * k, -3, 3)
        for c in 0..<k { w[4 * k + c] = 0 }  // an all-zero row
        let (q, s) = QuantMath.quantizePerChannel(w, rows: n, cols: k)
        for r in 0..<n {
            for c in 0..<k {
                let err = abs(w[r * k + c] - s[r] * Float(q[r * k + c]))
                XCTAssertLessThanOrEqual(err, s[r] / 2 * 1.0001 + 1e-7, "row \(r) col \(c)")
            }
        }
    }

    func testAffineRoundTripWithinHalfScaleExceptClipping() {
        var rng = TestRNG(11)
        for symmetric in [false, true] {
            let p = AffineParams(min: -1.3, max: 4.1, symmetric: symmetric)
            let lo = p.scale * Float(0 - p.zeroPoint), hi = p.scale * Float(255 - p.zeroPoint)
            for x in rng.floats(5000, -2, 5) {
                let err = abs(x - p.dequantize(p.quantize(x)))
                if x < lo || x > hi {
                    XCTAssertEqual(p.dequantize(p.quantize(x)), x < lo ? lo : hi, accuracy: 1e-6)  // clipped to the grid's end
                } else {
                    XCTAssertLessThanOrEqual(err, p.scale / 2 * 1.0001, "x = \(x) symmetric = \(symmetric)")
                }
            }
            XCTAssertEqual(p.dequantize(p.quantize(0)), 0)  // zero is exact
        }
    }

    func testGroupwiseRoundTripWithinHalfScale() {
        var rng = TestRNG(12)
        for scheme in WeightOnlyKernelTests.schemes {
            let (n, k) = (5, 150)
            var w = rng.floats(n * k, -2, 0.5)
            for c in 0..<k { w[2 * k + c] = 0.25 }  // constant row
            let g = GroupwiseWeights(quantizing: w, rows: n, cols: k, scheme: scheme)
            let d = g.dequantized()
            for r in 0..<n {
                for c in 0..<k {
                    let gi = r * g.groups + c / scheme.groupSize
                    let s = QuantMath.float(fromFloat16Bits: g.scales[gi])
                    let minErr = scheme.symmetric ? 0 : abs(QuantMath.float(fromFloat16Bits: g.mins[gi])) * 0.001  // fp16 rounding of the min
                    XCTAssertLessThanOrEqual(abs(w[r * k + c] - d[r * k + c]), s / 2 * 1.001 + minErr + 1e-6, "\(scheme) row \(r) col \(c)")
                }
            }
        }
    }

    func testObservers() {
        var rng = TestRNG(13)
        var values = rng.floats(20000, -1, 1)
        values[123] = 50  // one outlier
        let x = Tensor(values)
        let mm = MinMaxObserver(), pc = PercentileObserver(percentile: 99.9), mse = MSEObserver()
        for o in [mm, pc, mse] as [RangeObserver] { o.observe(x.sliced(dim: 0, start: 0, end: 10000)); o.observe(x.sliced(dim: 0, start: 10000, end: 20000)) }
        XCTAssertEqual(mm.range.max, 50)
        XCTAssertLessThan(mm.range.min, -0.99)
        XCTAssertLessThan(pc.range.max, 1.01)
        XCTAssertGreaterThan(pc.range.max, 0.98)
        func mseOf(_ r: (min: Float, max: Float)) -> Double {
            let p = AffineParams(min: r.min, max: r.max)
            return values.reduce(0.0) { let d = Double($1 - p.dequantize(p.quantize($1))); return $0 + d * d }
        }
        XCTAssertLessThan(mse.range.max, 50)
        XCTAssertLessThanOrEqual(mseOf(mse.range), mseOf(mm.range))
    }
}

/// Relative error of `q` against `f`: max |q - f| / max |f|.
func relativeError(_ q: Tensor, _ f: Tensor) -> Float {
    let a = q.scalars, b = f.scalars
    let num = zip(a, b).map { abs($0 - $1) }.max() ?? 0, den = b.map(abs).max() ?? 1
    return num / den
}

func digitsBatches(_ count: Int, batch: Int, seed: UInt64, image: Bool) -> [Tensor] {
    var rng = TestRNG(seed)
    return (0..<count).map { _ in
        Tensor(rng.floats(batch * 64, 0, 16).map { ($0 / 16).rounded() * $0 / 16 }, shape: image ? [batch, 1, 8, 8] : [batch, 64])
    }
}

final class QuantizedModelTests: XCTestCase {
    func testDigitsMLPSchemesStayCloseToFloat() throws {
        let calib = digitsBatches(4, batch: 32, seed: 20, image: false), test = digitsBatches(1, batch: 64, seed: 21, image: false)[0]
        let reference = Models.digitsMLP(seed: 3)
        reference.eval()
        let expected = noGrad { reference(test) }
        let cases: [(QuantizationConfig, Float)] = [
            (QuantizationConfig(scheme: .staticInt8), 0.05),
            (QuantizationConfig(scheme: .staticInt8, observer: .mse), 0.05),
            (QuantizationConfig(scheme: .staticInt8, observer: .percentile(99.99)), 0.05),
            (QuantizationConfig(scheme: .dynamicInt8), 0.05),
            (QuantizationConfig(scheme: .weightOnly(GroupwiseScheme(bits: 8, groupSize: 32))), 0.01),
            (QuantizationConfig(scheme: .weightOnly(GroupwiseScheme(bits: 4, groupSize: 32, symmetric: false))), 0.15),
        ]
        for (config, bound) in cases {
            let model = Models.digitsMLP(seed: 3)
            model.eval()
            let names = try quantize(model: model, config: config, calibrationBatches: calib)
            XCTAssertEqual(names, ["0", "2", "4"])
            let err = relativeError(noGrad { model(test) }, expected)
            print("digits MLP \(config.scheme) \(config.observer): relative error \(err)")
            XCTAssertLessThan(err, bound, "\(config.scheme)")
            XCTAssertTrue(model.stateDict().isEmpty, "quantized layers hold no float parameters")
        }
    }

    func testDigitsCNNStaticInt8KeepsFirstAndLastFloat() throws {
        let calib = digitsBatches(4, batch: 32, seed: 22, image: true), test = digitsBatches(1, batch: 64, seed: 23, image: true)[0]
        let model = DigitsCNN(seed: 4)
        model.eval()
        let expected = noGrad { model(test) }
        let names = try quantize(model: model, config: QuantizationConfig(scheme: .staticInt8), calibrationBatches: calib,
                             filter: { name, _ in name != "conv1" && name != "fc2" })
        XCTAssertEqual(names, ["conv2", "fc1"])
        let types = Dictionary(model.namedModules.map { ($0.0, "\(type(of: $0.1))") }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(types["conv1"], "Conv2d")
        XCTAssertEqual(types["conv2"], "QuantizedConv2d")
        XCTAssertEqual(types["fc1"], "QuantizedLinear")
        XCTAssertEqual(types["fc2"], "Linear")
        let err = relativeError(noGrad { model(test) }, expected)
        print("DigitsCNN static int8 (conv2, fc1): relative error \(err)")
        XCTAssertLessThan(err, 0.05)

        let all = DigitsCNN(seed: 4)
        all.eval()
        try quantize(model: all, config: QuantizationConfig(scheme: .staticInt8), calibrationBatches: calib)
        let errAll = relativeError(noGrad { all(test) }, expected)
        print("DigitsCNN static int8 (all layers): relative error \(errAll)")
        XCTAssertLessThan(errAll, 0.08)
    }

    func testQuantizedConvMatchesFloatConvOnGridValues() {
        // Inputs and weights exactly on their grids: the int8 conv equals the float conv up to float rounding,
        // with the same bits at 1 and 2 threads (the second case splits the batch into several chunks).
        let threads = ThreadPool.threadCount
        defer { ThreadPool.threadCount = threads }
        for (b, c, o, h, w, stride) in [(2, 3, 5, 9, 7, 2), (5, 16, 24, 28, 28, 1)] {
            var g = RandomGenerator(seed: 9)
            let conv = Conv2d(c, o, kernelSize: 3, stride: stride, padding: 1, generator: &g)
            let s = conv.weight.value.shape
            let (codes, scales) = QuantMath.quantizePerChannel(conv.weight.value.scalars, rows: s[0], cols: s[1] * s[2] * s[3])
            let k = s[1] * s[2] * s[3]
            conv.weight.value = Tensor((0..<codes.count).map { scales[$0 / k] * Float(codes[$0]) }, shape: s)
            let p = AffineParams(scale: 0.05, zeroPoint: 100)
            var rng = TestRNG(30)
            let x = Tensor((0..<b * c * h * w).map { _ in p.dequantize(UInt8(rng.int(0...255))) }, shape: [b, c, h, w])
            let q = QuantizedConv2d(conv, inputParams: p)
            var outputs: [[UInt32]] = []
            for t in [1, 2] {
                ThreadPool.threadCount = t
                let y = q(x)
                assertClose(y, noGrad { conv(x) }, rtol: 1e-4, atol: 1e-4)
                outputs.append(y.scalars.map(\.bitPattern))
            }
            XCTAssertEqual(outputs[0], outputs[1], "[\(b), \(c), \(h), \(w)]: 1 and 2 threads differ")
            // The stored (c, ki, kj) codes are the ones given.
            XCTAssertEqual(q.weight.codes, codes)
        }
    }
}

final class QuantizedFileTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-quant-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A DigitsCNN with every scheme: static conv1, dynamic conv2, weight-only int4 fc1, fp32 fc2.
    func mixedModel() throws -> DigitsCNN {
        let m = DigitsCNN(seed: 5)
        m.eval()
        let calib = digitsBatches(2, batch: 16, seed: 40, image: true)
        try quantize(model: m, config: QuantizationConfig(scheme: .staticInt8), calibrationBatches: calib, filter: { n, _ in n == "conv1" })
        try quantize(model: m, config: QuantizationConfig(scheme: .dynamicInt8), filter: { n, _ in n == "conv2" })
        try quantize(model: m, config: QuantizationConfig(scheme: .weightOnly(GroupwiseScheme(bits: 4, groupSize: 64, symmetric: false))),
                 filter: { n, _ in n == "fc1" })
        return m
    }

    func testScalesThatAreNotFP16ValuesCannotBeSaved() throws {
        let m = DigitsCNN(seed: 6)
        let w = PackedInt8Weights(codes: [Int8](repeating: 1, count: 10 * 128), scales: [Float](repeating: 0.1, count: 10), rows: 10, cols: 128)
        try m.setModule(DynamicQuantizedLinear(weight: w, bias: nil), at: "fc2")
        XCTAssertThrowsError(try QuantizedModelFile.save(m, to: dir.appendingPathComponent("s.safetensors"))) { error in
            XCTAssertTrue("\(error)".contains("'fc2.weight_scale': scale 0.1 is not an fp16 value"), "\(error)")
        }
    }

    func testSaveLoadRoundTripIsBitIdentical() throws {
        let m = try mixedModel()
        let url = dir.appendingPathComponent("q.safetensors"), url2 = dir.appendingPathComponent("q2.safetensors")
        try QuantizedModelFile.save(m, to: url)
        let header = try SafeTensors.readHeader(contentsOf: url)
        XCTAssertNotNil(header.metadata["lathe.quantization"])
        let loaded = DigitsCNN(seed: 99)
        loaded.eval()
        try QuantizedModelFile.load(into: loaded, from: url)
        let x = digitsBatches(1, batch: 8, seed: 41, image: true)[0]
        XCTAssertEqual(noGrad { loaded(x) }.scalars.map(\.bitPattern), noGrad { m(x) }.scalars.map(\.bitPattern))
        try QuantizedModelFile.save(loaded, to: url2)
        XCTAssertEqual(try Data(contentsOf: url), try Data(contentsOf: url2))
        let file = try SafeTensors.read(contentsOf: url)
        XCTAssertEqual(file["conv1.weight"]?.dtype, .int8)
        XCTAssertEqual(file["conv1.weight"]?.shape, [32, 1, 3, 3])
        XCTAssertEqual(file["fc1.weight"]?.shape, [128, 256 / 2])  // int4: two codes a byte
        XCTAssertEqual(file["fc1.weight_scale"]?.dtype, .float16)
        XCTAssertEqual(file["fc2.weight"]?.dtype, .float32)
    }

    func testCorruptFilesGiveClearErrors() throws {
        let url = dir.appendingPathComponent("q.safetensors")
        try QuantizedModelFile.save(try mixedModel(), to: url)
        let good = try SafeTensors.read(contentsOf: url)

        func expectError(_ tensors: [String: Tensor], _ metadata: [String: String], contains text: String, line: UInt = #line) throws {
            let bad = dir.appendingPathComponent("bad.safetensors")
            try SafeTensors.write(tensors, metadata: metadata, to: bad)
            let m = DigitsCNN(seed: 1)
            XCTAssertThrowsError(try QuantizedModelFile.load(into: m, from: bad), line: line) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains(text), "'\(message)' does not mention '\(text)'", line: line)
            }
            XCTAssertFalse(m.namedModules.contains { $0.1 is any QuantizedLayer || $0.1 is FoldedNorm }, "a failed load changed the model", line: line)
        }
        var t = good.tensors
        t["conv1.weight_scale"] = nil
        try expectError(t, good.metadata, contains: "tensor 'conv1.weight_scale' is missing")
        t = good.tensors
        t["conv1.weight"] = t["conv1.weight"]!.to(.float32)
        try expectError(t, good.metadata, contains: "'conv1.weight' is float32, expected int8")
        t = good.tensors
        t["fc1.weight_scale"] = Tensor.zeros([128, 3], dtype: .float16)
        try expectError(t, good.metadata, contains: "'fc1.weight_scale' has shape [128, 3], expected [128, 4]")
        var meta = good.metadata
        XCTAssertTrue(meta["lathe.quantization"]!.contains("\"input_scale\":"))
        meta["lathe.quantization"] = meta["lathe.quantization"]!.replacingOccurrences(of: "\"input_scale\":", with: "\"input_scale\":-")
        try expectError(good.tensors, meta, contains: "not positive")
        meta["lathe.quantization"] = good.metadata["lathe.quantization"]!.replacingOccurrences(of: "\"input_zero_point\":", with: "\"input_zero_point\":1000")
        try expectError(good.tensors, meta, contains: "outside [0, 255]")
        t = good.tensors
        t["conv1.weight_scale"] = t["conv1.weight_scale"]!.to(.float32)
        try expectError(t, good.metadata, contains: "'conv1.weight_scale' is float32, expected float16")
        try expectError(good.tensors, [:], contains: "no 'lathe.quantization' metadata")
        try expectError(good.tensors, ["lathe.quantization": "{not json"], contains: "bad 'lathe.quantization' metadata")
        meta = good.metadata
        meta["lathe.quantization"] = meta["lathe.quantization"]!.replacingOccurrences(of: "\"fc1\"", with: "\"fc9\"")
        try expectError(good.tensors, meta, contains: "'fc9'")
        meta = good.metadata
        meta["lathe.quantization"] = meta["lathe.quantization"]!.replacingOccurrences(of: "\"version\":2", with: "\"version\":1")
        try expectError(good.tensors, meta, contains: "quantize the fp32 model again")
        meta = good.metadata
        meta["lathe.quantization"] = meta["lathe.quantization"]!.replacingOccurrences(of: "\"scheme\":\"int8_static\"", with: "\"scheme\":\"int8_dynamic\"")
        try expectError(good.tensors, meta, contains: "only int8_static layers have fixed activation ranges")
        meta = good.metadata
        meta["lathe.quantization"] = meta["lathe.quantization"]!.replacingOccurrences(of: "weight_only", with: "int3_magic")
        try expectError(good.tensors, meta, contains: "unknown type/scheme")
        t = good.tensors
        t["fc2.bias"] = nil
        try expectError(t, good.metadata, contains: "missing keys fc2.bias")
    }
}
