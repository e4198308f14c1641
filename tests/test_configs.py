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
}
BY_HAND = {
    # conv 1·6·25+6, conv 6·16·25+16, fc 400·120+120, 120·84+84, 84·10+10
    "lenet5": 156 + 2_416 + 48_120 + 10_164 + 850,
    # (784·512 + 512) + (512·256 + 256) + (256·10 + 10)
    "mnist_mlp": 401_920 + 131_328 + 2_570,
}


def test_every_config_is_shipped_and_loads() -> None:
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert names == sorted([*PUBLISHED, *BY_HAND, "conv1d_net", "unet_small", "r3d_18", "unet3d_small", "espcn", "fcn_small",
                            "lstm_tagger", "gru_classifier", "lstm_lm"])
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
