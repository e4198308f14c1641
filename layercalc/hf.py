"""Hugging Face `config.json` -> a layercalc config: the same modules, names and counts, no transformers.

One builder per model family writes the config document (a plain dict, names as Hugging Face's
modules) from the fields it reads; each field it reads is recorded, so the YAML it writes says
where every number came from. Fields that change no count are listed together; any other field
is named in a warning, never silently ignored. Both the spellings transformers writes today and
older ones hub files carry are read (`dtype`/`torch_dtype`, GPT-2's `n_embd`/`hidden_size`, ...).
"""

from __future__ import annotations

import copy
import os
import warnings
from typing import Any, Callable

from .errors import LayercalcWarning, Location, SchemaError

DEFAULT_TOKENS = 2048  # the token stream's length when --input does not say

# fields read only to say they change no count: position encodings' scale, dropout, initialisation,
# token ids, caching and what generation or transformers' own bookkeeping needs
NO_COUNT = frozenset({
    "rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor", "rotary_pct", "rotary_emb_base",
    "attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout",
    "initializer_range", "initializer_factor", "bos_token_id", "eos_token_id", "pad_token_id", "use_cache",
    "transformers_version", "_name_or_path", "architectures", "model_type", "pretraining_tp", "output_attentions",
    "output_hidden_states", "return_dict", "scale_attn_weights", "scale_attn_by_inverse_layer_idx",
    "reorder_and_upcast_attn", "original_max_position_embeddings", "attn_logit_softcapping",
    "final_logit_softcapping", "query_pre_attn_scalar", "summary_type", "summary_use_proj", "summary_activation",
    "summary_proj_to_labels", "task_specific_params", "n_ctx", "torch_dtype", "dtype", "max_position_embeddings",
    "n_positions", "sliding_window", "use_sliding_window", "max_window_layers", "tie_word_embeddings",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "is_decoder", "id2label", "label2id",
    "router_aux_loss_coef", "output_router_logits", "router_jitter_noise", "gradient_checkpointing", "norm_topk_prob",
})
ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
               "gelu_fast": "gelu_tanh", "relu": "relu"}
# encoder-decoder fields that change no count: generation settings, dropout, audio augmentation
SEQ2SEQ_NO_COUNT = frozenset({
    "dropout_rate", "decoder_start_token_id", "is_encoder_decoder", "n_positions", "dense_act_fn", "is_gated_act",
    "classifier_dropout", "layer_norm_epsilon", "layerdrop", "encoder_layerdrop", "decoder_layerdrop", "dropout",
    "activation_dropout", "scale_embedding", "apply_spec_augment", "mask_time_prob", "mask_time_length",
    "mask_time_min_masks", "mask_feature_prob", "mask_feature_length", "mask_feature_min_masks",
    "median_filter_width", "begin_suppress_tokens", "suppress_tokens", "forced_decoder_ids", "init_std",
    "use_weighted_layer_sum", "classifier_proj_size", "max_length", "num_hidden_layers", "gradient_checkpointing",
    "decoder_layers", "encoder_layers", "is_decoder", "scale_decoder_outputs", "use_bias", "num_labels",
})


def _integer(least: int | None = None) -> tuple[str, Callable[[Any], bool]]:
    """What an integer field must be (at least `least`), and the test of it."""
    words = "an integer" if least is None else f"an integer >= {least}"
    return words, lambda v: isinstance(v, int) and not isinstance(v, bool) and (least is None or v >= least)


_NUMBER = ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
# the fields the importer computes with itself, rather than hand to a layer whose own checks name a
# wrong value: what each must be
KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "architectures": ("a list of class names", lambda v: isinstance(v, list) and all(isinstance(a, str) for a in v)),
    "id2label": ("a mapping of class ids to names", lambda v: isinstance(v, dict)),
    "rope_parameters": ("a mapping", lambda v: isinstance(v, dict)),
    "rope_theta": _NUMBER, "rotary_emb_base": _NUMBER, "rope_parameters.rope_theta": _NUMBER,
    "layer_types": ("a list", lambda v: isinstance(v, list)),
    "mlp_only_layers": ("a list of layer indices", lambda v: isinstance(v, list) and all(_integer(0)[1](i) for i in v)),
    "type_vocab_size": _integer(0), "pad_token_id": _integer(), "num_experts": _integer(0),
    "decoder_sparse_step": _integer(1), "num_decoder_layers": _integer(1), "max_window_layers": _integer(),
}


class Fields:
    """A config.json's fields, read under any of their spellings; remembers which were read."""

    def __init__(self, doc: dict[str, Any], file: str) -> None:
        self.doc, self.file = doc, file
        self.read: dict[str, str] = {}  # field -> what it set

    def get(self, *names: str, default: Any = None, role: str = "") -> Any:
        """The first of names present (new spelling first), else default; the field is recorded with its role."""
        for name in names:
            if name in self.doc and self.doc[name] is not None:
                self.read[name] = role
                return self.checked(name, self.doc[name])
        return default

    def need(self, *names: str, role: str = "") -> int:
        """A required positive integer field."""
        value = self.get(*names, role=role)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fault(f"{names[0]} must be a positive integer, got {value!r}", value,
                             next((n for n in names if n in self.doc), names[0]))
        return value

    def checked(self, name: str, value: Any, field: str = "") -> Any:
        """The value, if it is what KINDS says `name` must be; else a SchemaError naming it."""
        kind = KINDS.get(name)
        if kind and not kind[1](value):
            raise self.fault(f"{name} must be {kind[0]}, got {value!r}", value, field or name)
        return value

    def fault(self, message: str, value: Any, field: str) -> SchemaError:
        """A SchemaError at the line of `field`, when the config was read with its lines (a calculating command)."""
        return SchemaError(message, Location(line=getattr(self.doc, "key_lines", {}).get(field)), value=value)

    def unknown(self) -> list[str]:
        """Fields neither read nor known to change no count."""
        return sorted(k for k in self.doc if k not in self.read and k not in NO_COUNT and not k.startswith("_"))


def _activation(f: Fields, *names: str) -> Any:
    """A layer entry for the field's activation name (silu, gelu, tanh-approximated gelu, relu)."""
    name = f.get(*names, default="silu", role="activation")
    kind = ACTIVATIONS.get(str(name))
    if kind is None:
        raise SchemaError(f"activation {name!r} is not one layercalc has ({', '.join(ACTIVATIONS)})", value=name)
    return {"gelu": {"approximate": "tanh"}} if kind == "gelu_tanh" else kind


