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
    ("qwen2_0_5b", 494_032_768, "bfloat16"),  # Qwen2-0.5B's fields; its head tied to the embedding
    # state-spaces/mamba-130m-hf: the vocabulary already padded to 50,280, the head tied by default
    ("mamba_130m", 129_135_360, "float32"),
    ("mixtral_8x7b", 46_702_792_704, "bfloat16"),
    # bert-base-uncased's hub config.json names BertForMaskedLM: BertModel's 109,482,240 less its pooler
    # (768·768 + 768 = 590,592), plus the MLM head's transform (590,592), its LayerNorm (1,536) and the
    # decoder's bias (30,522), the decoder's weight tied to the word embeddings: 109,514,298
    ("bert_base_uncased", 109_514_298, "float32"),
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


QWEN2_MOE = {"model_type": "qwen2_moe", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 96, "num_hidden_layers": 4, "vocab_size": 32, "max_position_embeddings": 64,
             "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 24,
             "shared_expert_intermediate_size": 40}
T5 = {"model_type": "t5", "vocab_size": 96, "d_model": 32, "d_kv": 8, "d_ff": 48, "num_layers": 2, "num_heads": 4}


@pytest.mark.parametrize("base, field, value, message", [
    ("llama2_7b", "architectures", "LlamaForCausalLM", "architectures must be a list of class names"),
    ("bert_base_uncased", "architectures", {"a": 1}, "architectures must be a list of class names"),
    ("bert_base_uncased", "id2label", 3, "id2label must be a mapping"),
    ("bert_base_uncased", "type_vocab_size", "2", "type_vocab_size must be an integer >= 0"),
    ("bert_base_uncased", "pad_token_id", "0", "pad_token_id must be an integer"),
    ("gemma_2b", "rope_theta", "10000", "rope_theta must be a number"),
    ("gemma_2b", "rope_parameters", 10000, "rope_parameters must be a mapping"),
    ("llama2_7b", "rope_parameters", {"rope_theta": "x"}, "rope_parameters.rope_theta must be a number"),
    ("qwen2_0_5b", "layer_types", 3, "layer_types must be a list"),
    (QWEN2_MOE, "num_experts", "4", "num_experts must be an integer >= 0"),
    (QWEN2_MOE, "decoder_sparse_step", 0, "decoder_sparse_step must be an integer >= 1"),
    (QWEN2_MOE, "mlp_only_layers", 3, "mlp_only_layers must be a list of layer indices"),
    (T5, "num_decoder_layers", "6", "num_decoder_layers must be an integer >= 1"),
])
def test_a_field_of_the_wrong_type_is_one_line_naming_it(tmp_path: Path, cli, base: object, field: str,
                                                        value: object, message: str) -> None:
    doc = dict(base) if isinstance(base, dict) else json.loads((HUB / f"{base}.json").read_text())
    doc = {**doc, field: value}
    if field == "layer_types":
        doc["use_sliding_window"] = True
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc, indent=2))
    line = json.dumps(doc, indent=2).splitlines().index(next(
        t for t in json.dumps(doc, indent=2).splitlines() if t.startswith(f'  "{field}"'))) + 1
    for command in (["params", str(path)], ["import", "hf", str(path)]):
        run = cli(*command)
        errors = [t for t in run.err.splitlines() if not t.startswith("warning:")]
        assert run.status == 2 and run.out == "" and len(errors) == 1 and message in errors[0], run.err
        # the calculating commands read the file's lines: the field's own is named
        assert errors[0].startswith(f"error: {path}:{line}: " if command[0] == "params" else f"error: {path}: ")


def test_layer_types_name_every_layer(tmp_path: Path, cli) -> None:
    # transformers refuses layer_types of another length than num_hidden_layers; so does the importer,
    # rather than build a model of as many layers as the list has
    doc = {**json.loads((HUB / "qwen2_0_5b.json").read_text()), "use_sliding_window": True,
           "layer_types": ["full_attention"] * 3}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    run = cli("params", str(path))
    assert run.status == 2 and run.out == "" and run.err.count("\n") == 1
    assert "layer_types names 3 layers, but num_hidden_layers is 24" in run.err, run.err


def test_a_decoder_of_any_depth_is_counted_exactly(tmp_path: Path, cli) -> None:
    # Llama-2-7B's layers, 10^30 of them: one repeated entry, counted as 10^30 times one layer
    doc = json.loads((HUB / "llama2_7b.json").read_text())
    one = 202_383_360  # one decoder layer: 4·4096² + 3·4096·11008 + 2·4096
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**doc, "num_hidden_layers": 10**30}))
    run = cli("params", str(path), "--total")
    assert run.status == 0 and int(run.out) == 6_738_415_616 + (10**30 - 32) * one, run.err


