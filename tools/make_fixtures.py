#!/usr/bin/env python3
"""Generate the test fixtures in tests/fixtures/ (tiny models, PEFT FourierFT adapters, golden outputs).

Run from anywhere with the pinned venv (see tools/README.md):

    /opt/ffvenv/bin/python tools/make_fixtures.py            # writes <repo>/tests/fixtures
    /opt/ffvenv/bin/python tools/make_fixtures.py --out DIR  # writes elsewhere (e.g. to compare two runs)

The Rust tests read the outputs and never run Python, so file and tensor names are a contract:
they are described in tests/fixtures/README.md. Everything is deterministic (fixed seeds, one CPU
thread, PYTHONHASHSEED=0 because PEFT writes `target_modules` from a Python set): two runs give
byte-identical files. CPU only; about a minute, most of it in the large torch.randperm checks
(peak ~2.2 GB RAM).
"""

import os
import sys

# PEFT's adapter_config.json writes `target_modules` as list(set(...)), whose order depends on the
# string hash seed. Re-exec once with a fixed seed so the JSON is byte-identical between runs.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never touch the network (PEFT probes the hub for configs)
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only

import argparse
import dataclasses
import gc
import json
import shutil
import struct
import time
import warnings

import mlx.core as mx
import numpy as np
import safetensors.numpy
import safetensors.torch
import torch
from peft import FourierFTConfig, PeftConfig, PeftModel, get_peft_model
from peft.tuners.fourierft.layer import FourierFTLayer
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

torch.set_num_threads(1)  # same float summation order on every machine
torch.use_deterministic_algorithms(True)
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")

PREFIX = "base_model.model."  # PEFT's prefix in front of the transformers module names

# Fixed prompts (ids < vocab 64).
LLAMA_TOKENS = [1, 23, 45, 7, 60, 12, 33, 8, 50, 19, 41, 3]
GPT2_TOKENS = [5, 17, 42, 8, 63, 30, 2, 11, 54, 27, 36, 9]
# BERT: [CLS]=2 ... [SEP]=3, then two padding positions (pad id 0) masked out by attention_mask.
BERT_INPUT_IDS = [2, 17, 33, 5, 48, 9, 61, 3, 0, 0]
BERT_ATTENTION_MASK = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
GREEDY_NEW_TOKENS = 8

# Logits of each adapter computed in memory right after creation; the golden logits come from the
# adapter re-loaded from its folder, and must match these (checks that save/load round-trips).
IN_MEMORY_LOGITS = {}


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def reinit_(model: torch.nn.Module, seed: int, std: float) -> None:
    """Overwrite every parameter with seeded random values (PyTorch's default init is too small
    for a 32-wide model to give interesting logits). Norm weights ~ 1 + 0.1·N(0,1), biases ~
    0.02·N(0,1), everything else std·N(0,1). Parameters are visited in name order; tied
    parameters appear once in named_parameters()."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            is_norm = "norm" in name.lower() or ".ln_" in name or name.startswith("ln_") or ".ln_f" in name
            if name.endswith(".bias"):
                p.copy_(0.02 * r)
            elif is_norm:
                p.copy_(1.0 + 0.1 * r)
            else:
                p.copy_(std * r)


def fourier_layers(peft_model):
    """(transformers module name, FourierFT layer) for every adapted module, sorted by name."""
    out = []
    for name, mod in peft_model.named_modules():
        if isinstance(mod, FourierFTLayer):
            assert name.startswith(PREFIX), name
            out.append((name[len(PREFIX):], mod))
    return sorted(out, key=lambda t: t[0])


def set_spectra_(peft_model, adapter: str, seed: int, std: float) -> None:
    """Replace PEFT's N(0,1) init (far too large for these tiny models) by std·N(0,1), seeded.
    The values are drawn in f32 and then cast to the spectrum's dtype (F16 for llama_f16)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in fourier_layers(peft_model):
            spec = layer.fourierft_spectrum[adapter]
            spec.copy_((std * torch.randn(spec.shape, generator=g)).to(spec.dtype))


