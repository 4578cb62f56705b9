import LatheText

/// Chat with a pretrained model: its template, the token ids of a conversation, the tokens that
/// end a turn.
extension PretrainedModel {
    /// The model's chat template, parsed; an error naming the file when it has none or when the
    /// template cannot be parsed.
    public func parsedChatTemplate() throws -> ChatTemplate {
        guard let source = chatTemplate, !source.isEmpty else {
            throw ModelFileError(file: path, message: "the model has no chat template (no tokenizer.chat_template in a GGUF file, "
                                 + "no chat_template in tokenizer_config.json); base models such as Gemma 3 270M have none")
        }
        do {
            return try ChatTemplate(source: source)
        } catch {
            throw ModelFileError(file: path, message: "\(error)")
        }
    }

    /// `messages` rendered with the model's template and its BOS/EOS token texts.
    public func renderChat(_ template: ChatTemplate, messages: [ChatMessage], addGenerationPrompt: Bool = true,
                           extra: [String: JinjaValue] = [:]) throws -> String {
        try template.render(messages: messages, addGenerationPrompt: addGenerationPrompt, tokenizer: tokenizer, extra: extra)
    }

    /// The token ids of a rendered conversation. Special tokens written in the text are
    /// recognised; BOS is added where the tokenizer adds one, unless the template already wrote
    /// it at the start (Gemma's and Llama 3's templates do), so that it never appears twice.
    public func chatPromptIDs(_ rendered: String) -> [Int] {
        var ids = tokenizer.encode(rendered, addSpecialTokens: false)
        if let bos = tokenizer.addedBOS, ids.first != bos {
            ids.insert(bos, at: 0)
        }
        return ids
    }

    /// Tokens that end an assistant turn: the model's end-of-sequence tokens and the end-of-turn
    /// tokens of the common templates (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, `<|eom_id|>`,
    /// `<|end|>`, `<|endoftext|>`, `<|end_of_text|>`) where the vocabulary has them.
    public var chatStopTokens: Set<Int> {
        var stops = Set<Int>()
        if let model = try? languageModel() { stops.formUnion(model.eosTokenIDs) }
        if let eos = tokenizer.eos { stops.insert(eos) }
        for text in ["<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<|endoftext|>", "<|end_of_text|>"] {
            if let id = tokenizer.addedTokens.first(where: { $0.content == text })?.id ?? tokenizer.id(for: text) { stops.insert(id) }
        }
        return stops
    }
}
