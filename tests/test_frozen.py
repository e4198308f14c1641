"""Frozen layers (`trainable: false`) and the memory totals (issue 12).

- the loader: `trainable` on a leaf or a block, inherited by its children; bad values are one-line errors;
- params split into trainable and frozen in every format, `params --trainable --total` (fast path too);
- `--training`: no dL/dW for frozen layers, no gradient memory or optimizer state for their params, no
  dL/dx upstream of the first trainable parameter: by hand below, and against FlopCounterMode over a
  forward and backward pass of the torch model with requires_grad_(False) on the same layers (live when
  torch is installed; else the figures tests/reference/record.py stored under "frozen:NAME");
- input bytes (token ids as int64) and the estimated totals.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from layercalc import analyse
from layercalc.api import report_data
from layercalc.conventions import training
from layercalc.errors import ConfigError
from layercalc.launch import total_query
from layercalc.layers import REGISTRY
from optional_torch import torch_or_skip
from reference.record import frozen_configs
from test_cli_options import parse

HAVE_TORCH = importlib.util.find_spec("torch") is not None
if HAVE_TORCH:  # the random config generators build torch-checked configs
    from test_attention import sequence_config
    from test_torch_crosscheck import random_config

FIGURES = json.loads((Path(__file__).resolve().parent / "reference" / "figures.json").read_text())
FROZEN = frozen_configs()

# batch 2, input 4 values, float64; a frozen backbone (linear 4 -> 8, relu) under a trainable head 8 -> 3:
#   params   backbone.0 4·8 + 8 = 40 (frozen), head 8·3 + 3 = 27 (trainable); total 67
#   MACs     backbone.0 2·4·8 = 64, head 2·8·3 = 48; forward 112
#   backward backbone.0: nothing (frozen, and its input needs no gradient); head: its input depends on
#            frozen params only, so dL/dW alone, 48; total 48. Training MACs 112 + 48 = 160, FLOPs 320
#   bytes    outputs 2·8 + 2·8 + 2·3 = 38 elements · 8 = 304; params 67·8 = 536; input 2·4·8 = 64
#            gradients 27·8 = 216; adam 2·216 = 432; training 536 + 216 + 432 + 304 = 1488
#            estimated total (inference) 64 + 304 + 536 = 904; training 64 + 1488 = 1552
TINY = """\
name: tiny
input: [4]
batch: 2
dtype: float64
layers:
  - sequential:
      layers:
        - linear: {out_features: 8}
        - relu
    name: backbone
    trainable: false
  - linear: {out_features: 3}
    name: head
