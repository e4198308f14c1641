"""Window attention (Swin): windowattention and patchmerging, and the swin_t config.

- hand-computed rows (shape, params, buffers, MACs), with the arithmetic written out;
- the NumPy forward and backward against the torch oracle (tests/torch_models.py), shifted, padded
  and rectangular windows; each peer tool and --training against the real tools;
- the oracle against torchvision's own ShiftedWindowAttention, PatchMerging and swin_t wherever
  torchvision imports (it cannot be installed beside this torch build; see torchvision_module);
- verify on a small shifted-window net; bad input: one line naming file, line and layer, exit 2.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from layercalc import analyse
from layercalc.conventions import Costing, training
from optional_torch import torch_models_or_skip, torch_or_skip
from test_layers import CASE_FIELDS, check_case

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"

# (entry, input shape with batch, output shape, params, buffers, macs)
CASES = [
    # C 8, 2 heads (d 4), window 4 (L 16), 8x8 map: Hp = Wp = 8, 4 windows.
    # params: table 7·7·2 = 98, qkv 24·8 + 24 = 216, proj 8·8 + 8 = 72 -> 386; buffer 16² = 256
    # macs: 4·N·Hp·Wp·C² = 4·2·64·64 = 32,768, + 2·N·windows·L²·C = 2·2·4·256·8 = 32,768
    ({"windowattention": {"num_heads": 2, "window_size": 4, "shift_size": 2}}, (2, 8, 8, 8), (2, 8, 8, 8),
     386, 256, 65_536),
    # 6x5 padded to 8x8: the same counts as the 8x8 map (the linears run on the padded grid)
    ({"windowattention": {"num_heads": 2, "window_size": 4, "shift_size": 2}}, (2, 6, 5, 8), (2, 6, 5, 8),
     386, 256, 65_536),
    # rectangular window 2x3 (L 6), shift only along h, C 6, 3 heads: 4x6 map, 2·2 = 4 windows;
    # params table 3·5·3 = 45, qkv 18·6 + 18 = 126, proj 6·6 + 6 = 42 -> 213; buffer 6² = 36;
    # macs 4·1·24·36 = 3,456 + 2·1·4·36·6 = 1,728
    ({"windowattention": {"num_heads": 3, "window_size": [2, 3], "shift_size": [1, 0]}}, (1, 4, 6, 6), (1, 4, 6, 6),
     213, 36, 5_184),
    # 3x3 map, window 4: padded to 4x4, one window, the shift dropped on both dims (window >= padded size);
    # params 7·7·1 = 49 + (12·4 + 12 = 60) + (4·4 + 4 = 20) = 129; buffer 256;
    # macs 4·1·16·16 = 1,024 + 2·1·1·256·4 = 2,048
    ({"windowattention": {"num_heads": 1, "window_size": 4, "shift_size": 2}}, (1, 3, 3, 4), (1, 3, 3, 4),
     129, 256, 3_072),
    # Swin-T's first shifted block: 56x56x96, 3 heads, window 7 (L 49), 64 windows;
    # params 13·13·3 = 507 + (288·96 + 288 = 27,936) + (96·96 + 96 = 9,312) = 37,755; buffer 49² = 2,401;
    # macs 4·3136·96² = 115,605,504 + 2·64·2401·96 = 29,503,488
    ({"windowattention": {"num_heads": 3, "window_size": 7, "shift_size": 3}}, (1, 56, 56, 96), (1, 56, 56, 96),
     37_755, 2_401, 145_108_992),
    # patch merging 4x4x3 -> 2x2x6: reduction 6·12 = 72, norm 2·12 = 24; macs N·2·2·12·6 = 576
    ("patchmerging", (2, 4, 4, 3), (2, 2, 2, 6), 96, 0, 576),
    # odd 5x3 padded to 6x4 -> 3x2x8: reduction 8·16 = 128, norm 32; macs 2·3·2·16·8 = 1,536
    ("patchmerging", (2, 5, 3, 4), (2, 3, 2, 8), 160, 0, 1_536),
    # Swin-T's first merge: 56x56x96 -> 28x28x192: 192·384 + 2·384 = 74,496; macs 784·384·192 = 57,802,752
    ("patchmerging", (1, 56, 56, 96), (1, 28, 28, 192), 74_496, 0, 57_802_752),
]
LAYER_CASES = CASES  # test_layers checks that every layer type has a case somewhere
SMALL = [c for c in CASES if c[1][1] * c[1][2] * c[1][3] <= 600]


@pytest.mark.parametrize(CASE_FIELDS, CASES, ids=lambda v: str(v)[:50])
def test_layer_numbers(entry: object, x: tuple, y: tuple, params: int, buffers: int, macs: int) -> None:
    check_case(entry, x, y, params, buffers, macs)


def test_shift_is_dropped_only_where_one_window_covers_the_padded_map() -> None:
    from layercalc.layers import REGISTRY

    layer = REGISTRY["windowattention"](num_heads=1, window_size=(7, 7), shift_size=(3, 3))
    assert layer.shift((1, 7, 7, 4)) == (0, 0)  # Swin-T's last stage: a 7x7 map, one window
    assert layer.shift((1, 7, 8, 4)) == (0, 3)  # 8 pads to 14: two windows along w
    assert layer.shift((1, 14, 3, 4)) == (3, 0)


def test_ptflops_counts_the_matmuls_and_softmax_of_window_attention() -> None:
    # the first row: 4 windows, 2 heads, L 16, d 4 per sample: q·kᵀ and A·v 2·4·2·256·4 = 16,384,
    # softmax 4·2·256 = 2,048, for each of the 2 samples (not divided by the batch)
    config = {"input": [8, 8, 8], "batch": 2, "layers": [CASES[0][0]]}
    assert Costing(analyse(config), "ptflops").total() == 2 * (16_384 + 2_048)
    assert not Costing(analyse(config), "thop").total()  # its qkv and proj modules are never called


@pytest.mark.parametrize(
    "layer, shape, message",
    [
        ("windowattention: {num_heads: 3, window_size: 2}", "[4, 4, 8]", "num_heads 3 does not divide the channels 8"),
        ("windowattention: {num_heads: 2, window_size: 2}", "[4, 8]", "expects input (N, H, W, C), got 1x4x8"),
        ("windowattention: {num_heads: 2, window_size: 2, shift_size: 2}", "[4, 4, 8]",
         "shift_size 2 is not below window_size 2"),
        ("patchmerging", "[3, 4, 4, 2]", "expects input (N, H, W, C), got 1x3x4x4x2"),
    ],
)
def test_bad_input_is_one_line_exit_2(second_entry_refused, layer: str, shape: str, message: str) -> None:
    assert message in second_entry_refused(shape, "identity", layer)


TINY = ROOT / "examples" / "swin_tiny.yaml"


def test_verify_passes_on_a_small_swin_net(cli) -> None:
    run = cli("verify", str(TINY), "-f", "tsv")
    assert run.status == 0, run.out + run.err
    rows = list(csv.DictReader(io.StringIO(run.out), delimiter="\t"))
    checks = " ".join(r["check"] for r in rows)
    assert "relative_position_bias_table" in checks and "reduction.weight" in checks
    # the tiny net has a shifted block (shift 1 on a 5x5 map padded to 6x6, 2x2 windows) and an odd-sized merge
    from layercalc.layers import REGISTRY

    rows = {r["name"]: r for r in analyse(TINY).rows()}
    assert rows["windowattention2"]["input_shape"] == rows["patchmerging1"]["input_shape"] == [2, 5, 5, 8]
    assert REGISTRY["windowattention"](num_heads=2, window_size=2, shift_size=1).shift((2, 5, 5, 8)) == (1, 1)


@pytest.mark.parametrize("impl", ["window_bias_not_accumulated.py", "window_roll_not_undone.py"])
def test_wrong_window_backward_is_caught(cli, write, impl: str) -> None:
    config = ("input: [4, 4, 4]\nbatch: 2\nlayers:\n"
              "  - windowattention: {num_heads: 2, window_size: 2, shift_size: 1}\n    name: attn\n  - gelu\n")
    run = cli("verify", write("w.yaml", config), "--impl", str(ROOT / "tests" / "impls" / impl), "-f", "tsv")
    assert run.status == 1, run.out + run.err
    failed = [r for r in csv.DictReader(io.StringIO(run.out), delimiter="\t") if r["passed"] != "True"]
    assert any(r["path"] == "attn" for r in failed), failed


def test_swin_t_totals() -> None:
    """torchvision's swin_t: 28,288,354 params (its Swin_T_Weights meta), 4.491 GFLOPS published (= MACs);
    measured on torchvision 0.28's swin_t: FlopCounterMode 8,981,133,312 / 2 and 28,812 buffers (12 blocks'
    49² relative_position_index, persistent)."""
    total = analyse(CONFIGS / "swin_t.yaml").total
    assert (total["params"], total["buffers"], total["macs"]) == (28_288_354, 28_812, 4_490_566_656)
    assert round(total["macs"] / 1e9, 3) == 4.491


# -- against PyTorch ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry, x_shape", [(c[0], c[1]) for c in SMALL], ids=lambda v: str(v)[:50])
def test_forward_and_backward_match_torch(entry: object, x_shape: tuple[int, ...]) -> None:
    torch_models_or_skip()
    from test_reference_torch import test_forward_and_backward_match_torch as check

    check(entry, x_shape)
    if isinstance(entry, dict):  # the same window unshifted
        (kind, args), = entry.items()
        check({kind: {**args, "shift_size": 0}}, x_shape)


TOOLS = ["torch", "fvcore", "thop", "ptflops", "torchinfo"]


@pytest.mark.parametrize("tool", TOOLS)
def test_tiny_net_matches_each_tool(tool: str) -> None:
    torch_models_or_skip()
    from peer_tools import tool_total

    config = yaml.safe_load(TINY.read_text())
    assert (Costing(analyse(config), tool).total() or 0) == tool_total(tool, config)


def test_tiny_net_matches_torch_counts_and_training() -> None:
    torch_models = torch_models_or_skip()
    from peer_tools import training_flops

    config = yaml.safe_load(TINY.read_text())
    model, shape = torch_models.build(config)
    truth = torch_models.counts(model, shape)
    report = analyse(config)
    assert (report.total["params"], report.total["buffers"], report.total["macs"]) == (
        truth["params"], truth["buffers"], truth["macs"])
    assert report.output_shape == truth["output_shape"]
    leaves = [tuple(r["output_shape"]) for r in report.rows() if r["type"] not in ("residual", "sequential")]
    assert leaves == truth["leaf_shapes"]  # every layer's output, window attention and merge as one each
    assert training(report, "torch")["training_flops"] == training_flops(config)


# -- torchvision itself ----------------------------------------------------------------------------


def torchvision_module() -> Any:
    """torchvision's swin_transformer module, or skip. LAYERCALC_TORCHVISION may name a directory
    holding it (`pip install --no-deps --target DIR torchvision`), kept off the path of the other
    tests (ptflops imports torchvision when it can). A wheel built for another torch (the only kind
    this environment can get) fails to load its C ops, which only its detection ops need: their meta
    registrations are skipped so the Python models import."""
    torch_or_skip()
    extra = os.environ.get("LAYERCALC_TORCHVISION")
    if extra and extra not in sys.path:
        sys.path.insert(0, extra)
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pytest.skip("torchvision is not installed")
    except RuntimeError:  # "operator torchvision::nms does not exist": a wheel for another torch build
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision  # noqa: F401
    from torchvision.models import swin_transformer

    return swin_transformer


def _twin(ours: Any, theirs: Any) -> None:
    """Give `theirs` our parameters (same names), so the two compute the same function."""
    torch = torch_or_skip()
    with torch.no_grad():
        for (name, p), (other, q) in zip(ours.named_parameters(), theirs.named_parameters()):
            assert name == other and p.shape == q.shape
            q.copy_(p)


@pytest.mark.parametrize("entry, x_shape", [(c[0], c[1]) for c in CASES], ids=lambda v: str(v)[:50])
def test_oracle_is_torchvision(entry: Any, x_shape: tuple[int, ...]) -> None:
    """The oracle's modules against torchvision's: parameters (names, order), buffers (persistent),
    output, gradients and FlopCounterMode's count of a forward and backward pass."""
    swin = torchvision_module()
    torch = torch_or_skip()
    from torch.utils.flop_counter import FlopCounterMode

    torch_models = torch_models_or_skip()
    ours, _ = torch_models.build({"input": list(x_shape[1:]), "batch": x_shape[0], "layers": [entry]})
    ours = ours[0].double()
    c = x_shape[-1]
    if isinstance(entry, dict):
        args = {k: (v if isinstance(v, list) else [v, v]) for k, v in entry["windowattention"].items() if k != "num_heads"}
        theirs = swin.ShiftedWindowAttention(c, args["window_size"], args.get("shift_size", [0, 0]),
                                             entry["windowattention"]["num_heads"])
    else:
        theirs = swin.PatchMerging(c)
    theirs = theirs.double()
    _twin(ours, theirs)
    assert dict(ours.state_dict()).keys() == dict(theirs.state_dict()).keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.buffers(), theirs.buffers()))
    x = torch.randn(x_shape, dtype=torch.float64)
    flops = []
    grads = []
    for model in (ours, theirs):
        xi = x.clone().requires_grad_(True)
        counter = FlopCounterMode(display=False)
        with counter:
            y = model(xi)
            (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum().backward()
        flops.append(counter.get_total_flops())
        grads.append((y.detach(), xi.grad, [p.grad for p in model.parameters()]))
    assert flops[0] == flops[1]
    (y0, dx0, g0), (y1, dx1, g1) = grads
    torch.testing.assert_close(y0, y1)
    torch.testing.assert_close(dx0, dx1)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b)


