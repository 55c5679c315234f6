"""Make the byte-level BPE tokenizer fixture for tests/tokenizer.rs.

Trains a tiny ByteLevel BPE (the SmolLM2 / GPT-2 / Llama-3 family of tokenizers) with the
Python `tokenizers` library on a small built-in corpus, deterministically, and writes to
tests/fixtures/tok/:
  tokenizer.json          the trained tokenizer (vocab ~300; specials <|endoftext|>=0,
                          <|im_start|>=1, <|im_end|>=2 as in SmolLM2)
  tokenizer_config.json   SmolLM2-135M-Instruct's special tokens and its real chat template
  generation_config.json  bos/eos ids as SmolLM2 ships them
  goldens.json            ids from the Python library for a list of strings (Unicode, emoji,
                          digits, whitespace, special tokens) and their decodes
Rust tests never run Python; the outputs are committed.

Usage: /opt/ffvenv/bin/python tools/make_tok_fixtures.py [--out DIR]
"""

import argparse
import json
import os

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! Hello there, how are you today?",
    "Fourier transforms turn convolution into multiplication.",
    "the the the and and and of of to to in in is is that that",
    "A small language model runs on a phone with a quantised base.",
    "Adapters are a few kilobytes; the spectral coefficients are learned.",
    "user assistant system user assistant system",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 2024 3.14159",
    "    indented code line\n\tdef main():\n\t\treturn 0\n",
    "café naïve résumé über straße",
    "你好世界 你好 世界",
    "emoji 🦀 🚀 😀 👍🏽",
] * 8

STRINGS = [
    "",
    "Hello, world!",
    "hello world",
    " leading space",
    "trailing space ",
    "  two  spaces   three   ",
    "line one\nline two\n\n\ttab",
    "12345 and 3.14159 and 2024-12-04",
    "café naïve résumé",
    "你好世界",
    "🦀 crab, 🚀 rocket, 👍🏽 thumbs",
    "unseen: zqxj ЖЗИ ﬁ",
    "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more",
    "The quick brown fox jumps over the lazy dog.",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tok"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    tok = Tokenizer(models.BPE())
    # As SmolLM2's tokenizer.json: digits split one by one, then GPT-2 byte-level.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.save(os.path.join(args.out, "tokenizer.json"), pretty=False)
    tok = Tokenizer.from_file(os.path.join(args.out, "tokenizer.json"))

    cases = []
    for s in STRINGS:
        ids = tok.encode(s, add_special_tokens=True).ids
        cases.append(
            {
                "text": s,
                "ids": ids,
                "decode": tok.decode(ids, skip_special_tokens=False),
                "decode_skip_special": tok.decode(ids, skip_special_tokens=True),
                # Decoding each id alone (what a naive streamer would print).
                "pieces": [tok.decode([i], skip_special_tokens=False) for i in ids],
            }
        )
    goldens = {
        "generator": f"tools/make_tok_fixtures.py (tokenizers {tokenizers.__version__})",
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "special": {t: tok.token_to_id(t) for t in SPECIALS},
        "cases": cases,
    }
    with open(os.path.join(args.out, "goldens.json"), "w", encoding="utf-8") as f:
        json.dump(goldens, f, ensure_ascii=False, indent=1)
        f.write("\n")

    config = {
        "add_prefix_space": False,
        "bos_token": "<|im_start|>",
        "chat_template": SMOLLM2_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "model_max_length": 8192,
        "pad_token": "<|im_end|>",
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": "<|endoftext|>",
        "vocab_size": 49152,
    }
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
        f.write("\n")
    gen = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    with open(os.path.join(args.out, "generation_config.json"), "w", encoding="utf-8") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}: vocab {goldens['vocab_size']}, {len(cases)} cases")


if __name__ == "__main__":
    main()