def save_st(path: str, tensors: dict) -> None:
    """safetensors (torch writer: header padded to 8 bytes, keys sorted)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, path)


def st_keys(path: str) -> dict:
    """{key: (dtype, shape)} from a safetensors header, plus the data start offset under ''."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    out = {k: (v["dtype"], v["shape"]) for k, v in hdr.items() if k != "__metadata__"}
    out[""] = 8 + n
    return out


def catch_warnings(fn, *a, **kw):
    """Run fn, returning (result, [warning texts]) so surprises can be printed."""
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        r = fn(*a, **kw)
    texts = [str(w.message) for w in ws if "is_gradient_checkpointing" not in str(w.message)]
    return r, texts


def golden_deltas(peft_model, adapter: str) -> dict:
    """`<module>.delta_w` F32 [out, in] = get_delta_weight(adapter).float() (PEFT's orientation, also
    for Conv1D) and `<module>.indices` I64 [2, n] (row over out_features, col over in_features)."""
    out = {}
    with torch.no_grad():
        for name, layer in fourier_layers(peft_model):
            if adapter not in layer.fourierft_spectrum:
                continue
            out[f"{name}.delta_w"] = layer.get_delta_weight(adapter).float().clone()
            out[f"{name}.indices"] = layer.indices[adapter].to(torch.int64).clone()
    return out


def describe_deltas(tag: str, d: dict) -> None:
    for k in sorted(d):
        if k.endswith(".delta_w"):
            m = k[: -len(".delta_w")]
            log(f"    {tag}: {m:45s} dW {tuple(d[k].shape)} n={d[m + '.indices'].shape[1]:3d} "
                f"max|dW|={d[k].abs().max().item():.5f}")


# ----------------------------------------------------------------------------------------------
# tiny base models
# ----------------------------------------------------------------------------------------------


def make_tiny_llama(out: str) -> None:
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
        max_position_embeddings=128, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).float().eval()
    reinit_(model, seed=1000, std=0.1)
    model.save_pretrained(os.path.join(out, "tiny_llama"), safe_serialization=True)


def make_tiny_bert(out: str) -> None:
    cfg = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, num_labels=3, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).float().eval()
    reinit_(model, seed=2000, std=0.1)
    model.save_pretrained(os.path.join(out, "tiny_bert"), safe_serialization=True)


def make_tiny_gpt2(out: str) -> None:
    # GPT-2's default bos/eos id 50256 is outside a 64-token vocab: use the last id, like GPT-2 does.
    cfg = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                     bos_token_id=63, eos_token_id=63)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).float().eval()
    reinit_(model, seed=3000, std=0.1)
    model.save_pretrained(os.path.join(out, "tiny_gpt2"), safe_serialization=True)


def load_llama(dtype=torch.float32):
    # A relative path: PEFT writes it as base_model_name_or_path into adapter_config.json.
    return LlamaForCausalLM.from_pretrained("tiny_llama", dtype=dtype).eval()


def load_bert():
    return BertForSequenceClassification.from_pretrained("tiny_bert", dtype=torch.float32).eval()


def load_gpt2():
    return GPT2LMHeadModel.from_pretrained("tiny_gpt2", dtype=torch.float32).eval()


# ----------------------------------------------------------------------------------------------
# adapters (each saved with PEFT's own save_pretrained)
# ----------------------------------------------------------------------------------------------

LLAMA_ADAPTERS = {
    "llama_a": dict(
        cfg=dict(target_modules=["q_proj", "v_proj"], n_frequency=50, scaling=150.0,
                 random_loc_seed=777, init_weights=False),
        spectrum_seed=101, std=0.02),
    "llama_b": dict(
        cfg=dict(target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"], n_frequency=80,
                 scaling=100.0, random_loc_seed=2024, layers_to_transform=[1], init_weights=False),
        spectrum_seed=102, std=0.02),
    "llama_pattern": dict(
        cfg=dict(target_modules=["q_proj", "v_proj", "up_proj"], n_frequency=40,
                 n_frequency_pattern={"q_proj": 17, "layers.1.self_attn.v_proj": 33},
                 random_loc_seed=42, init_weights=False),
        spectrum_seed=103, std=0.02),
    # F16: the base is loaded in float16 and get_peft_model(..., autocast_adapter_dtype=False).
    # With PEFT's default autocast_adapter_dtype=True the spectrum would be upcast to F32 and saved
    # as F32, so the F16 spectrum needs that flag (this is what PEFT really does for an fp16 base).
    "llama_f16": dict(
        cfg=dict(target_modules=["q_proj", "v_proj"], n_frequency=30, scaling=150.0,
                 random_loc_seed=5, init_weights=False),
        spectrum_seed=104, std=0.02, f16=True),
}