def test_mistral_sliding_window_caps_the_kv_cache(cli) -> None:
    run = cli("import", "hf", str(HUB / "mistral_7b.json"))
    assert run.status == 0 and run.err == "" and "sliding_window: 4096}" in run.out
    # 2 (k, v) · 32 layers · 8 kv heads · 128 · 2 bytes = 131,072 bytes a position, at most 4096 positions
    report = api.analyse(str(HUB / "mistral_7b.json"), input="8192")
    assert report.total["kv_cache_bytes"] == 131_072 * 4096
    assert api.analyse(str(HUB / "mistral_7b.json"), input="1000").total["kv_cache_bytes"] == 131_072 * 1000


def test_qwen2_import_is_the_shipped_config() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayercalcWarning)  # every field read or known to change no count
        imported = api.analyse(str(HUB / "qwen2_0_5b.json"))
    shipped = api.analyse(str(Path(__file__).resolve().parent.parent / "configs" / "qwen2_0_5b.yaml"))
    assert imported.total == shipped.total


def test_qwen2_windows_follow_max_window_layers() -> None:
    """transformers' Qwen2: with use_sliding_window, layers from max_window_layers on slide; without it, none."""
    doc = {"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "intermediate_size": 96, "num_hidden_layers": 5, "vocab_size": 32, "max_position_embeddings": 64,
           "sliding_window": 3, "max_window_layers": 2, "use_sliding_window": True}
    from layercalc import hf

    def windows(doc: dict) -> list:
        layers = hf.document(doc, input=(8,))[0]["layers"][0]["sequential"]["layers"]
        return [(e["name"], e["repeat"], e["sequential"]["layers"][0]["residual"]["body"][1]["attention"]
                 .get("sliding_window")) for e in layers if "repeat" in e]

    assert windows(doc) == [("layers", 2, None), ("layers_2", 3, 3)]
    assert windows({**doc, "use_sliding_window": False}) == [("layers", 5, None)]
    kinds = ["sliding_attention", "full_attention", "full_attention", "sliding_attention", "sliding_attention"]
    assert windows({**doc, "layer_types": kinds}) == [("layers", 1, 3), ("layers_1", 2, None), ("layers_3", 2, 3)]


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
    "qwen2": lambda: transformers.Qwen2Config(**SMALL, num_key_value_heads=2, tie_word_embeddings=True,
                                              architectures=["Qwen2ForCausalLM"]),
    "qwen2-sliding": lambda: transformers.Qwen2Config(**SMALL, num_key_value_heads=1, use_sliding_window=True,
                                                      sliding_window=6, max_window_layers=1),
    "phi3-partial": lambda: transformers.Phi3Config(**SMALL, num_key_value_heads=2, partial_rotary_factor=0.5,
                                                    sliding_window=12, architectures=["Phi3ForCausalLM"],
                                                    pad_token_id=0, bos_token_id=1, eos_token_id=2),
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
    "bert-base": lambda: transformers.BertConfig(**SMALL),
    "bert-mlm": lambda: transformers.BertConfig(**SMALL, type_vocab_size=3, architectures=["BertForMaskedLM"]),
    "bert-classifier": lambda: transformers.BertConfig(**SMALL, architectures=["BertForSequenceClassification"],
                                                      id2label={str(i): str(i) for i in range(5)}),
    "bert-tokens": lambda: transformers.BertConfig(**SMALL, hidden_act="relu",
                                                  architectures=["BertForTokenClassification"]),
    "roberta-base": lambda: transformers.RobertaConfig(**{**SMALL, "max_position_embeddings": 66}, type_vocab_size=1),
    "roberta-mlm": lambda: transformers.RobertaConfig(**{**SMALL, "max_position_embeddings": 66},
                                                      architectures=["RobertaForMaskedLM"]),
    "roberta-classifier": lambda: transformers.RobertaConfig(**{**SMALL, "max_position_embeddings": 66},
                                                             type_vocab_size=1,
                                                             architectures=["RobertaForSequenceClassification"]),
    "roberta-qa": lambda: transformers.RobertaConfig(**SMALL, architectures=["RobertaForQuestionAnswering"]),
    "mamba": lambda: transformers.MambaConfig(vocab_size=96, hidden_size=72, state_size=8, num_hidden_layers=2,
                                              use_mambapy=False, architectures=["MambaForCausalLM"]),  # dt rank ⌈72/16⌉ = 5
    "mamba-base": lambda: transformers.MambaConfig(vocab_size=96, hidden_size=40, state_size=6, num_hidden_layers=3,
                                                   expand=3, conv_kernel=3, time_step_rank=5, use_bias=True,
                                                   use_conv_bias=False, use_mambapy=False),
    "mixtral": lambda: transformers.MixtralConfig(**SMALL, num_key_value_heads=2, num_local_experts=4,
                                                  num_experts_per_tok=2, architectures=["MixtralForCausalLM"]),
    "mixtral-top1": lambda: transformers.MixtralConfig(**SMALL, num_key_value_heads=4, num_local_experts=3,
                                                       num_experts_per_tok=1),
    # layers 0 and 2 dense (decoder_sparse_step 2), 3 dense too (mlp_only_layers): runs of 1, 1 and 2 layers
    "qwen2_moe": lambda: transformers.Qwen2MoeConfig(**{**SMALL, "num_hidden_layers": 4}, num_key_value_heads=2,
                                                     num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24,
                                                     shared_expert_intermediate_size=40, decoder_sparse_step=2,
                                                     mlp_only_layers=[3], architectures=["Qwen2MoeForCausalLM"]),
    "qwen2_moe-norm": lambda: transformers.Qwen2MoeConfig(**{**SMALL, "num_hidden_layers": 3}, num_key_value_heads=4,
                                                          num_experts=3, num_experts_per_tok=1,
                                                          moe_intermediate_size=20, shared_expert_intermediate_size=56,
                                                          norm_topk_prob=True, qkv_bias=False, use_sliding_window=True,
                                                          sliding_window=16, max_window_layers=2),
}


