import Foundation
import Lathe
import XCTest

/// config.json files the config fuzzer (Tools/fuzz/config_json_fuzz.swift) and its review turned
/// up: each used to trap, ask for an absurd allocation, or give a config whose model could not
/// work (NaN scales, BOS outside the vocabulary); now a `ModelFileError` that says what is wrong.
final class ConfigValidationTests: XCTestCase {
    static let base: [(String, String)] = [
        ("model_type", "\"llama\""), ("vocab_size", "96"), ("hidden_size", "64"), ("intermediate_size", "96"),
        ("num_hidden_layers", "2"), ("num_attention_heads", "4"), ("num_key_value_heads", "2"), ("head_dim", "16"),
        ("max_position_embeddings", "64"), ("rms_norm_eps", "1e-05"), ("rope_theta", "10000.0"), ("bos_token_id", "1"),
        ("eos_token_id", "2"),
    ]

    /// The base config with keys replaced or added (a nil value removes the key).
    func json(_ changes: [String: String?]) throws -> JSONValue {
        var members = Self.base.filter { changes[$0.0] == nil }.map { "\"\($0.0)\": \($0.1)" }
        for (k, v) in changes.sorted(by: { $0.key < $1.key }) { if let v { members.append("\"\(k)\": \(v)") } }
        return try JSONParser.parse("{" + members.joined(separator: ", ") + "}")
    }

    func decoderError(_ changes: [String: String?]) throws -> String {
        do {
            let c = try DecoderConfig.huggingFace(try json(changes), file: "config.json")
            return "no error (\(c.layers) layers)"
        } catch {
            return "\(error)"
        }
    }

    func testBaseConfigIsFine() throws {
        XCTAssertEqual(try decoderError([:]), "no error (2 layers)")
        let gemma: [String: String?] = ["model_type": "\"gemma3_text\"", "sliding_window": "4", "query_pre_attn_scalar": "16"]
        XCTAssertEqual(try decoderError(gemma), "no error (2 layers)")
    }

    /// Sizes each within 2^24 can still multiply to petabytes of weights (and overflow the sizes
    /// of buffers made from them): the parameter count is capped at 2^36.
    func testParameterCountIsCapped() throws {
        XCTAssertEqual(try decoderError(["vocab_size": "16777216", "hidden_size": "16777216", "num_attention_heads": "1",
                                         "num_key_value_heads": "1", "head_dim": "16"]),
                       "config.json: the sizes describe 5.63e+14 parameters, more than the limit of 6.87e+10 (2^36)")
        XCTAssertEqual(try decoderError(["num_hidden_layers": "16777216", "hidden_size": "4096", "intermediate_size": "14336",
                                         "num_attention_heads": "32", "num_key_value_heads": "8", "head_dim": "128"]),
                       "config.json: the sizes describe 3.66e+15 parameters, more than the limit of 6.87e+10 (2^36)")
        // Mistral 7B's shape is well inside.
        let mistral = try DecoderConfig.huggingFace(try json([
            "model_type": "\"mistral\"", "vocab_size": "32000", "hidden_size": "4096", "intermediate_size": "14336",
            "num_hidden_layers": "32", "num_attention_heads": "32", "num_key_value_heads": "8", "head_dim": "128",
            "max_position_embeddings": "32768", "sliding_window": "4096"]), file: "config.json")
        XCTAssertEqual(mistral.parameterCount, 7_241_732_096)
        XCTAssertEqual(mistral.slidingWindow, 4096)
        // The limit itself: as many layers as fit in 2^36 parameters pass, one more does not.
        var c = mistral
        c.layers = 0
        let fixed = c.parameterCount
        c.layers = 1
        let perLayer = c.parameterCount - fixed
        c.layers = Int((Double(DecoderConfig.maxParameters) - fixed) / perLayer)
        XCTAssertEqual(c.layers, 313)
        XCTAssertNoThrow(try c.validate(file: "x"))
        c.layers += 1
        XCTAssertThrowsError(try c.validate(file: "x"))
    }