def make_llama_adapters(out: str) -> None:
    for name, spec in LLAMA_ADAPTERS.items():
        f16 = spec.get("f16", False)
        base = load_llama(torch.float16 if f16 else torch.float32)
        cfg = FourierFTConfig(task_type="CAUSAL_LM", **spec["cfg"])
        pm, ws = catch_warnings(get_peft_model, base, cfg, autocast_adapter_dtype=not f16)
        for w in ws:
            log(f"    warning ({name}): {w}")
        set_spectra_(pm, "default", spec["spectrum_seed"], spec["std"])
        if not f16:
            with torch.no_grad():
                IN_MEMORY_LOGITS[name] = pm(input_ids=torch.tensor([LLAMA_TOKENS])).logits[0].clone()
        pm.save_pretrained(os.path.join("adapters", name))


def make_bert_adapter(out: str) -> None:
    base = load_bert()
    # task_type SEQ_CLS is what a real classification adapter carries; PEFT then extends
    # modules_to_save to ["classifier", "classifier", "score"] in the saved config (kept as is).
    cfg = FourierFTConfig(task_type="SEQ_CLS", target_modules=["query", "value"],
                          modules_to_save=["classifier"], bias="all", random_loc_seed=11,
                          n_frequency=60, scaling=150.0, init_weights=False)
    pm, ws = catch_warnings(get_peft_model, base, cfg)
    for w in ws:
        log(f"    warning (bert_cls): {w}")
    set_spectra_(pm, "default", seed=111, std=0.05)
    # bias="all" trains every bias in place; modules_to_save trains a copy of the classifier.
    # Perturb both, but leave the wrapper's original_module (the base classifier) untouched.
    g = torch.Generator().manual_seed(112)
    with torch.no_grad():
        for n, p in sorted(pm.named_parameters()):
            if "original_module" in n:
                continue
            if n.endswith(".bias"):
                p.add_(0.05 * torch.randn(p.shape, generator=g))
            elif "classifier.modules_to_save" in n:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    pm.eval()
    with torch.no_grad():
        IN_MEMORY_LOGITS["bert_cls"] = pm(input_ids=torch.tensor([BERT_INPUT_IDS]),
                                          attention_mask=torch.tensor([BERT_ATTENTION_MASK])).logits.clone()
    pm.save_pretrained(os.path.join("adapters", "bert_cls"))


def make_gpt2_adapter(out: str) -> None:
    base = load_gpt2()
    cfg = FourierFTConfig(task_type="CAUSAL_LM", target_modules=["c_attn"], fan_in_fan_out=True,
                          bias="fourier_only", random_loc_seed=99, n_frequency=70, scaling=150.0,
                          init_weights=False)
    pm, ws = catch_warnings(get_peft_model, base, cfg)
    for w in ws:
        log(f"    warning (gpt2_conv1d): {w}")
    set_spectra_(pm, "default", seed=121, std=0.05)
    # bias="fourier_only" saves the bias of each adapted layer (as `<module>.base_layer.bias`);
    # change it so that loading the adapter visibly has to replace it.
    g = torch.Generator().manual_seed(122)
    with torch.no_grad():
        for _, layer in fourier_layers(pm):
            b = layer.get_base_layer().bias
            b.add_(0.05 * torch.randn(b.shape, generator=g))
    with torch.no_grad():
        IN_MEMORY_LOGITS["gpt2_conv1d"] = pm(input_ids=torch.tensor([GPT2_TOKENS])).logits[0].clone()
    pm.save_pretrained(os.path.join("adapters", "gpt2_conv1d"))


