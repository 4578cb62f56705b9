// libFuzzer target for mergekit's YAML as `lathe merge` reads it: parses the input with
// `MergeConfig.parse` (Sources/LatheMerge/MergeConfig.swift, over Yams) and, when it is accepted,
// builds the merge plan (`MergePlan`, Sources/LatheMerge/MergePlan.swift) over made-up layouts of the
// models it names: Llama-shaped tensors, 4 layers (2 + d % 4 for a name whose last digit is d), no lm_head for a name
// containing "tied" (a model the others cannot be merged with). Any trap or AddressSanitizer report
// is a bug; a MergeConfigError or MergeError is the expected outcome for bad input. An accepted plan
// must be coherent: every tensor has inputs, one parameter set per input, model indices and the base
// index in range, a layer fraction in 0...1 and its input's shape; a slices config has as many output
// layers as its slices' ranges. Not part of the package build: Yams's C half (libyaml) and Swift half
// are compiled first, then MergeConfig/MergeMethod/MergePlan/MergeError (Foundation and Yams only)
// and this file as the module LatheMerge. Run from the repository root after `swift build` fetched Yams:
//
//   Y=.build/checkouts/Yams/Sources; mkdir -p /tmp/mergefuzz
//   for f in $Y/CYaml/src/*.c; do clang -fsanitize=fuzzer-no-link,address -O1 -DYAML_DECLARE_STATIC -I $Y/CYaml/include \
//     -c $f -o /tmp/mergefuzz/cyaml_$(basename $f .c).o; done
//   swiftc -sanitize=fuzzer,address -parse-as-library -O -wmo -module-name Yams -DSWIFT_PACKAGE -Xcc -DYAML_DECLARE_STATIC -I $Y/CYaml/include \
//     -emit-module -emit-module-path /tmp/mergefuzz/Yams.swiftmodule -emit-object -o /tmp/mergefuzz/Yams.o $Y/Yams/*.swift
//   swiftc -sanitize=fuzzer,address -parse-as-library -O -use-ld=lld -module-name LatheMerge -I /tmp/mergefuzz \
//     -Xcc -DYAML_DECLARE_STATIC -I $Y/CYaml/include Tools/fuzz/merge_config_fuzz.swift Sources/LatheMerge/MergeConfig.swift \
//     Sources/LatheMerge/MergeMethod.swift Sources/LatheMerge/MergePlan.swift Sources/LatheMerge/MergeError.swift \
//     /tmp/mergefuzz/*.o -o /tmp/merge_config_fuzz
//   mkdir -p /tmp/merge_config_corpus && cp Tools/fuzz/merge_config_seeds/*.yaml Tests/Fixtures/merge/configs/*.yaml /tmp/merge_config_corpus/
//   SWIFT_BACKTRACE=enable=no /tmp/merge_config_fuzz -runs=1000000 -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
//     -dict=Tools/fuzz/merge_config.dict /tmp/merge_config_corpus
//
// Runs on 2026-12-06 (2 shared cores, a build alongside): the first minutes found two traps in Yams's
// conversion to Swift values, a key that is a list (`{model: a, [x, y]}`) and a base-60 integer that
// overflows (`3333330033970226:6:1`), and an alias bomb (aliases of aliases, 10^8 values) timed out;
// MergeConfig now converts Yams's nodes itself, counting values (at most 100,000) and keeping
// colon-bearing scalars as strings (regression: MergeConfigSweepTests.testYAMLTheFuzzerFoundGivesErrors).
// After the fix, 1,000,000 runs in 815 s (about 1,200 exec/s), no crash, timeout or out-of-memory;
// coverage 3742 edges, 16914 features, corpus 2439 inputs.
//
// The seeds are the fixture configs (every method, gradients, filters, slices) and a few more in
// Tools/fuzz/merge_config_seeds (tokenizer mappings, nested conditions, anchors and aliases, bare model
// names). Replay inputs: FUZZ_VERBOSE=1 /tmp/merge_config_fuzz FILE...

import Foundation

/// A failed invariant: the message on stderr, then a crash libFuzzer records.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write(Data(("merge_config_fuzz: " + message() + "\n").utf8))
        abort()
    }
}

let verbose = ProcessInfo.processInfo.environment["FUZZ_VERBOSE"] != nil

/// A Llama-shaped model of 4 layers, or 2 + d % 4 when the name's last digit is d.
func layout(_ model: String) -> MergePlan.InputLayout {
    let layers = 2 + (model.last(where: { $0.isASCII && $0.isNumber }).flatMap { Int(String($0)) } ?? 2) % 4
    var shapes: [String: [Int]] = ["model.embed_tokens.weight": [32, 8], "model.norm.weight": [8]]
    if !model.contains("tied") { shapes["lm_head.weight"] = [32, 8] }
    for i in 0..<layers {
        shapes["model.layers.\(i).self_attn.q_proj.weight"] = [8, 8]
        shapes["model.layers.\(i).mlp.up_proj.weight"] = [16, 8]
        shapes["model.layers.\(i).input_layernorm.weight"] = [8]
    }
    return MergePlan.InputLayout(shapes: shapes, declaredLayers: model.contains("undeclared") ? nil : layers)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let config: MergeConfig
    do { config = try MergeConfig.parse(text, file: "fuzz.yaml") } catch let e as MergeConfigError {
        check(!e.message.isEmpty, "an empty error message")
        if verbose { print("config: \(e)") }
        return 0
    } catch {
        check(false, "parse threw something other than a MergeConfigError: \(error)")
        return 0
    }
    check((config.models?.isEmpty == false) != (config.slices?.isEmpty == false), "an accepted config without exactly one of models and slices")
    let models = config.referencedModels
    check(!models.isEmpty && Set(models).count == models.count, "referenced models \(models)")
    let layouts = models.map(layout)
    let plan: MergePlan
    do { plan = try MergePlan(config: config, file: "fuzz.yaml", models: models, sources: layouts) } catch {
        check(error is MergeConfigError || error is MergeError, "the plan threw \(type(of: error)): \(error)")
        check(!"\(error)".isEmpty, "an empty error message")
        if verbose { print("plan: \(error)") }
        return 0
    }
    for t in plan.tensors {
        check(!t.inputs.isEmpty && t.inputs.count == t.perInput.count, "\(t.name): \(t.inputs.count) inputs, \(t.perInput.count) parameter sets")
        check(t.inputs.allSatisfy { models.indices.contains($0.model) }, "\(t.name): a model index out of range")
        check(t.baseIndex.map { t.inputs.indices.contains($0) } ?? true, "\(t.name): base index \(String(describing: t.baseIndex))")
        check(t.t >= 0 && t.t <= 1, "\(t.name): layer fraction \(t.t)")
        check(layouts[t.inputs[0].model].shapes[t.inputs[0].name] == t.shape, "\(t.name): shape \(t.shape)")
    }
    if let slices = config.slices {
        let layers = slices.reduce(0) { $0 + $1.sources[0].layerRange.count }
        check(plan.layerCount == layers, "\(plan.layerCount) output layers from slices of \(layers)")
    }
    if verbose { print("\(plan.method.rawValue): \(plan.tensors.count) tensors, \(plan.layerCount) layers, \(plan.warnings.count) warnings") }
    return 0
}
