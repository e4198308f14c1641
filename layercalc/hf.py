"""Hugging Face `config.json` -> a layercalc config: the same modules, names and counts, no transformers.

One builder per model family writes the config document (a plain dict, names as Hugging Face's
modules) from the fields it reads; each field it reads is recorded, so the YAML it writes says
where every number came from. Fields that change no count are listed together; any other field
is named in a warning, never silently ignored. Both the spellings transformers writes today and
older ones hub files carry are read (`dtype`/`torch_dtype`, GPT-2's `n_embd`/`hidden_size`, ...).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable

from .errors import LayercalcWarning, SchemaError

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
    "router_aux_loss_coef", "output_router_logits", "router_jitter_noise",
})
ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
               "gelu_fast": "gelu_tanh", "relu": "relu"}
PLANNED = ("qwen2", "qwen2_moe", "bert", "roberta", "t5", "whisper", "mamba")


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
                return self.doc[name]
        return default

    def need(self, *names: str, role: str = "") -> int:
        """A required positive integer field."""
        value = self.get(*names, role=role)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SchemaError(f"{names[0]} must be a positive integer, got {value!r}", value=value)
        return value

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


def _llama(f: Fields, model_type: str) -> tuple[list[Any], str]:
    """Llama, Mistral, Gemma, Phi-3: pre-norm RMSNorm blocks, grouped-query attention, a gated MLP."""
    h = f.need("hidden_size", role="width")
    heads = f.need("num_attention_heads", role="query heads")
    kv = f.get("num_key_value_heads", default=heads, role="key/value heads")
    head_dim = f.get("head_dim", default=h // heads, role="head width")
    ffn = f.need("intermediate_size", role="MLP width")
    eps = f.get("rms_norm_eps", default=1e-6, role="norm eps")
    bias = bool(f.get("attention_bias", default=False, role="attention biases"))
    mlp_bias = bool(f.get("mlp_bias", default=False, role="MLP biases"))
    theta = f.get("rope_theta", default=None, role="rotary base (no count change)")
    theta = theta or (f.get("rope_parameters", default={}, role="rotary base (no count change)") or {}).get(
        "rope_theta", 10000.0)
    attention = {"num_heads": heads, "num_kv_heads": kv, "head_dim": head_dim, "bias": bias, "rope": True,
                 "rope_theta": float(theta)}
    linear = lambda out, name: {"linear": {"out_features": out, "bias": mlp_bias}, "name": name}  # noqa: E731
    block = {"sequential": {"layers": [
        {"residual": {"body": [{"rmsnorm": {"eps": eps}, "name": "input_layernorm"},
                               {"attention": attention, "name": "self_attn"}]}},
        {"residual": {"body": [{"rmsnorm": {"eps": eps}, "name": "post_attention_layernorm"},
                               {"sequential": {"layers": [
                                   {"multiply": {"branches": [[linear(ffn, "gate_proj"), _activation(
                                       f, "hidden_activation", "hidden_act")], [linear(ffn, "up_proj")]]}},
                                   linear(h, "down_proj")]}, "name": "mlp"}]}},
    ]}, "repeat": f.need("num_hidden_layers", role="layers"), "name": "layers"}
    vocab = f.need("vocab_size", role="vocabulary")
    model = [{"embedding": {"num_embeddings": vocab, "embedding_dim": h}, "name": "embed_tokens"}, block,
             {"rmsnorm": {"eps": eps}, "name": "norm"}]
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
    """OPT: learned positions (2 rows past the longest sequence), attention with biases, a ReLU MLP;
    pre-norm, or post-norm for OPT-350m; a projection in and out when the embedding is narrower."""
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
    model += [{"posembedding": {"num_positions": positions}, "name": "embed_positions"}, block]
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
            "attention_bias", default=True, role="attention biases")), "rope": True}, "name": "attention"}]
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


BUILDERS: dict[str, tuple[Callable[[Fields, str], tuple[list[Any], str]], bool, str]] = {
    # model type -> (builder, whether the head is tied by default, the embedding's name)
    "llama": (_llama, False, "embed_tokens"),
    "mistral": (_llama, False, "embed_tokens"),
    "mixtral": (_mixtral, False, "embed_tokens"),
    "gemma": (_llama, True, "embed_tokens"),
    "phi3": (_llama, False, "embed_tokens"),
    "gpt2": (_gpt2, True, "wte"),
    "opt": (_opt, True, "embed_tokens"),
    "gpt_neox": (_neox, False, "embed_in"),
    "vit": (_vit, False, ""),
    "distilbert": (_distilbert, True, "word_embeddings"),
}


def _task_head(f: Fields, model_type: str, architecture: str, embedding: str, tied: bool) -> list[Any]:
    """The layers the named class adds to the base model (none for the base model itself)."""
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
    if given is None:
        return min(DEFAULT_TOKENS, limit) if isinstance(limit, int) and limit > 0 else DEFAULT_TOKENS
    (length, *rest) = given
    if rest:
        raise SchemaError(f"--input for a Hugging Face config is one token length, got {'x'.join(map(str, given))}",
                          value=given)
    if isinstance(limit, int) and length > limit:
        raise SchemaError(f"--input {length} exceeds max_position_embeddings {limit}", value=length)
    return length


def document(doc: dict[str, Any], file: str = "config.json",
             input: tuple[int, ...] | None = None) -> tuple[dict[str, Any], Fields]:
    """The layercalc config document of a Hugging Face config at `input` tokens, and the fields it read."""
    model_type = str(doc.get("model_type", ""))
    if model_type not in BUILDERS:
        later = " (planned)" if model_type in PLANNED else ""
        raise SchemaError(f"model_type {model_type!r}{later} is not one layercalc imports; it imports "
                          f"{', '.join(BUILDERS)}", value=model_type)
    f = Fields(doc, file)
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
    window = doc.get("sliding_window")
    if isinstance(window, int) and doc.get("use_sliding_window", True):
        warnings.warn(LayercalcWarning(f"{file}: sliding_window {window} is not modelled yet: counts are exact, but a "
                                       "KV cache is not capped at the window"))
    return out, f


def _json(value: Any) -> str:
    """A source field's value as config.json spells it."""
    import json

    return json.dumps(value)


def _scalar(value: Any) -> str:
    """A YAML scalar as a person writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _flow(args: dict[str, Any]) -> str:
    """{a: 1, b: 2}: a layer's arguments on one line."""
    return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in args.items()) + "}"


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
        if isinstance(args, dict) and any(isinstance(v, list) for v in args.values()):
            lines.append(f"{pad}- {kind}:")
            for key, value in args.items():
                if not isinstance(value, list):  # a number beside the layer lists (a moe's num_experts)
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
    body = [f"name: {doc['name']}", f"input: [{', '.join(map(str, doc['input']))}]", f"dtype: {doc['dtype']}"]
    body += [f"batch: {doc['batch']}"] if "batch" in doc else []
    body += ["layers:"]
    return "\n".join(head + body + _entries(doc["layers"], 2)) + "\n"
