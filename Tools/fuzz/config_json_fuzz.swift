// libFuzzer target for Hugging Face config.json reading: parses the input with LatheIO's JSON
// reader (Sources/LatheIO/JSON.swift) and reads it as a decoder config
// (`DecoderConfig.huggingFace`, Sources/LatheLM/Config.swift) and as a BERT config
// (`BertConfig.huggingFace`, Sources/LatheLM/BertConfig.swift). Any trap or AddressSanitizer report
// is a bug; a JSONParseError or ModelFileError is the expected outcome for bad input. An accepted
// config must also be one a model can be built from: it passes `validate` again, every size is in
// 1...2^24, the parameter count is within `DecoderConfig.maxParameters`, the products the model
// allocates from (KV cache, attention rows) do not overflow, the per-layer accessors answer for
// every layer, BOS/EOS ids are in the vocabulary, and the rotary frequencies (Rotary.swift) are
// numbers. Not part of the package build: JSON.swift is compiled first as a module named LatheIO
// (the config files import it), then the config files, Rotary.swift and this one as the module
// LatheLM. Run from the repository root:
//
//   mkdir -p /tmp/fuzzmods && swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name LatheIO \
//     -emit-module -emit-module-path /tmp/fuzzmods/LatheIO.swiftmodule -emit-object -o /tmp/fuzzmods/LatheIO.o \
//     Sources/LatheIO/JSON.swift
//   swiftc -sanitize=fuzzer,address -parse-as-library -O -use-ld=lld -module-name LatheLM -I /tmp/fuzzmods \
//     Tools/fuzz/config_json_fuzz.swift Sources/LatheLM/Config.swift Sources/LatheLM/BertConfig.swift \
//     Sources/LatheLM/Rotary.swift /tmp/fuzzmods/LatheIO.o -o /tmp/config_json_fuzz
//   mkdir -p /tmp/config_json_corpus && cp Tools/fuzz/config_json_seeds/*.json /tmp/config_json_corpus/
//   SWIFT_BACKTRACE=enable=no /tmp/config_json_fuzz -runs=1000000 -max_len=4096 -timeout=10 \
//     -dict=Tools/fuzz/config_json.dict /tmp/config_json_corpus
//
// The seeds are the test models' config.json files (Tests/Fixtures/llm), all-MiniLM-L6-v2's, real
// models' shapes (Mistral's sliding window, Qwen2's and Gemma 3's older keys, Llama 3.1's
// rope_scaling) and the fuzzer's finds (fuzz-*.json: a negative Gemma layer count, which trapped,
// and a llama3 rope factor of 3.21e-59, which made infinite frequencies; both errors now).
// SWIFT_BACKTRACE=enable=no keeps Swift's backtracer (which ASan reports on) out of a trap.
// Replay inputs: FUZZ_VERBOSE=1 /tmp/config_json_fuzz FILE... (prints each outcome).

import Foundation
import LatheIO

/// A failed invariant: the message on stderr, then a crash libFuzzer records.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write(Data(("config_json_fuzz: " + message() + "\n").utf8))
        abort()
    }
}

/// FUZZ_VERBOSE=1 prints each input's outcome (for checking seeds and replaying inputs).
let verbose = ProcessInfo.processInfo.environment["FUZZ_VERBOSE"] != nil

