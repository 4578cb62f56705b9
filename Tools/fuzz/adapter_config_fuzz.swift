// libFuzzer target for PEFT's adapter_config.json: parses the input with LatheIO's JSON reader
// (Sources/LatheIO/JSON.swift) and reads it as a LoRA config (`LoRAConfig.peft`,
// Sources/LatheNN/LoRAConfig.swift). Any trap or AddressSanitizer report is a bug; a JSONParseError
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
//     Tools/fuzz/adapter_config_fuzz.swift Sources/LatheNN/LoRAConfig.swift /tmp/fuzzmods/LatheIO.o -o /tmp/adapter_config_fuzz
//   mkdir -p /tmp/adapter_config_corpus && cp Tools/fuzz/adapter_config_seeds/*.json /tmp/adapter_config_corpus/
//   SWIFT_BACKTRACE=enable=no /tmp/adapter_config_fuzz -runs=200000 -max_len=4096 -timeout=10 \
//     -dict=Tools/fuzz/adapter_config.dict /tmp/adapter_config_corpus
//
// The seeds are the PEFT-written fixtures' configs (Tests/Fixtures/lora: suffix lists with rank and
// alpha patterns, layers_to_transform, a regex, all-linear expanded to full paths), one Lathe wrote, and
// one with every pattern key. Replay inputs: FUZZ_VERBOSE=1 /tmp/adapter_config_fuzz FILE...

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
