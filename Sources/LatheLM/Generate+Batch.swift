import LatheNN
import LatheTensor

/// Continues many prompts with one model, several sequences per decode step (continuous
/// batching): each of up to ``batchSize`` slots holds a ``DecodingSession`` with its own cache;
/// a slot's prompt is run alone (reusing the positions its cache shares with it, as a session
/// does), then every unfinished slot's next token runs in one call of
/// ``LanguageModel/logits(next:caches:)`` — for ``DecoderModel``, one `[slots, hidden]` product per
/// layer instead of one matrix-vector product per sequence. A finished sequence frees its slot for
/// the next prompt at once.
///
/// Each prompt gets the tokens ``DecodingSession/generate(prompt:options:onToken:)`` gives it (the
/// same sampling, penalty, stops and seed per prompt): a ``DecoderModel`` step gives each row the
/// bits it has alone (``Tensor/decoding(rows:_:)``). A slot reuses the prefix its cache shares with
/// its next prompt, as one session does with the previous prompt; the reused keys and values were
/// computed by another prompt's pass, which gives the same bits when the prompt's rows take the
/// GEMM (more than four) either way.
public final class BatchDecoder {
    public let model: LanguageModel
    /// The most sequences decoded together.
    public let batchSize: Int
    /// One session per slot, kept between calls (their caches and shared prefixes).
    let sessions: [DecodingSession]

    public init(_ model: LanguageModel, batchSize: Int, capacity: Int = 256) {
        precondition(batchSize >= 1, "BatchDecoder: batchSize must be at least 1")
        (self.model, self.batchSize) = (model, batchSize)
        sessions = (0..<batchSize).map { _ in DecodingSession(model, capacity: capacity) }
    }

    /// A sequence in a slot.
    private struct Running {
        let index: Int
        let session: DecodingSession
        var history: [Int]
        var out: [Int] = []
        var generator: RandomGenerator
        /// The token chosen last, to run in the next step.
        var pending = 0
        let promptTokens: Int, reused: Int
        let promptSeconds: Double, started: Double
    }

    /// The continuations of `prompts` (in their order), each as
    /// ``DecodingSession/generate(prompt:options:onToken:)`` makes it. `onResult` sees each result
    /// as its sequence finishes (not in prompt order). ``GenerationResult/generationSeconds`` is the
    /// wall time from the sequence's first step to its last, shared with the others in its batch.
    @discardableResult
    public func generate(prompts: [[Int]], options: GenerationOptions,
                         onResult: (Int, GenerationResult) -> Void = { _, _ in }) -> [GenerationResult] {
        for p in prompts {
            precondition(!p.isEmpty, "BatchDecoder: every prompt needs at least one token")
            precondition(p.count <= model.maxPositions, "BatchDecoder: a prompt (\(p.count) tokens) is longer than the model's context (\(model.maxPositions))")
        }
        let stops = options.stopTokens ?? Set(model.eosTokenIDs)
        var results = [GenerationResult?](repeating: nil, count: prompts.count)
        var free = Array(sessions.reversed())
        var running: [Running] = []
        var next = 0

        func finish(_ r: Running, _ stop: GenerationResult.Stop) {
            r.session.tokens = Array(r.history.prefix(r.session.cache.length))
            let result = GenerationResult(tokens: r.out, stop: stop, promptSeconds: r.promptSeconds, generationSeconds: Timing.now() - r.started,
                                          promptTokens: r.promptTokens, reusedTokens: r.reused)
            results[r.index] = result
            free.append(r.session)
            onResult(r.index, result)
        }
        /// Picks the next token from `logits` as the session's loop does; false when the sequence ended.
        func choose(_ r: inout Running, _ logits: [Float]) -> Bool {
            guard r.out.count < options.maxTokens else { finish(r, .maxTokens); return false }
            var logits = logits
            if options.repetitionPenalty != 1 {
                for id in Set(r.history.suffix(options.repetitionWindow)) {
                    logits[id] = logits[id] > 0 ? logits[id] / options.repetitionPenalty : logits[id] * options.repetitionPenalty
                }
            }
            let token = Sampling.sample(logits: logits, options: options.sampling, generator: &r.generator)
            if stops.contains(token) { finish(r, .stopToken(token)); return false }
            r.out.append(token)
            r.history.append(token)
            if r.out.count == options.maxTokens { finish(r, .maxTokens); return false }
            if r.session.cache.length >= r.session.cache.capacity { finish(r, .contextFull); return false }
            r.pending = token
            return true
        }

        while true {
            // Fill the free slots; a prompt whose first token already ends it frees its slot again.
            while running.count < batchSize, next < prompts.count, let session = free.popLast() {
                let prompt = prompts[next]
                let t0 = Timing.now()
                let (logits, reused) = session.prefill(prompt, maxTokens: options.maxTokens)
                let t1 = Timing.now()
                var r = Running(index: next, session: session, history: prompt, generator: RandomGenerator(seed: options.seed),
                                promptTokens: prompt.count - reused, reused: reused, promptSeconds: t1 - t0, started: t1)
                next += 1
                if choose(&r, logits) { running.append(r) }
            }
            if running.isEmpty { break }
            let logits = model.logits(next: running.map(\.pending), caches: running.map(\.session.cache))
            let vocabulary = logits.shape[1], all = logits.scalars
            var still: [Running] = []
            for i in running.indices {
                var r = running[i]
                if choose(&r, Array(all[i * vocabulary..<(i + 1) * vocabulary])) { still.append(r) }
            }
            running = still
        }
        return results.map { $0! }
    }
}