"""

# a frozen middle: fc1 4 -> 8 (trainable), fc2 8 -> 8 (frozen), fc3 8 -> 3 (trainable), batch 2:
#   params 40 + 72 + 27 = 139, trainable 40 + 27 = 67, frozen 72
#   backward fc1: dL/dW 2·4·8 = 64 (the first layer: no dL/dx); fc2: frozen, but its input depends on
#   fc1's params, so dL/dx flows through it: 2·8·8 = 128 and no dL/dW; fc3 dL/dW 48 + dL/dx 48 = 96.
#   Total 64 + 128 + 96 = 288 (all trainable: 64 + 256 + 96 = 416; dL/dx skipped in fc2: 160)
MIDDLE = {"input": [4], "batch": 2, "layers": [
    {"linear": {"out_features": 8}, "name": "fc1"},
    {"linear": {"out_features": 8}, "name": "fc2", "trainable": False},
    {"linear": {"out_features": 3}, "name": "fc3"},
]}

# a frozen first layer, then a trainable repeat: fc 4 -> 4 (frozen, 20 params) and 3 copies of 4 -> 4
# (20 params each), batch 2. Backward: fc nothing; copy 0: its input depends on frozen params only, so
# dL/dW 2·4·4 = 32; copies 1 and 2 read copy 0's output (trainable upstream): dL/dW 32 + dL/dx 32 = 64.
# Total 32 + 64 + 64 = 160
REPEAT = {"input": [4], "batch": 2, "layers": [
    {"linear": {"out_features": 4}, "name": "fc", "trainable": False},
    {"linear": {"out_features": 4}, "name": "blocks", "repeat": 3},
]}


@pytest.fixture
def tiny(write) -> str:
    return write("tiny.yaml", TINY)


# -- the split, by hand ----------------------------------------------------------------------------


def test_rows_and_totals_split_trainable_and_frozen() -> None:
    data = report_data(analyse(TINY))
    rows = {r["path"]: (r["trainable"], r["params"], r["trainable_params"]) for r in data["layers"]}
    # the block's trainable: false reaches its children; a frozen row keeps its params
    assert rows == {"backbone": (False, 40, 0), "backbone.0": (False, 40, 0), "backbone.1": (False, 0, 0),
                    "head": (True, 27, 27)}
    t = data["total"]
    assert (t["params"], t["trainable_params"], t["frozen_params"]) == (67, 27, 40)


def test_frozen_middle_and_repeat_counts() -> None:
    assert {k: analyse(MIDDLE).total[k] for k in ("params", "trainable_params", "frozen_params")} == {
        "params": 139, "trainable_params": 67, "frozen_params": 72}
    rows = report_data(analyse(REPEAT))["layers"]
    # a trainable block holding frozen children still says trainable; its trainable_params tell the rest
    assert [(r["path"], r["trainable"], r["trainable_params"]) for r in rows] == [
        ("fc", False, 0), ("blocks", True, 60), ("blocks.0", True, 20), ("blocks.1", True, 20), ("blocks.2", True, 20)]


def test_a_block_with_a_frozen_child_is_partly_trainable() -> None:
    config = {"input": [4], "layers": [{"sequential": {"layers": [
        {"linear": {"out_features": 4}, "trainable": False}, {"linear": {"out_features": 2}}]}}]}
    block = next(analyse(config).rows())
    # 4·4 + 4 = 20 frozen, 4·2 + 2 = 10 trainable
    assert (block["trainable"], block["params"], block["trainable_params"]) == (True, 30, 10)


def test_tied_weight_counts_once_at_its_frozen_owner() -> None:
    # embedding 11·8 = 88 (frozen); the head's tied weight adds nothing, its bias 11 (frozen with it)
    config = {"input": [6], "layers": [
        {"embedding": {"num_embeddings": 11, "embedding_dim": 8}, "name": "emb", "trainable": False},
        {"linear": {"out_features": 11, "tied_to": "emb"}, "trainable": False}]}
    t = analyse(config).total
    assert (t["params"], t["trainable_params"], t["frozen_params"]) == (99, 0, 99)


# -- --training, by hand ---------------------------------------------------------------------------


def test_training_frozen_backbone_by_hand() -> None:
    data = report_data(analyse(TINY), training=True)
    assert [r["backward_macs"] for r in data["layers"]] == [0, 0, 0, 48]
    t = data["training"]
    assert (t["forward_macs"], t["backward_macs"], t["training_macs"], t["training_flops"]) == (112, 48, 160, 320)
    assert (t["param_bytes"], t["gradient_bytes"], t["optimizer_bytes"], t["activation_bytes"]) == (536, 216, 432, 304)
    assert (t["training_bytes"], t["input_bytes"], t["estimated_total_bytes"]) == (1488, 64, 1552)


@pytest.mark.parametrize("optimizer, states", [("sgd", 0), ("momentum", 1), ("adam", 2)])
def test_optimizer_state_only_for_trainable_params(optimizer: str, states: int) -> None:
    t = report_data(analyse(TINY), training=True, optimizer=optimizer)["training"]
    assert t["optimizer_bytes"] == states * 27 * 8
    assert t["training_bytes"] == 536 + 27 * 8 + states * 27 * 8 + 304


def test_training_frozen_middle_by_hand() -> None:
    rows = report_data(analyse(MIDDLE), training=True)["layers"]
    assert [r["backward_macs"] for r in rows] == [64, 128, 96]
    assert training(analyse(MIDDLE))["backward_macs"] == 288


def test_training_trainable_repeat_after_a_frozen_layer_by_hand() -> None:
    rows = report_data(analyse(REPEAT), training=True)["layers"]
    assert [r["backward_macs"] for r in rows] == [0, 160, 32, 64, 64]


def test_training_frozen_repeat_first_by_hand() -> None:
    # 3 frozen copies of 4 -> 4 (20 params each), then a trainable head 4 -> 2 (10 params), batch 2:
    # no copy computes anything backward (every later copy still reads frozen params only); the head
    # dL/dW 2·4·2 = 16 and no dL/dx
    config = {"input": [4], "batch": 2, "layers": [
        {"linear": {"out_features": 4}, "name": "fc", "repeat": 3, "trainable": False},
        {"linear": {"out_features": 2}, "name": "head"}]}
    rows = report_data(analyse(config), training=True)["layers"]
    assert [(r["path"], r["backward_macs"]) for r in rows] == [("fc", 0), ("fc.0", 0), ("fc.1", 0), ("fc.2", 0), ("head", 16)]
    assert analyse(config).total["frozen_params"] == 60


def test_a_fully_frozen_network_has_no_backward() -> None:
    config = {**MIDDLE, "layers": [{**e, "trainable": False} for e in MIDDLE["layers"]]}
    t = training(analyse(config))
    # forward 2·(4·8 + 8·8 + 8·3) = 240 MACs; nothing needs a gradient
    assert (t["forward_macs"], t["backward_macs"], t["gradient_bytes"], t["optimizer_bytes"]) == (240, 0, 0, 0)


def test_readme_finetune_example_by_hand() -> None:
    # batch 8, 3x32x32. Frozen backbone: conv 3 -> 16 k3 (3·16·9 = 432), bn 2·16 = 32, conv 16 -> 32 k3
    # stride 2 (16·32·9 = 4608), bn 64: 5136; head 32 -> 10: 330. MACs: conv1 8·16·32·32·27 = 3,538,944,
    # conv2 8·32·16·16·144 = 9,437,184, head 8·32·10 = 2,560: forward 12,978,688
    path = Path(__file__).resolve().parent.parent / "examples" / "finetune.yaml"
    report = analyse(path)
    assert (report.total["params"], report.total["trainable_params"], report.total["frozen_params"]) == (5466, 330, 5136)
    # frozen: only the head's dL/dW, 2,560
    assert training(report)["training_macs"] == 12_978_688 + 2_560
    # all trainable: conv1 dL/dW 3,538,944 (first layer: no dL/dx), conv2 dL/dW + dL/dx 2·9,437,184,
    # head 2·2,560: backward 22,418,432
    unfrozen = analyse(path.read_text().replace("    trainable: false\n", ""))
    assert training(unfrozen)["training_macs"] == 12_978_688 + 22_418_432 == 35_397_120


# -- input bytes and estimated totals ---------------------------------------------------------------


def test_estimated_total_is_input_plus_activations_plus_params() -> None:
    t = analyse(TINY).total
    assert (t["input_bytes"], t["activation_bytes"], t["param_bytes"], t["estimated_total_bytes"]) == (64, 304, 536, 904)


def test_token_ids_are_int64_whatever_the_dtype() -> None:
    # 2 sequences of 6 ids, 8 bytes each = 96 (not 2·6·2 float16 bytes); embedding 11·8 = 88 params · 2;
    # outputs 2·6·8 = 96 elements · 2 = 192 bytes; estimated 96 + 192 + 176 = 464
    config = {"input": [6], "batch": 2, "dtype": "float16",
              "layers": [{"embedding": {"num_embeddings": 11, "embedding_dim": 8}}]}
    data = report_data(analyse(config))
    assert data["input_dtype"] == "int64"
    t = data["total"]
    assert (t["input_bytes"], t["activation_bytes"], t["param_bytes"], t["estimated_total_bytes"]) == (96, 192, 176, 464)


# -- every format -------------------------------------------------------------------------------------


def _footer(text: str) -> dict[str, str]:
    """The footer's rows: label -> the rest of the line, spaces squeezed."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Z][A-Za-z ]+?)\s{2,}(\S.*)$", line)
        if m:
            out[m.group(1)] = " ".join(m.group(2).split())
    return out


