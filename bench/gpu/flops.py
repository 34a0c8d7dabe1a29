"""FLOPs of one page of a ColQwen checkpoint, from its own config.json (the benchmark's MFU).

Counted as the fact sheets count them (colqwen2_5.md §9, colqwen3.md §8.2): 2 FLOPs per multiply-add of the
linear layers and of attention's QKᵀ and AV over the whole L×L (the causal half is not subtracted); norms, rotary,
softmax, activations and gathers are ignored. A page of T visual tokens is 4T patches in the vision tower and
L = T + 11 tokens in the language model (the document prompt's 11 text tokens). Per family:

- ColQwen2.5 (qwen2_5_vl): SwiGLU vision MLP, attention in windows of 64 patches except the full-attention blocks
  (`fullatt_block_indexes`); 8.66 TF at T = 768 for the 3B (fact sheet §9).
- ColQwen3 (qwen3_vl): GELU vision MLP, full attention per image, the main merger and one DeepStack merger per
  `deepstack_visual_indexes`; Qwen3 decoder with `head_dim` from the config.
- ColQwen3.5 (qwen3_5): the same vision tower without DeepStack; full-attention layers with the gated q_proj
  (2·heads·head_dim outputs), Gated DeltaNet layers (their input projections, the width-4 convolution, 4·dk·dv per
  value head and token for the delta rule, out_proj).

usage: python flops.py MODEL_DIR [VISUAL_TOKENS]   (prints one JSON line; an adapter folder is read through its base)
"""
import json
import sys
from pathlib import Path

PROMPT_TOKENS = 11


def read_config(model_dir):
    """config.json of the model, or of an adapter's base (a sibling folder or a path)."""
    p = Path(model_dir)
    if (p / "adapter_config.json").exists():
        base = json.loads((p / "adapter_config.json").read_text())["base_model_name_or_path"]
        p = Path(base) if Path(base).is_absolute() else p.parent / base
    return json.loads((p / "config.json").read_text())


def _text(cfg):
    t = cfg.get("text_config")
    return t if isinstance(t, dict) else cfg


def _vision_macs(cfg, kind, t):
    v = cfg["vision_config"]
    p = 4 * t
    if kind == "qwen2_5_vl":
        d, inter, depth = v["hidden_size"], v["intermediate_size"], v["depth"]
        patch = v.get("patch_size", 14)
        per_patch_in = 3 * v.get("temporal_patch_size", 2) * patch * patch
        full = set(v.get("fullatt_block_indexes", [7, 15, 23, 31]))
        window = (v.get("window_size", 112) // patch) ** 2
        linear = p * depth * (4 * d * d + 3 * d * inter)
        attn = sum(2 * (p * p if i in full else p * window) * d for i in range(depth))
        merger = t * (4 * d * 4 * d + 4 * d * v.get("out_hidden_size", _text(cfg)["hidden_size"]))
        return p * per_patch_in * d + linear + attn + merger
    d = v.get("hidden_size", 1152)
    inter, depth = v.get("intermediate_size", 4304), v.get("depth", 27)
    patch = v.get("patch_size", 16)
    per_patch_in = v.get("in_channels", 3) * v.get("temporal_patch_size", 2) * patch * patch
    out = v.get("out_hidden_size", _text(cfg)["hidden_size"])
    mergers = 1 + (len(v.get("deepstack_visual_indexes", [8, 16, 24])) if kind == "qwen3_vl" else 0)
    linear = p * depth * (4 * d * d + 2 * d * inter)
    attn = depth * 2 * p * p * d
    return p * per_patch_in * d + linear + attn + mergers * t * (4 * d * 4 * d + 4 * d * out)


def _text_macs(cfg, kind, length):
    t = _text(cfg)
    d, inter, layers = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"]
    heads = t["num_attention_heads"]
    kv = t.get("num_key_value_heads") or heads
    hd = t.get("head_dim") or d // heads
    mlp = 3 * d * inter
    full = d * heads * hd + 2 * d * kv * hd + heads * hd * d
    scores = 2 * length * heads * hd  # per token: QKᵀ and AV over L keys
    if kind != "qwen3_5":
        return length * layers * (full + mlp + scores)
    full += d * heads * hd  # the output gate's half of q_proj
    nk, nv = t.get("linear_num_key_heads", 16), t.get("linear_num_value_heads", 32)
    dk, dv = t.get("linear_key_head_dim", 128), t.get("linear_value_head_dim", 128)
    conv_dim = 2 * nk * dk + nv * dv
    linear = d * (conv_dim + nv * dv + 2 * nv) + conv_dim * t.get("linear_conv_kernel_dim", 4) \
        + 4 * nv * dk * dv + nv * dv * d
    types = t.get("layer_types") or [
        "full_attention" if (i + 1) % t.get("full_attention_interval", 4) == 0 else "linear_attention"
        for i in range(layers)]
    per_token = sum(mlp + (full + scores if k in ("full_attention", "attention") else linear) for k in types)
    return length * per_token


def page_flops(cfg, visual_tokens):
    """FLOPs of one page of `visual_tokens` tokens (head included)."""
    kind = cfg.get("model_type", "")
    if kind not in ("qwen2_5_vl", "qwen3_vl", "qwen3_5"):
        raise SystemExit(f"flops.py: model_type {kind!r} is not a ColQwen family")
    length = visual_tokens + PROMPT_TOKENS
    dim = {"qwen2_5_vl": 128, "qwen3_vl": 320}.get(kind, cfg.get("dim", 128))
    head = length * _text(cfg)["hidden_size"] * dim
    return 2 * (_vision_macs(cfg, kind, visual_tokens) + _text_macs(cfg, kind, length) + head)


if __name__ == "__main__":
    cfg = read_config(sys.argv[1])
    tokens = float(sys.argv[2]) if len(sys.argv) > 2 else 768
    print(json.dumps({"what": "flops", "model_type": cfg.get("model_type"), "visual_tokens": tokens,
                      "tflop_per_page": round(page_flops(cfg, tokens) / 1e12, 3)}))