def _head(f: Fields, vocab: int, tied_to: str, default_tied: bool, name: str) -> dict[str, Any]:
    """The language-model head: a bias-free linear to the vocabulary, tied to the embedding or not."""
    tied = f.get("tie_word_embeddings", default=default_tied, role="head tied to the embedding")
    args: dict[str, Any] = {"out_features": vocab, "bias": False}
    if tied:
        args["tied_to"] = tied_to
    return {"linear": args, "name": name}


def _rope(f: Fields) -> dict[str, Any]:
    """Rotary attention's arguments: its base and the fraction of each head it rotates, under any spelling."""
    theta = f.get("rope_theta", "rotary_emb_base", role="rotary base (no count change)")
    factor = f.get("partial_rotary_factor", "rotary_pct", role="fraction of each head rotated (no count change)")
    if theta is None or factor is None:  # transformers' newer spelling keeps both in one mapping
        params = f.get("rope_parameters", default={}, role="rotary base and fraction (no count change)") or {}
        if theta is None:
            theta = f.checked("rope_parameters.rope_theta", params.get("rope_theta", 10000.0), "rope_parameters")
        factor = params.get("partial_rotary_factor", 1.0) if factor is None else factor
    return {"rope": True, "rope_theta": float(theta), **({"partial_rotary_factor": factor} if factor != 1.0 else {})}


def _windows(f: Fields, model_type: str, layers: int) -> list[tuple[int | None, int]]:
    """Each layer's sliding window (None: full attention) as transformers sets it, as runs of (window,
    layers): every layer of Mistral and Phi-3; Qwen2's and Qwen2-MoE's only with use_sliding_window,
    for the layers their layer_types say, else Qwen2's from max_window_layers on and Qwen2-MoE's every
    other one below it."""
    window = f.get("sliding_window", role="sliding window (caps the KV cache; no count change)")
    if model_type not in ("qwen2", "qwen2_moe"):
        return [(window, layers)]
    if not f.get("use_sliding_window", default=False, role="sliding window on"):
        # transformers writes layer_types (all full) even then: read, so it is not named as unknown
        f.get("layer_types", role="each layer's attention (all full without use_sliding_window)")
        return [(None, layers)]
    types = f.get("layer_types", role="each layer's attention")
    if types:
        if len(types) != layers:  # as transformers' own check of the config
            raise f.fault(f"layer_types names {len(types)} layers, but num_hidden_layers is {layers}",
                          len(types), "layer_types")
        return [(window if kind == "sliding_attention" else None, 1) for kind in types]
    first = f.get("max_window_layers", default=28, role="layers before the sliding ones")
    below = min(max(first, 0), layers)
    if model_type == "qwen2_moe":  # Qwen2MoeConfig's default: the even layers below max_window_layers
        return [(window if i % 2 == 0 else None, 1) for i in range(below)] + [(None, layers - below)]
    return [(None, below), (window, layers - below)]


def _runs(block: dict[str, Any], windows: list[tuple[int | None, int]], attention: dict[str, Any]) -> list[dict[str, Any]]:
    """The decoder layers as repeated entries, one per run of consecutive layers with the same window
    (the first named `layers`, a later one `layers_<its first index>`)."""
    merged: list[tuple[int | None, int]] = []
    for window, count in windows:
        if merged and merged[-1][0] == window:
            merged[-1] = (window, merged[-1][1] + count)
        elif count:
            merged.append((window, count))
    entries, start = [], 0
    for window, count in merged:
        if window is not None:
            attention["sliding_window"] = window
        entries.append({**copy.deepcopy(block), "repeat": count, "name": "layers" if start == 0 else f"layers_{start}"})
        attention.pop("sliding_window", None)
        start += count
    return entries