# ----------------------------------------------------------------------------------------------
# golden outputs
# ----------------------------------------------------------------------------------------------


def make_golden_deltas() -> None:
    loaders = {"llama_a": load_llama, "llama_b": load_llama, "llama_pattern": load_llama,
               "bert_cls": load_bert, "gpt2_conv1d": load_gpt2}
    for name, loader in loaders.items():
        pm = PeftModel.from_pretrained(loader(), os.path.join("adapters", name), adapter_name=name)
        d = golden_deltas(pm, name)
        describe_deltas(name, d)
        save_st(os.path.join("golden", f"{name}_delta.safetensors"), d)

    # llama_f16: `delta_w` exactly as PEFT returns it on the fp16 model with the F16 spectrum (ifft2 in
    # f32, result cast to f16 by get_delta_weight), then cast to f32. `delta_w_f32` (extra): the same
    # F16 coefficients loaded onto the F32 base (PEFT upcasts them), ΔW kept in f32 — the value to
    # compare an f32 ΔW against with the 1e-5·max tolerance (f16 rounding alone is ~5e-4 relative).
    pm16 = PeftModel.from_pretrained(load_llama(torch.float16), os.path.join("adapters", "llama_f16"),
                                     adapter_name="f16", autocast_adapter_dtype=False)
    assert all(l.fourierft_spectrum["f16"].dtype == torch.float16 for _, l in fourier_layers(pm16))
    d = golden_deltas(pm16, "f16")
    pm32 = PeftModel.from_pretrained(load_llama(), os.path.join("adapters", "llama_f16"), adapter_name="f16")
    d32 = golden_deltas(pm32, "f16")
    for k in list(d32):
        if k.endswith(".delta_w"):
            d[k + "_f32"] = d32[k]
            rel = (d[k] - d32[k]).abs().max() / d32[k].abs().max()
            log(f"    llama_f16: {k}: |f16 dW - f32 dW| / max = {rel:.2e}")
        else:
            assert torch.equal(d[k], d32[k])
    describe_deltas("llama_f16", d)
    save_st(os.path.join("golden", "llama_f16_delta.safetensors"), d)


def greedy_reference(model, tokens: torch.Tensor, k: int) -> list:
    """Plain argmax loop over full forwards (no KV cache), to cross-check model.generate."""
    ids = tokens.clone()
    for _ in range(k):
        nxt = model(input_ids=ids).logits[0, -1].argmax()
        ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return ids[0, tokens.shape[1]:].tolist()


