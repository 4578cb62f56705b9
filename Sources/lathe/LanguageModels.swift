import ArgumentParser
import Foundation
import Lathe

/// Loads MODEL (a GGUF file or a Hugging Face folder) with a one-line report.
func loadPretrained(_ path: String, quiet: Bool = false) throws -> PretrainedModel {
    let t0 = Timing.now()
    let m = try PretrainedModel.load(path)
    if !quiet {
        FileHandle.standardError.write(Data(String(format: "loaded %@ in %.1f s\n", path, Timing.now() - t0).utf8))
    }
    return m
}

/// Sampling options shared by `generate` and `chat`.
struct SamplingFlags: ParsableArguments {
    @Option(name: .customLong("max-tokens"), help: "Tokens to generate at most.") var maxTokens: Int = 128
    @Option(help: "Softmax temperature; 0 is greedy.") var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Sample from the K most likely tokens.") var topK: Int = 40
    @Option(name: .customLong("top-p"), help: "Sample from the nucleus of probability P.") var topP: Float = 0.95
    @Option(name: .customLong("min-p"), help: "Drop tokens less likely than P times the most likely one.") var minP: Float = 0.05
    @Option(name: .customLong("repeat-penalty"), help: "Divide the logits of the last 64 tokens by R (1: off).") var repeatPenalty: Float = 1
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(name: .customLong("stop"), help: "Stop when the text ends with this string (repeatable).") var stops: [String] = []

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be at least 0") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be 0 or more") }
        guard topK >= 1 else { throw ValidationError("--top-k must be at least 1") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard minP >= 0, minP <= 1 else { throw ValidationError("--min-p must be in [0, 1]") }
        guard repeatPenalty > 0 else { throw ValidationError("--repeat-penalty must be positive") }
    }

    /// The generation options; `stopTokens` nil stops at the model's end-of-sequence tokens.
    func options(stopTokens: Set<Int>? = nil) -> GenerationOptions {
        GenerationOptions(maxTokens: maxTokens, sampling: SamplingOptions(temperature: temperature, topK: topK, topP: topP, minP: minP),
                          repetitionPenalty: repeatPenalty, stopTokens: stopTokens, seed: seed)
    }

    /// Generates from `ids`, printing the text as it comes; returns the text (without a stop
    /// string that ended it) and what the generation did.
    /// Generates from `ids` (in `session`, reusing its cache, when given), printing the text as it comes.
    func stream(_ decoder: any LanguageModel, _ tokenizer: any Tokenizer, prompt ids: [Int], stopTokens: Set<Int>? = nil,
                session: DecodingSession? = nil) -> (String, GenerationResult) {
        var stream = StreamingDecoder(tokenizer)
        var text = ""
        let session = session ?? DecodingSession(decoder, capacity: ids.count + maxTokens)
        let r = session.generate(prompt: ids, options: options(stopTokens: stopTokens)) { id in
            let piece = stream.next(id)
            text += piece
            print(piece, terminator: "")
            fflush(nil)
            return !stops.contains { text.hasSuffix($0) }
        }
        let tail = stream.finish()
        print(tail)
        text += tail
        if r.stop == .callback, let stop = stops.first(where: { text.hasSuffix($0) }) { text.removeLast(stop.count) }
        return (text, r)
    }
}