def test_table_footer(cli, tiny) -> None:
    rows = _footer(cli("summary", tiny, "--format", "table").out)
    assert rows["Total params"].startswith("67 ")
    assert rows["Trainable params"].startswith("27 ") and rows["Frozen params"].startswith("40 ")
    assert rows["Input memory"] == "64 B batch 2, float64 values"
    assert rows["Estimated total"].startswith("904 B input + params + activations")


def test_table_footer_under_training(cli, tiny) -> None:
    rows = _footer(cli("summary", tiny, "--training", "--format", "table").out)
    assert rows["Gradients"].startswith("216 B one per trainable parameter")
    assert rows["Optimizer state"] == "432 B adam"
    assert rows["Training memory"].startswith("1.49 KB")  # 1488 bytes, decimal
    assert rows["Estimated training total"].startswith("1.55 KB input + training memory")  # 1552


def test_table_footer_names_token_ids(cli, write) -> None:
    path = write("lm.yaml", "input: [6]\nlayers:\n  - embedding: {num_embeddings: 11, embedding_dim: 8}\n")
    assert _footer(cli("params", path, "--format", "table").out)["Input memory"] == "48 B batch 1, int64 token ids"


def test_json(cli, tiny) -> None:
    data = json.loads(cli("params", tiny, "--format", "json").out)
    assert [r["trainable"] for r in data["layers"]] == [False, False, False, True]
    t = data["total"]
    assert (t["trainable_params"], t["frozen_params"], t["input_bytes"], t["estimated_total_bytes"]) == (27, 40, 64, 904)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "markdown"])
