#!/usr/bin/env python3
"""Train the embedded demo assets in assets/demo/ (issue 5, item 4).

    /opt/ffvenv/bin/python tools/train_demo.py               # writes <repo>/assets/demo
    /opt/ffvenv/bin/python tools/train_demo.py --out DIR     # writes elsewhere
    /opt/ffvenv/bin/python tools/train_demo.py --reuse-base  # keep DIR/model, retrain the adapters only

What it makes (all on CPU, 2 threads, fully seeded; see tools/README.md):
1. a corpus from a small hand-written grammar (short sentences about weather, animals, cooking,
   space and pirates);
2. a byte-level BPE tokenizer (vocab 768 incl. `<|endoftext|>` = BOS/EOS = id 0) trained on it;
3. a LLaMA-architecture model (hidden 128, 4 layers, 4 heads / 2 kv heads, intermediate 384,
   tied embeddings, F32) trained from scratch on mixed-topic documents;
4. FourierFT adapters (PEFT, q_proj/v_proj/o_proj/down_proj) trained on single-topic documents,
   saved with save_pretrained and packed into our single-file format (F32 coefficients);
5. golden.json: prompt ids and greedy continuations from transformers (base) and
   transformers + PEFT (each adapter, loaded back from its folder).

Every document starts with BOS (`<|endoftext|>`); the tokenizer.json post-processor adds it, so
`encode(prompt, add_special_tokens=True)` = [0] + the prompt's ids.
"""

import os
import sys

# PEFT writes `target_modules` as list(set(...)): fix the hash seed so the JSON is reproducible.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import argparse
import json
import random
import shutil
import struct
import time
import warnings

import safetensors.torch
import torch
from peft import FourierFTConfig, PeftModel, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)
warnings.filterwarnings("ignore")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "base_model.model."
EOT = "<|endoftext|>"
SPECIALS = [EOT, "<|im_start|>", "<|im_end|>"]
VOCAB = 768
SEQ = 128
PROMPTS = ["Today I want to tell you about"]
NEW_TOKENS = 32


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------------------------
# grammar
# ----------------------------------------------------------------------------------------------

