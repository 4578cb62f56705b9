import LatheNN
import LatheTensor

/// How ``generate(_:prompt:options:onToken:)`` continues a prompt.
public struct GenerationOptions: Sendable {
    public var maxTokens: Int
    /// Temperature, top-k, top-p, min-p (``Sampling``); temperature 0 is greedy.
    public var sampling: SamplingOptions
    /// Logits of tokens among the last `repetitionWindow` are divided by this (when positive;
    /// multiplied when negative), as llama.cpp and transformers do; 1: off.
    public var repetitionPenalty: Float
    public var repetitionWindow: Int
    /// Tokens that end the generation (not included in the result). Default: the model's EOS.
    public var stopTokens: Set<Int>?
    public var seed: UInt64

    public init(maxTokens: Int = 128, sampling: SamplingOptions = .greedy, repetitionPenalty: Float = 1, repetitionWindow: Int = 64,
                stopTokens: Set<Int>? = nil, seed: UInt64 = 0) {
        precondition(maxTokens >= 0, "GenerationOptions: maxTokens must be >= 0")
        precondition(repetitionPenalty > 0 && repetitionPenalty.isFinite, "GenerationOptions: repetitionPenalty must be positive")
        (self.maxTokens, self.sampling, self.repetitionPenalty, self.repetitionWindow) = (maxTokens, sampling, repetitionPenalty, repetitionWindow)
        (self.stopTokens, self.seed) = (stopTokens, seed)
    }
}

/// What a generation did.
public struct GenerationResult: Sendable, Equatable {
    public enum Stop: Sendable, Equatable {
        /// A stop token came (not included in ``tokens``).
        case stopToken(Int)
        case maxTokens
        /// The model's context is full.
        case contextFull
        /// The callback asked to stop (a stop string, say).
        case callback
    }
    public var tokens: [Int]
    public var stop: Stop
    /// Seconds spent on the prompt and on the generated tokens.
    public var promptSeconds: Double
    public var generationSeconds: Double
    /// Prompt tokens run (not counting those reused from a session's cache).
    public var promptTokens: Int
    /// Prompt tokens whose cached keys and values were reused (``DecodingSession``).
    public var reusedTokens: Int = 0
}

/// Continues `prompt` token by token with `model`'s cache: the prompt in one pass, then one
/// token per step. `onToken` sees each new token (before the next is computed) and returns
/// false to stop. The same options and seed give the same tokens.
@discardableResult
public func generate(_ model: LanguageModel, prompt: [Int], options: GenerationOptions,
                     onToken: (Int) -> Bool = { _ in true }) -> GenerationResult {
    let session = DecodingSession(model, capacity: Swift.min(model.maxPositions, prompt.count + options.maxTokens))
    return session.generate(prompt: prompt, options: options, onToken: onToken)
}

/// A model with a cache that outlives one generation: when the next prompt starts with tokens
/// the cache already holds (a chat's earlier turns and replies), only the rest is run.
public final class DecodingSession {
    public let model: LanguageModel
    public let cache: KVCache
    /// The tokens whose keys and values are in ``cache``, in order.
    public internal(set) var tokens: [Int] = []

    /// A session whose cache starts with room for `capacity` positions and grows as needed.
    public init(_ model: LanguageModel, capacity: Int = 256) {
        self.model = model
        cache = model.makeCache(capacity: Swift.max(1, Swift.min(capacity, model.maxPositions)))
    }

    /// ``generate(_:prompt:options:onToken:)`` reusing the cached positions that `prompt` starts
    /// with (at least its last token is run, for its logits). ``GenerationResult/reusedTokens``
    /// says how many were reused.
    @discardableResult
    public func generate(prompt: [Int], options: GenerationOptions, onToken: (Int) -> Bool = { _ in true }) -> GenerationResult {
        precondition(!prompt.isEmpty, "generate: the prompt needs at least one token")
        precondition(prompt.count <= model.maxPositions, "generate: the prompt (\(prompt.count) tokens) is longer than the model's context (\(model.maxPositions))")
        let stops = options.stopTokens ?? Set(model.eosTokenIDs)
        var generator = RandomGenerator(seed: options.seed)
        var history = prompt, out: [Int] = []
        let t0 = Timing.now()
        let prefilled = prefill(prompt, maxTokens: options.maxTokens)
        var logits = prefilled.logits
        let reused = prefilled.reused
        let t1 = Timing.now()
        var stop = GenerationResult.Stop.maxTokens
        while out.count < options.maxTokens {
            if options.repetitionPenalty != 1 {
                for id in Set(history.suffix(options.repetitionWindow)) {
                    logits[id] = logits[id] > 0 ? logits[id] / options.repetitionPenalty : logits[id] * options.repetitionPenalty
                }
            }
            let next = Sampling.sample(logits: logits, options: options.sampling, generator: &generator)
            if stops.contains(next) { stop = .stopToken(next); break }
            out.append(next)
            history.append(next)
            if !onToken(next) { stop = .callback; break }
            if out.count == options.maxTokens { break }
            if cache.length >= cache.capacity { stop = .contextFull; break }
            logits = model.logits([next], cache: cache, lastOnly: true).scalars
        }
        tokens = Array(history.prefix(cache.length))
        return GenerationResult(tokens: out, stop: stop, promptSeconds: t1 - t0, generationSeconds: Timing.now() - t1,
                                promptTokens: prompt.count - reused, reusedTokens: reused)
    }

    /// Runs `prompt` after the cached positions it starts with (at least its last token) and
    /// returns its last row of logits and how many positions were reused; the cache is grown to
    /// hold `maxTokens` more. ``tokens`` is the caller's to update.
    func prefill(_ prompt: [Int], maxTokens: Int) -> (logits: [Float], reused: Int) {
        var reused = 0
        while reused < Swift.min(tokens.count, prompt.count - 1), tokens[reused] == prompt[reused] { reused += 1 }
        cache.truncate(to: reused)
        tokens = Array(prompt.prefix(reused))
        cache.reserve(Swift.min(model.maxPositions, prompt.count + maxTokens))
        return (model.logits(Array(prompt[reused...]), cache: cache, lastOnly: true).scalars, reused)
    }
}