def make_llama_logits() -> None:
    tokens = torch.tensor([LLAMA_TOKENS], dtype=torch.int64)
    pm = PeftModel.from_pretrained(load_llama(), os.path.join("adapters", "llama_a"), adapter_name="a")
    pm.load_adapter(os.path.join("adapters", "llama_b"), adapter_name="b")
    pm.eval()

    def logits():
        with torch.no_grad():
            return pm(input_ids=tokens).logits[0].float().clone()

    def greedy():
        with torch.no_grad():
            # eos_token_id=None: always exactly GREEDY_NEW_TOKENS new ids, even if eos (2) is argmax.
            out = pm.generate(input_ids=tokens, attention_mask=torch.ones_like(tokens), do_sample=False,
                              max_new_tokens=GREEDY_NEW_TOKENS,
                              eos_token_id=None, pad_token_id=0)
        ids = out[0, tokens.shape[1]:].tolist()
        assert len(ids) == GREEDY_NEW_TOKENS, ids
        with torch.no_grad():
            assert ids == greedy_reference(pm, tokens, GREEDY_NEW_TOKENS), "generate != argmax loop"
        return torch.tensor(ids, dtype=torch.int64)

    with pm.disable_adapter():
        base = logits()
        greedy_base = greedy()
    pm.set_adapter("a")
    adapter_a = logits()
    greedy_a = greedy()
    pm.set_adapter("b")
    adapter_b = logits()
    pm.set_adapter("a")
    adapter_a_again = logits()

    # The disabled-adapter path must equal a plain transformers forward of the base folder.
    with torch.no_grad():
        plain = load_llama()(input_ids=tokens).logits[0]
    assert torch.equal(plain, base), "disable_adapter() logits differ from the plain base model"
    assert torch.equal(adapter_a, adapter_a_again), "set_adapter a -> b -> a is not reproducible"
    assert torch.allclose(adapter_a, IN_MEMORY_LOGITS["llama_a"], atol=1e-6), "llama_a save/load round trip"
    assert torch.allclose(adapter_b, IN_MEMORY_LOGITS["llama_b"], atol=1e-6), "llama_b save/load round trip"
    log(f"    llama: max|base|={base.abs().max():.4f}  max|a-base|={(adapter_a - base).abs().max():.4f}  "
        f"max|b-base|={(adapter_b - base).abs().max():.4f}  argmax changed by a at "
        f"{int((adapter_a.argmax(-1) != base.argmax(-1)).sum())}/{len(LLAMA_TOKENS)} positions, by b at "
        f"{int((adapter_b.argmax(-1) != base.argmax(-1)).sum())}")
    log(f"    llama greedy base {greedy_base.tolist()}  adapter_a {greedy_a.tolist()}")
    for n, t in [("a", adapter_a), ("b", adapter_b)]:
        assert (t - base).abs().max() > 1e-2, f"adapter {n} does not change the logits"

    save_st(os.path.join("golden", "llama_logits.safetensors"), {
        "tokens": tokens[0], "base": base, "adapter_a": adapter_a, "adapter_b": adapter_b,
        "adapter_a_again": adapter_a_again, "greedy_base": greedy_base, "greedy_adapter_a": greedy_a,
    })


def make_bert_logits() -> None:
    ids = torch.tensor([BERT_INPUT_IDS], dtype=torch.int64)
    mask = torch.tensor([BERT_ATTENTION_MASK], dtype=torch.int64)
    with torch.no_grad():
        # bias="all" overwrites base biases in place, so disable_adapter() would NOT give the base:
        # the base logits come from a separate, untouched model.
        base = load_bert()(input_ids=ids, attention_mask=mask).logits.float()
        pm = PeftModel.from_pretrained(load_bert(), os.path.join("adapters", "bert_cls"), adapter_name="cls")
        adapter = pm(input_ids=ids, attention_mask=mask).logits.float()
    assert torch.allclose(adapter, IN_MEMORY_LOGITS["bert_cls"], atol=1e-6), "bert_cls save/load round trip"
    log(f"    bert: base {base.tolist()}  adapter {adapter.tolist()}")
    assert (adapter - base).abs().max() > 1e-2
    save_st(os.path.join("golden", "bert_logits.safetensors"),
            {"input_ids": ids, "attention_mask": mask, "base": base, "adapter": adapter})


def make_gpt2_logits() -> None:
    tokens = torch.tensor([GPT2_TOKENS], dtype=torch.int64)
    with torch.no_grad():
        base = load_gpt2()(input_ids=tokens).logits[0].float()
        pm = PeftModel.from_pretrained(load_gpt2(), os.path.join("adapters", "gpt2_conv1d"), adapter_name="g")
        adapter = pm(input_ids=tokens).logits[0].float()
    assert torch.allclose(adapter, IN_MEMORY_LOGITS["gpt2_conv1d"], atol=1e-6), "gpt2 save/load round trip"
    log(f"    gpt2: max|base|={base.abs().max():.4f}  max|adapter-base|={(adapter - base).abs().max():.4f}")
    assert (adapter - base).abs().max() > 1e-2
    save_st(os.path.join("golden", "gpt2_logits.safetensors"),
            {"tokens": tokens[0], "base": base, "adapter": adapter})


# ----------------------------------------------------------------------------------------------
# MLX quantisation
# ----------------------------------------------------------------------------------------------