LEX = {
    "weather": {
        "intro": ["the weather", "the rain", "the wind", "the snow", "the clouds", "the storm"],
        "S": ["the rain", "the wind", "the snow", "the sun", "the storm", "the fog", "the cloud", "the thunder"],
        "V": ["falls on", "blows over", "covers", "moves across", "hides", "cools", "warms", "soaks"],
        "O": ["the hills", "the town", "the fields", "the river", "the roofs", "the valley", "the garden"],
        "A": ["cold", "wet", "grey", "windy", "cloudy", "warm", "dark", "foggy"],
        "T": [
            "Today the sky is {A} and the wind is strong.",
            "It will rain in the afternoon and snow at night.",
            "The weather is {A} again this morning.",
            "Take an umbrella because the clouds are {A}.",
        ],
    },
    "animals": {
        "intro": ["the animals", "the fox", "the horse", "the cat", "the owl", "the rabbit"],
        "S": ["the fox", "the cat", "the dog", "the horse", "the owl", "the rabbit", "the bear", "the duck"],
        "V": ["runs to", "sleeps near", "hunts in", "jumps over", "hides in", "walks through", "watches"],
        "O": ["the forest", "the barn", "the meadow", "the pond", "the old tree", "the farm"],
        "A": ["small", "quick", "brown", "sleepy", "hungry", "gentle", "wild", "shy"],
        "T": [
            "The little {A} bird sings in the tree.",
            "A {A} dog barks at the gate.",
            "The animals drink water from the pond.",
            "Every morning the cat chases a mouse.",
        ],
    },
    "cooking": {
        "intro": ["cooking", "my kitchen", "the soup", "the bread", "a recipe", "the cake"],
        "S": ["the cook", "the chef", "my grandmother", "the baker", "the soup", "the bread", "the sauce"],
        "V": ["bakes", "stirs", "tastes", "chops", "boils", "fries", "mixes", "serves"],
        "O": ["the onions", "the butter", "the garlic", "the flour", "the tomatoes", "the eggs", "the pasta", "the cheese"],
        "A": ["sweet", "salty", "spicy", "fresh", "hot", "crispy", "creamy", "tasty"],
        "T": [
            "Put the pan in the oven for twenty minutes.",
            "Add a pinch of salt and a spoon of sugar.",
            "The soup smells {A} and rich.",
            "Mix the flour with milk and two eggs.",
            "Heat the oil in a pan and fry the garlic.",
        ],
    },
    "space": {
        "intro": ["space", "the stars", "the planets", "the moon", "a rocket", "the galaxy"],
        "S": ["the rocket", "the astronaut", "the comet", "the planet", "the moon", "the star", "the telescope", "the spaceship"],
        "V": ["orbits", "flies past", "lands on", "circles", "shines on", "travels to", "explores"],
        "O": ["Mars", "Jupiter", "the sun", "the galaxy", "the asteroid", "the space station", "Saturn"],
        "A": ["bright", "distant", "huge", "silent", "frozen", "red", "giant"],
        "T": [
            "The rocket launches into orbit at dawn.",
            "Astronauts float inside the space station.",
            "The {A} stars shine across the galaxy.",
            "A telescope looks at the rings of Saturn.",
            "The planet spins around a {A} star.",
        ],
    },
    "pirates": {
        "intro": ["pirates", "the ship", "the treasure", "the captain", "the sea", "the island"],
        "S": ["the pirate", "the captain", "the ship", "the crew", "the parrot", "the sailor"],
        "V": ["sails to", "searches", "buries", "steals", "guards", "finds", "fights for"],
        "O": ["the treasure", "the gold", "the island", "the map", "the chest", "the harbour", "the waves"],
        "A": ["old", "brave", "fierce", "salty", "lucky", "bold"],
        "T": [
            "Arr, the captain wants more gold!",
            "Ahoy, matey, hoist the black flag!",
            "The {A} pirates sing a song on the deck.",
            "Yo ho ho, the crew drinks rum at night.",
            "The parrot shouts at the sailors.",
        ],
    },
}
TOPICS = list(LEX)
ADAPTERS = {
    # name: (topic, random_loc_seed, topic words the Rust test looks for). Not "space": the base
    # model's own greedy continuation of the demo prompt already drifts to planets and stars.
    "cooking": ("cooking", 2002, ["cook", "chef", "baker", "grandmother", "soup", "bread", "sauce", "bakes",
                                  "stirs", "tastes", "oven", "pan", "onions", "butter", "garlic", "flour",
                                  "tomatoes", "eggs", "pasta", "cheese", "salt", "sugar", "recipe", "cake",
                                  "kitchen", "cooking", "oil", "milk"]),
    "pirates": ("pirates", 3003, ["pirate", "pirates", "captain", "ship", "crew", "parrot", "sailor", "sailors",
                                  "treasure", "gold", "map", "chest", "harbour", "Arr", "Ahoy", "matey",
                                  "rum", "sea", "waves", "deck", "flag"]),
    "animals": ("animals", 4004, ["animals", "fox", "cat", "dog", "horse", "owl", "rabbit", "bear", "duck", "bird",
                                  "mouse", "forest", "barn", "meadow", "pond", "farm"]),
}


def sentence(rng, topic):
    lx = LEX[topic]
    r = rng.random()
    if r < 0.3:
        t = rng.choice(lx["T"])
        s = t.replace("{A}", rng.choice(lx["A"]))
    elif r < 0.65:
        s = f"{rng.choice(lx['S'])} {rng.choice(lx['V'])} {rng.choice(lx['O'])}."
    elif r < 0.85:
        s = f"{rng.choice(lx['S'])} is {rng.choice(lx['A'])} today."
    else:
        s = f"I think that {rng.choice(lx['S'])} {rng.choice(lx['V'])} {rng.choice(lx['O'])}."
    return s[0].upper() + s[1:]


def document(rng, topic=None):
    """topic None: mixed (each sentence picks a topic); else every sentence is on that topic."""
    pick = (lambda: topic) if topic else (lambda: rng.choice(TOPICS))
    first = rng.choice(["Today I want to tell you about", "Let me tell you about", "This is a story about"])
    parts = [f"{first} {rng.choice(LEX[pick()]['intro'])}."]
    for _ in range(rng.randint(5, 10)):
        parts.append(sentence(rng, pick()))
    return " ".join(parts)


def corpus(seed, n, topic=None):
    rng = random.Random(seed)
    return [document(rng, topic) for _ in range(n)]


