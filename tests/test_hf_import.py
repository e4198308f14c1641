"""Hugging Face config.json files read directly: published parameter counts, and transformers' own
models built from the same config (random weights, eager attention) at two sequence lengths.

The real hub configs in tests/hf_configs are the published files of Llama-2-7B and -70B, Llama-3-8B,
Mistral-7B-v0.1, Mixtral-8x7B-v0.1, Gemma-2B and GPT-2 (older spellings: torch_dtype, n_embd); their
parameter counts are the published ones (the model cards and Hugging Face's num_parameters()).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from layercalc import api
from layercalc.errors import ConfigError, LayercalcWarning

HUB = Path(__file__).resolve().parent / "hf_configs"


@pytest.mark.parametrize("name, params, dtype", [
    ("llama2_7b", 6_738_415_616, "float16"),
    ("llama3_8b", 8_030_261_248, "bfloat16"),
    ("llama2_70b", 68_976_648_192, "float16"),
    ("mistral_7b", 7_241_732_096, "bfloat16"),
    ("gpt2", 124_439_808, "float32"),
    ("gemma_2b", 2_506_172_416, "bfloat16"),  # no tie_word_embeddings field: Gemma ties its head by default
    ("mixtral_8x7b", 46_702_792_704, "bfloat16"),
])
def test_published_configs_give_published_counts(name: str, params: int, dtype: str) -> None:
    with warnings.catch_warnings(record=True):
        report = api.analyse(str(HUB / f"{name}.json"))
    assert report.total["params"] == params
    assert report.network.dtype == dtype


def test_the_written_yaml_loads_to_the_same_network(tmp_path: Path) -> None:
    text = api.import_hf(HUB / "llama3_8b.json", input="512")
    path = tmp_path / "llama.yaml"
    path.write_text(text)
    direct = api.analyse(str(HUB / "llama3_8b.json"), input="512")
    assert api.analyse(str(path)).total == direct.total
    assert "#   num_key_value_heads: 8  (key/value heads)" in text
    assert "rope_theta: 500000.0}" in text  # no count changes, but verify's rotary tables use it
    assert "model.layers" in {r["path"] for r in direct.rows(depth=2)}


def test_unknown_fields_are_named_and_unsupported_types_refused(tmp_path: Path, cli) -> None:
    doc = json.loads((HUB / "llama2_7b.json").read_text())
    doc["fancy_new_thing"] = 3
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    run = cli("params", str(path), "--total")
    assert run.status == 0 and run.out == "6738415616\n"
    assert run.err == f"warning: {path}: field 'fancy_new_thing' is not one layercalc reads; it is ignored\n"
    doc["model_type"] = "falcon"
    path.write_text(json.dumps(doc))
    run = cli("params", str(path))
    assert run.status == 2 and run.out == "" and run.err.count("\n") == 1
    assert "model_type 'falcon' is not one layercalc imports; it imports llama, mistral" in run.err
    run = cli("import", "hf", str(HUB / "gpt2.json"), "--input", "2048")
    assert run.status == 2 and "--input 2048 exceeds max_position_embeddings 1024" in run.err


def test_sliding_window_is_said_not_modelled(cli) -> None:
    run = cli("import", "hf", str(HUB / "mistral_7b.json"))
    assert run.status == 0 and "sliding_window 4096 is not modelled yet" in run.err


# ---- against transformers' models --------------------------------------------------------------

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

SMALL = dict(vocab_size=96, hidden_size=64, intermediate_size=136, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=64)
CASES = {
    "llama": lambda: transformers.LlamaConfig(**SMALL, num_key_value_heads=2, tie_word_embeddings=False,
                                              attention_bias=True, architectures=["LlamaForCausalLM"]),
    "llama-base": lambda: transformers.LlamaConfig(**SMALL, num_key_value_heads=4),
    "mistral": lambda: transformers.MistralConfig(**SMALL, num_key_value_heads=2, sliding_window=16,
                                                  architectures=["MistralForCausalLM"]),
    "gemma": lambda: transformers.GemmaConfig(**SMALL, num_key_value_heads=1, head_dim=32,
                                              architectures=["GemmaForCausalLM"]),
    "phi3": lambda: transformers.Phi3Config(**SMALL, num_key_value_heads=2, architectures=["Phi3ForCausalLM"],
                                            pad_token_id=0, bos_token_id=1, eos_token_id=2),
    "opt": lambda: transformers.OPTConfig(vocab_size=96, hidden_size=64, ffn_dim=136, num_hidden_layers=2,
                                          num_attention_heads=4, max_position_embeddings=64,
                                          architectures=["OPTForCausalLM"], pad_token_id=1, bos_token_id=2,
                                          eos_token_id=2),
    "opt-350m-shape": lambda: transformers.OPTConfig(vocab_size=96, hidden_size=64, ffn_dim=136, num_hidden_layers=2,
                                                     num_attention_heads=4, max_position_embeddings=64,
                                                     word_embed_proj_dim=32, do_layer_norm_before=False,
                                                     architectures=["OPTForCausalLM"], pad_token_id=1,
                                                     bos_token_id=2, eos_token_id=2),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(vocab_size=96, hidden_size=64, intermediate_size=136,
                                                   num_hidden_layers=2, num_attention_heads=4,
                                                   max_position_embeddings=64, rotary_pct=0.25,
                                                   architectures=["GPTNeoXForCausalLM"]),
    "gpt_neox-sequential": lambda: transformers.GPTNeoXConfig(vocab_size=96, hidden_size=64, intermediate_size=136,
                                                              num_hidden_layers=2, num_attention_heads=4,
                                                              max_position_embeddings=64, use_parallel_residual=False),
    "vit": lambda: transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=136, image_size=32, patch_size=8,
                                          architectures=["ViTForImageClassification"],
                                          id2label={str(i): str(i) for i in range(10)}),
    "vit-base": lambda: transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                               intermediate_size=136, image_size=32, patch_size=8),
    "distilbert": lambda: transformers.DistilBertConfig(vocab_size=96, dim=64, n_layers=2, n_heads=4, hidden_dim=136,
                                                        max_position_embeddings=64,
                                                        architectures=["DistilBertForMaskedLM"]),
    "distilbert-base": lambda: transformers.DistilBertConfig(vocab_size=96, dim=64, n_layers=2, n_heads=4,
                                                             hidden_dim=136, max_position_embeddings=64),
    "gpt2": lambda: transformers.GPT2Config(vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                            architectures=["GPT2LMHeadModel"]),
    "mixtral": lambda: transformers.MixtralConfig(**SMALL, num_key_value_heads=2, num_local_experts=4,
                                                  num_experts_per_tok=2, architectures=["MixtralForCausalLM"]),
    "mixtral-top1": lambda: transformers.MixtralConfig(**SMALL, num_key_value_heads=4, num_local_experts=3,
                                                       num_experts_per_tok=1),
}


def hf_model(config: object) -> object:
    """transformers' model of the class the config's architectures name (the base model without one)."""
    config._attn_implementation = "eager"  # type: ignore[attr-defined]  # q·kᵀ and A·v as matmuls
    if getattr(config, "num_local_experts", None):  # experts as matmuls too (the default grouped_mm is unseen)
        config._experts_implementation = "eager"  # type: ignore[attr-defined]
    names = getattr(config, "architectures", None)
    if names:
        return getattr(transformers, names[0])(config)
    return transformers.AutoModel.from_config(config)


def hf_counts(model: object, length: int, image: tuple[int, ...] | None = None) -> tuple[int, int, int]:
    """Parameters, persistent buffers and MACs (FlopCounterMode / 2) of one sequence of `length` ids
    (or of one image of the given shape)."""
    params = sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
    state = model.state_dict()  # type: ignore[attr-defined]
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}  # type: ignore[attr-defined]
    buffers = sum(t.numel() for n, t in state.items() if n not in names)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        if image is not None:
            model(torch.zeros((1, *image)))  # type: ignore[operator]
        else:
            model(torch.zeros((1, length), dtype=torch.long))  # type: ignore[operator]
    return params, buffers, counter.get_total_flops() // 2


@pytest.mark.parametrize("case", sorted(CASES))
def test_against_transformers(case: str, tmp_path: Path) -> None:
    config = CASES[case]()
    config.to_json_file(str(tmp_path / "config.json"))  # the spellings transformers writes today
    model = hf_model(config).eval()
    image = case.startswith("vit")
    for length in (8,) if image else (8, 24):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LayercalcWarning)
            report = api.analyse(str(tmp_path / "config.json"), input=None if image else str(length))
        total = report.total
        shape = report.network.input_shape[1:] if image else None
        assert (total["params"], total["buffers"], total["macs"]) == hf_counts(model, length, shape), (case, length)


def test_old_and_new_spellings_agree(tmp_path: Path) -> None:
    new = json.loads((HUB / "llama3_8b.json").read_text())
    new["dtype"] = new.pop("torch_dtype")
    new["rope_parameters"] = {"rope_type": "default", "rope_theta": new.pop("rope_theta")}
    (tmp_path / "config.json").write_text(json.dumps(new))
    a, b = api.analyse(str(HUB / "llama3_8b.json")), api.analyse(str(tmp_path / "config.json"))
    assert a.total == b.total and b.network.dtype == "bfloat16"
    gpt = json.loads((HUB / "gpt2.json").read_text())
    for old, now in (("n_embd", "hidden_size"), ("n_layer", "num_hidden_layers"), ("n_head", "num_attention_heads"),
                     ("n_positions", "max_position_embeddings")):
        gpt[now] = gpt.pop(old)
    (tmp_path / "config.json").write_text(json.dumps(gpt))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LayercalcWarning)
        assert api.analyse(str(tmp_path / "config.json")).total["params"] == 124_439_808
    with pytest.raises(ConfigError):
        api.import_hf(tmp_path / "missing")
