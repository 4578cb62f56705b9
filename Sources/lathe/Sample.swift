import ArgumentParser
import Foundation
import Lathe

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text with a trained character GPT.",
        discussion: """
            The recipe describes the model and its corpus (the vocabulary is the corpus's characters). \
            Temperature 0 is greedy decoding; --top-k and --top-p (nucleus) cut the distribution before sampling.
            Example: lathe sample Recipes/shakespeare-char-gpt.yaml --prompt "ROMEO:" --tokens 300 --temperature 0.8 --top-k 20
            """
    )

    @Argument(help: "The recipe that describes the model and corpus.") var recipe: String
    @Option(help: "Weights (default: the recipe's output/best.safetensors).") var model: String?
    @Option(help: "Text to continue (every character must be in the corpus).") var prompt: String = "\n"
    @Option(help: "Characters to generate.") var tokens: Int = 500
    @Option(help: "Softmax temperature; 0 is greedy.") var temperature: Float = 1
    @Option(name: .customLong("top-k"), help: "Sample only from the K most likely characters.") var topK: Int?
    @Option(name: .customLong("top-p"), help: "Sample only from the smallest set of characters with probability >= P.") var topP: Float?
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(name: .customLong("set"), help: "Override a recipe key: --set key.path=value.") var overrides: [String] = []
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard tokens >= 0 else { throw ValidationError("--tokens must be at least 0, got \(tokens)") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be 0 or more, got \(temperature)") }
        if let topK, topK < 1 { throw ValidationError("--top-k must be at least 1, got \(topK)") }
        if let topP, !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1], got \(topP)") }
        guard !prompt.isEmpty else { throw ValidationError("--prompt must not be empty (the default is a newline)") }
    }

    func run() throws {
        try threadOptions.apply()
        let r = try Recipe.load(contentsOf: URL(fileURLWithPath: recipe), overrides: overrides)
        let trainer = try Trainer(recipe: r)
        if threadOptions.threads != nil { try threadOptions.apply() }
        guard let task = trainer.task as? LanguageModelTask, let gpt = trainer.model as? CharGPT else {
            throw CLIError("\(recipe) describes \(r.model.name) on \(r.data.name); lathe sample needs a char-gpt recipe")
        }
        let corpus = task.train
        let unknown = prompt.unicodeScalars.filter { !corpus.canEncode(String($0)) }
        if !unknown.isEmpty {
            var seen = Set<Unicode.Scalar>()
            let list = unknown.filter { seen.insert($0).inserted }
                .map { "'\($0.escaped(asASCII: false))' (" + String(format: "U+%04X", $0.value) + ")" }
            throw CLIError("the prompt has characters that are not in the \(r.data.name) vocabulary: "
                                  + list.joined(separator: ", "))
        }
        let path = model ?? URL(fileURLWithPath: r.output).appendingPathComponent("best.safetensors").path
        let file = try SafeTensors.read(contentsOf: URL(fileURLWithPath: path))
        try gpt.loadStateDict(file.tensors)
        var generator = RandomGenerator(seed: seed)
        let ids = gpt.generate(corpus.encode(prompt), maxNewTokens: tokens, temperature: temperature, topK: topK, topP: topP,
                               generator: &generator)
        print(corpus.decode(ids))
    }
}