func checkDecoder(_ c: DecoderConfig) {
    do { try c.validate(file: "again") } catch { check(false, "an accepted config fails validate: \(error)") }
    for (name, v) in [("vocab", c.vocabularySize), ("hidden", c.hiddenSize), ("intermediate", c.intermediateSize),
                      ("layers", c.layers), ("heads", c.heads), ("kvHeads", c.kvHeads), ("headDim", c.headDim),
                      ("maxPositions", c.maxPositions)] {
        check(v >= 1 && v <= 1 << 24, "\(name) \(v)")
    }
    check(c.parameterCount <= Double(DecoderConfig.maxParameters), "\(c.parameterCount) parameters")
    check(c.heads % c.kvHeads == 0 && c.headDim % 2 == 0, "heads \(c.heads), kv heads \(c.kvHeads), head dim \(c.headDim)")
    // What the model allocates from the config: the KV cache (per layer kvHeads x context x headDim)
    // and a row of attention heads.
    let (kv, o1) = c.kvHeads.multipliedReportingOverflow(by: c.maxPositions)
    let (kvBlock, o2) = kv.multipliedReportingOverflow(by: c.headDim)
    let (row, o3) = c.heads.multipliedReportingOverflow(by: c.headDim)
    check(!o1 && !o2 && !o3 && kvBlock > 0 && row > 0, "KV cache or attention row size overflows")
    if let l = c.localLayers { check(l.count == c.layers, "\(l.count) layer types for \(c.layers) layers") }
    for i in 0..<min(c.layers, 4096) {
        if let w = c.window(layer: i) { check(w >= 1, "window \(w) at layer \(i)") }
        let theta = c.ropeTheta(layer: i)
        check(theta > 0 && theta.isFinite, "rope theta \(theta) at layer \(i)")
    }
    check(c.rmsNormEps > 0 && c.rmsNormEps.isFinite, "rms_norm_eps \(c.rmsNormEps)")
    for s in [c.queryScale, c.embeddingScale, c.finalLogitSoftcap] {
        if let s { check(s > 0 && s.isFinite, "scale \(s)") }
    }
    if let b = c.bosTokenID { check(b >= 0 && b < c.vocabularySize, "bos \(b)") }
    for e in c.eosTokenIDs { check(e >= 0 && e < c.vocabularySize, "eos \(e)") }
    if c.headDim <= 4096 {
        for theta in Set([c.ropeTheta, c.localRopeTheta ?? c.ropeTheta]) {
            let rotary = Rotary(headDim: c.headDim, base: theta, scaling: c.ropeScaling, layout: c.ropeLayout)
            check(rotary.inverseFrequencies.count == c.headDim / 2, "rotary size")
            check(rotary.inverseFrequencies.allSatisfy { $0 >= 0 && $0.isFinite }, "rotary frequencies \(rotary.inverseFrequencies.prefix(8))")
        }
    }
}

func checkBert(_ c: BertConfig) {
    for (name, v) in [("vocab", c.vocabularySize), ("hidden", c.hiddenSize), ("intermediate", c.intermediateSize),
                      ("layers", c.layers), ("heads", c.heads), ("maxPositions", c.maxPositions), ("types", c.typeVocabularySize)] {
        check(v >= 1 && v <= 1 << 24, "bert \(name) \(v)")
    }
    check(c.hiddenSize % c.heads == 0, "bert hidden \(c.hiddenSize) heads \(c.heads)")
    check(c.layerNormEps > 0 && c.layerNormEps.isFinite, "bert layer_norm_eps \(c.layerNormEps)")
    check(c.parameterCount <= Double(DecoderConfig.maxParameters), "bert \(c.parameterCount) parameters")
    // BertModel's attention buffers: maxPositions x hidden and maxPositions^2.
    let (ctx, o1) = c.maxPositions.multipliedReportingOverflow(by: c.hiddenSize)
    let (scores, o2) = c.maxPositions.multipliedReportingOverflow(by: c.maxPositions)
    check(!o1 && !o2 && ctx > 0 && scores > 0, "bert buffer sizes overflow")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let json: JSONValue
    do {
        json = try JSONParser.parse(Array(UnsafeBufferPointer(start: data, count: size)))
    } catch {
        check(!error.description.isEmpty && error.offset >= 0 && error.offset <= size, "parse error \(error) for \(size) bytes")
        if verbose { print("JSON: \(error)") }
        return 0
    }
    do {
        let c = try DecoderConfig.huggingFace(json, file: "config.json")
        checkDecoder(c)
        if verbose { print("decoder \(c.architecture): \(c.layers) layers, \(c.parameterCount) parameters") }
    } catch let e as ModelFileError {
        check(!e.message.isEmpty, "empty error")
        if verbose { print("decoder: \(e)") }
    } catch {
        check(false, "DecoderConfig.huggingFace threw \(type(of: error)): \(error)")
    }
    do {
        let c = try BertConfig.huggingFace(json, file: "config.json")
        checkBert(c)
        if verbose { print("bert: \(c.layers) layers, \(c.parameterCount) parameters") }
    } catch let e as ModelFileError {
        check(!e.message.isEmpty, "empty error")
        if verbose { print("bert: \(e)") }
    } catch {
        check(false, "BertConfig.huggingFace threw \(type(of: error)): \(error)")
    }
    return 0
}