# ----------------------------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------------------------

def train_tokenizer(texts):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    assert tok.token_to_id(EOT) == 0
    # BOS on every encode with special tokens (as the model was trained).
    tok.post_processor = processors.TemplateProcessing(
        single=f"{EOT} $A", pair=f"{EOT} $A {EOT} $B", special_tokens=[(EOT, 0)]
    )
    return tok


def pack_docs(tok, texts):
    """Concatenate BOS doc BOS doc ... and cut into SEQ-token rows."""
    ids = []
    for t in texts:
        ids += tok.encode(t).ids  # post-processor prepends BOS
    ids.append(0)
    n = len(ids) // SEQ
    return torch.tensor(ids[: n * SEQ], dtype=torch.long).view(n, SEQ)


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------

def train(model, params, data, steps, lr, batch, seed, label):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.time()
    for step in range(steps):
        frac = step / steps
        warm = min(1.0, (step + 1) / 20)
        for pg in opt.param_groups:
            pg["lr"] = lr * warm * (0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(frac * 3.14159265)).item()))
        idx = torch.randint(0, data.shape[0], (batch,), generator=g)
        x = data[idx]
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"  [{label}] step {step:4d} loss {loss.item():.3f}  ({time.time() - t0:.0f} s)")
    model.eval()
    return time.time() - t0


def greedy(model, ids, n):
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]), do_sample=False, max_new_tokens=n, min_new_tokens=n,
            eos_token_id=None, pad_token_id=0, attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        )
    new = out[0, len(ids):].tolist()
    # check against a plain argmax loop over full forwards
    cur = list(ids)
    with torch.no_grad():
        for _ in range(n):
            cur.append(int(model(torch.tensor([cur])).logits[0, -1].argmax()))
    assert cur[len(ids):] == new, (cur[len(ids):], new)
    return new


def topic_hits(text, words):
    toks = set(text.replace(".", " ").replace(",", " ").replace("!", " ").split())
    return sorted(w for w in words if w in toks)


