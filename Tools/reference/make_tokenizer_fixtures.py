#!/usr/bin/env python3
"""Writes the tokenizer fixtures in Tests/Fixtures/text (used by LatheTextTests).

Run from the repository root with a Python that has `tokenizers`, `sentencepiece` (and
`transformers` is not needed):

    python3 Tools/reference/make_tokenizer_fixtures.py

Tested with tokenizers 0.23.3 and sentencepiece 0.2.3. Everything is trained here on the
bundled Shakespeare text plus a few lines of other scripts, so the vocabularies are small
(a few hundred tokens) and the files stay under 200 kB together. For every tokenizer the
script writes `NAME.json` (a Hugging Face tokenizer.json) and `NAME.cases.json`: the reference
ids of a list of tricky strings (with and without special tokens) and the decoded text.

The byte-level BPE and SentencePiece files are reproducible; HF's WordPiece trainer breaks
ties between equal counts in hash order, so wordpiece.json differs from run to run (its cases
always match the tokenizer written beside them).

The SentencePiece models also get `NAME.gguf.json`: the arrays a GGUF file would hold
(tokenizer.ggml.tokens / scores / token_type / merges) for BPETokenizer's GGUF entry point;
their reference ids come from `sentencepiece` itself (spm-bpe) or from HF (byte-level).
"""
import gzip, json, os, sys, tempfile

import tokenizers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, decoders, processors, trainers, Regex

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "text")
os.makedirs(OUT, exist_ok=True)

with gzip.open(os.path.join(ROOT, "Sources", "LatheData", "Resources", "shakespeare.txt.gz"), "rt", encoding="utf-8") as f:
    shakespeare = f.read()

EXTRA = [
    "Café naïve résumé Ærøskøbing Ça va? Über Straße ŁÓDŹ żółć",
    "日本語のテキストです。中文字符串测试。한국어 텍스트.",
    "Ελληνικά Русский текст עברית العربية हिन्दी ไทย",
    "emoji 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 numbers 12345 3.14 1,000,000 2024-06-01",
    "def f(x):\n    return x**2\n\nclass A:\n\tpass\n",
    "I'm can't we're they've you'll he'd she's DON'T WE'RE",
]
TRAIN = [shakespeare[:120_000]] + EXTRA * 20

LLAMA3_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

CASES = [
    "", " ", "  ", "\t", "\n", "\n\n  ", "\n\n  x", "Hello world", " Hello  world ", "hello\tworld\n",
    "a\n\nb", "   leading", "trailing   ", "line1\r\nline2\r\n", "   \n\n\t  x", " \n \n y", "x \t\n\t z",
    "I'm can't we're they've you'll he'd she's", "I'M CAN'T WE'RE THEY'VE", "'s 't 'S 'RE", "don''t", "!!'s",
    "12345", "3.14", "1,000,000", "x2 y10 2024-06-01", "٣٤٥ ½ ⅓ ² Ⅻ", "007 0.5e-10",
    "café naïve résumé Ærøskøbing", "cafe\u0301 e\u0301e\u0300", "Ça va? Über Straße", "ŁÓDŹ żółć",
    "日本語のテキストです。", "中文字符串测试", "한국어 텍스트", "Ελληνικά Русский текст", "עברית العربية", "हिन्दी ไทย",
    "emoji 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷!", "zero\u200bwidth", "nbsp\u00a0here", "ideographic\u3000space", "\u0085nel",
    "line\u2028sep", "tab\u000bvt\u000cff", "ctrl\u0001char\u007f", "\ufeffbom", "replacement \ufffd char",
    "hello!!! what?? ... --- *** (parens) [brackets] {braces}", "foo@bar.com https://example.com/path?q=1&x=y",
    "def f(x):\n    return x**2\n", "    indented\n        more", "a" * 120, "ab" * 40 + " " + "xyz" * 30, " " * 37 + "end",
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer",
    "MACBETH. Is this a dagger which I see before me,\nThe handle toward my hand?",
]
SPECIAL_CASES = [
    "<|im_start|>user\nHello<|im_end|>", "text<|im_end|>more", "<|im_start|><|im_end|>", "<|im_start",
    "a <mask> b", "a<mask>b", "x  <mask>  y", "hello world", "helloworld", "say hello.",
    "<|endoftext|>", "before<|endoftext|>after",
]


