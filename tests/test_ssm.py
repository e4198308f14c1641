"""mamba (Hugging Face's MambaMixer): hand-computed params, shapes and MACs; the NumPy forward and
backward through the selective scan against torch autograd on transformers' own MambaMixer; each
peer tool's count, --training and the parameter names against the real tools; verify.

Notation in the arithmetic: N batch, T steps, E width, D = expand·E inner channels, n = d_state,
R = dt_rank (⌈E/16⌉ when null), K = d_conv. Params E·2D (+ 2D with bias) + D·K (+ D with conv_bias)
+ D·(R + 2n) + R·D + D + D·n + D + D·E (+ E with bias); MACs N·[T·E·2D + (T + K - 1)·D·K +
T·D·(R + 2n) + T·R·D + T·D·n + T·D·E].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from layercalc import analyse
from layercalc.conventions import Costing, training
from layercalc.verify import Options, verify
from test_layers import CASE_FIELDS, check_case

ROOT = Path(__file__).resolve().parent.parent
IMPLS = Path(__file__).resolve().parent / "impls"

# (entry, input shape with batch, output shape, params, buffers, macs)
CASES = [
    # E 8, D 16, R ⌈8/16⌉ = 1, n 4, K 4. params: in_proj 32·8 = 256, conv1d 16·4 + 16 = 80, x_proj
    # (1 + 8)·16 = 144, dt_proj 16·1 + 16 = 32, A_log 16·4 = 64, D 16, out_proj 8·16 = 128: 720.
    # macs N·[5·8·32 + (5 + 3)·16·4 + 5·16·9 + 5·1·16 + 5·16·4 + 5·16·8] = 2·(1280 + 512 + 720 + 80 + 320 + 640)
    ({"mamba": {"d_state": 4}}, (2, 5, 8), (2, 5, 8), 256 + 80 + 144 + 32 + 64 + 16 + 128, 0,
     2 * (1280 + 512 + 720 + 80 + 320 + 640)),
    # E 4, expand 1: D 4, R 2, n 3, K 3, biases on in_proj and out_proj, none on conv1d. params:
    # in_proj 8·4 + 8 = 40, conv1d 4·3 = 12, x_proj (2 + 6)·4 = 32, dt_proj 4·2 + 4 = 12, A_log 12, D 4,
    # out_proj 4·4 + 4 = 20: 132. macs 6·4·8 + (6 + 2)·4·3 + 6·4·8 + 6·2·4 + 6·4·3 + 6·4·4
    ({"mamba": {"d_state": 3, "d_conv": 3, "expand": 1, "dt_rank": 2, "conv_bias": False, "bias": True}},
     (1, 6, 4), (1, 6, 4), 40 + 12 + 32 + 12 + 12 + 4 + 20, 0, 192 + 96 + 192 + 48 + 72 + 96),
    # E 20: R = ⌈20/16⌉ = 2 (rounded up); expand 1: D 20, n 2, K 4. params in_proj 40·20 = 800, conv1d
    # 20·4 + 20 = 100, x_proj (2 + 4)·20 = 120, dt_proj 20·2 + 20 = 60, A_log 40, D 20, out_proj 400: 1540.
    # macs 3·20·40 + (3 + 3)·20·4 + 3·20·6 + 3·2·20 + 3·20·2 + 3·20·20
    ({"mamba": {"d_state": 2, "expand": 1}}, (1, 3, 20), (1, 3, 20), 800 + 100 + 120 + 60 + 40 + 20 + 400, 0,
     2400 + 480 + 360 + 120 + 120 + 1200),
]
LAYER_CASES = CASES  # test_layers checks that every layer type has a case somewhere


@pytest.mark.parametrize(CASE_FIELDS, CASES, ids=lambda v: str(v)[:50])
def test_hand_computed_numbers(entry: object, x: tuple, y: tuple, params: int, buffers: int, macs: int) -> None:
    check_case(entry, x, y, params, buffers, macs)


def test_generation_state_is_constant_in_the_sequence_length() -> None:
    # per sequence and layer: the conv state D·K and the scan's state D·n, 16·(4 + 4) = 128 elements
    # for E 8 (D 16), float32: 512 bytes a sequence, 2 sequences, at any T
    for length in (1, 5, 50):
        config = {"input": [length, 8], "batch": 2, "layers": [{"mamba": {"d_state": 4}}]}
        assert analyse(config).total["kv_cache_bytes"] == 2 * 16 * (4 + 4) * 4


def test_verify_passes() -> None:
    config = {"input": [7, 6], "batch": 2, "layers": [{"linear": {"out_features": 8}},
                                                      {"mamba": {"d_state": 3, "dt_rank": 2}}, "tanh"]}
    result = verify(analyse(config), Options(seed=1))
    assert result.passed, [c for c in result.checks if not c.passed]


VERIFY_NET = ("input: [6, 4]\nbatch: 2\nlayers:\n  - linear: {out_features: 6}\n"
              "  - mamba: {d_state: 3, dt_rank: 2}\n    name: mixer\n  - linear: {out_features: 2}\n")


def test_verify_catches_a_reverse_scan_without_the_state_carry(cli, write) -> None:
    import csv
    import io

    run = cli("verify", write("ssm.yaml", VERIFY_NET), "--impl", str(IMPLS / "mamba_scan_no_carry.py"), "-f", "tsv")
    assert run.status == 1, run.err
    failed = {(r["path"], r["check"]) for r in csv.DictReader(io.StringIO(run.out), delimiter="\t")
              if r["passed"] != "True"}
    assert ("mixer", "dL/dx") in failed
    assert {path for path, _ in failed} <= {"mixer", "(network)"}  # the linear layers around it pass
    assert cli("verify", write("ssm.yaml", VERIFY_NET)).status == 0


def test_mamba_130m_at_its_sequence_by_hand() -> None:
    # per layer at T 2048 (E 768, D 1536, R 48, n 16, K 4): in_proj 2048·768·3072 + conv 2051·1536·4
    # + x_proj 2048·1536·80 + dt_proj 2048·48·1536 + C·h 2048·1536·16 + out_proj 2048·1536·768;
    # 24 layers, + the tied head 2048·768·50280
    layer = (2048 * 768 * 3072 + 2051 * 1536 * 4 + 2048 * 1536 * 80 + 2048 * 48 * 1536 + 2048 * 1536 * 16
             + 2048 * 1536 * 768)
    report = analyse(str(ROOT / "configs" / "mamba_130m.yaml"))
    assert report.total["macs"] == 24 * layer + 2048 * 768 * 50280 == 264_203_845_632



def test_train_gives_no_gpt_formula_for_a_state_space_model(cli) -> None:
    """Megatron-LM's 72·B·s·l·h²·(...) counts GPT layers; a layer whose generation state does not grow
    with the positions is not one, so the figure is null (GPT-2's is not)."""
    import json

    compute = json.loads(cli("train", str(ROOT / "configs" / "mamba_130m.yaml"), "-f", "json").out)["compute"]
    assert compute["flops_megatron_per_step"] is None
    gpt2 = json.loads(cli("train", str(ROOT / "configs" / "gpt2.yaml"), "-f", "json").out)["compute"]
    assert gpt2["flops_megatron_per_step"] is not None


def test_the_summary_says_the_cache_is_a_state(cli) -> None:
    """Mamba-130M keeps 24 · 1536 · (4 + 16) float32 elements a sequence: 2,949,120 bytes, named a state."""
    import json

    path = str(ROOT / "configs" / "mamba_130m.yaml")
    data = json.loads(cli("summary", path, "-f", "json").out)
    assert data["total"]["kv_cache_bytes"] == 24 * 1536 * (4 + 16) * 4 == 2_949_120
    assert data["kv_cache_layers"] == [{"type": "mamba", "count": 24, "bytes": 2_949_120, "state": True}]
    footer = " ".join(cli("summary", path, "-f", "table").out.split())
    assert "a recurrent state of the same size at any length, kept by 24 mamba" in footer
    assert "keys and values" not in footer

# -- everything below compares with transformers' MambaMixer ---------------------------------------

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
torch_models = pytest.importorskip("torch_models")
from peer_tools import TOOLS, tool_total, training_flops  # noqa: E402
from test_reference_torch import test_forward_and_backward_match_torch as against_torch  # noqa: E402


def one(entry: Any, x: tuple[int, ...], before: list[Any] | None = None) -> dict[str, Any]:
    return {"input": list(x[1:]), "batch": x[0], "layers": [*(before or []), entry]}


def test_parameter_names_and_shapes_are_transformers() -> None:
    config = one(CASES[1][0], CASES[1][1])
    report = analyse(config)
    layer, x = report.entries[0].layer, report.entries[0].input_shape
    model, _ = torch_models.build(config)
    theirs = [(name.removeprefix("0.mixer."), tuple(p.shape)) for name, p in model.named_parameters()]
    assert list(layer.param_shapes(x).items()) == theirs
    assert [n for n, _ in theirs] == ["A_log", "D", "conv1d.weight", "in_proj.weight", "in_proj.bias", "x_proj.weight",
                                      "dt_proj.weight", "dt_proj.bias", "out_proj.weight", "out_proj.bias"]


@pytest.mark.parametrize("entry, x", [(c[0], c[1]) for c in CASES] + [
    ({"mamba": {"d_state": 5, "d_conv": 2, "dt_rank": 3}}, (3, 9, 4)),  # a longer scan, a short kernel
    ({"mamba": {"d_state": 2, "d_conv": 6}}, (2, 3, 4)),  # a kernel longer than the sequence
], ids=lambda v: str(v)[:50])
def test_forward_and_backward_match_torch_autograd(entry: Any, x: tuple[int, ...]) -> None:
    against_torch(entry, x)


def test_macs_and_params_are_flopcountermode_and_parameters() -> None:
    for entry, x, _, params, _, macs in CASES:
        model, shape = torch_models.build(one(entry, x))
        theirs = torch_models.counts(model, shape)
        assert (theirs["params"], theirs["buffers"], theirs["macs"]) == (params, 0, macs)


# N 2, T 5, E 8, D 16, R 1, n 4, K 4 (no biases); each tool's rule written out:
PEERS = [
    ({"mamba": {"d_state": 4}}, (2, 5, 8), {
        "torch": 7104,
        # fvcore: dt_proj's (16, 1) @ (2, 1, 5) as one (16, 1) @ (1, 5): 80 instead of N·T·R·D = 160
        "fvcore": 7104 - 160 + 80,
        # thop: in_proj 2·5·8·32 + x_proj 2·5·16·9 + out_proj 2·5·16·8 = 2560 + 1440 + 1280
        "thop": 5280,
        # ptflops: those module hooks / N = 2640, + torch.matmul of C·h N·T·D·n = 640, + F.silu twice 2·N·T·D = 320
        "ptflops": 2640 + 640 + 320,
        # torchinfo: (in_proj 256 + x_proj 144 + out_proj 128 params) × N
        "torchinfo": 2 * 528,
    }),
    # N 1, T 6, E 4, D 4, R 2, n 3, K 3, biases on in_proj and out_proj
    ({"mamba": {"d_state": 3, "d_conv": 3, "expand": 1, "dt_rank": 2, "conv_bias": False, "bias": True}}, (1, 6, 4), {
        "torch": 696, "fvcore": 696,  # N = 1: fvcore's lost batch changes nothing
        "thop": 192 + 192 + 96,
        # + biases 6·8 + 6·4 = 72, C·h 6·4·3 = 72, silu 2·6·4 = 48
        "ptflops": 480 + 72 + 72 + 48,
        "torchinfo": 40 + 32 + 20,
    }),
]


@pytest.mark.parametrize("entry, x, expected", PEERS, ids=lambda v: str(v)[:50])
def test_each_tool_by_hand_and_by_the_tool(entry: Any, x: tuple[int, ...], expected: dict[str, int]) -> None:
    config = one(entry, x)
    assert {t: Costing(analyse(config), t).total() for t in TOOLS} == expected
    assert {t: tool_total(t, config) for t in TOOLS} == expected


@pytest.mark.parametrize("before", [[], [{"linear": {"out_features": 6}}]], ids=["first", "after a linear"])
def test_training_matches_flopcountermode_forward_and_backward(before: list[Any]) -> None:
    config = one({"mamba": {"d_state": 3, "dt_rank": 2, "bias": True}}, (2, 5, 6), before)
    counted = training_flops(config)
    assert training(analyse(config), "torch")["training_flops"] == counted
    # layercalc counts the depthwise kernel's weight gradient as computed, N·(T + K - 1)·D·K =
    # 2·8·12·4 = 768 MACs; FlopCounterMode prices it as the ungrouped one, D = 12 times that
    assert training(analyse(config), "layercalc")["training_flops"] == counted - 2 * 11 * 768


def mamba_130m_hf() -> Any:
    """transformers' MambaForCausalLM of state-spaces/mamba-130m-hf's published config, on the meta device."""
    import transformers

    config = transformers.MambaConfig(vocab_size=50280, hidden_size=768, state_size=16, num_hidden_layers=24,
                                      layer_norm_epsilon=1e-5, expand=2, conv_kernel=4, use_bias=False,
                                      use_conv_bias=True, time_step_rank=48, tie_word_embeddings=True,
                                      use_mambapy=False)
    with torch.device("meta"):
        return transformers.MambaForCausalLM(config).eval()


@pytest.mark.parametrize("length", [16, 48])
def test_mamba_130m_is_transformers_mamba_for_causal_lm(length: int) -> None:
    """Params, persistent buffers, MACs (FlopCounterMode / 2 on the slow path) and the output shape.
    A shorter sequence than the config's 2048 (whose count FlopCounterMode also gives exactly,
    264,203,845,632, but in minutes: the scan is a Python loop over the positions of every layer);
    the MACs are c + a·T, so two lengths pin both."""
    import yaml
    from torch.utils.flop_counter import FlopCounterMode

    config = yaml.safe_load((ROOT / "configs" / "mamba_130m.yaml").read_text())
    config["input"] = [length]
    report = analyse(config)
    model = mamba_130m_hf()
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    buffers = sum(t.numel() for n, t in model.state_dict().items() if n not in names)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(torch.zeros((1, length), dtype=torch.long, device="meta"), use_cache=False).logits
    assert report.total["params"] == sum(p.numel() for p in model.parameters()) == 129_135_360
    assert (report.total["buffers"], report.total["macs"]) == (buffers, counter.get_total_flops() // 2)
    assert report.output_shape == tuple(out.shape)