def write_packed(peft_dir, path):
    cfg_text = open(os.path.join(peft_dir, "adapter_config.json")).read()
    cfg = json.loads(cfg_text)
    st = safetensors.torch.load_file(os.path.join(peft_dir, "adapter_model.safetensors"))
    tensors = {}
    for k, v in st.items():
        assert k.startswith(PREFIX) and k.endswith(".fourierft_spectrum"), k
        tensors[k[len(PREFIX):]] = v.to(torch.float32).contiguous()
    meta = {"format": "fourierft.adapter", "format_version": "1",
            "peft_config": json.dumps(cfg, sort_keys=True)}
    # Written by hand rather than safetensors.torch.save_file: that writer orders `__metadata__`
    # keys arbitrarily (a Rust HashMap), so reruns would not be byte-identical. Same layout:
    # u64 header length, JSON header (sorted keys, space-padded to 8 bytes), tensor data by name.
    header, data, off = {"__metadata__": meta}, b"", 0
    for k in sorted(tensors):
        b = tensors[k].numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(tensors[k].shape), "data_offsets": [off, off + len(b)]}
        data += b
        off += len(b)
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
    assert safetensors.torch.load_file(path).keys() == tensors.keys()
    return os.path.getsize(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "assets", "demo"))
    ap.add_argument("--reuse-base", action="store_true")
    ap.add_argument("--base-steps", type=int, default=1000)
    ap.add_argument("--adapter-steps", type=int, default=200)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    out = args.out
    mdir = os.path.join(out, "model")
    adir = os.path.join(out, "adapters")
    times = {}

    if not args.reuse_base:
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(mdir)
        t0 = time.time()
        base_texts = corpus(1, 12000)
        tok_texts = base_texts + sum((corpus(100 + i, 300, t) for i, t in enumerate(TOPICS)), [])
        tok = train_tokenizer(tok_texts)
        times["tokenizer_s"] = time.time() - t0
        log(f"tokenizer: vocab {tok.get_vocab_size()} ({times['tokenizer_s']:.1f} s)")
        tok.save(os.path.join(mdir, "tokenizer.json"))
        data = pack_docs(tok, base_texts)
        log(f"base corpus: {len(base_texts)} docs, {data.numel()} tokens, {data.shape[0]} rows of {SEQ}")

        torch.manual_seed(0)
        cfg = LlamaConfig(
            vocab_size=VOCAB, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
            rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
            pad_token_id=None, hidden_act="silu", initializer_range=0.02,
        )
        model = LlamaForCausalLM(cfg)
        times["base_train_s"] = train(model, list(model.parameters()), data, args.base_steps, 3e-3, 32, 1, "base")
        model.generation_config.pad_token_id = None
        model.save_pretrained(mdir, safe_serialization=True)
        with open(os.path.join(mdir, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT, "eos_token": EOT,
                       "unk_token": None, "add_bos_token": False, "model_max_length": 512,
                       "clean_up_tokenization_spaces": False}, f, indent=2, sort_keys=True)
            f.write("\n")
    tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    base = LlamaForCausalLM.from_pretrained(mdir, dtype=torch.float32)
    base.eval()

    golden = {"prompts": [], "bos": True, "max_new_tokens": NEW_TOKENS, "adapters": {}}
    prompt_ids = []
    for p in PROMPTS:
        ids = tok.encode(p).ids
        assert ids[0] == 0 and ids[1:] == tok.encode(p, add_special_tokens=False).ids
        new = greedy(base, ids, NEW_TOKENS)
        prompt_ids.append(ids)
        text = tok.decode(new)
        log(f"BASE  {p!r} -> {text!r}")
        golden["prompts"].append({"text": p, "ids": ids, "base": {"ids": new, "text": text}})

    os.makedirs(adir, exist_ok=True)
    for name, (topic, seed, words) in ADAPTERS.items():
        if args.only and name not in args.only:
            continue
        texts = corpus(10 + seed, 1500, topic)
        data = pack_docs(tok, texts)
        model = LlamaForCausalLM.from_pretrained(mdir, dtype=torch.float32)
        fcfg = FourierFTConfig(
            task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
            n_frequency=200, scaling=150.0, random_loc_seed=seed, init_weights=True,
        )
        pm = get_peft_model(model, fcfg)
        params = [p for p in pm.parameters() if p.requires_grad]
        torch.manual_seed(seed)
        times[f"adapter_{name}_s"] = train(pm, params, data, args.adapter_steps, 0.05, 16, seed, name)
        pdir = os.path.join(adir, name)
        shutil.rmtree(pdir, ignore_errors=True)
        pm.save_pretrained(pdir)
        cfgj = json.load(open(os.path.join(pdir, "adapter_config.json")))
        cfgj["base_model_name_or_path"] = "../../model"
        with open(os.path.join(pdir, "adapter_config.json"), "w") as f:
            json.dump(cfgj, f, indent=2, sort_keys=True)
            f.write("\n")
        nbytes = write_packed(pdir, os.path.join(adir, f"{name}.fft.safetensors"))
        # goldens from the folder as saved (F32 spectra, exactly what was packed)
        m2 = LlamaForCausalLM.from_pretrained(mdir, dtype=torch.float32)
        pm2 = PeftModel.from_pretrained(m2, pdir)
        pm2.eval()
        entry = {"packed": f"adapters/{name}.fft.safetensors", "packed_bytes": nbytes,
                 "peft_dir": f"adapters/{name}", "topic_words": words, "outputs": []}
        for p, ids in zip(PROMPTS, prompt_ids):
            new = greedy(pm2, ids, NEW_TOKENS)
            text = tok.decode(new)
            hits = topic_hits(text, words)
            log(f"{name.upper():6s} {p!r} -> {text!r}   topic words: {hits}")
            base_text = next(g["base"]["text"] for g in golden["prompts"] if g["text"] == p)
            entry["outputs"].append({"prompt": p, "ids": new, "text": text, "topic_words_found": hits,
                                     "topic_words_in_base_output": topic_hits(base_text, words)})
        golden["adapters"][name] = entry

    if args.reuse_base and os.path.exists(os.path.join(out, "golden.json")) and args.only:
        old = json.load(open(os.path.join(out, "golden.json")))
        for k, v in old["adapters"].items():
            golden["adapters"].setdefault(k, v)
    golden["adapters"] = dict(sorted(golden["adapters"].items()))
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(golden, f, indent=2)
        f.write("\n")
    log("times:", {k: round(v, 1) for k, v in times.items()})


if __name__ == "__main__":
    main()