def torchvision_name(path: str) -> str:
    """A row's path as torchvision names the module (the config's header says how):
    features.stage1.block0.attn_block.body.attn -> features.1.0.attn, features.merge2 -> features.4."""
    path = path.replace("stem.conv", "0.0").replace("stem.norm", "0.2").replace("stem", "0")
    renames = {"fc1": "0", "fc2": "3", **{f"stage{k}": str(2 * k - 1) for k in range(1, 5)},
               **{f"merge{k}": str(2 * k) for k in range(1, 4)}, **{f"block{i}": str(i) for i in range(6)}}
    return ".".join(renames.get(s, s) for s in path.split(".") if s not in ("attn_block", "mlp_block", "body"))


def test_swin_t_against_torchvision_module_by_module() -> None:
    """The shipped swin_t against torchvision's swin_t() (random weights): params, persistent buffers,
    MACs as FlopCounterMode / 2, output shape, --training's FLOPs; and every module the config names alike (the attention,
    norms, MLP linears, merges, head) with torchvision's params and FLOPs."""
    swin = torchvision_module()
    torch = torch_or_skip()
    from torch.utils.flop_counter import FlopCounterMode

    model = swin.swin_t().eval()
    report = analyse(CONFIGS / "swin_t.yaml")
    state = model.state_dict()
    assert report.total["params"] == sum(p.numel() for p in model.parameters()) == 28_288_354
    assert report.total["buffers"] == sum(v.numel() for k, v in state.items() if "relative_position_index" in k)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(torch.zeros(1, 3, 224, 224))
    assert report.total["macs"] * 2 == counter.get_total_flops()
    assert report.output_shape == tuple(out.shape)
    flops = {name: sum(ops.values()) // 2 for name, ops in counter.get_flop_counts().items()}
    modules = dict(model.named_modules())
    compared = []
    rows = {torchvision_name(r["path"]): r for r in report.rows() if r["name"] not in ("attn_block", "mlp_block")}
    for name, row in rows.items():
        if name not in modules:
            continue
        assert row["params"] == sum(p.numel() for p in modules[name].parameters()), name
        assert row["macs"] == flops.get(f"SwinTransformer.{name}", 0), name
        compared.append(name)
    trained = FlopCounterMode(display=False)
    with trained:  # --training under torch: FlopCounterMode over a forward and backward pass
        model(torch.randn(1, 3, 224, 224)).sum().backward()
    assert training(report, "torch")["training_flops"] == trained.get_total_flops()
    expected = {"features.0.0", "features.0.2", "norm", "head"} | {
        f"features.{s}.{b}.{m}" for s, depth in ((1, 2), (3, 2), (5, 6), (7, 2)) for b in range(depth)
        for m in ("norm1", "attn", "norm2", "mlp", "mlp.0", "mlp.3")} | {"features.2", "features.4", "features.6"}
    assert expected <= set(compared), sorted(expected - set(compared))


def test_peer_tools_on_torchvision_swin_t_are_the_conventions() -> None:
    """Each tool's total on torchvision's own swin_t equals the config's figure under that convention."""
    swin = torchvision_module()
    torch = torch_or_skip()
    import peer_tools

    model = swin.swin_t().eval()
    report = analyse(CONFIGS / "swin_t.yaml")
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched_build(peer_tools, model))
        for tool in TOOLS:
            assert (Costing(report, tool).total() or 0) == peer_tools.tool_total(tool, {}), tool
    del torch


@contextlib.contextmanager
def _patched_build(peer_tools: Any, model: Any) -> Any:
    """peer_tools.tool_total run on a given model at 1x3x224x224 instead of a config's oracle model."""
    saved = peer_tools.torch_models.build
    peer_tools.torch_models.build = lambda config: (model, (1, 3, 224, 224))
    try:
        yield
    finally:
        peer_tools.torch_models.build = saved