def write(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def cases_for(tok, texts):
    out = []
    for t in texts:
        plain = tok.encode(t, add_special_tokens=False).ids
        special = tok.encode(t, add_special_tokens=True).ids
        decoded = tok.decode(plain, skip_special_tokens=False)
        decoded_skip = tok.decode(special, skip_special_tokens=True)
        # Fields equal to another are left out to keep the files small: a missing
        # "ids_special" is "ids", a missing "decoded" is the text, "decoded_skip" is "decoded".
        case = {"text": t, "ids": plain}
        if special != plain:
            case["ids_special"] = special
        if decoded != t:
            case["decoded"] = decoded
        if decoded_skip != decoded:
            case["decoded_skip"] = decoded_skip
        out.append(case)
    return out


def save(name, tok, texts=CASES + SPECIAL_CASES, extra=None):
    tok.no_padding()
    tok.no_truncation()
    path = os.path.join(OUT, name + ".json")
    tok.save(path)
    # Compact, one line: the fixtures are for machines.
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if extra:
        extra(data)
        tok = Tokenizer.from_str(json.dumps(data))
    write(name + ".json", data)
    write(name + ".cases.json", {"generator": f"make_tokenizer_fixtures.py, tokenizers {tokenizers.__version__}",
                                 "cases": cases_for(tok, texts)})
    return tok


def byte_level_bpe():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=560, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.train_from_iterator(TRAIN, trainer)
    return tok


def main():
    base = byte_level_bpe()
    base_json = json.loads(base.to_str())

    # GPT-2: ByteLevel with its regex; merges written as "a b" strings; a RoBERTa-style
    # <mask> (lstrip) and a single-word, normalized added token.
    def gpt2(data):
        data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]
        data["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = Tokenizer.from_str(json.dumps(base_json))
    tok.add_special_tokens([tokenizers.AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)])
    tok.add_tokens([tokenizers.AddedToken("hello", single_word=True, normalized=True, special=False)])
    save("bpe-gpt2", tok, extra=gpt2)

    # Llama 3: Split(regex) + ByteLevel without regex, ignore_merges, <|begin_of_text|> added by
    # the post-processor; merges as [a, b] arrays.
    tok = Tokenizer.from_str(json.dumps(base_json))
    tok.add_special_tokens(["<|begin_of_text|>"])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[
        ("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])

    def llama3(data):
        data["model"]["ignore_merges"] = True
    save("bpe-llama3", tok, extra=llama3)

    # Qwen2: NFC, Split(regex with single digits) + ByteLevel.
    tok = Tokenizer.from_str(json.dumps(base_json))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    save("bpe-qwen2", tok)

    # SmolLM2: Digits(individual) + ByteLevel(use_regex), as in SmolLM2's tokenizer.json.
    tok = Tokenizer.from_str(json.dumps(base_json))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    save("bpe-smollm", tok)
    # The same with add_prefix_space (the test patches the flag in bpe-smollm.json): a few cases.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)])
    write("bpe-smollm-prefix-space.cases.json", {"cases": cases_for(tok, [
        "Hello world", " Hello", "x 12 y", "12", "<|im_start|>user\nHi<|im_end|>", "", "  two", "\nline"])})

    # The same vocabulary as GGUF arrays (tokenizer.ggml.*), for the GGUF entry point.
    vocab = base.get_vocab()
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
    merges = [" ".join(m) if isinstance(m, list) else m for m in base_json["model"]["merges"]]
    write("bpe.gguf.json", {"tokens": tokens, "merges": merges,
                            "token_type": [3 if t in specials else 1 for t in tokens]})

    wordpiece()
    sentencepiece_models()
    print("wrote", sorted(os.listdir(OUT)), "total", sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT)), "bytes")


def wordpiece():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=700, show_progress=False,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(TRAIN, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    save("wordpiece", tok, CASES + SPECIAL_CASES + ["[CLS] already [SEP] here [MASK].", "A [mask] B", "Hello, World! Don't."])


def sentencepiece_models():
    import sentencepiece as spm
    tmp = tempfile.mkdtemp()
    corpus = os.path.join(tmp, "train.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(TRAIN))
    for kind, size in [("bpe", 500), ("unigram", 500)]:
        prefix = os.path.join(tmp, kind)
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=prefix, model_type=kind, vocab_size=size, byte_fallback=True,
            normalization_rule_name="identity", character_coverage=0.9995, add_dummy_prefix=True,
            remove_extra_whitespaces=False, split_digits=False, minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        n = sp.get_piece_size()
        pieces = [sp.id_to_piece(i) for i in range(n)]
        scores = [sp.get_score(i) for i in range(n)]
        types = []
        for i in range(n):
            types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1)
        if kind == "bpe":
            # Llama 2's tokenizer.json: merges derived from the vocabulary as HF's converter does
            # (every split of a piece into two pieces, ordered by the piece's id, then the parts').
            index = {p: i for i, p in enumerate(pieces)}
            merges = []
            for p, i in index.items():
                if types[i] != 1:
                    continue
                for k in range(1, len(p)):
                    a, b = p[:k], p[k:]
                    if a in index and b in index and types[index[a]] == 1 and types[index[b]] == 1:
                        merges.append((i, index[a], index[b], a, b))
            merges.sort()
            data = {
                "version": "1.0", "truncation": None, "padding": None,
                "added_tokens": [{"id": i, "content": pieces[i], "single_word": False, "lstrip": False,
                                  "rstrip": False, "normalized": False, "special": True} for i in range(3)],
                "normalizer": {"type": "Sequence", "normalizers": [
                    {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
                "pre_tokenizer": None,
                "post_processor": {"type": "TemplateProcessing",
                                   "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                                   "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                            {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                                   "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
                "decoder": {"type": "Sequence", "decoders": [
                    {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
                    {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
                "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                          "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                          "vocab": {p: i for i, p in enumerate(pieces)},
                          "merges": [[a, b] for _, _, _, a, b in merges]},
            }
        else:
            data = {
                "version": "1.0", "truncation": None, "padding": None,
                "added_tokens": [{"id": i, "content": pieces[i], "single_word": False, "lstrip": False,
                                  "rstrip": False, "normalized": False, "special": True} for i in range(3)],
                "normalizer": None,
                "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
                "post_processor": {"type": "TemplateProcessing",
                                   "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                                   "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                                   "special_tokens": {"</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}},
                "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
                "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": True,
                          "vocab": [[p, s] for p, s in zip(pieces, scores)]},
            }
        tok = Tokenizer.from_str(json.dumps(data))
        name = "spm-" + kind
        texts = [t for t in CASES + ["<s>hello</s>", "a</s>b", "a  b", "  two", "x<unk>y"]]
        save(name, tok, texts)
        # The SentencePiece library's own ids (what llama.cpp's SPM tokenizer reproduces).
        write(name + ".gguf.json", {
            "tokens": pieces, "scores": scores, "token_type": types,
            "cases": [{"text": t, "ids": sp.encode(t)} for t in CASES if "\r" not in t],
        })


if __name__ == "__main__":
    sys.exit(main())