def _llama(f: Fields, model_type: str) -> tuple[list[Any], str]:
    """Llama, Mistral, Qwen2, Gemma, Phi-3: pre-norm RMSNorm blocks, grouped-query attention, a gated MLP."""
    h = f.need("hidden_size", role="width")
    heads = f.need("num_attention_heads", role="query heads")
    kv = f.get("num_key_value_heads", default=heads, role="key/value heads")
    head_dim = f.get("head_dim", default=h // heads, role="head width")
    ffn = f.need("intermediate_size", role="MLP width")
    eps = f.get("rms_norm_eps", default=1e-6, role="norm eps")
    # Qwen2's q, k and v always have a bias (Qwen2-MoE's unless qkv_bias is false), its o never
    bias: Any = ["q", "k", "v"] if model_type == "qwen2" else bool(
        f.get("attention_bias", default=False, role="attention biases"))
    if model_type == "qwen2_moe":
        bias = ["q", "k", "v"] if f.get("qkv_bias", default=True, role="q, k and v biases") else False
    mlp_bias = bool(f.get("mlp_bias", default=False, role="MLP biases"))
    attention = {"num_heads": heads, "num_kv_heads": kv, "head_dim": head_dim, "bias": bias, **_rope(f)}
    linear = lambda out, name: {"linear": {"out_features": out, "bias": mlp_bias}, "name": name}  # noqa: E731
    block = {"sequential": {"layers": [
        {"residual": {"body": [{"rmsnorm": {"eps": eps}, "name": "input_layernorm"},
                               {"attention": attention, "name": "self_attn"}]}},
        {"residual": {"body": [{"rmsnorm": {"eps": eps}, "name": "post_attention_layernorm"},
                               {"sequential": {"layers": [
                                   {"multiply": {"branches": [[linear(ffn, "gate_proj"), _activation(
                                       f, "hidden_activation", "hidden_act")], [linear(ffn, "up_proj")]]}},
                                   linear(h, "down_proj")]}, "name": "mlp"}]}},
    ]}}
    layers = f.need("num_hidden_layers", role="layers")
    vocab = f.need("vocab_size", role="vocabulary")
    model = [{"embedding": {"num_embeddings": vocab, "embedding_dim": h}, "name": "embed_tokens"},
             *_runs(block, _windows(f, model_type, layers), attention), {"rmsnorm": {"eps": eps}, "name": "norm"}]
    return model, "model"


def _mixtral(f: Fields, model_type: str) -> tuple[list[Any], str]:
    """Mixtral: Mistral's blocks with the MLP a sparse mixture of SwiGLU experts (w1, w3, w2), a
    router without bias picking num_experts_per_tok of num_local_experts for each token."""
    model, prefix = _llama(f, model_type)
    h, ffn = f.need("hidden_size", role="width"), f.need("intermediate_size", role="expert MLP width")
    linear = lambda out, name: {"linear": {"out_features": out, "bias": False}, "name": name}  # noqa: E731
    expert = [{"multiply": {"branches": [[linear(ffn, "w1"), _activation(f, "hidden_act")], [linear(ffn, "w3")]]}},
              linear(h, "w2")]
    moe = {"moe": {"num_experts": f.need("num_local_experts", role="experts"),
                   "top_k": f.need("num_experts_per_tok", role="experts per token"), "expert": expert},
           "name": "block_sparse_moe"}
    model[1]["sequential"]["layers"][1]["residual"]["body"][1] = moe  # in place of the dense MLP
    return model, prefix


def _swiglu(f: Fields, width: int, out: int) -> list[Any]:
    """A gated MLP without biases: down_proj(act(gate_proj(x)) · up_proj(x)), `width` inside."""
    linear = lambda n, name: {"linear": {"out_features": n, "bias": False}, "name": name}  # noqa: E731
    return [{"multiply": {"branches": [[linear(width, "gate_proj"), _activation(f, "hidden_act")],
                                       [linear(width, "up_proj")]]}}, linear(out, "down_proj")]


def _qwen2_moe_mlp(f: Fields) -> dict[str, Any]:
    """Qwen2-MoE's sparse MLP: top_k of num_experts SwiGLU experts, plus a shared SwiGLU expert every
    token runs through, its output scaled per token by sigmoid(shared_expert_gate(x)), a 1-wide linear."""
    h = f.need("hidden_size", role="width")
    shared_width = f.get("shared_expert_intermediate_size", default=5632, role="shared expert's MLP width")
    gate = [{"linear": {"out_features": 1, "bias": False}, "name": "shared_expert_gate"}, "sigmoid"]
    shared = [{"multiply": {"branches": [[{"sequential": {"layers": _swiglu(f, shared_width, h)},
                                           "name": "shared_expert"}], gate]}}]
    return {"moe": {"num_experts": f.get("num_experts", default=60, role="experts"),
                    "top_k": f.get("num_experts_per_tok", default=4, role="experts per token"),
                    "expert": _swiglu(f, f.get("moe_intermediate_size", default=1408, role="expert MLP width"), h),
                    "shared": shared}, "name": "mlp"}


def _qwen2_moe(f: Fields, model_type: str) -> tuple[list[Any], str]:
    """Qwen2-MoE: Qwen2's layers, a layer's MLP the sparse one when its index i is not in mlp_only_layers,
    there are experts and (i + 1) is a multiple of decoder_sparse_step; each run of identical layers
    one repeated entry (`layers`, then `layers_<first index>`)."""
    model, prefix = _llama(f, model_type)
    per_layer = [copy.deepcopy({k: v for k, v in entry.items() if k not in ("repeat", "name")})
                 for entry in model[1:-1] for _ in range(entry["repeat"])]
    step = f.get("decoder_sparse_step", default=1, role="every how many layers the MLP is sparse")
    dense_only = set(f.get("mlp_only_layers", default=[], role="layers with a dense MLP") or [])
    experts = f.get("num_experts", default=60, role="experts")
    for i, block in enumerate(per_layer):
        if i not in dense_only and experts > 0 and (i + 1) % step == 0:
            block["sequential"]["layers"][1]["residual"]["body"][1] = _qwen2_moe_mlp(f)
    runs, start = [], 0
    for i in range(1, len(per_layer) + 1):
        if i < len(per_layer) and per_layer[i] == per_layer[start]:
            continue
        runs.append({**per_layer[start], "repeat": i - start, "name": "layers" if start == 0 else f"layers_{start}"})
        start = i
    return [model[0], *runs, model[-1]], prefix


def _gpt2(f: Fields, model_type: str) -> tuple[list[Any], str]:
    """GPT-2: learned positions, pre-norm LayerNorm blocks, packed attention with biases, a GELU MLP."""
    h = f.need("n_embd", "hidden_size", role="width")
    eps = f.get("layer_norm_epsilon", default=1e-5, role="norm eps")
    inner = f.get("n_inner", default=4 * h, role="MLP width")
    norm = lambda name: {"layernorm": {"eps": eps}, "name": name}  # noqa: E731
    block = {"sequential": {"layers": [
        {"residual": {"body": [norm("ln_1"), {"multiheadattention": {
            "num_heads": f.need("n_head", "num_attention_heads", role="heads"), "causal": True}, "name": "attn"}]}},
        {"residual": {"body": [norm("ln_2"), {"sequential": {"layers": [
            {"linear": {"out_features": inner}, "name": "c_fc"},
            _activation(f, "activation_function"),
            {"linear": {"out_features": h}, "name": "c_proj"}]}, "name": "mlp"}]}},
    ]}, "repeat": f.need("n_layer", "num_hidden_layers", role="layers"), "name": "h"}
    vocab = f.need("vocab_size", role="vocabulary")
    positions = f.need("n_positions", "max_position_embeddings", role="learned positions")
    model = [{"embedding": {"num_embeddings": vocab, "embedding_dim": h}, "name": "wte"},
             {"posembedding": {"num_positions": positions}, "name": "wpe"}, block, norm("ln_f")]
    return model, "transformer"


def _opt(f: Fields, model_type: str) -> tuple[list[Any], str]:
    """OPT: learned positions read from row 2 (2 rows past the longest sequence), attention with biases,
    a ReLU MLP; pre-norm, or post-norm for OPT-350m; a projection in and out when the embedding is narrower."""
    h = f.need("hidden_size", role="width")
    embed = f.get("word_embed_proj_dim", default=h, role="embedding width")
    before = f.get("do_layer_norm_before", default=True, role="pre-norm")
    bias = bool(f.get("enable_bias", default=True, role="biases"))
    affine = bool(f.get("layer_norm_elementwise_affine", default=True, role="norm affine"))
    norm = lambda name: {"layernorm": {"elementwise_affine": affine, "bias": affine}, "name": name}  # noqa: E731
    attention = {"attention": {"num_heads": f.need("num_attention_heads", role="heads"), "bias": bias},
                 "name": "self_attn"}
    mlp = [{"linear": {"out_features": f.need("ffn_dim", role="MLP width"), "bias": bias}, "name": "fc1"},
           _activation(f, "activation_function"), {"linear": {"out_features": h, "bias": bias}, "name": "fc2"}]
    if before:
        body = [{"residual": {"body": [norm("self_attn_layer_norm"), attention]}},
                {"residual": {"body": [norm("final_layer_norm"), *mlp]}}]
    else:
        body = [{"residual": {"body": [attention]}}, norm("self_attn_layer_norm"),
                {"residual": {"body": mlp}}, norm("final_layer_norm")]
    block = {"sequential": {"layers": body}, "repeat": f.need("num_hidden_layers", role="layers"), "name": "layers"}
    positions = f.need("max_position_embeddings", role="learned positions") + 2  # OPT's offset of 2
    model: list[Any] = [{"embedding": {"num_embeddings": f.need("vocab_size", role="vocabulary"),
                                       "embedding_dim": embed}, "name": "embed_tokens"}]
    if embed != h:
        model.append({"linear": {"out_features": h, "bias": False}, "name": "project_in"})
    model += [{"posembedding": {"num_positions": positions, "offset": 2}, "name": "embed_positions"}, block]
    if before:
        model.append(norm("final_layer_norm"))
    if embed != h:
        model.append({"linear": {"out_features": embed, "bias": False}, "name": "project_out"})
    return [{"sequential": {"layers": model}, "name": "decoder"}], "model"


def _neox(f: Fields, model_type: str) -> tuple[list[Any], str]:
    """GPT-NeoX (Pythia): rotary attention with biases, a GELU MLP, and by default the parallel
    residual x + attention(norm1(x)) + mlp(norm2(x)), written as a residual whose shortcut is one."""
    h = f.need("hidden_size", role="width")
    eps = f.get("layer_norm_eps", default=1e-5, role="norm eps")
    norm = lambda name: {"layernorm": {"eps": eps}, "name": name}  # noqa: E731
    attention = [norm("input_layernorm"), {"attention": {
        "num_heads": f.need("num_attention_heads", role="heads"), "bias": bool(f.get(
            "attention_bias", default=True, role="attention biases")), **_rope(f)}, "name": "attention"}]
    mlp = [norm("post_attention_layernorm"), {"sequential": {"layers": [
        {"linear": {"out_features": f.need("intermediate_size", role="MLP width")}, "name": "dense_h_to_4h"},
        _activation(f, "hidden_act"), {"linear": {"out_features": h}, "name": "dense_4h_to_h"}]}, "name": "mlp"}]
    if f.get("use_parallel_residual", default=True, role="parallel residual"):
        body = [{"residual": {"body": attention, "shortcut": [{"residual": {"body": mlp}}]}}]
    else:
        body = [{"residual": {"body": attention}}, {"residual": {"body": mlp}}]
    block = {"sequential": {"layers": body}, "repeat": f.need("num_hidden_layers", role="layers"), "name": "layers"}
    model = [{"embedding": {"num_embeddings": f.need("vocab_size", role="vocabulary"), "embedding_dim": h},
              "name": "embed_in"}, block, norm("final_layer_norm")]
    return model, "gpt_neox"


def _encoder_layer(f: Fields, heads: str, ffn: str, act: str, eps: float, norm_first: bool) -> dict[str, Any]:
    """A BERT-style encoder layer: attention with biases, add & norm, a GELU MLP, add & norm."""
    kind = f.get(act, default="gelu", role="activation")
    if kind not in ("gelu", "relu"):
        raise SchemaError(f"activation {kind!r} of an encoder layer is not gelu or relu", value=kind)
    return {"transformerencoderlayer": {
        "nhead": f.need(heads, role="heads"), "dim_feedforward": f.need(ffn, role="MLP width"), "activation": kind,
        "layer_norm_eps": eps, "norm_first": norm_first, "dropout": 0.0}}


def _vit(f: Fields, model_type: str) -> tuple[list[Any], str]:
    """ViT: a patchifying conv, the class token, learned positions, pre-norm encoder layers, a final norm."""
    if not f.get("qkv_bias", default=True, role="q, k, v biases"):
        raise SchemaError("qkv_bias false needs per-projection biases, which layercalc cannot say yet", value=False)
    h, patch = f.need("hidden_size", role="width"), f.need("patch_size", role="patch side")
    eps = f.get("layer_norm_eps", default=1e-12, role="norm eps")
    embeddings = [{"conv2d": {"out_channels": h, "kernel_size": patch, "stride": patch}, "name": "patch_embeddings"},
                  {"flatten": {"start_dim": 2}}, {"transpose": {"dim0": 1, "dim1": 2}},
                  {"clstoken": None, "name": "cls_token"}, {"posembedding": None, "name": "position_embeddings"}]
    layer = {**_encoder_layer(f, "num_attention_heads", "intermediate_size", "hidden_act", eps, True),
             "repeat": f.need("num_hidden_layers", role="layers"), "name": "layer"}
    return [{"sequential": {"layers": embeddings}, "name": "embeddings"},
            {"sequential": {"layers": [layer]}, "name": "encoder"},
            {"layernorm": {"eps": eps}, "name": "layernorm"}], "vit"


def _distilbert(f: Fields, model_type: str) -> tuple[list[Any], str]:
    """DistilBERT: token and learned position embeddings with a norm, post-norm encoder layers."""
    dim = f.need("dim", "hidden_size", role="width")
    f.get("sinusoidal_pos_embds", role="fixed positions (still a parameter: no count change)")
    embeddings = [{"embedding": {"num_embeddings": f.need("vocab_size", role="vocabulary"), "embedding_dim": dim},
                   "name": "word_embeddings"},
                  {"posembedding": {"num_positions": f.need("max_position_embeddings", role="learned positions")},
                   "name": "position_embeddings"},
                  {"layernorm": {"eps": 1e-12}, "name": "LayerNorm"}]
    layer = {**_encoder_layer(f, "n_heads", "hidden_dim", "activation", 1e-12, False),
             "repeat": f.need("n_layers", "num_hidden_layers", role="layers"), "name": "layer"}
    return [{"sequential": {"layers": embeddings}, "name": "embeddings"},
            {"sequential": {"layers": [layer]}, "name": "transformer"}], "distilbert"


def _t5_block(f: Fields, decoder: bool, first: bool) -> dict[str, Any]:
    """One T5 block: self-attention (block 0 owns the relative bias), cross-attention in the decoder,
    then the MLP (ReLU, or gated GELU for T5 v1.1's "gated-gelu"); RMS norms before each, no biases."""
    heads, d_kv = f.need("num_heads", role="heads"), f.need("d_kv", role="head width")
    eps = f.get("layer_norm_epsilon", default=1e-6, role="norm eps")
    norm = {"rmsnorm": {"eps": eps}, "name": "layer_norm"}
    attention: dict[str, Any] = {"num_heads": heads, "head_dim": d_kv, "causal": decoder}
    if first:
        attention["relative_bias"] = {
            "num_buckets": f.get("relative_attention_num_buckets", default=32, role="relative position buckets"),
            "max_distance": f.get("relative_attention_max_distance", default=128, role="relative position reach"),
            "bidirectional": not decoder}
    sublayers = [[norm, {"attention": attention, "name": "SelfAttention"}]]
    if decoder:
        sublayers.append([norm, {"attention": {"num_heads": heads, "head_dim": d_kv, "cross": "encoder"},
                                 "name": "EncDecAttention"}])
    d_ff, d_model = f.need("d_ff", role="MLP width"), f.need("d_model", role="width")
    proj = str(f.get("feed_forward_proj", default="relu", role="MLP kind"))
    linear = lambda out, name: {"linear": {"out_features": out, "bias": False}, "name": name}  # noqa: E731
    if proj.startswith("gated-"):
        act = _activation_named(proj[len("gated-"):])
        mlp = [{"multiply": {"branches": [[linear(d_ff, "wi_0"), act], [linear(d_ff, "wi_1")]]}},
               linear(d_model, "wo")]
    else:
        mlp = [linear(d_ff, "wi"), _activation_named(proj), linear(d_model, "wo")]
    sublayers.append([norm, {"sequential": {"layers": mlp}, "name": "DenseReluDense"}])
    return {"sequential": {"layers": [{"residual": {"body": body}} for body in sublayers]}}


def _activation_named(name: str) -> Any:
    """A layer entry for an activation name (as _activation, from a name already read)."""
    kind = ACTIVATIONS.get(name)
    if kind is None:
        raise SchemaError(f"activation {name!r} is not one layercalc has ({', '.join(ACTIVATIONS)})", value=name)
    return {"gelu": {"approximate": "tanh"}} if kind == "gelu_tanh" else kind


def _t5_stack(f: Fields, decoder: bool, layers: int) -> list[Any]:
    """A T5 stack's layers: block 0 apart (it owns the relative bias), the rest repeated, a final norm."""
    eps = f.get("layer_norm_epsilon", default=1e-6, role="norm eps")
    stack = [{**_t5_block(f, decoder, True), "name": "block0"}]
    if layers > 1:
        stack.append({**_t5_block(f, decoder, False), "name": "block", "repeat": layers - 1})
    return stack + [{"rmsnorm": {"eps": eps}, "name": "final_layer_norm"}]


def _t5(f: Fields, tokens: int) -> tuple[list[Any], dict[str, list[int]]]:
    """T5: one table (shared) embeds both token streams; encoder and decoder stacks, the decoder's
    blocks with cross-attention to the encoder's output."""
    vocab, d_model = f.need("vocab_size", role="vocabulary"), f.need("d_model", role="width")
    layers = f.need("num_layers", role="encoder layers")
    decoder_layers = f.get("num_decoder_layers", default=layers, role="decoder layers") or layers
    model = [
        {"embedding": {"num_embeddings": vocab, "embedding_dim": d_model}, "name": "shared", "from": "input_ids"},
        {"sequential": {"layers": _t5_stack(f, False, layers)}, "name": "encoder"},
        {"sequential": {"layers": [{"embedding": {"num_embeddings": vocab, "embedding_dim": d_model,
                                                  "tied_to": "shared"}, "name": "embed_tokens"},
                                   *_t5_stack(f, True, decoder_layers)]},
         "name": "decoder", "from": "decoder_input_ids"},
    ]
    return model, {"input_ids": [tokens], "decoder_input_ids": [tokens]}


def _whisper_layer(f: Fields, side: str, cross: bool) -> dict[str, Any]:
    """A Whisper layer: pre-norm self-attention (q, v and o biased, k not), cross-attention in the
    decoder, a GELU MLP."""
    heads = f.need(f"{side}_attention_heads", role=f"{side} heads")
    attention = {"num_heads": heads, "bias": ["q", "v", "o"], "causal": side == "decoder"}
    body = [{"residual": {"body": [{"layernorm": None, "name": "self_attn_layer_norm"},
                                   {"attention": attention, "name": "self_attn"}]}}]
    if cross:
        body.append({"residual": {"body": [{"layernorm": None, "name": "encoder_attn_layer_norm"},
                                           {"attention": {"num_heads": heads, "bias": ["q", "v", "o"],
                                                          "cross": "encoder"}, "name": "encoder_attn"}]}})
    d_model = f.need("d_model", role="width")
    body.append({"residual": {"body": [{"layernorm": None, "name": "final_layer_norm"},
                                       {"linear": {"out_features": f.need(f"{side}_ffn_dim", role=f"{side} MLP width")},
                                        "name": "fc1"},
                                       _activation(f, "activation_function"),
                                       {"linear": {"out_features": d_model}, "name": "fc2"}]}})
    return {"sequential": {"layers": body}, "repeat": f.need(f"{side}_layers", role=f"{side} layers"), "name": "layers"}


def _whisper(f: Fields, tokens: int) -> tuple[list[Any], dict[str, list[int]]]:
    """Whisper: an audio encoder (two conv1d, the second halving the frames, a frozen sinusoidal
    position table) and a text decoder (learned positions) with cross-attention to it."""
    d_model, mels = f.need("d_model", role="width"), f.need("num_mel_bins", role="mel bins")
    frames = f.need("max_source_positions", role="audio positions (frames / 2)")
    encoder = [{"conv1d": {"out_channels": d_model, "kernel_size": 3, "padding": 1}, "name": "conv1"}, "gelu",
               {"conv1d": {"out_channels": d_model, "kernel_size": 3, "stride": 2, "padding": 1}, "name": "conv2"},
               "gelu", {"permute": {"dims": [0, 2, 1]}},
               {"posembedding": {"num_positions": frames}, "name": "embed_positions", "trainable": False},
               _whisper_layer(f, "encoder", False), {"layernorm": None, "name": "layer_norm"}]
    decoder = [{"embedding": {"num_embeddings": f.need("vocab_size", role="vocabulary"), "embedding_dim": d_model},
                "name": "embed_tokens"},
               {"posembedding": {"num_positions": f.need("max_target_positions", role="text positions")},
                "name": "embed_positions"},
               _whisper_layer(f, "decoder", True), {"layernorm": None, "name": "layer_norm"}]
    model = [{"sequential": {"layers": encoder}, "name": "encoder", "from": "input_features"},
             {"sequential": {"layers": decoder}, "name": "decoder", "from": "decoder_input_ids"}]
    return model, {"input_features": [mels, 2 * frames], "decoder_input_ids": [tokens]}


# model type -> (builder of the top-level entries and named inputs at T tokens, whether the head is
# tied by default, the head's name and the table it ties to, the class that has it, the length field)
SEQ2SEQ: dict[str, tuple[Callable[[Fields, int], tuple[list[Any], dict[str, list[int]]]], bool, str, str, str, str]] = {
    "t5": (_t5, True, "lm_head", "shared", "ForConditionalGeneration", "n_positions"),
    "whisper": (_whisper, True, "proj_out", "embed_tokens", "ForConditionalGeneration", "max_target_positions"),
}


def _seq2seq(f: Fields, model_type: str, architecture: str, given: tuple[int, ...] | None) -> tuple[list[Any], Any]:
    """An encoder-decoder's top-level entries and named inputs; its head when the class has one."""
    build, tied, head, table, cls, limit = SEQ2SEQ[model_type]
    positions = f.get(limit, default=None, role="positions")
    tokens = _length(positions if isinstance(positions, int) and positions > 0 else None, given, limit)
    layers, inputs = build(f, tokens)
    if architecture.endswith(cls):
        layers.append(_head(f, f.need("vocab_size", role="vocabulary"), table, tied, head))
    elif architecture and not architecture.endswith("Model"):
        warnings.warn(LayercalcWarning(f"{f.file}: the head of {architecture} is not imported; this is the base model"))
    return layers, inputs


# the BERT-family classes whose base model keeps its pooler (dense + tanh on the first token)
POOLED = ("BertModel", "RobertaModel", "BertForSequenceClassification", "BertForPreTraining",
          "BertForNextSentencePrediction", "BertForMultipleChoice")


def _architecture(f: Fields) -> str:
    """The class the config's architectures names first ("" for the base model); recorded later."""
    names = f.checked("architectures", f.doc.get("architectures") or [])
    return str(names[0]) if names else ""


def _bert(f: Fields, model_type: str) -> tuple[list[Any], str]:
    """BERT and RoBERTa: token, token-type and learned position embeddings with a norm, post-norm
    encoder layers, and the pooler where the class keeps it. RoBERTa numbers positions from
    padding_idx + 1 (rows 0 and 1 of 514 are never read); only token type 0 is given, so the
    token-type table adds its first row to every token."""
    if f.get("add_cross_attention", default=False, role="cross-attention (not modelled)"):
        raise SchemaError("add_cross_attention true (a BERT decoder) is not one layercalc imports", value=True)
    kind = f.get("position_embedding_type", default="absolute", role="position embeddings")
    if kind != "absolute":
        raise SchemaError(f"position_embedding_type {kind!r} is not one layercalc imports (absolute)", value=kind)
    h = f.need("hidden_size", role="width")
    eps = f.get("layer_norm_eps", default=1e-12, role="norm eps")
    pad = f.get("pad_token_id", default=1 if model_type == "roberta" else 0, role="padding id")
    types = f.get("type_vocab_size", default=2, role="token types (the first added)")
    positions = {"num_positions": f.need("max_position_embeddings", role="learned positions")}
    if model_type == "roberta":
        positions["offset"] = pad + 1
    embeddings = [
        {"embedding": {"num_embeddings": f.need("vocab_size", role="vocabulary"), "embedding_dim": h,
                       "padding_idx": pad}, "name": "word_embeddings"},
        {"shift": {"rows": types} if types > 1 else {"dim": -1}, "name": "token_type_embeddings"},
        {"posembedding": positions, "name": "position_embeddings"},
        {"layernorm": {"eps": eps}, "name": "LayerNorm"}]
    layer = {**_encoder_layer(f, "num_attention_heads", "intermediate_size", "hidden_act", eps, False),
             "repeat": f.need("num_hidden_layers", role="layers"), "name": "layer"}
    model = [{"sequential": {"layers": embeddings}, "name": "embeddings"},
             {"sequential": {"layers": [layer]}, "name": "encoder"}]
    if _architecture(f) in POOLED or not _architecture(f):
        model.append({"sequential": {"layers": [{"select": {"dim": 1, "index": 0}},
                                                {"linear": {"out_features": h}, "name": "dense"}, "tanh"]},
                      "name": "pooler"})
    return model, model_type


def _bert_head(f: Fields, model_type: str, architecture: str, embedding: str, tied: bool) -> list[Any] | None:
    """The task heads of BERT and RoBERTa (None for a class without one here)."""
    h, task = f.need("hidden_size", role="width"), architecture.removeprefix("Bert").removeprefix("Roberta")
    labels = len(f.get("id2label", default={"0": 0, "1": 1}, role="classes") or {}) or 2
    if task == "ForMaskedLM":
        vocab = f.need("vocab_size", role="vocabulary")
        decoder: dict[str, Any] = {"out_features": vocab}
        if f.get("tie_word_embeddings", default=tied, role="head tied to the embedding"):
            decoder["tied_to"] = embedding
        act = "gelu" if model_type == "roberta" else _activation(f, "hidden_act")
        return [{"linear": {"out_features": h}, "name": "dense"}, act,
                {"layernorm": {"eps": f.get("layer_norm_eps", default=1e-12, role="norm eps")}, "name": "layer_norm"},
                {"linear": decoder, "name": "decoder"}]
    if task == "ForSequenceClassification":
        if model_type == "bert":  # on the pooled output
            return [{"linear": {"out_features": labels}, "name": "classifier"}]
        return [{"select": {"dim": 1, "index": 0}}, {"linear": {"out_features": h}, "name": "dense"}, "tanh",
                {"linear": {"out_features": labels}, "name": "out_proj"}]
    if task == "ForTokenClassification":
        return [{"linear": {"out_features": labels}, "name": "classifier"}]
    if task == "ForQuestionAnswering":
        return [{"linear": {"out_features": 2}, "name": "qa_outputs"}]
    return None


# Mamba's fields that change no count: initialisation, numerics of the residual, the vocabulary's
# padding (vocab_size is already padded) and the original repository's spellings, which transformers
# does not read when its own (hidden_size, num_hidden_layers; the inner width is always expand·width) are there
MAMBA_NO_COUNT = ("time_step_scale", "time_step_min", "time_step_max", "time_step_init_scheme", "time_step_floor",
                  "rescale_prenorm_residual", "residual_in_fp32", "fused_add_norm", "use_mambapy",
                  "use_associative_scan", "ssm_cfg", "pad_vocab_size_multiple", "d_model", "n_layer", "d_inner",
                  "intermediate_size")


def _mamba(f: Fields, model_type: str) -> tuple[list[Any], str]:
    """Mamba: pre-norm RMSNorm residual blocks around a selective state-space mixer, a final RMSNorm."""
    h = f.need("hidden_size", "d_model", role="width")
    expand = f.get("expand", default=2, role="inner channels = expand·width")
    rank = f.get("time_step_rank", default="auto", role="dt rank")
    if f.get("hidden_act", default="silu", role="activation") not in ("silu", "swish"):
        raise SchemaError(f"hidden_act {f.doc['hidden_act']!r} of a Mamba mixer is not silu", value=f.doc["hidden_act"])
    if not f.get("rms_norm", default=True, role="RMSNorm"):
        raise SchemaError("rms_norm false (a LayerNorm) is not how transformers' Mamba builds it", value=False)
    mixer = {"d_state": f.get("state_size", default=16, role="state size"),
             "d_conv": f.get("conv_kernel", default=4, role="conv kernel"), "expand": expand,
             "dt_rank": -(-h // 16) if rank == "auto" else rank,
             "conv_bias": bool(f.get("use_conv_bias", default=True, role="conv bias")),
             "bias": bool(f.get("use_bias", default=False, role="in/out projection biases"))}
    eps = f.get("layer_norm_epsilon", default=1e-5, role="norm eps")
    block = {"residual": {"body": [{"rmsnorm": {"eps": eps}, "name": "norm"}, {"mamba": mixer, "name": "mixer"}]},
             "repeat": f.need("num_hidden_layers", "n_layer", role="layers"), "name": "layers"}
    model = [{"embedding": {"num_embeddings": f.need("vocab_size", role="vocabulary"), "embedding_dim": h},
              "name": "embeddings"}, block, {"rmsnorm": {"eps": eps}, "name": "norm_f"}]
    for name in (n for n in MAMBA_NO_COUNT if n not in f.read):
        f.get(name, role="no count change")
    return model, "backbone"


BUILDERS: dict[str, tuple[Callable[[Fields, str], tuple[list[Any], str]], bool, str]] = {
    # model type -> (builder, whether the head is tied by default, the embedding's name)
    "llama": (_llama, False, "embed_tokens"),
    "mistral": (_llama, False, "embed_tokens"),
    "qwen2": (_llama, False, "embed_tokens"),
    "mixtral": (_mixtral, False, "embed_tokens"),
    "qwen2_moe": (_qwen2_moe, False, "embed_tokens"),
    "gemma": (_llama, True, "embed_tokens"),
    "phi3": (_llama, False, "embed_tokens"),
    "gpt2": (_gpt2, True, "wte"),
    "opt": (_opt, True, "embed_tokens"),
    "gpt_neox": (_neox, False, "embed_in"),
    "vit": (_vit, False, ""),
    "distilbert": (_distilbert, True, "word_embeddings"),
    "bert": (_bert, True, "word_embeddings"),
    "roberta": (_bert, True, "word_embeddings"),
    "mamba": (_mamba, True, "embeddings"),
}


def _task_head(f: Fields, model_type: str, architecture: str, embedding: str, tied: bool) -> list[Any]:
    """The layers the named class adds to the base model (none for the base model itself)."""
    head = _bert_head(f, model_type, architecture, embedding, tied) if model_type in ("bert", "roberta") else None
    if head is not None:
        return head
    if architecture.endswith(("ForCausalLM", "LMHeadModel")):
        name = "embed_out" if model_type == "gpt_neox" else "lm_head"
        return [_head(f, f.need("vocab_size", role="vocabulary"), embedding, tied, name)]
    if architecture == "ViTForImageClassification":
        labels = len(f.get("id2label", default={"0": 0, "1": 1}, role="classes") or {}) or 2
        return [{"select": {"dim": 1, "index": 0}}, {"linear": {"out_features": labels}, "name": "classifier"}]
    if architecture == "DistilBertForMaskedLM":
        dim = f.need("dim", "hidden_size", role="width")
        return [{"linear": {"out_features": dim}, "name": "vocab_transform"}, "gelu",
                {"layernorm": {"eps": 1e-12}, "name": "vocab_layer_norm"},
                {"linear": {"out_features": f.need("vocab_size", role="vocabulary"), "tied_to": embedding},
                 "name": "vocab_projector"}]
    if architecture and not architecture.endswith("Model"):
        warnings.warn(LayercalcWarning(f"{f.file}: the head of {architecture} is not imported; this is the base model"))
    if model_type == "vit" and f.get("add_pooling_layer", default=True, role="pooler"):
        return [{"select": {"dim": 1, "index": 0}},
                {"linear": {"out_features": f.need("hidden_size", role="width")}, "name": "pooler"}, "tanh"]
    return []


def _tokens(f: Fields, given: tuple[int, ...] | None) -> int:
    """The token stream's length: --input (a parsed shape), else 2048, never beyond the model's positions."""
    limit = f.get("max_position_embeddings", "n_positions", role="positions")
    if f.doc.get("model_type") == "roberta" and isinstance(limit, int):  # positions start past the padding id
        reserved = f.get("pad_token_id", default=1, role="padding id") + 1
        return _length(limit - reserved, given, f"max_position_embeddings {limit} less the {reserved} rows up to"
                       " the padding id:")
    return _length(limit, given)


def _length(limit: Any, given: tuple[int, ...] | None, field: str = "max_position_embeddings") -> int:
    """--input's one token length (else 2048), at most `limit` positions when the model has a limit."""
    if given is None:
        return min(DEFAULT_TOKENS, limit) if isinstance(limit, int) and limit > 0 else DEFAULT_TOKENS
    (length, *rest) = given
    if rest:
        raise SchemaError(f"--input for a Hugging Face config is one token length, got {'x'.join(map(str, given))}",
                          value=given)
    if isinstance(limit, int) and length > limit:
        raise SchemaError(f"--input {length} exceeds {field} {limit}", value=length)
    return length


def document(doc: dict[str, Any], file: str = "config.json",
             input: tuple[int, ...] | None = None) -> tuple[dict[str, Any], Fields]:
    """The layercalc config document of a Hugging Face config at `input` tokens, and the fields it read."""
    model_type = str(doc.get("model_type", ""))
    if model_type not in BUILDERS and model_type not in SEQ2SEQ:
        raise SchemaError(f"model_type {model_type!r} is not one layercalc imports; it imports "
                          f"{', '.join([*BUILDERS, *SEQ2SEQ])}", value=model_type)
    f = Fields(doc, file)
    if model_type in SEQ2SEQ:
        return _seq2seq_document(f, model_type, file, input), f
    build, tied_default, embedding = BUILDERS[model_type]
    model, prefix = build(f, model_type)
    dtype = f.get("dtype", "torch_dtype", default="float32", role="dtype")
    architectures = [str(a) for a in f.get("architectures", default=[], role="class") or []]
    layers: list[Any] = [{"sequential": {"layers": model}, "name": prefix}]
    layers += _task_head(f, model_type, architectures[0] if architectures else "", embedding, tied_default)
    name = os.path.basename(os.path.dirname(os.path.abspath(file))) if file.endswith("config.json") else model_type
    if model_type == "vit":  # an image: channels and the side the config says (or --input), not tokens
        side = f.need("image_size", role="image side")
        shape = list(input) if input else [f.get("num_channels", default=3, role="channels"), side, side]
    else:
        shape = [_tokens(f, input)]
    out = {"name": name or model_type, "input": shape, "dtype": dtype, "layers": layers}
    for field in f.unknown():
        warnings.warn(LayercalcWarning(f"{file}: field {field!r} is not one layercalc reads; it is ignored"))
    return out, f


def _seq2seq_document(f: Fields, model_type: str, file: str, input: tuple[int, ...] | None) -> dict[str, Any]:
    """The config document of an encoder-decoder (named inputs, top-level entries reading them)."""
    dtype = f.get("dtype", "torch_dtype", default="float32", role="dtype")
    architectures = [str(a) for a in f.get("architectures", default=[], role="class") or []]
    layers, inputs = _seq2seq(f, model_type, architectures[0] if architectures else "", input)
    name = os.path.basename(os.path.dirname(os.path.abspath(file))) if file.endswith("config.json") else model_type
    for field in f.unknown():
        if field not in SEQ2SEQ_NO_COUNT:
            warnings.warn(LayercalcWarning(f"{file}: field {field!r} is not one layercalc reads; it is ignored"))
    return {"name": name or model_type, "input": inputs, "dtype": dtype, "layers": layers}


def _json(value: Any) -> str:
    """A source field's value as config.json spells it."""
    import json

    return json.dumps(value)


def _scalar(value: Any) -> str:
    """A YAML scalar (or a flow list or mapping of them) as a person writes it."""
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return _flow(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and (value.isdigit() or value.lower() in ("true", "false", "null", "yes", "no")):
        return f'"{value}"'  # a name that YAML would read as a number or a boolean
    return str(value)


def _flow(args: dict[str, Any]) -> str:
    """{a: 1, b: 2}: a layer's arguments on one line."""
    return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in args.items()) + "}"


LAYER_LISTS = ("layers", "body", "shortcut", "branches", "expert", "shared")  # the block arguments that hold layer entries


def _entries(entries: list[Any], indent: int) -> list[str]:
    """A list of layer entries, block style, nested blocks indented under their list keys."""
    pad = " " * indent
    lines = []
    for entry in entries:
        if isinstance(entry, str):
            lines.append(f"{pad}- {entry}")
            continue
        kind = next(iter(entry))
        args = entry[kind]
        if isinstance(args, dict) and any(k in LAYER_LISTS for k in args):
            lines.append(f"{pad}- {kind}:")
            for key, value in args.items():
                if key not in LAYER_LISTS:  # a number beside the layer lists (a moe's num_experts)
                    lines.append(f"{pad}    {key}: {_scalar(value)}")
                    continue
                lines.append(f"{pad}    {key}:")
                if key == "branches":
                    for branch in value:
                        lines.append(f"{pad}      -")  # a branch: a sequence of entries of its own
                        lines += _entries(branch, indent + 8)
                else:
                    lines += _entries(value, indent + 6)
        else:
            lines.append(f"{pad}- {kind}: {_flow(args)}" if args else f"{pad}- {kind}:")
        lines += [f"{pad}  {key}: {_scalar(value)}" for key, value in entry.items() if key != kind]
    return lines


def to_yaml(doc: dict[str, Any], fields: Fields) -> str:
    """The config as commented YAML: where each number came from, then the network."""
    head = [f"# Imported by `layercalc import hf` from {fields.file}; fields read:"]
    head += [f"#   {k}: {_json(fields.doc[k])}  ({role})" for k, role in fields.read.items() if role]
    quiet = sorted(k for k in fields.doc if k in NO_COUNT and k not in fields.read)
    if quiet:
        import textwrap

        head += ["# " + line for line in textwrap.wrap("Fields that change no count: " + ", ".join(quiet), 98)]
    body = [f"name: {doc['name']}", f"input: {_scalar(doc['input'])}", f"dtype: {doc['dtype']}"]
    body += [f"batch: {doc['batch']}"] if "batch" in doc else []
    body += ["layers:"]
    return "\n".join(head + body + _entries(doc["layers"], 2)) + "\n"