def test_machine_formats_total_row(cli, tiny, fmt: str) -> None:
    rows = parse(fmt, cli("params", tiny, "--format", fmt).out)
    assert [(r["path"], r["params"], r["trainable_params"]) for r in rows] == [
        ("backbone", "40", "0"), ("backbone.0", "40", "0"), ("backbone.1", "0", "0"), ("head", "27", "27"),
        ("total", "67", "27")]


def test_totals(cli, tiny) -> None:
    assert cli("params", tiny, "--total").out == "67\n"  # --total stays every param
    assert cli("params", tiny, "--trainable", "--total").out == "27\n"
    assert cli("flops", tiny, "--training", "--total").out == "320\n"
    assert cli("flops", tiny, "--training", "--total", "--macs").out == "160\n"


def test_trainable_total_fast_path_gives_the_full_cli_answer(cli, tiny) -> None:
    assert total_query(["params", tiny, "--total", "--trainable"]) == (tiny, "trainable_params")
    assert total_query(["params", "--trainable", tiny, "--total"]) == (tiny, "trainable_params")
    assert total_query(["params", tiny, "--total", "--trainable", "--macs"]) is None
    assert total_query(["flops", tiny, "--total", "--trainable"]) is None  # not a flops option: the CLI refuses it
    # --batch (any value) sends the same question through the full command line
    assert cli("params", tiny, "--trainable", "--total", "--batch", "2").out == "27\n"


@pytest.mark.parametrize("args, word", [
    (("params", "{}", "--trainable"), "--trainable goes with --total"),
    (("flops", "{}", "--trainable", "--total"), "--trainable"),
], ids=["without-total", "on-flops"])
def test_trainable_option_misuse(cli, tiny, args: tuple[str, ...], word: str) -> None:
    run = cli(*(a.format(tiny) for a in args))
    assert run.status == 2 and run.out == "" and word in run.err and run.err.count("\n") == 1


# -- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, line, layer, message", [
    ("input: [4]\nlayers:\n  - linear: {out_features: 3}\n    trainable: no\n", 4, "layers[0] (linear 'linear1')",
     "trainable must be true or false, got the string 'no'"),
    ("input: [4]\nlayers:\n  - relu\n  - linear: {out_features: 3}\n    trainable: 0\n", 5, "layers[1] (linear 'linear1')",
     "trainable must be true or false, got the number 0"),
    ("input: [4]\nlayers:\n  - sequential:\n      layers:\n        - linear: {out_features: 3}\n          trainable: true\n"
     "    name: body\n    trainable: false\n", 6, "layers[0].layers[0] (linear 'linear1')",
     "trainable: true inside sequential 'body', which has trainable: false"),
    ("input: [6]\nlayers:\n  - embedding: {num_embeddings: 11, embedding_dim: 8}\n    name: emb\n    trainable: false\n"
     "  - linear: {out_features: 11, tied_to: emb}\n", 6, "layers[1] (linear 'linear1')",
     "weight tied to 'emb', but embedding 'emb' is frozen and this layer is trainable"),
], ids=["string", "number", "re-enabled-inside-a-frozen-block", "tied-to-a-frozen-owner"])
def test_bad_trainable_is_a_one_line_error(cli, write, text: str, line: int, layer: str, message: str) -> None:
    path = write("bad.yaml", text)
    run = cli("params", path)
    assert run.status == 2 and run.out == ""
    assert run.err.startswith(f"error: {path}:{line}: {layer}: {message}") and run.err.count("\n") == 1


def test_bad_trainable_on_the_command_line(cli) -> None:
    run = cli("params", "-l", "relu", "-l", "linear:out_features=3,trainable=maybe", "--input", "4")
    assert run.status == 2 and run.out == ""
    assert run.err.startswith("error: --layer:2: layers[1] (linear 'linear1'): trainable must be true or false")
    good = cli("params", "-l", "linear:out_features=3,trainable=false", "--input", "4", "--trainable", "--total")
    assert good.out == "0\n"


def test_trainable_is_not_a_second_type_key() -> None:
    # it used to be refused as "a layer entry needs exactly one type key"
    net = analyse({"input": [4], "layers": [{"linear": {"out_features": 3}, "trainable": False, "repeat": 2,
                                             "name": "x"}]})
    # copy 0: 4·3 + 3 = 15; copy 1 reads 3 features: 3·3 + 3 = 12; every copy frozen
    assert (net.total["frozen_params"], net.total["trainable_params"]) == (27, 0)
    with pytest.raises(ConfigError, match="exactly one type key"):
        analyse({"input": [4], "layers": [{"linear": {"out_features": 3}, "relu": None, "trainable": False}]})


