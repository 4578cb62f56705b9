// libFuzzer target for LatheText's tokenizer.json loader (Sources/LatheText/TokenizerJSON.swift and
// the models and stages it builds, over Sources/LatheIO/JSON.swift): parses the input as a
// tokenizer.json, and when a tokenizer is built, encodes fixed texts (ASCII, whitespace runs, CJK,
// combining marks, emoji, special-token text, the file's own added tokens) and the input itself as
// text (first 2 KB, ill-formed UTF-8 replaced), with and without special tokens, then decodes the
// ids (with and without special tokens, as bytes, streamed) with out-of-range ids mixed in. Any trap
// or AddressSanitizer report is a bug, and so is an encoded id or a bos/eos/pad/unk id outside
// 0..<vocabularySize; a TokenizerError is the expected outcome for bad input. Not part of the
// package build: JSON.swift is compiled first as a module named LatheIO (TokenizerJSON.swift
// imports it), then LatheText's files and this one as the module LatheText. Run from the
// repository root:
//
//   mkdir -p /tmp/fuzzmods && swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name LatheIO \
//     -emit-module -emit-module-path /tmp/fuzzmods/LatheIO.swiftmodule -emit-object -o /tmp/fuzzmods/LatheIO.o \
//     Sources/LatheIO/JSON.swift
//   swiftc -sanitize=fuzzer,address -parse-as-library -O -use-ld=lld -module-name LatheText -I /tmp/fuzzmods \
//     Tools/fuzz/tokenizer_json_fuzz.swift Sources/LatheText/*.swift /tmp/fuzzmods/LatheIO.o -o /tmp/tokenizer_json_fuzz
//   mkdir -p /tmp/tokenizer_json_corpus && cp Tests/Fixtures/text/*.json Tests/Fixtures/text/fuzz/*.json \
//     Tools/fuzz/tokenizer_json_seeds/*.json /tmp/tokenizer_json_corpus/ && rm /tmp/tokenizer_json_corpus/*.{cases,gguf}.json
//   SWIFT_BACKTRACE=enable=no /tmp/tokenizer_json_fuzz -runs=1000000 -max_len=20000 -timeout=10 \
//     -dict=Tools/fuzz/tokenizer_json.dict /tmp/tokenizer_json_corpus
//
// The seeds are the test tokenizers (8-11 KB), the fuzzer's earlier finds (Tests/Fixtures/text/fuzz)
// and tokenizer_json_seeds/: small hand-written files of each model type and stage, and
// minilm-cut.json (the real all-MiniLM-L6-v2 tokenizer.json with its vocabulary cut to 400 tokens;
// the whole 466 KB file runs at about 12 executions/s). SWIFT_BACKTRACE=enable=no keeps Swift's backtracer
// (which ASan reports on) out of a trap. Replay inputs: FUZZ_VERBOSE=1 /tmp/tokenizer_json_fuzz
// FILE... (prints each outcome).

import Foundation

let fixedTexts: [String] = [
    "Hello, world! It's a test: don't we'll 123 4567 3.14 $5 #tag @user",
    "   leading\t\ttabs  double  spaces\n\n\nnewlines \r\n crlf   trailing   ",
    "日本語のテキスト、中文字符。한국어 ภาษาไทย العربية",
    "emoji 🙂👍🏽 family 👨‍👩‍👧 flag 🇫🇷 keycap 1️⃣",
    "<|endoftext|><s></s>[CLS] [SEP] [UNK] <unk> <pad> [MASK] <mask> <|im_start|>user\nhi<|im_end|>",
    "Ġhello ▁world ##ing <0x41><0xE6><0x97> </w>",
    "café naïve e\u{301}\u{302} ﬁ Ⅻ ① ＡＢＣ İ ß ǅ",
    "\u{0}\u{1}\u{7F}\u{85}\u{A0}\u{AD}\u{200B}\u{200D}\u{2028}\u{FEFF}\u{FFFD}\u{E000}\u{10FFFF}",
    "",
    " ",
    "a",
    String(repeating: "ab", count: 150),
    String(repeating: "\u{2581}", count: 40) + String(repeating: "9", count: 40),
]

/// A failed invariant: the message on stderr, then a crash libFuzzer records.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write(Data(("tokenizer_json_fuzz: " + message() + "\n").utf8))
        abort()
    }
}

/// FUZZ_VERBOSE=1 prints each input's outcome (for checking seeds and replaying inputs).
let verbose = ProcessInfo.processInfo.environment["FUZZ_VERBOSE"] != nil

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let tokenizer: any Tokenizer
    do {
        tokenizer = try loadTokenizer(bytes: bytes, source: "fuzz.json")
    } catch {
        check(!error.description.isEmpty, "empty error")
        if verbose { print("error: \(error)") }
        return 0
    }
    let n = tokenizer.vocabularySize
    if verbose { print("\(type(of: tokenizer)): \(n) ids, \(tokenizer.addedTokens.count) added") }
    check(n >= 0, "vocabularySize \(n)")
    for (name, id) in [("bos", tokenizer.bos), ("eos", tokenizer.eos), ("pad", tokenizer.pad), ("unk", tokenizer.unk)] {
        if let id { check(id >= 0 && id < n, "\(name) id \(id) outside the vocabulary of \(n)") }
    }
    // The file's own added tokens, with text around and between them.
    let added = tokenizer.addedTokens.prefix(16).map(\.content)
    var texts = fixedTexts
    texts.append("x " + added.joined(separator: " y") + "z")
    texts.append(added.joined())
    texts.append(String(decoding: bytes.prefix(2048), as: UTF8.self))
    var all: [Int] = []
    for text in texts {
        for special in [true, false] {
            let ids = tokenizer.encode(text, addSpecialTokens: special)
            for id in ids { check(id >= 0 && id < n, "encoded id \(id) outside the vocabulary of \(n)") }
            _ = tokenizer.decode(ids, skipSpecialTokens: !special)
            all += ids.prefix(64)
        }
    }
    for id in all.prefix(256) {
        if let t = tokenizer.token(for: id) { _ = tokenizer.id(for: t) }
    }
    let outside = [-1, Int.min, Int.max, n, n + 1, Int(Int32.max), 1 << 40]
    for id in outside { check(tokenizer.token(for: id) == nil || (id >= 0 && id < n), "token(for: \(id)) with \(n) ids") }
    var mixed = Array(all.prefix(200))
    for (k, id) in outside.enumerated() { mixed.insert(id, at: min(k * 7, mixed.count)) }
    _ = tokenizer.decode(mixed)
    _ = tokenizer.decode(mixed, skipSpecialTokens: true)
    _ = tokenizer.decodedBytes(mixed, skipSpecialTokens: false)
    var stream = StreamingDecoder(tokenizer, skipSpecialTokens: false)
    var streamed = stream.next(Array(mixed.prefix(48)))
    streamed += stream.finish()
    for word in ["[UNK]", "<unk>", "<s>", "</s>", "Ġ", "▁", "##a", "a", ""] { _ = tokenizer.id(for: word) }
    return streamed.utf8.count == -1 ? 1 : 0
}
