// libFuzzer target for PEFT's and mlx-lm's adapter_config.json: parses the input with LatheIO's JSON
// reader (Sources/LatheIO/JSON.swift) and reads it as a LoRA config (`LoRAConfig.peft`,
// Sources/LatheNN/LoRAConfig.swift) and as mlx-lm's (`MLXAdapterConfig(json:)`,
// Sources/LatheNN/LoRAConfig+MLX.swift; an accepted one must convert to a valid LoRA config whose
// scaling is its scale). Any trap or AddressSanitizer report is a bug; a JSONParseError
// or LoRAError is the expected outcome for bad input. An accepted config must be usable: it passes
// `validate` again, its rank is in 1...65536, it answers `adapts`, `rank(for:)` and `scaling(for:)`
// for a few module keys with ranks in range and finite scalings, and the adapter_config.json Lathe
// writes for it (`peftJSON`) reads back to the same config. Not part of the package build: JSON.swift
// is compiled first as a module named LatheIO, then LoRAConfig.swift and this file as the module
// LatheNN. Run from the repository root:
//
//   mkdir -p /tmp/fuzzmods && swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name LatheIO \
//     -emit-module -emit-module-path /tmp/fuzzmods/LatheIO.swiftmodule -emit-object -o /tmp/fuzzmods/LatheIO.o \
//     Sources/LatheIO/JSON.swift
//   swiftc -sanitize=fuzzer,address -parse-as-library -O -use-ld=lld -module-name LatheNN -I /tmp/fuzzmods \
//     Tools/fuzz/adapter_config_fuzz.swift Sources/LatheNN/LoRAConfig.swift Sources/LatheNN/LoRAConfig+MLX.swift /tmp/fuzzmods/LatheIO.o -o /tmp/adapter_config_fuzz
//   mkdir -p /tmp/adapter_config_corpus && cp Tools/fuzz/adapter_config_seeds/*.json /tmp/adapter_config_corpus/
//   SWIFT_BACKTRACE=enable=no /tmp/adapter_config_fuzz -runs=200000 -max_len=4096 -timeout=10 \
//     -dict=Tools/fuzz/adapter_config.dict /tmp/adapter_config_corpus
//
// The seeds are the PEFT-written fixtures' configs (Tests/Fixtures/lora: suffix lists with rank and
// alpha patterns, layers_to_transform, a regex, all-linear expanded to full paths), one Lathe wrote,
// one with every pattern key, and mlx-lm's (mlx-*.json: the fixtures' LoRA and DoRA, an older
// file with lora_layers and use_dora). Replay inputs: FUZZ_VERBOSE=1 /tmp/adapter_config_fuzz FILE...

import Foundation
import LatheIO

/// A failed invariant: the message on stderr, then a crash libFuzzer records.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write(Data(("adapter_config_fuzz: " + message() + "\n").utf8))
        abort()
    }
}

let verbose = ProcessInfo.processInfo.environment["FUZZ_VERBOSE"] != nil
let keys = ["model.layers.0.self_attn.q_proj", "model.layers.11.mlp.down_proj", "lm_head", "h.3.attn.c_attn", "q_proj", ""]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let json: JSONValue
    do {
        json = try JSONParser.parse(Array(UnsafeBufferPointer(start: data, count: size)))
    } catch {
        if verbose { print("JSON: \(error)") }
        return 0
    }
    fuzzMLX(json)
    let c: LoRAConfig
    do { c = try LoRAConfig.peft(json) } catch {
        if verbose { print("config: \(error)") }
        return 0
    }
    do { try c.validate() } catch { check(false, "an accepted config fails validate: \(error)") }
    check(c.rank >= 1 && c.rank <= 1 << 16, "rank \(c.rank)")
    for key in keys {
        _ = c.adapts(key, isOutput: key == "lm_head")
        let r = c.rank(for: key)
        check(r >= 1 && r <= 1 << 16, "rank \(r) for \(key)")
        check(c.scaling(for: key).isFinite, "scaling \(c.scaling(for: key)) for \(key)")
    }
    do {
        let again = try LoRAConfig.peft(JSONParser.parse(JSONWriter.serialize(c.peftJSON())))
        check(again == c, "the written config reads back differently: \(c) vs \(again)")
    } catch {
        check(false, "the written config does not read back: \(error)")
    }
    if verbose { print("LoRA r \(c.rank) alpha \(c.alpha) targets \(c.targets) dora \(c.useDoRA)") }
    return 0
}

/// mlx-lm's adapter_config.json: an accepted config has a rank in range, a finite scale and a
/// dropout in [0, 1), answers `allows` for a few paths, and converts to a valid LoRA config whose
/// scaling is the scale.
func fuzzMLX(_ json: JSONValue) {
    let m: MLXAdapterConfig
    do { m = try MLXAdapterConfig(json: json) } catch {
        if verbose { print("mlx-lm config: \(error)") }
        return
    }
    check(m.rank >= 1 && m.rank <= 1 << 16, "mlx-lm rank \(m.rank)")
    check(Float(m.scale).isFinite && m.dropout >= 0 && m.dropout < 1, "mlx-lm scale \(m.scale), dropout \(m.dropout)")
    for key in keys { _ = m.allows(key, blocks: 12); _ = m.allows(key, blocks: 0) }
    let c = m.loraConfig(paths: keys.filter { !$0.isEmpty })
    do { try c.validate() } catch { check(false, "the LoRA config of an accepted mlx-lm config fails validate: \(error)") }
    let s = c.scaling(for: keys[0])
    check(s.isFinite && abs(s - Float(m.scale)) <= 1e-6 * max(1, abs(Float(m.scale))), "scaling \(s) for scale \(m.scale)")
    if verbose { print("mlx-lm r \(m.rank) scale \(m.scale) layers \(m.numLayers.map(String.init) ?? "-") dora \(m.useDoRA)") }
}
