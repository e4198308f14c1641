"""Every shipped config loads, and the torchvision networks match torchvision's published figures.

Expected values: torchvision's model documentation (params, and "GFLOPS", which is
FlopCounterMode / 2 = MACs, rounded to the digits shown there); the small networks by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from layercalc import analyse

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

PUBLISHED = {  # name: (params, MACs in G as published, digits)
    "resnet18": (11_689_512, 1.814, 3),
    "resnet50": (25_557_032, 4.089, 3),
    "vgg16": (138_357_544, 15.47, 2),
    "alexnet": (61_100_840, 0.714, 3),
    "mobilenet_v2": (3_504_872, 0.301, 3),
    "densenet121": (7_978_856, 2.834, 3),
    "vit_b_16": (86_567_656, 17.56, 2),
    "swin_t": (28_288_354, 4.491, 3),
    "convnext_tiny": (28_589_128, 4.46, 2),
    "efficientnet_b0": (5_288_548, 0.39, 2),
}
# params as published (Hugging Face's model classes count them this way)
LANGUAGE_MODELS = {
    "gpt2": 124_439_808,  # GPT2Model; the tied head adds no parameters
    "llama2_7b": 6_738_415_616,
    "llama3_8b": 8_030_261_248,
    "bert_base": 109_482_240 - 2 * 768,  # BertModel without its token type embeddings (2 x 768)
    "roberta_base": 124_645_632,  # RobertaModel at roberta-base's config (one token type, 514 positions)
    "mamba_130m": 129_135_360,  # MambaForCausalLM of state-spaces/mamba-130m-hf; the tied head adds none
    "mixtral_8x7b": 46_702_792_704,  # MixtralForCausalLM(MixtralConfig()); tests/test_mixtral.py builds it
    "qwen2_0_5b": 494_032_768,  # Qwen2ForCausalLM at Qwen2-0.5B's config, its head tied to the embedding
}
BY_HAND = {
    # conv 1·6·25+6, conv 6·16·25+16, fc 400·120+120, 120·84+84, 84·10+10
    "lenet5": 156 + 2_416 + 48_120 + 10_164 + 850,
    # (784·512 + 512) + (512·256 + 256) + (256·10 + 10)
    "mnist_mlp": 401_920 + 131_328 + 2_570,
}


def test_every_config_is_shipped_and_loads() -> None:
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert names == sorted([*PUBLISHED, *BY_HAND, *LANGUAGE_MODELS, "conv1d_net", "unet_small", "r3d_18", "unet3d_small",
                            "espcn", "fcn_small", "lstm_tagger", "gru_classifier", "lstm_lm", "t5_small", "whisper_tiny"])
    for name in names:
        report = analyse(CONFIGS / f"{name}.yaml")
        assert report.total["params"] > 0 and report.total["macs"] > 0


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_torchvision_figures(name: str) -> None:
    params, gmacs, digits = PUBLISHED[name]
    total = analyse(CONFIGS / f"{name}.yaml").total
    assert total["params"] == params
    assert round(total["macs"] / 1e9, digits) == gmacs


def test_resnet50_macs_exactly() -> None:
    assert analyse(CONFIGS / "resnet50.yaml").total["macs"] == 4_089_184_256


def test_resnet18_ends_in_a_7x7_pool_over_512_channels() -> None:
    rows = {r["path"]: r for r in analyse(CONFIGS / "resnet18.yaml").rows()}
    assert rows["avgpool"]["input_shape"] == [1, 512, 7, 7]
    assert rows["avgpool"]["output_shape"] == [1, 512, 1, 1]


@pytest.mark.parametrize("name", sorted(BY_HAND))
def test_small_networks_by_hand(name: str) -> None:
    assert analyse(CONFIGS / f"{name}.yaml").total["params"] == BY_HAND[name]


@pytest.mark.parametrize("name", sorted(LANGUAGE_MODELS))
def test_published_language_model_params(name: str) -> None:
    assert analyse(CONFIGS / f"{name}.yaml").total["params"] == LANGUAGE_MODELS[name]


def test_vit_b_16_macs_exactly() -> None:
    # conv_proj 768·14·14·3·16·16 = 115,605,504; per encoder layer at T 197: projections
    # 4·197·768² = 464,781,312, q·kᵀ and A·v 2·12·197·197·64 = 59,610,624, MLP 2·197·768·3072 =
    # 929,562,624; 12 layers; head 768·1000 = 768,000
    layer = 464_781_312 + 59_610_624 + 929_562_624
    assert analyse(CONFIGS / "vit_b_16.yaml").total["macs"] == 115_605_504 + 12 * layer + 768_000


def test_llama_kv_cache() -> None:
    """2 · layers · kv_heads · head_dim · T · N · dtype size, at the configs' 2048 tokens."""
    assert analyse(CONFIGS / "llama2_7b.yaml").total["kv_cache_bytes"] == 2 * 32 * 32 * 128 * 2048 * 1 * 2  # 1 GiB
    assert analyse(CONFIGS / "llama3_8b.yaml").total["kv_cache_bytes"] == 2 * 32 * 8 * 128 * 2048 * 1 * 2  # 256 MiB
    assert analyse(CONFIGS / "gpt2.yaml").total["kv_cache_bytes"] == 2 * 12 * 12 * 64 * 1024 * 1 * 4
    assert "kv_cache_bytes" not in analyse(CONFIGS / "bert_base.yaml").total  # an encoder