# -- every type that computes weight gradients says what freezing saves ---------------------------------


def test_types_with_a_backward_declare_their_weight_gradient() -> None:
    from layercalc.api import example_config

    for kind in REGISTRY:
        entry = analyse(example_config(kind)).entries[0]
        parts = entry.layer.backward_parts(entry.input_shape, entry.output_shape, True)
        if parts and entry.params:
            assert any(p.weight for p in parts), f"{kind}: backward_parts without a weight gradient (dL/dW)"


# -- against FlopCounterMode with requires_grad_(False) -------------------------------------------------

GROUPED = {"mobilenet_v2_middle"}  # FlopCounterMode counts a grouped conv's dL/dW `groups` times: torch only


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_stored_frozen_training_figures(name: str) -> None:
    """Without torch: our 'torch' convention against what FlopCounterMode counted when recorded."""
    stored = FIGURES["training"].get(f"frozen:{name}")
    if stored is None:
        pytest.skip("not recorded yet: python tests/reference/record.py --frozen")
    assert stored["config"] == json.loads(json.dumps(FROZEN[name]))  # recorded from this very config
    assert training(analyse(FROZEN[name]), "torch")["training_flops"] == stored["training_flops"]


def counted(config: dict[str, Any], visible: bool) -> tuple[int, int, int]:
    """FlopCounterMode's FLOPs over a forward and backward pass of the torch model with the config's
    frozen entries' params requires_grad_(False); visible=True runs attention as explicit matmuls and
    nn.LSTM without oneDNN (every product seen). Also its params and trainable params."""
    torch = torch_or_skip()
    torch_models = pytest.importorskip("torch_models")
    import warnings

    from torch.utils.flop_counter import FlopCounterMode

    model, shape = torch_models.build(config)
    counter = FlopCounterMode(display=False)
    explicit = torch_models.explicit_attention() if visible else contextlib.nullcontext()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # oneDNN's flags() warns about an unrelated TF32 setting
        with torch.backends.mkldnn.flags(enabled=not visible), explicit, counter:
            x = torch_models.example(model, shape)
            out = model(torch.randn(shape) if x.is_floating_point() else x).sum()
            if out.requires_grad:  # a fully frozen network has nothing to differentiate
                out.backward()
    params = list(model.parameters())
    return counter.get_total_flops(), sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_frozen_training_matches_flopcountermode(name: str) -> None:
    config = FROZEN[name]
    report = analyse(config)
    flops, params, trainable = counted(config, visible=False)
    assert (report.total["params"], report.total["trainable_params"]) == (params, trainable)
    assert training(report, "torch")["training_flops"] == flops
    if name not in GROUPED:
        assert training(report, "layercalc")["training_flops"] == counted(config, visible=True)[0]


def _spots(layers: list[Any]) -> list[tuple[list[Any], int]]:
    """Every entry of a config at every depth, as (its list, its index)."""
    out = []
    for i, entry in enumerate(layers):
        out.append((layers, i))
        if isinstance(entry, dict):
            kind = next(k for k in entry if k not in ("name", "repeat", "trainable"))
            args = entry[kind] or {}
            for key in ("layers", "body", "shortcut"):
                if isinstance(args.get(key), list):
                    out += _spots(args[key])
            for branch in args.get("branches") or []:
                out += _spots(branch)
    return out


@st.composite
def partly_frozen(draw: Any) -> dict[str, Any]:
    """A random config (every family) with `trainable: false` on up to three random entries."""
    config = copy.deepcopy(draw(st.one_of(random_config(), sequence_config())))
    spots = _spots(config["layers"])
    for k in draw(st.lists(st.integers(0, len(spots) - 1), min_size=1, max_size=3)):
        layers, i = spots[k]
        if isinstance(layers[i], str):
            layers[i] = {layers[i]: None}
        layers[i]["trainable"] = False
    return config


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(partly_frozen())
def test_random_partly_frozen_configs_match_flopcountermode(config: dict[str, Any]) -> None:
    torch_or_skip()
    try:
        report = analyse(config)
        pytest.importorskip("torch_models").build(config)
    except ConfigError:
        assume(False)
    except Exception:  # a config torch refuses is not an example
        assume(False)
    flops, params, trainable = counted(config, visible=False)
    assert (report.total["params"], report.total["trainable_params"]) == (params, trainable)
    assert training(report, "torch")["training_flops"] == flops