    /// Gemma's local-layer table was built before the sizes were checked: a negative layer count
    /// trapped (0..<-1), 2^40 layers asked for a terabyte, a pattern of 0 divided by zero.
    func testGemmaLayerTableAfterTheSizes() throws {
        let gemma: [String: String?] = ["model_type": "\"gemma3_text\"", "sliding_window": "4"]
        XCTAssertEqual(try decoderError(gemma.merging(["num_hidden_layers": "-1"]) { $1 }),
                       "config.json: num_hidden_layers is -1; expected a positive size up to 2^24")
        XCTAssertEqual(try decoderError(gemma.merging(["num_hidden_layers": "1099511627776"]) { $1 }),
                       "config.json: num_hidden_layers is 1099511627776; expected a positive size up to 2^24")
        XCTAssertEqual(try decoderError(gemma.merging(["sliding_window_pattern": "0"]) { $1 }),
                       "config.json: sliding_window_pattern must be positive, got 0")
        XCTAssertEqual(try decoderError(gemma.merging(["sliding_window_pattern": "-3"]) { $1 }),
                       "config.json: sliding_window_pattern must be positive, got -3")
        let c = try DecoderConfig.huggingFace(try json(gemma.merging(["num_hidden_layers": "7", "sliding_window_pattern": "3"]) { $1 }),
                                              file: "config.json")
        XCTAssertEqual(c.localLayers, [true, true, false, true, true, false, true])
    }

    /// The context, the token ids and the numbers a model computes with.
    func testContextTokenIDsAndScales() throws {
        for (changes, message) in [
            (["max_position_embeddings": "0"], "max_position_embeddings is 0; expected a positive size up to 2^24"),
            (["max_position_embeddings": "-64"], "max_position_embeddings is -64; expected a positive size up to 2^24"),
            (["bos_token_id": "96"], "bos_token_id 96 is outside the vocabulary (96 tokens)"),
            (["eos_token_id": "[2, -1]"], "eos_token_id -1 is outside the vocabulary (96 tokens)"),
            (["rope_scaling": #"{"type": "linear", "factor": 0}"#], "rope scaling factor must be at least 1, got 0.0"),
            (["rope_scaling": #"{"rope_type": "llama3", "factor": 8, "low_freq_factor": 4, "high_freq_factor": 4, "original_max_position_embeddings": 16}"#],
             "llama3 rope scaling needs factor >= 1, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0, got 8.0, 4.0, 4.0, 16.0"),
            // The fuzzer's: a factor of 32.1e-60 divided frequencies into float infinity.
            (["rope_scaling": #"{"rope_type": "llama3", "factor": 32.1e-60, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}"#],
             "llama3 rope scaling needs factor >= 1, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0, got 3.21e-59, 1.0, 4.0, 8192.0"),
            (["rope_theta": "1e-300"], "rope_theta must be at least 1, got 1e-300"),
            (["model_type": "\"gemma3_text\"", "query_pre_attn_scalar": "0"], "query_pre_attn_scalar must be positive, got 0.0"),
            (["model_type": "\"gemma3_text\"", "query_pre_attn_scalar": "-4"], "query_pre_attn_scalar must be positive, got -4.0"),
            (["model_type": "\"gemma3_text\"", "query_pre_attn_scalar": "1e-320"], "the query scale must be positive, got inf (query_pre_attn_scalar)"),
            (["model_type": "\"gemma3_text\"", "final_logit_softcapping": "0"], "final_logit_softcapping must be positive, got 0.0"),
            (["model_type": "\"gemma3_text\"", "rope_local_base_freq": "-1"], "the local layers' rope_theta must be at least 1, got -1.0"),
        ] as [([String: String?], String)] {
            XCTAssertEqual(try decoderError(changes), "config.json: " + message)
        }
    }

    func testBertConfig() throws {
        func bertError(_ changes: [String: String]) throws -> String {
            var fields = ["model_type": "\"bert\"", "vocab_size": "60", "hidden_size": "32", "intermediate_size": "48",
                          "num_hidden_layers": "2", "num_attention_heads": "4", "max_position_embeddings": "16", "type_vocab_size": "2"]
            fields.merge(changes) { $1 }
            let text = "{" + fields.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value)" }.joined(separator: ", ") + "}"
            do {
                let c = try BertConfig.huggingFace(try JSONParser.parse(text), file: "config.json")
                return "no error (\(Int(c.parameterCount)) parameters)"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(try bertError([:]), "no error (17568 parameters)")
        XCTAssertEqual(try bertError(["layer_norm_eps": "0"]), "config.json: layer_norm_eps must be positive, got 0.0")
        XCTAssertEqual(try bertError(["layer_norm_eps": "1e999"]), "config.json: layer_norm_eps must be positive, got inf")
        XCTAssertEqual(try bertError(["vocab_size": "16777216", "hidden_size": "16777216", "num_attention_heads": "1"]),
                       "config.json: the sizes describe 2.53e+15 parameters, more than the limit of 6.87e+10 (2^36)")
    }
}