/// Prompt and generation speed on standard error, as `generate` prints it.
func reportSpeed(_ r: GenerationResult) {
    FileHandle.standardError.write(Data(String(
        format: "prompt: %d tokens%@, %.1f tokens/s; generated: %d tokens, %.1f tokens/s (%@)\n", r.promptTokens,
        r.reusedTokens > 0 ? " (+\(r.reusedTokens) cached)" : "",
        Double(r.promptTokens) / max(r.promptSeconds, 1e-9), r.tokens.count, Double(max(r.tokens.count - 1, 0)) / max(r.generationSeconds, 1e-9),
        String(describing: r.stop)).utf8))
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a prompt with a pretrained language model (GGUF file or Hugging Face folder).",
        discussion: """
        Streams the text as it is generated, then prints prompt and generation speed. Temperature 0 is greedy; \
        the model's end-of-sequence token stops the generation. With --chat the prompt is one user message (after \
        --system, if given) rendered with the model's chat template, and only the reply is printed.
        Example: lathe generate ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf --prompt "The capital of France is" --temperature 0
        """
    )

    @Argument(help: "A .gguf file or a Hugging Face folder (config.json, model.safetensors, tokenizer.json).") var model: String
    @Option(help: "The text to continue (with --chat: the user's message).") var prompt: String
    @Flag(help: "Render the prompt as a user message with the model's chat template, with the assistant's turn opened.") var chat = false
    @Option(help: "A system message before the prompt (with --chat).") var system: String?
    @Option(help: "A LoRA/DoRA adapter to run with the model, unmerged: a PEFT or mlx-lm folder, or a llama.cpp .gguf adapter.")
    var adapter: String?
    @OptionGroup var sampling: SamplingFlags
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard !prompt.isEmpty else { throw ValidationError("--prompt must not be empty") }
        guard system == nil || chat else { throw ValidationError("--system needs --chat") }
    }

    func run() throws {
        try threadOptions.apply()
        let loaded = try loadPretrained(model)
        let decoder = try loaded.languageModel()
        try attachAdapter(adapter, to: loaded, model: model)
        let ids: [Int]
        var stopTokens: Set<Int>?
        if chat {
            let template = try loaded.parsedChatTemplate()
            let messages = (system.map { [ChatMessage(role: "system", content: $0)] } ?? []) + [ChatMessage(role: "user", content: prompt)]
            ids = loaded.chatPromptIDs(try loaded.renderChat(template, messages: messages))
            stopTokens = loaded.chatStopTokens
        } else {
            ids = loaded.tokenizer.encode(prompt, addSpecialTokens: true)
            print(prompt, terminator: "")
        }
        guard ids.count < decoder.maxPositions else { throw CLIError("the prompt has \(ids.count) tokens; the model takes \(decoder.maxPositions)") }
        let (_, r) = sampling.stream(decoder, loaded.tokenizer, prompt: ids, stopTokens: stopTokens)
        reportSpeed(r)
    }
}