def make_tiny_llama_mlx4() -> None:
    """tiny_llama in MLX "affine" format: 4-bit group 32 everywhere, lm_head 8-bit (per-module
    override), norms unquantised. Written by mx.save_safetensors (unpadded header)."""
    src = safetensors.numpy.load_file(os.path.join("tiny_llama", "model.safetensors"))
    arrays, dequant = {}, {}
    for key in sorted(src):
        w = src[key]
        if key.endswith(".weight") and w.ndim == 2:  # every Linear and the embedding
            module = key[: -len(".weight")]
            bits = 8 if module == "lm_head" else 4
            q, s, b = mx.quantize(mx.array(w), group_size=32, bits=bits)
            arrays[f"{module}.weight"], arrays[f"{module}.scales"], arrays[f"{module}.biases"] = q, s, b
            dequant[f"{module}.weight"] = np.array(mx.dequantize(q, s, b, group_size=32, bits=bits))
        else:
            arrays[key] = mx.array(w)
    os.makedirs("tiny_llama_mlx4", exist_ok=True)
    path = os.path.join("tiny_llama_mlx4", "model.safetensors")
    # MLX's writer does not pad the JSON header, so the data section starts wherever the header
    # ends. With metadata {"format": "mlx"} alone this start happened to be 4-aligned, which would
    # not exercise unaligned reads of F32/U32 data; a metadata note of tuned length makes the start
    # offset odd, so every tensor in this file is misaligned for its element type.
    note = "MLX writes an unpadded header: tensor data starts at an odd byte offset here"
    for extra in range(8):
        mx.save_safetensors(path, arrays, metadata={"format": "mlx", "note": note + "." * extra})
        if st_keys(path)[""] % 2 == 1:
            break
    else:
        raise RuntimeError("could not make the MLX data offset odd")
    with open(os.path.join("tiny_llama", "config.json")) as f:
        cfg = json.load(f)
    quant = {"group_size": 32, "bits": 4, "mode": "affine", "lm_head": {"group_size": 32, "bits": 8}}
    cfg["quantization"] = quant
    cfg["quantization_config"] = dict(quant)
    with open(os.path.join("tiny_llama_mlx4", "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    save_st(os.path.join("golden", "tiny_llama_mlx4_dequant.safetensors"),
            {k: torch.from_numpy(v.astype(np.float32)) for k, v in dequant.items()})
    off = st_keys(os.path.join("tiny_llama_mlx4", "model.safetensors"))[""]
    log(f"    tiny_llama_mlx4: data starts at byte {off} (mod 8 = {off % 8})")
    assert off % 2 == 1
    for k, v in sorted(dequant.items()):
        err = np.abs(v - src[k]).max()
        log(f"    mlx4 {k:40s} max|deq - w| = {err:.4f}")


def mx_to_torch(a: mx.array) -> torch.Tensor:
    """MLX array -> torch tensor with the same dtype, bit-exact (bf16 via its uint16 bits)."""
    if a.dtype == mx.bfloat16:
        return torch.from_numpy(np.array(mx.view(a, mx.uint16))).view(torch.bfloat16)
    return torch.from_numpy(np.array(a))


def make_mlx_quant() -> None:
    rng = np.random.default_rng(4242)
    w = (0.5 * rng.standard_normal((8, 256))).astype(np.float32)  # rows 0-2 stay random
    w[3, :] = 0.75                                                  # constant row
    w[4, :] = 0.0                                                   # all zero
    w[5, 77] = 1000.0                                               # one huge outlier
    w[6, :] = (1e-6 * rng.standard_normal(256)).astype(np.float32)  # tiny values (f16 subnormals)
    w[7, :] = np.where(np.arange(256) % 2 == 0, -1.0, 1.0) * np.linspace(0.1, 4.0, 256)  # ± alternating
    w = w.astype(np.float32)
    base = mx.array(w)
    inputs = {"f32": base, "f16": base.astype(mx.float16), "bf16": base.astype(mx.bfloat16)}
    out = {f"w.{dt}": mx_to_torch(a) for dt, a in inputs.items()}
    for bits in (2, 3, 4, 5, 6, 8):
        for group in (32, 64, 128):
            for dt, a in inputs.items():
                q, s, b = mx.quantize(a, group_size=group, bits=bits)
                d = mx.dequantize(q, s, b, group_size=group, bits=bits)
                assert s.dtype == a.dtype and d.dtype == a.dtype and q.dtype == mx.uint32
                p = f"b{bits}.g{group}.{dt}"
                out[f"{p}.weight"], out[f"{p}.scales"] = mx_to_torch(q), mx_to_torch(s)
                out[f"{p}.biases"], out[f"{p}.dequant"] = mx_to_torch(b), mx_to_torch(d)
    save_st(os.path.join("quant", "mlx_quant.safetensors"), out)


# ----------------------------------------------------------------------------------------------
# torch.randperm checks and PEFT config field names
# ----------------------------------------------------------------------------------------------

RANDPERM_CASES = [
    (10, 0), (1000, 777), (576 * 576, 777), (192 * 576, 777), (4096 * 4096, 777),
    (4096 * 11008, 1234),
    (214748363, 777), (214748364, 777),  # last N on torch's 32-bit Fisher–Yates path / first on the 64-bit one
    (2 ** 28, 3),
]


def make_randperm() -> None:
    out = {}
    for n, seed in RANDPERM_CASES:
        t0 = time.time()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        out[f"randperm.{n}.{seed}"] = perm[: min(n, 64)].clone()
        del perm
        gc.collect()
        log(f"    randperm({n}, seed {seed}) first {out[f'randperm.{n}.{seed}'][:5].tolist()} ({time.time() - t0:.1f}s)")
    assert out[f"randperm.{4096 * 4096}.777"][:5].tolist() == [1374311, 8240085, 6766295, 6474818, 14786199]
    save_st(os.path.join("golden", "randperm.safetensors"), out)


def make_known_keys() -> None:
    keys = {
        "peft_config_fields": sorted(f.name for f in dataclasses.fields(PeftConfig)),
        "fourierft_config_fields": sorted(f.name for f in dataclasses.fields(FourierFTConfig)),
    }
    with open(os.path.join("golden", "peft_known_keys.json"), "w") as f:
        f.write(json.dumps(keys, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------

GENERATED = ["tiny_llama", "tiny_bert", "tiny_gpt2", "tiny_llama_mlx4", "adapters", "golden", "quant"]


def print_summary() -> None:
    for root, _, files in sorted(os.walk(".")):
        for fn in sorted(files):
            p = os.path.join(root, fn)[2:]
            if p.endswith(".safetensors") and p.startswith("adapters/"):
                keys = st_keys(p)
                log(f"  {p} (data at byte {keys.pop('')}):")
                for k, (dt, sh) in sorted(keys.items()):
                    log(f"      {k} {dt} {sh}")


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures"))
    ap.add_argument("--no-randperm", action="store_true", help="skip golden/randperm.safetensors (needs ~2.2 GB RAM)")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    os.chdir(out)  # all paths below are relative to the fixtures folder
    for d in GENERATED:  # start clean so no stale file survives; README.md is hand-written and kept
        if d == "golden" and args.no_randperm and os.path.exists("golden/randperm.safetensors"):
            for fn in os.listdir("golden"):
                if fn != "randperm.safetensors":
                    os.remove(os.path.join("golden", fn))
            continue
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs("golden", exist_ok=True)

    steps = [
        ("tiny models", lambda: (make_tiny_llama(out), make_tiny_bert(out), make_tiny_gpt2(out))),
        ("llama adapters", lambda: make_llama_adapters(out)),
        ("bert adapter", lambda: make_bert_adapter(out)),
        ("gpt2 adapter", lambda: make_gpt2_adapter(out)),
        ("golden deltas", make_golden_deltas),
        ("llama logits", make_llama_logits),
        ("bert logits", make_bert_logits),
        ("gpt2 logits", make_gpt2_logits),
        ("tiny_llama_mlx4", make_tiny_llama_mlx4),
        ("mlx quant", make_mlx_quant),
        ("peft known keys", make_known_keys),
    ]
    if not args.no_randperm:
        steps.append(("randperm", make_randperm))
    for title, fn in steps:
        t0 = time.time()
        log(f"== {title}")
        fn()
        log(f"   ({time.time() - t0:.1f}s)")
    log("== adapter tensors as PEFT saved them")
    print_summary()


if __name__ == "__main__":
    main()
