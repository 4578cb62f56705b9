import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// LoRA and DoRA adapters against PEFT (Tools/reference/make_lora_fixtures.py): PEFT's adapter
/// folders load and give PEFT's logits, Lathe writes them back unchanged, and five AdamW steps
/// give PEFT's losses and adapter weights.
final class PEFTAdapterTests: XCTestCase {
    let lora = fixturesDirectory.appendingPathComponent("lora")

    func base(_ name: String) throws -> DecoderModel {
        try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/\(name)"))
    }

    func json(_ url: URL) throws -> JSONValue { try JSONParser.parse([UInt8](Data(contentsOf: url))) }

    func ints(_ v: JSONValue?) -> [[Int]] { v?.arrayValue?.map { $0.arrayValue?.compactMap(\.intValue) ?? [] } ?? [] }

    func maxAbs(_ a: [Float], _ b: [Float]) -> Float {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }

    /// Loads the fixture's adapter onto its base and checks both forwards against PEFT's logits.
    @discardableResult
    func checkInference(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> (DecoderModel, LoRAConfig, Float) {
        let folder = lora.appendingPathComponent(name)
        let e = try json(folder.appendingPathComponent("expected.json"))
        let model = try base(e["base"]?.stringValue ?? "")
        let config = try PEFTAdapter.load(folder: folder, into: model)
        let ids = ints(e["ids"])
        let expected = e["logits"]?.arrayValue?.compactMap { $0.doubleValue.map(Float.init) } ?? []
        let training = try model.trainingLogits(Tensor(ids.flatMap { $0 }, shape: [ids.count, ids[0].count])).scalars
        let worst = maxAbs(training, expected)
        XCTAssertLessThan(worst, 1e-4, "\(name): training forward vs PEFT", file: file, line: line)
        let inference = ids.flatMap { model.logits($0).scalars }
        XCTAssertLessThan(maxAbs(inference, expected), 1e-4, "\(name): inference vs PEFT", file: file, line: line)
        print("\(name): max |Lathe - PEFT| logits \(worst) (training forward), \(maxAbs(inference, expected)) (inference)")
        return (model, config, worst)
    }

    func testLoRAFromPEFTGivesPEFTLogits() throws {
        let (model, config, _) = try checkInference("llama-lora")
        XCTAssertEqual(config.targets, .names(["down_proj", "o_proj", "q_proj", "v_proj"]))
        let layers = Dictionary(uniqueKeysWithValues: model.loraLayers)
        XCTAssertEqual(layers.count, 8)
        XCTAssertEqual(layers["model.layers.1.mlp.down_proj"]?.rank, 2, "rank_pattern")
        XCTAssertEqual(layers["model.layers.1.mlp.down_proj"]?.scaling, 4, "alpha 8 / r 2")
        XCTAssertEqual(layers["model.layers.0.self_attn.o_proj"]?.scaling, 4, "alpha_pattern 16 / r 4")
        XCTAssertEqual(layers["model.layers.0.self_attn.q_proj"]?.scaling, 2)
        XCTAssertNil(layers["model.layers.0.self_attn.k_proj"])
        XCTAssertEqual(model.parameterCount(trainableOnly: true), PEFTAdapter.tensors(of: model).values.reduce(0) { $0 + $1.count },
                       "only the adapters train")
    }

    func testDoRAWithBiasesAndRSLoRAFromPEFTGivesPEFTLogits() throws {
        let (model, config, _) = try checkInference("qwen2-dora")
        XCTAssertTrue(config.useDoRA && config.useRSLoRA)
        XCTAssertEqual(config.layers, [1])
        XCTAssertEqual(model.loraLayers.map(\.0).filter { $0.hasPrefix("model.layers.1.") }.count, 7)
        XCTAssertEqual(model.loraLayers.count, 7, "layers_to_transform [1]")
        XCTAssertEqual(model.loraLayers[0].1.scaling, 2, "rsLoRA: alpha 4 / sqrt(r 4)")
        XCTAssertNotNil(model.loraLayers[0].1.loraMagnitudeVector)
    }

    /// Lathe writes the adapter it loaded as PEFT wrote it: the same tensors under the same names,
    /// the same safetensors bytes, and a config that reads back to the same settings.
    func testWrittenAdapterEqualsPEFTs() throws {
        for name in ["llama-lora", "qwen2-dora"] {
            let (model, config, _) = try checkInference(name)
            let out = try temporaryDirectory().appendingPathComponent(name)
            try PEFTAdapter.save(model, config: config, to: out)
            let original = lora.appendingPathComponent(name)
            let a = try SafeTensors.read(contentsOf: original.appendingPathComponent(PEFTAdapter.weightsFile))
            let b = try SafeTensors.read(contentsOf: out.appendingPathComponent(PEFTAdapter.weightsFile))
            assertIdentical(a.tensors, b.tensors)
            XCTAssertEqual(try Data(contentsOf: original.appendingPathComponent(PEFTAdapter.weightsFile)),
                           try Data(contentsOf: out.appendingPathComponent(PEFTAdapter.weightsFile)), "\(name): byte for byte")
            XCTAssertEqual(try PEFTAdapter.readConfig(folder: out), config)
            // And the written folder runs like the original.
            let again = try base(name == "llama-lora" ? "llama-tiny" : "qwen2-tiny")
            try PEFTAdapter.load(folder: out, into: again)
            XCTAssertEqual(again.logits([3, 1, 4, 1, 5]).scalars, model.logits([3, 1, 4, 1, 5]).scalars)
        }
    }

    /// Five AdamW steps from PEFT's initial adapter give PEFT's losses and final weights.
    func checkTraining(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let folder = lora.appendingPathComponent(name)
        let e = try json(folder.appendingPathComponent("expected.json"))
        let model = try base("llama-tiny")
        let config = try PEFTAdapter.load(folder: folder.appendingPathComponent("initial"), into: model)
        let ids = ints(e["ids"]), labels = ints(e["labels"])
        let x = Tensor(ids.flatMap { $0 }, shape: [ids.count, ids[0].count]), y = Tensor(labels.flatMap { $0 }, shape: x.shape)
        let trainable = model.namedParameters.filter { $0.1.requiresGrad }
        XCTAssertEqual(Set(trainable.map { PEFTAdapter.prefix + $0.0 }), Set(PEFTAdapter.tensors(of: model).keys), file: file, line: line)
        let optimizer = AdamW(trainable, learningRate: Float(e["lr"]?.doubleValue ?? 0), weightDecay: Float(e["weight_decay"]?.doubleValue ?? 0))
        model.train()
        var losses: [Float] = []
        for _ in 0..<5 {
            optimizer.zeroGrad()
            let loss = try model.loss(x, labels: y)
            losses.append(loss.item)
            loss.backward()
            optimizer.step()
        }
        let final = try noGrad { try model.loss(x, labels: y) }.item
        let expectedLosses = (e["losses"]?.arrayValue?.compactMap { $0.doubleValue.map(Float.init) } ?? []) + [Float(e["final_loss"]?.doubleValue ?? 0)]
        let lossGap = maxAbs(losses + [final], expectedLosses)
        XCTAssertLessThan(lossGap, 1e-4, "\(name) losses \(losses + [final]) vs PEFT \(expectedLosses)", file: file, line: line)
        XCTAssertLessThan(expectedLosses.last!, expectedLosses.first! - 1, "the fixture's training moves", file: file, line: line)
        let trained = try SafeTensors.read(contentsOf: folder.appendingPathComponent("trained/\(PEFTAdapter.weightsFile)")).tensors
        let ours = PEFTAdapter.tensors(of: model)
        XCTAssertEqual(Set(ours.keys), Set(trained.keys), file: file, line: line)
        var weightGap: Float = 0, moved: Float = 0
        let initial = try SafeTensors.read(contentsOf: folder.appendingPathComponent("initial/\(PEFTAdapter.weightsFile)")).tensors
        for (k, t) in trained {
            weightGap = max(weightGap, maxAbs(ours[k]?.scalars ?? [], t.scalars))
            moved = max(moved, maxAbs(initial[k]?.scalars ?? [], t.scalars))
        }
        XCTAssertLessThan(weightGap, 1e-4, "\(name) adapter weights after 5 steps", file: file, line: line)
        XCTAssertGreaterThan(moved, 1e-2, "the weights move in training", file: file, line: line)
        print("\(name): max |Lathe - PEFT| losses \(lossGap), adapter weights \(weightGap) after 5 AdamW steps")
        // Keep the trained adapter and its logits for Tools/reference/check_peft_adapter.py.
        if let keep = ProcessInfo.processInfo.environment["LATHE_KEEP_ADAPTERS"] {
            let out = URL(fileURLWithPath: keep).appendingPathComponent(name)
            try PEFTAdapter.save(model, config: config, to: out)
            model.eval()
            let logits = try noGrad { try model.trainingLogits(x) }.scalars
            let text = JSONWriter.serialize(.object([("base", .string("llama-tiny")), ("ids", .array(ids.map { .array($0.map { .int($0) }) })),
                                                     ("logits", .array(logits.map { .float($0) }))]), indent: nil)
            try text.write(to: out.appendingPathComponent("lathe_logits.json"), atomically: true, encoding: .utf8)
        }
    }

    func testFiveAdamWStepsOfLoRAMatchPEFT() throws { try checkTraining("train-lora") }

    func testFiveAdamWStepsOfDoRAMatchPEFT() throws { try checkTraining("train-dora") }

    func testBadAdaptersAreClearErrorsAndLeaveTheModelAlone() throws {
        let source = lora.appendingPathComponent("llama-lora")
        func attempt(_ edit: (inout String) -> Void, weights: URL? = nil, onto name: String = "llama-tiny") throws -> String {
            let dir = try temporaryDirectory()
            var config = try String(contentsOf: source.appendingPathComponent(PEFTAdapter.configFile), encoding: .utf8)
            edit(&config)
            try config.write(to: dir.appendingPathComponent(PEFTAdapter.configFile), atomically: true, encoding: .utf8)
            try FileManager.default.copyItem(at: weights ?? source.appendingPathComponent(PEFTAdapter.weightsFile),
                                            to: dir.appendingPathComponent(PEFTAdapter.weightsFile))
            let model = try base(name)
            let before = model.logits([1, 2, 3]).scalars
            do { try PEFTAdapter.load(folder: dir, into: model) } catch {
                XCTAssertTrue(model.loraLayers.isEmpty, "a failed load leaves no adapter behind")
                XCTAssertEqual(model.parameterCount(trainableOnly: true), model.parameterCount(), "nor frozen parameters")
                XCTAssertEqual(model.logits([1, 2, 3]).scalars, before)
                return "\(error)"
            }
            return "no error"
        }
        func replace(_ a: String, _ b: String) -> (inout String) -> Void { { $0 = $0.replacingOccurrences(of: a, with: b) } }
        let cases: [((inout String) -> Void, String)] = [
            (replace("\"peft_type\": \"LORA\"", "\"peft_type\": \"IA3\""), "peft_type is 'IA3'"),
            (replace("\"use_qalora\": false", "\"use_qalora\": true"), "use_qalora is set"),
            (replace("\"fan_in_fan_out\": false", "\"fan_in_fan_out\": true"), "fan_in_fan_out is true"),
            (replace("\"bias\": \"none\"", "\"bias\": \"all\""), "bias is \"all\""),
            (replace("\"r\": 4", "\"r\": 3"), "has shape [4, 64], the config and the base layer imply [3, 64]"),
            (replace("\"r\": 4", "\"r\": -1"), "r must be in"),
            (replace("\"q_proj\",", "\"qq_proj\","), "belong to no layer the config adapts"),
            (replace("\"down_proj\",", "\"down_proj\", \"k_proj\","), "missing for the layers the config adapts"),
            (replace("\"lora_alpha\": 8", "\"lora_alpha\": \"8\""), "lora_alpha must be a finite number"),
            (replace("\"layers_to_transform\": null", "\"layers_to_transform\": [7]"), "matches none of the model's"),
            (replace("\"rank_pattern\": {", "\"rank_pattern\": {\"(\": 2, "), "rank_pattern: '(' is not a regular expression"),
            (replace("{", "["), "not valid JSON"),
        ]
        for (edit, expected) in cases {
            let message = try attempt(edit)
            XCTAssertTrue(message.contains(expected), "expected '\(expected)' in: \(message)")
        }
        // An adapter for another model's shapes.
        let shapes = try attempt({ _ in }, onto: "llama3-tiny")
        XCTAssertTrue(shapes.contains("the config and the base layer imply"), shapes)
        let noFolder = try temporaryDirectory()
        XCTAssertThrowsError(try PEFTAdapter.load(folder: noFolder, into: try base("llama-tiny"))) {
            XCTAssertTrue("\($0)".contains("is \(noFolder.path) a PEFT adapter folder?"), "\($0)")
        }
        // Twice onto one model.
        let model = try base("llama-tiny")
        try PEFTAdapter.load(folder: source, into: model)
        XCTAssertThrowsError(try PEFTAdapter.load(folder: source, into: model)) { XCTAssertTrue("\($0)".contains("already has a LoRA adapter"), "\($0)") }
    }
}