def hf_model(config: object) -> object:
    """transformers' model of the class the config's architectures name (the base model without one)."""
    config._attn_implementation = "eager"  # type: ignore[attr-defined]  # q·kᵀ and A·v as matmuls
    # experts as matmuls too (the default grouped_mm is unseen)
    if getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None):
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


@pytest.mark.parametrize("config, published", [
    # bert-base-uncased: BertModel's 109,482,240 (the "110M" of the BERT paper, exactly as transformers counts)
    (lambda: transformers.BertConfig(), 109_482_240),
    # roberta-base's config.json: 514 positions, one token type (RobertaConfig's defaults say 512 and 2)
    (lambda: transformers.RobertaConfig(max_position_embeddings=514, type_vocab_size=1), 124_645_632),
], ids=["bert-base-uncased", "roberta-base"])
def test_bert_and_roberta_base_at_full_size(config: object, published: int, tmp_path: Path) -> None:
    """The full-size models on the meta device (shapes only): params, buffers and MACs at 128 tokens."""
    hf = config()  # type: ignore[operator]
    hf._attn_implementation = "eager"
    hf.to_json_file(str(tmp_path / "config.json"))
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(hf).eval()
        counts = hf_counts(model, 128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LayercalcWarning)
        total = api.analyse(str(tmp_path / "config.json"), input="128").total
    assert counts[0] == published
    assert (total["params"], total["buffers"], total["macs"]) == counts


def test_roberta_positions_start_past_the_padding_id(tmp_path: Path) -> None:
    """RoBERTa reads rows pad + 1 .. pad + T of its table: 514 rows hold 512 tokens, and the import says so."""
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "roberta", "vocab_size": 50, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 16, "max_position_embeddings": 514, "pad_token_id": 1, "type_vocab_size": 1}))
    text = api.import_hf(tmp_path / "config.json")
    assert "input: [512]" in text and "posembedding: {num_positions: 514, offset: 2}" in text
    with pytest.raises(ConfigError, match="exceeds max_position_embeddings 514 less the 2 rows up to the padding id"):
        api.import_hf(tmp_path / "config.json", input="513")


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


# encoder-decoders: two token streams (T5) or audio and tokens (Whisper); the length is every token stream's
SEQ2SEQ = {
    "t5": lambda: transformers.T5Config(vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_layers=2,
                                        num_decoder_layers=3, num_heads=4,
                                        architectures=["T5ForConditionalGeneration"]),
    "t5-gated-untied": lambda: transformers.T5Config(vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_layers=2,
                                                     num_heads=4, feed_forward_proj="gated-gelu",
                                                     tie_word_embeddings=False,
                                                     architectures=["T5ForConditionalGeneration"]),
    "t5-base-model": lambda: transformers.T5Config(vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_layers=1,
                                                   num_heads=4),
    "whisper": lambda: transformers.WhisperConfig(vocab_size=96, d_model=32, encoder_layers=2, decoder_layers=2,
                                                  encoder_attention_heads=4, decoder_attention_heads=4,
                                                  encoder_ffn_dim=48, decoder_ffn_dim=40, num_mel_bins=16,
                                                  max_source_positions=30, max_target_positions=20,
                                                  pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                                  decoder_start_token_id=1,
                                                  architectures=["WhisperForConditionalGeneration"]),
    "whisper-base-model": lambda: transformers.WhisperConfig(vocab_size=96, d_model=32, encoder_layers=1,
                                                             decoder_layers=1, encoder_attention_heads=4,
                                                             decoder_attention_heads=4, encoder_ffn_dim=48,
                                                             decoder_ffn_dim=48, num_mel_bins=16,
                                                             max_source_positions=30, max_target_positions=20,
                                                             pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                                             decoder_start_token_id=1),
}