/// Loads an adapter (PEFT or mlx-lm folder, llama.cpp GGUF file) into the loaded decoder
/// (unmerged), and says so on standard error.
func attachAdapter(_ adapter: String?, to loaded: PretrainedModel, model: String) throws {
    guard let adapter else { return }
    guard case .decoder(let d) = loaded.kind else { throw CLIError("--adapter: adapters apply to Llama-family decoders, not to \(model)") }
    let (config, format) = try d.loadAdapter(at: URL(fileURLWithPath: adapter))
    let base = config.baseModel.map { " (trained on \($0))" } ?? ""
    FileHandle.standardError.write(Data("adapter \(adapter)\(base): \(format.rawValue) \(config.useDoRA ? "DoRA" : "LoRA") on \(d.loraLayers.count) layers\n".utf8))
}

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with an instruction-tuned model: each line of standard input is a user turn.",
        discussion: """
        The whole conversation is rendered with the model's chat template (as transformers' apply_chat_template \
        renders it) for every turn; the keys and values of the tokens it shares with the previous turn are reused \
        from the cache, so a turn costs its own tokens, not the conversation's. The reply is streamed until the model ends its turn; the reply ends with a \
        newline, and prompt and generation speed go to standard error. Empty lines are skipped; the end of the input \
        ends the chat. A model without a chat template is an error.
        With --adapter, a LoRA/DoRA adapter (PEFT or mlx-lm folder, llama.cpp .gguf adapter) runs with the model, unmerged (as `lathe generate --adapter`).
        Example: lathe chat ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf --system "Answer in one sentence." --temperature 0
        """
    )

    @Argument(help: "A .gguf file or a Hugging Face folder with a chat template.") var model: String
    @Option(help: "A system message that opens the conversation.") var system: String?
    @Option(help: "A LoRA/DoRA adapter to run with the model, unmerged: a PEFT or mlx-lm folder, or a llama.cpp .gguf adapter.")
    var adapter: String?
    @OptionGroup var sampling: SamplingFlags
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try threadOptions.apply()
        let loaded = try loadPretrained(model)
        let decoder = try loaded.languageModel()
        try attachAdapter(adapter, to: loaded, model: model)
        let template = try loaded.parsedChatTemplate()
        let stopTokens = loaded.chatStopTokens
        var messages = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
        // Earlier turns stay in the cache: each turn runs only the tokens after what it shares with the last.
        let session = DecodingSession(decoder, capacity: 512)
        let interactive = isatty(STDIN_FILENO) != 0
        while true {
            if interactive { FileHandle.standardError.write(Data("> ".utf8)) }
            guard let line = readLine() else { break }
            guard !line.allSatisfy(\.isWhitespace) else { continue }
            messages.append(ChatMessage(role: "user", content: line))
            let ids = loaded.chatPromptIDs(try loaded.renderChat(template, messages: messages))
            guard ids.count < decoder.maxPositions else {
                throw CLIError("the conversation has \(ids.count) tokens; the model takes \(decoder.maxPositions)")
            }
            let (reply, r) = sampling.stream(decoder, loaded.tokenizer, prompt: ids, stopTokens: stopTokens, session: session)
            messages.append(ChatMessage(role: "assistant", content: reply))
            reportSpeed(r)
        }
    }
}

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity of a text under a pretrained language model, as llama.cpp's llama-perplexity measures it.",
        discussion: """
        Non-overlapping chunks of --context tokens; the first token of each chunk is BOS where the vocabulary adds one; \
        only the second half of each chunk is scored. Prints the perplexity with its standard error.
        With --reference (another model with the same vocabulary) or --reference-dequantized (the same GGUF file, or the \
        --reference GGUF file, with every weight float32), both run on the same chunks and the output is what llama-perplexity's KL mode prints: \
        both perplexities, the KL divergence from the reference with its percentiles, the change in the correct \
        token's probability, and how often both pick the same top token. --adapter runs the model with an adapter \
        (the reference runs without it).
        Example: lathe perplexity ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf --file text.txt --context 512
        """
    )

    @Argument(help: "A .gguf file or a Hugging Face folder.") var model: String
    @Option(help: "The text file.") var file: String
    @Option(help: "Tokens per chunk.") var context: Int = 512
    @Option(help: "Score at most this many chunks (default: all).") var chunks: Int?
    @Option(help: "A reference model (same vocabulary) to compare with: KL divergence and top-token agreement.") var reference: String?
    @Flag(help: "Compare with the same GGUF file (or the --reference GGUF file), every weight dequantised to float32.")
    var referenceDequantized = false
    @Flag(help: "Run every row of the quantized layers with 8-bit activations, as decoding does (llama.cpp does so for all rows); slower.")
    var int8Activations = false
    @Flag(help: "Print one JSON object.") var json = false
    @Option(help: "A LoRA/DoRA adapter to run with the model, unmerged: a PEFT or mlx-lm folder, or a llama.cpp .gguf adapter (as llama-perplexity --lora).")
    var adapter: String?
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try threadOptions.apply()
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw CLIError("cannot read \(file) as UTF-8 text") }
        if referenceDequantized && !(reference ?? model).hasSuffix(".gguf") { throw ValidationError("--reference-dequantized applies to GGUF files") }
        if int8Activations { WeightOnlyLinear.int8ActivationRows = Int.max }
        let loaded = try loadPretrained(model, quiet: json)
        let decoder = try loaded.languageModel()
        try attachAdapter(adapter, to: loaded, model: model)
        var ids = loaded.tokenizer.encode(text, addSpecialTokens: false)
        if let chunks { ids = Array(ids.prefix(chunks * context)) }
        let bos = loaded.tokenizer.addedBOS
        if reference != nil || referenceDequantized {
            let ref: any LanguageModel = referenceDequantized
                ? try DecoderModel.load(gguf: URL(fileURLWithPath: reference ?? model), quantized: false)
                : try loadPretrained(reference!, quiet: json).languageModel()
            let r = try Perplexity.compare(decoder, reference: ref, tokens: ids, context: context, bos: bos) { done, all, ppl in
                if !json { FileHandle.standardError.write(Data(String(format: "[%d/%d] %.4f\n", done, all, ppl).utf8)) }
            }
            printKL(r)
            return
        }
        let r = try Perplexity.evaluate(decoder, tokens: ids, context: context, bos: bos) { done, all, ppl in
            if !json { FileHandle.standardError.write(Data(String(format: "[%d/%d] %.4f\n", done, all, ppl).utf8)) }
        }
        if json {
            print(JSONWriter.object([("model", JSONWriter.quoted(model)), ("file", JSONWriter.quoted(file)), ("context", "\(context)"),
                                     ("chunks", "\(r.chunks)"), ("tokens_scored", "\(r.tokensScored)"), ("perplexity", JSONWriter.number(r.perplexity)),
                                     ("standard_error", JSONWriter.number(r.standardError)), ("tokens_per_second", JSONWriter.number(r.tokensPerSecond, digits: 1))]))
        } else {
            print(String(format: "perplexity %.4f +/- %.5f over %d tokens (%d chunks of %d), %.1f tokens/s", r.perplexity, r.standardError,
                         r.tokensScored, r.chunks, context, r.tokensPerSecond))
        }
    }

    /// llama-perplexity's KL-mode summary (or one JSON object).
    func printKL(_ r: KLResult) {
        let marks: [(String, Double)] = [("max", 1), ("99.9%", 0.999), ("99.0%", 0.99), ("95.0%", 0.95), ("90.0%", 0.9), ("median", 0.5),
                                         ("10.0%", 0.1), ("5.0%", 0.05), ("1.0%", 0.01), ("0.1%", 0.001), ("min", 0)]
        if json {
            func stats(_ xs: [Double]) -> String {
                JSONWriter.object(marks.map { (String($0.0.filter { $0.isLetter || $0.isNumber || $0 == "." }), JSONWriter.number(KLResult.percentile(xs, $0.1))) })
            }
            print(JSONWriter.object([
                ("model", JSONWriter.quoted(model)), ("reference", JSONWriter.quoted(reference ?? model + " (float32)")), ("file", JSONWriter.quoted(file)),
                ("context", "\(context)"), ("tokens_scored", "\(r.perplexity.tokensScored)"),
                ("perplexity", JSONWriter.number(r.perplexity.perplexity)), ("reference_perplexity", JSONWriter.number(r.referencePerplexity.perplexity)),
                ("mean_kld", JSONWriter.number(r.meanKL)), ("kld", stats(r.klDivergences)),
                ("mean_delta_p", JSONWriter.number(r.meanDelta)), ("rms_delta_p", JSONWriter.number(r.rmsDelta)), ("delta_p", stats(r.probabilityDeltas)),
                ("same_top_token", JSONWriter.number(r.sameTopToken)),
            ]))
            return
        }
        let ratio = r.perplexity.perplexity / r.referencePerplexity.perplexity
        print("====== Perplexity statistics ======")
        print(String(format: "Mean PPL(Q)                   : %10.6f +/- %.6f", r.perplexity.perplexity, r.perplexity.standardError))
        print(String(format: "Mean PPL(base)                : %10.6f +/- %.6f", r.referencePerplexity.perplexity, r.referencePerplexity.standardError))
        print(String(format: "Mean PPL(Q)/PPL(base)         : %10.6f", ratio))
        print(String(format: "Mean ln(PPL(Q)/PPL(base))     : %10.6f", log(ratio)))
        print("\n====== KL divergence statistics ======")
        print(String(format: "Mean    KLD: %10.6f", r.meanKL))
        for (name, f) in marks { print(String(format: "%-7@ KLD: %10.6f", name.padding(toLength: 7, withPad: " ", startingAt: 0), KLResult.percentile(r.klDivergences, f))) }
        print("\n====== Token probability statistics ======")
        print(String(format: "Mean    Δp: %8.4f %%", 100 * r.meanDelta))
        for (name, f) in marks { print(String(format: "%-7@ Δp: %8.4f %%", name.padding(toLength: 7, withPad: " ", startingAt: 0), 100 * KLResult.percentile(r.probabilityDeltas, f))) }
        print(String(format: "RMS Δp    : %8.4f %%", 100 * r.rmsDelta))
        print(String(format: "Same top p: %8.4f %%", 100 * r.sameTopToken))
        print(String(format: "(%d tokens scored, %d chunks of %d)", r.perplexity.tokensScored, r.perplexity.chunks, context))
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Token ids and pieces of a text under a model's tokenizer (GGUF file, Hugging Face folder or tokenizer.json).")

    @Argument(help: "A .gguf file, a Hugging Face folder or a tokenizer.json.") var model: String
    @Option(help: "The text.") var text: String?
    @Option(help: "A text file.") var file: String?
    @Flag(help: "Leave out BOS/CLS/SEP.") var noSpecial = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        guard (text == nil) != (file == nil) else { throw ValidationError("give one of --text and --file") }
        let input: String
        if let text { input = text } else {
            guard let t = try? String(contentsOfFile: file!, encoding: .utf8) else { throw CLIError("cannot read \(file!) as UTF-8 text") }
            input = t
        }
        let tokenizer: any Tokenizer
        if model.hasSuffix(".json") {
            tokenizer = try loadTokenizer(contentsOf: URL(fileURLWithPath: model))
        } else if model.hasSuffix(".gguf") {
            tokenizer = try PretrainedModel.ggufTokenizer(GGUFFile(contentsOf: URL(fileURLWithPath: model)))
        } else {
            tokenizer = try loadTokenizer(contentsOf: URL(fileURLWithPath: model).appendingPathComponent("tokenizer.json"))
        }
        let ids = tokenizer.encode(input, addSpecialTokens: !noSpecial)
        if json {
            print(JSONWriter.object([("ids", JSONWriter.intArray(ids)),
                                     ("pieces", "[" + ids.map { JSONWriter.quoted(tokenizer.token(for: $0) ?? "") }.joined(separator: ",") + "]")]))
        } else {
            for id in ids { print("\(id)\t\(tokenizer.token(for: id).map { JSONWriter.quoted($0) } ?? "?")") }
            print("\(ids.count) tokens")
        }
    }
}

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sentence embeddings from an encoder (BERT, e.g. all-MiniLM-L6-v2): mean pooling, unit length.")

    @Argument(help: "A Hugging Face folder of a BERT encoder.") var model: String
    @Option(help: "A text to embed (repeatable).") var text: [String] = []
    @Flag(help: "Print the cosine similarity of every pair too.") var similarity = false
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try threadOptions.apply()
        guard !text.isEmpty else { throw ValidationError("give at least one --text") }
        let loaded = try loadPretrained(model)
        let encoder = try loaded.encoder()
        let ids = text.map { loaded.tokenizer.encode($0, addSpecialTokens: true) }
        for (t, i) in zip(text, ids) where i.count > encoder.config.maxPositions {
            throw CLIError("'\(t.prefix(40))...' has \(i.count) tokens; the encoder takes \(encoder.config.maxPositions)")
        }
        let embeddings = encoder.embed(batch: ids)  // one padded batch
        for (t, e) in zip(text, embeddings) {
            print(JSONWriter.object([("text", JSONWriter.quoted(t)), ("embedding", "[" + e.map { String(format: "%.6f", $0) }.joined(separator: ",") + "]")]))
        }
        if similarity {
            for i in embeddings.indices { for j in embeddings.indices where j > i {
                print(String(format: "cosine %d %d: %.4f", i, j, zip(embeddings[i], embeddings[j]).reduce(0) { $0 + $1.0 * $1.1 }))
            } }
        }
    }
}