@pytest.mark.parametrize("case", sorted(SEQ2SEQ))
def test_encoder_decoders_against_transformers(case: str, tmp_path: Path) -> None:
    config = SEQ2SEQ[case]()
    config.to_json_file(str(tmp_path / "config.json"))
    model = hf_model(config).eval()
    state = model.state_dict()
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    for length in (8, 12):
        with warnings.catch_warnings():
            warnings.simplefilter("error", LayercalcWarning)  # every field is read or known to change no count
            report = api.analyse(str(tmp_path / "config.json"), input=str(length))
        ids = torch.zeros((1, length), dtype=torch.long)
        inputs = ({"input_features": torch.zeros((1, 16, 60)), "decoder_input_ids": ids} if case.startswith("whisper")
                  else {"input_ids": ids, "decoder_input_ids": ids})
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(**inputs)
        theirs = (sum(p.numel() for p in model.parameters()), sum(t.numel() for n, t in state.items() if n not in names),
                  counter.get_total_flops() // 2)
        assert (report.total["params"], report.total["buffers"], report.total["macs"]) == theirs, (case, length)
    text = api.import_hf(tmp_path / "config.json", input="8")
    (tmp_path / "net.yaml").write_text(text)
    assert api.analyse(str(tmp_path / "net.yaml")).total == api.analyse(str(tmp_path / "config.json"), input="8").total


def test_mamba_dt_rank_auto_rounds_up(tmp_path: Path) -> None:
    """A hub file may say "time_step_rank": "auto": ⌈hidden/16⌉, as MambaConfig computes it (72 → 5)."""
    config = CASES["mamba"]()
    config.to_json_file(str(tmp_path / "config.json"))
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["time_step_rank"] == 5
    doc["time_step_rank"] = "auto"
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LayercalcWarning)
        report = api.analyse(str(tmp_path / "config.json"), input="8")
    assert report.total["params"] == sum(p.numel() for p in hf_model(config).parameters())


def test_qwen2_moe_windows_and_sparse_layers_follow_transformers() -> None:
    """Without layer_types (older hub files), Qwen2-MoE's windows are the ones Qwen2MoeConfig derives
    (every other layer below max_window_layers); the sparse layers are the ones Qwen2MoeModel builds."""
    from layercalc import hf

    config = transformers.Qwen2MoeConfig(**{**SMALL, "num_hidden_layers": 6}, num_key_value_heads=4, num_experts=2,
                                         num_experts_per_tok=1, use_sliding_window=True, sliding_window=5,
                                         max_window_layers=4, decoder_sparse_step=2, mlp_only_layers=[5])
    doc = json.loads(config.to_json_string())  # what config.json holds
    del doc["layer_types"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayercalcWarning)  # every field read or known to change no count
        entries = hf.document(doc, input=(8,))[0]["layers"][0]["sequential"]["layers"]
    ours = []
    for e in (e for e in entries if "repeat" in e):
        attention, mlp = (e["sequential"]["layers"][i]["residual"]["body"][1] for i in (0, 1))
        ours += [(attention["attention"].get("sliding_window"), "moe" in mlp)] * e["repeat"]
    model = transformers.Qwen2MoeModel(config)
    theirs = [(5 if kind == "sliding_attention" else None, type(layer.mlp).__name__ == "Qwen2MoeSparseMoeBlock")
              for kind, layer in zip(config.layer_types, model.layers)]
    assert ours == theirs


def test_qwen1_5_moe_a2_7b_at_full_size(tmp_path: Path) -> None:
    """Qwen2MoeConfig's defaults are Qwen1.5-MoE-A2.7B ("14.3B params, 2.7B activated"): its params as
    transformers builds them on the meta device, and the active ones by hand: 56 of the 60 experts idle
    in each of 24 layers, each expert's gate, up and down 3·2048·1408."""
    config = transformers.Qwen2MoeConfig(architectures=["Qwen2MoeForCausalLM"])
    config.to_json_file(str(tmp_path / "config.json"))
    with torch.device("meta"):
        params = sum(p.numel() for p in transformers.Qwen2MoeForCausalLM(config).parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayercalcWarning)  # every field read or known to change no count
        total = api.analyse(str(tmp_path / "config.json"), input="8").total
    assert total["params"] == params == 14_315_784_192
    assert total["active_params"] == params - 24 * 56 * 3 * 2048 * 1408 == 2_689_173_504
