"""kconv: K_conv as in the seed's figure (corrected), 1-D, the backward term by term, transposed, drawn.

Expected values come from hand calculations written out here, the seed's figures, or PyTorch
autograd (torch.nn.functional), never from the code under test.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SVG = "{http://www.w3.org/2000/svg}"
# the cli fixture only captures output, which each call reads and clears: safe to share across examples
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_seed_figure_3x3_input_2x2_kernel(cli) -> None:
    run = cli("kconv", "--input", "3x3", "--kernel", "2x2", "-f", "tsv")
    rows = [line.split("\t") for line in run.out.splitlines()]
    assert rows[0] == ["", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9"]
    # by hand from y_ij = Σ k_pq x_(i+p, j+q): the 4x9 matrix, each row the kernel slid one step
    assert rows[1:] == [
        ["y1", "k1", "k2", "0", "k3", "k4", "0", "0", "0", "0"],
        ["y2", "0", "k1", "k2", "0", "k3", "k4", "0", "0", "0"],
        ["y3", "0", "0", "0", "k1", "k2", "0", "k3", "k4", "0"],
        ["y4", "0", "0", "0", "0", "k1", "k2", "0", "k3", "k4"],
    ]


def test_stride_and_padding(cli) -> None:
    data = json.loads(cli("kconv", "--input", "4x4", "--kernel", "3x3", "--stride", "2", "--padding", "1", "-f", "json").out)
    assert data["shape"] == [4, 16] and data["output"] == [2, 2]
    # y1's window covers rows/cols -1..1: only taps k5 k6 / k8 k9 land on x1 x2 / x5 x6
    assert data["rows"][0] == ["k5", "k6", "0", "0", "k8", "k9"] + ["0"] * 10


def test_check_passes_and_reports(cli) -> None:
    run = cli("kconv", "--input", "5x4", "--kernel", "3x2", "--stride", "2x1", "--dilation", "1x2", "--check", "-f", "json")
    checks = json.loads(run.out)["checks"]
    assert run.status == 0 and len(checks) == 4 and all(c["passed"] and c["error"] <= c["tolerance"] for c in checks)
    assert checks[0]["check"] == "the printed K_conv = the kernels' K_conv"


# ---------------------------------------------------------------------------------------------
# 1-D: one number each
# ---------------------------------------------------------------------------------------------


def test_one_number_is_1d(cli) -> None:
    run = cli("kconv", "--input", "5", "--kernel", "3", "-f", "tsv")
    rows = [line.split("\t") for line in run.out.splitlines()]
    # y_i = k0·x_i + k1·x_(i+1) + k2·x_(i+2), i = 0..2 (5 − 3 + 1 = 3 outputs); 1-D counts from 0
    assert rows == [
        ["", "x0", "x1", "x2", "x3", "x4"],
        ["y0", "k0", "k1", "k2", "0", "0"],
        ["y1", "0", "k0", "k1", "k2", "0"],
        ["y2", "0", "0", "k0", "k1", "k2"],
    ]


def test_1d_stride_padding_dilation(cli) -> None:
    data = json.loads(cli("kconv", "--input", "6", "--kernel", "2", "--stride", "2", "--padding", "1", "--dilation", "2", "-f", "json").out)
    # padded length 8, dilated kernel spans 3: outputs ⌊(8 − 3)/2⌋ + 1 = 3; y_i reads x at 2i − 1 and 2i + 1
    assert data["rank"] == 1 and data["output"] == [3] and data["shape"] == [3, 6]
    assert data["rows"] == [
        ["0", "k1", "0", "0", "0", "0"],  # x−1 is padding
        ["0", "k0", "0", "k1", "0", "0"],
        ["0", "0", "0", "k0", "0", "k1"],
    ]


def test_1d_check(cli) -> None:
    run = cli("kconv", "--input", "7", "--kernel", "3", "--stride", "2", "--padding", "1", "--dilation", "2", "--backward", "--check", "-f", "json")
    checks = json.loads(run.out)["checks"]
    assert run.status == 0 and len(checks) == 7 and all(c["passed"] for c in checks)


# ---------------------------------------------------------------------------------------------
# --backward: the lecture's 1-D example and hand-derived cases
# ---------------------------------------------------------------------------------------------

LECTURE_TERMS = [
    # ∂L/∂x_u = Σ_t k_t ∂L/∂y_(u−t), the out-of-range ∂L/∂y_(−1), ∂L/∂y_(−2), ∂L/∂y_3, ∂L/∂y_4 gone
    "∂L/∂x0 = k0·∂L/∂y0",
    "∂L/∂x1 = k0·∂L/∂y1 + k1·∂L/∂y0",
    "∂L/∂x2 = k0·∂L/∂y2 + k1·∂L/∂y1 + k2·∂L/∂y0",
    "∂L/∂x3 = k1·∂L/∂y2 + k2·∂L/∂y1",
    "∂L/∂x4 = k2·∂L/∂y2",
]


def test_lecture_1d_backward_figure(cli) -> None:
    """The seed's figure: [0 0 ∂L/∂y0 ∂L/∂y1 ∂L/∂y2 0 0] against [k2 k1 k0]: 5 inputs, 3 outputs."""
    run = cli("kconv", "--input", "5", "--kernel", "3", "--backward", "-f", "table")
    assert run.status == 0
    lines = [line.strip() for line in run.out.splitlines()]
    for term in LECTURE_TERMS:
        assert term in lines
    assert "∇y laid out: [0 0 ∂L/∂y0 ∂L/∂y1 ∂L/∂y2 0 0]" in lines
    assert "flipped kernel: [k2 k1 k0]" in lines
    # the sliding rows: ∂L/∂x0's flipped kernel starts on the first padding zero, ∂L/∂x4's on ∂L/∂y2
    slide = [line.split() for line in lines if line.startswith("∂L/∂x") and "=" not in line]
    assert slide == [["∂L/∂x0", "k2", "k1", "k0"]] + [[f"∂L/∂x{u}", "k2", "k1", "k0"] for u in range(1, 5)]
    raw = run.out.splitlines()
    header = next(line for line in raw if line.strip().startswith("0 ") and "∂L/∂y0" in line)
    x0 = next(line for line in raw if line.strip().startswith("∂L/∂x0") and "=" not in line)
    x4 = next(line for line in raw if line.strip().startswith("∂L/∂x4") and "=" not in line)
    assert x0.index("k0") == header.index("∂L/∂y0")  # k0·∂L/∂y0, after k2·0 and k1·0
    assert x4.index("k2") == header.index("∂L/∂y2") and x4.index("k0") == header.rindex("0")  # k2·∂L/∂y2, then zeros


def test_lecture_1d_backward_json(cli) -> None:
    data = json.loads(cli("kconv", "--input", "5", "--kernel", "3", "--backward", "-f", "json").out)
    sym = data["symbolic"]
    assert sym["mode"] == "backward" and [row["text"] for row in sym["terms"]] == LECTURE_TERMS
    assert sym["terms"][2]["terms"] == [{"k": [0], "dy": [2]}, {"k": [1], "dy": [1]}, {"k": [2], "dy": [0]}]
    assert sym["layout"]["operand"] == [["0", "0", "∂L/∂y0", "∂L/∂y1", "∂L/∂y2", "0", "0"]]
    assert sym["layout"]["kernel"] == [["k2", "k1", "k0"]]


def test_backward_tsv(cli) -> None:
    rows = [line.split("\t") for line in cli("kconv", "--input", "5", "--kernel", "3", "--backward", "-f", "tsv").out.splitlines()]
    assert rows[0] == ["name", "sum"] and rows[1] == ["∂L/∂x0", "k0·∂L/∂y0"] and len(rows) == 6


def test_padding_2_backward(cli) -> None:
    """--input 3 --kernel 3 --padding 2: 5 outputs; d(k−1) − p = 0 zeros before, so ∇y is not padded."""
    data = json.loads(cli("kconv", "--input", "3", "--kernel", "3", "--padding", "2", "--backward", "-f", "json").out)
    # y_i = Σ_t k_t x_(i+t−2): x_u gets k_t ∂L/∂y_(u+2−t), all of t = 0, 1, 2 in range for u = 0..2
    assert [row["text"] for row in data["symbolic"]["terms"]] == [
        "∂L/∂x0 = k0·∂L/∂y2 + k1·∂L/∂y1 + k2·∂L/∂y0",
        "∂L/∂x1 = k0·∂L/∂y3 + k1·∂L/∂y2 + k2·∂L/∂y1",
        "∂L/∂x2 = k0·∂L/∂y4 + k1·∂L/∂y3 + k2·∂L/∂y2",
    ]
    assert data["symbolic"]["layout"]["operand"] == [[f"∂L/∂y{i}" for i in range(5)]]


def test_stride_2_backward_spreads_dy(cli) -> None:
    data = json.loads(cli("kconv", "--input", "7", "--kernel", "3", "--stride", "2", "--backward", "-f", "json").out)
    # y_i = Σ_t k_t x_(2i+t), i = 0..2: x_u gets k_t ∂L/∂y_((u−t)/2) where u − t is even
    assert [row["text"] for row in data["symbolic"]["terms"]] == [
        "∂L/∂x0 = k0·∂L/∂y0",
        "∂L/∂x1 = k1·∂L/∂y0",
        "∂L/∂x2 = k0·∂L/∂y1 + k2·∂L/∂y0",
        "∂L/∂x3 = k1·∂L/∂y1",
        "∂L/∂x4 = k0·∂L/∂y2 + k2·∂L/∂y1",
        "∂L/∂x5 = k1·∂L/∂y2",
        "∂L/∂x6 = k2·∂L/∂y2",
    ]
    # one zero between ∇y's entries (s − 1), k − 1 = 2 zeros on each side
    assert data["symbolic"]["layout"]["operand"] == [["0", "0", "∂L/∂y0", "0", "∂L/∂y1", "0", "∂L/∂y2", "0", "0"]]


def test_dilation_2_backward_gaps_the_kernel(cli) -> None:
    data = json.loads(cli("kconv", "--input", "5", "--kernel", "2", "--dilation", "2", "--backward", "-f", "json").out)
    # y_i = k0·x_i + k1·x_(i+2), i = 0..2
    assert [row["text"] for row in data["symbolic"]["terms"]] == [
        "∂L/∂x0 = k0·∂L/∂y0", "∂L/∂x1 = k0·∂L/∂y1", "∂L/∂x2 = k0·∂L/∂y2 + k1·∂L/∂y0",
        "∂L/∂x3 = k1·∂L/∂y1", "∂L/∂x4 = k1·∂L/∂y2",
    ]
    assert data["symbolic"]["layout"]["kernel"] == [["k1", "0", "k0"]]


def test_2d_backward_is_the_seed_sum(cli) -> None:
    """∂L/∂x_(u,v) = Σ_(p,q) k_pq ∂L/∂y_(u−p, v−q) for the seed's 3x3 input and 2x2 kernel."""
    data = json.loads(cli("kconv", "--input", "3x3", "--kernel", "2x2", "--backward", "-f", "json").out)
    texts = {row["name"]: row["text"] for row in data["symbolic"]["terms"]}
    assert texts["∂L/∂x[1,1]"] == "∂L/∂x[1,1] = k[0,0]·∂L/∂y[1,1] + k[0,1]·∂L/∂y[1,0] + k[1,0]·∂L/∂y[0,1] + k[1,1]·∂L/∂y[0,0]"
    assert texts["∂L/∂x[0,2]"] == "∂L/∂x[0,2] = k[0,1]·∂L/∂y[0,1]"
    lay = data["symbolic"]["layout"]
    assert lay["kernel"] == [["k[1,1]", "k[1,0]"], ["k[0,1]", "k[0,0]"]]  # rot180
    assert lay["operand"] == [["0", "0", "0", "0"], ["0", "∂L/∂y[0,0]", "∂L/∂y[0,1]", "0"], ["0", "∂L/∂y[1,0]", "∂L/∂y[1,1]", "0"], ["0", "0", "0", "0"]]


def test_transposed_1d(cli) -> None:
    data = json.loads(cli("kconv", "--input", "3", "--kernel", "3", "--stride", "2", "--padding", "1", "--transposed", "-f", "json").out)
    # full output (3 − 1)·2 + 3 = 7, x_i stamps k_t at 2i + t; cropping 1 each side leaves 5 (y_u = full_(u+1))
    assert data["output"] == [5] and data["matrix"] == "K_convᵀ" and data["shape"] == [5, 3]
    assert [row["text"] for row in data["symbolic"]["terms"]] == [
        "y0 = k1·x0", "y1 = k0·x1 + k2·x0", "y2 = k1·x1", "y3 = k0·x2 + k2·x1", "y4 = k1·x2",
    ]
    assert data["symbolic"]["layout"]["operand"] == [["0", "x0", "0", "x1", "0", "x2", "0"]]
    back = json.loads(cli("kconv", "--input", "3", "--kernel", "3", "--stride", "2", "--padding", "1", "--transposed", "--backward", "-f", "json").out)
    # ∂L/∂x_i = Σ_t k_t ∂L/∂y_(2i+t−1): the plain strided correlation (K_conv · vec(∇y))
    assert [row["text"] for row in back["symbolic"]["terms"]] == [
        "∂L/∂x0 = k1·∂L/∂y0 + k2·∂L/∂y1", "∂L/∂x1 = k0·∂L/∂y1 + k1·∂L/∂y2 + k2·∂L/∂y3", "∂L/∂x2 = k0·∂L/∂y3 + k1·∂L/∂y4",
    ]


# ---------------------------------------------------------------------------------------------
# random geometries: the printed terms, evaluated, are K_convᵀ · vec(∇y), the layer's backward and torch's
# ---------------------------------------------------------------------------------------------


@st.composite
def geometries(draw: Any) -> dict[str, Any]:
    """A random 1-D or 2-D single-channel conv that has at least one output."""
    rank = draw(st.sampled_from([1, 2]))
    axes = []
    for _ in range(rank):
        k, s, p, d = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(0, 3)), draw(st.integers(1, 3))
        n = draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), d * (k - 1) + 8))
        axes.append((n, k, s, p, d))
    return {"rank": rank, "axes": axes}


def options(g: dict[str, Any]) -> list[str]:
    cols = list(zip(*g["axes"]))
    return [arg for flag, values in zip(("--input", "--kernel", "--stride", "--padding", "--dilation"), cols) for arg in (flag, "x".join(map(str, values)))]


def evaluate(rows: list[dict[str, Any]], k: np.ndarray, operand: np.ndarray, key: str) -> np.ndarray:
    """Σ k[tap]·operand[position] of every printed row."""
    return np.array([sum(k[tuple(t["k"])] * operand[tuple(t[key])] for t in row["terms"]) for row in rows])


def torch_conv(rank: int, transposed: bool) -> Any:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    return {(1, False): F.conv1d, (2, False): F.conv2d, (1, True): F.conv_transpose1d, (2, True): F.conv_transpose2d}[(rank, transposed)]


@FAST
@given(geometries(), st.integers(0, 2**31))
def test_backward_terms_are_kconv_transposed(cli, g: dict[str, Any], seed: int) -> None:
    torch = pytest.importorskip("torch")

    from layercalc.kconv import geometry
    from layercalc.kernels.conv import kconv_matrix

    n, k, s, p, d = (tuple(c) for c in zip(*g["axes"]))
    data = json.loads(cli("kconv", *options(g), "--backward", "-f", "json").out)
    rng = np.random.default_rng(seed)
    kern, x = rng.standard_normal(k), rng.standard_normal(n)
    # torch: y = conv(x, k), ∇x of L = <dy, y>
    tx = torch.tensor(x[None, None], requires_grad=True)
    y = torch_conv(g["rank"], False)(tx, torch.tensor(kern[None, None]), stride=s, padding=p, dilation=d)
    dy = rng.standard_normal(tuple(y.shape[2:]))
    y.backward(torch.tensor(dy[None, None]))
    want = tx.grad.numpy().ravel()
    got = evaluate(data["symbolic"]["terms"], kern, dy, "dy")
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # K_convᵀ · vec(∇y), the matrix built by the conv kernels (1-D as height 1)
    axes = [(1, 1, 1, 0, 1)] + g["axes"] if g["rank"] == 1 else g["axes"]  # 1-D as height 1
    hw, kk, ss, pp, dd = zip(*axes)
    m = kconv_matrix(kern.reshape(kk), hw, ss, tuple((q, q) for q in pp), dd)
    np.testing.assert_allclose(got, m.T @ dy.ravel(), rtol=1e-10, atol=1e-12)
    # the layer's NumPy backward
    geo = geometry(*options(g)[1::2])
    w = kern.reshape(1, 1, *k)
    _, cache = geo.layer.forward(x[None, None], {"weight": w})
    dx, _ = geo.layer.backward(dy[None, None], {"weight": w}, cache)
    np.testing.assert_allclose(got, dx.ravel(), rtol=1e-10, atol=1e-12)
    # the lecture's layout, evaluated as a correlation of the grids
    lay = data["symbolic"]["layout"]
    assert len(lay["windows"]) == int(np.prod(n))
    check = json.loads(cli("kconv", *options(g), "--backward", "--check", "-f", "json").out)["checks"]
    assert len(check) == 7 and all(c["passed"] for c in check)


@FAST
@given(geometries(), st.integers(0, 2**31))
def test_transposed_terms_are_torch(cli, g: dict[str, Any], seed: int) -> None:
    torch = pytest.importorskip("torch")

    n, k, s, p, d = (tuple(c) for c in zip(*g["axes"]))
    # the transposed conv's input is the conv's output; output_padding restores the far-end cells
    # that the strided conv never reached, so that its output is the conv's input again
    m = tuple((a + 2 * q - e * (b - 1) - 1) // t + 1 for a, b, t, q, e in zip(n, k, s, p, d))
    op = tuple(a - ((b - 1) * t - 2 * q + e * (c - 1) + 1) for a, b, c, t, q, e in zip(n, m, k, s, p, d))
    opts = ["--input", "x".join(map(str, m))] + options(g)[2:] + ["--transposed", "--output-padding", "x".join(map(str, op))]
    fwd = json.loads(cli("kconv", *opts, "-f", "json").out)
    back = json.loads(cli("kconv", *opts, "--backward", "-f", "json").out)
    rng = np.random.default_rng(seed)
    kern, x = rng.standard_normal(k), rng.standard_normal(m)
    tx = torch.tensor(x[None, None], requires_grad=True)
    y = torch_conv(g["rank"], True)(tx, torch.tensor(kern[None, None]), stride=s, padding=p, dilation=d, output_padding=op)
    assert tuple(y.shape[2:]) == n
    assert fwd["output"] == list(y.shape[2:])
    np.testing.assert_allclose(evaluate(fwd["symbolic"]["terms"], kern, x, "x"), y.detach().numpy().ravel(), rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(tuple(y.shape[2:]))
    y.backward(torch.tensor(dy[None, None]))
    np.testing.assert_allclose(evaluate(back["symbolic"]["terms"], kern, dy, "dy"), tx.grad.numpy().ravel(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rank", [1, 2])
def test_transposed_sizes_and_refusals_are_pytorchs(rank: int) -> None:
    """Every small transposed geometry: kconv's output size is PyTorch's ConvTranspose's, and kconv
    refuses exactly what PyTorch refuses (output_padding not below the stride or the dilation, no output)."""
    torch = pytest.importorskip("torch")

    from layercalc.errors import UsageError
    from layercalc.kconv import geometry

    for n, k, s, p, d, o in itertools.product(range(1, 4), range(1, 4), range(1, 3), range(3), range(1, 4), range(3)):
        sizes = [str(v) if rank == 1 else f"{v}x{v + 1}" for v in (n, k, s, p, d, o)]
        pairs = [(v,) if rank == 1 else (v, v + 1) for v in (n, k, s, p, d, o)]
        conv = torch_conv(rank, True)
        try:
            want = tuple(conv(torch.zeros(1, 1, *pairs[0]), torch.zeros(1, 1, *pairs[1]), stride=pairs[2], padding=pairs[3],
                              dilation=pairs[4], output_padding=pairs[5]).shape[2:])
        except RuntimeError:
            want = None
        try:
            got = geometry(*sizes[:5], transposed=True, output_padding=sizes[5]).output
        except UsageError:
            got = None
        assert got == want, sizes


def test_transposed_output_padding_up_to_the_dilation(cli) -> None:
    # stride 1, dilation 2, output_padding 1: (4 − 1)·1 + 2·(3 − 1) + 1 + 1 = 9 outputs, the last
    # reached by no tap (a conv layer in a config accepts the same, as PyTorch does)
    run = cli("kconv", "--input", "4", "--kernel", "3", "--dilation", "2", "--transposed", "--output-padding", "1", "--check", "-f", "json")
    data = json.loads(run.out)
    assert (run.status, data["output"], data["shape"]) == (0, [9], [9, 4])
    assert data["rows"][-1] == ["0"] * 4 and data["rows"][2] == ["k1", "0", "k0", "0"]
    assert len(data["checks"]) == 6 and all(c["passed"] for c in data["checks"])


# ---------------------------------------------------------------------------------------------
# --draw: the SVG
# ---------------------------------------------------------------------------------------------


def frames_of(path: str) -> tuple[ET.Element, list[ET.Element]]:
    root = ET.parse(path).getroot()
    return root, [g for g in root.iter(f"{SVG}g") if g.get("class") == "frame"]


def grid(root: ET.Element, role: str) -> dict[str, int]:
    g = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "grid" and g.get("data-role") == role)
    br, bc = (int(v) for v in g.get("data-border", "0,0").split(","))
    return {"x": int(g.get("data-x", 0)), "y": int(g.get("data-y", 0)), "cell": int(g.get("data-cell", 0)),
            "rows": int(g.get("data-rows", 0)), "cols": int(g.get("data-cols", 0)), "br": br, "bc": bc}


def cells(frame: ET.Element, cls: str, at: dict[str, int]) -> set[tuple[int, int]]:
    """The (row, col) of every rect of a class, read from its pixel position on its grid."""
    out = set()
    for r in frame.iter(f"{SVG}rect"):
        if r.get("class") == cls:
            col, row = (float(r.get("x", 0)) - at["x"]) / at["cell"], (float(r.get("y", 0)) - at["y"]) / at["cell"]
            assert col == int(col) and row == int(row)
            assert r.get("data-cell") == f"{int(row)},{int(col)}"
            out.add((int(row), int(col)))
    return out


@FAST
@given(geometries())
def test_svg_windows_follow_the_index_arithmetic(cli, tmp_path_factory: Any, g: dict[str, Any]) -> None:
    path = str(tmp_path_factory.mktemp("svg") / "conv.svg")
    run = cli("kconv", *options(g), "--draw", path, "-f", "json")
    assert run.status == 0
    root, frames = frames_of(path)
    axes = [(1, 1, 1, 0, 1)] + g["axes"] if g["rank"] == 1 else g["axes"]
    outs = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in axes]
    assert len(frames) == outs[0] * outs[1] == int(root.get("data-frames", 0))
    src, dst = grid(root, "source"), grid(root, "target")
    assert (src["rows"], src["cols"], src["br"], src["bc"]) == (axes[0][0] + 2 * axes[0][3], axes[1][0] + 2 * axes[1][3], axes[0][3], axes[1][3])
    (_, kh, sh, _, dh), (_, kw, sw, _, dw) = axes
    for f, frame in enumerate(frames):
        i, j = divmod(f, outs[1])  # row-major over the outputs
        # in padded coordinates the window of y[i,j] covers (i·s + t·d, j·s + q·d)
        assert cells(frame, "window", src) == {(i * sh + t * dh, j * sw + q * dw) for t in range(kh) for q in range(kw)}
        assert cells(frame, "target", dst) == {(i, j)}


@FAST
@given(geometries())
def test_svg_transposed_one_frame_per_input(cli, tmp_path_factory: Any, g: dict[str, Any]) -> None:
    n, k, s, p, d = (tuple(c) for c in zip(*g["axes"]))
    m = tuple((a + 2 * q - e * (b - 1) - 1) // t + 1 for a, b, t, q, e in zip(n, k, s, p, d))
    path = str(tmp_path_factory.mktemp("svg") / "t.svg")
    run = cli("kconv", "--input", "x".join(map(str, m)), *options(g)[2:], "--transposed", "--draw", path, "-f", "json")
    if run.status == 2:  # the transposed conv of this input has no output (padding too large)
        assert "leaves no output" in run.err
        return
    root, frames = frames_of(path)
    m2 = (1, *m) if g["rank"] == 1 else m
    axes = [(1, 1, 1, 0, 1)] + [(0, *a[1:]) for a in g["axes"]] if g["rank"] == 1 else g["axes"]
    assert len(frames) == m2[0] * m2[1] and root.get("data-per") == "input"
    dst = grid(root, "target")
    # x_i stamps the kernel on the full output at i·s + t·d, of length (m − 1)·s + d·(k − 1) + 1
    assert (dst["rows"], dst["cols"]) == tuple((a - 1) * ax[2] + ax[4] * (ax[1] - 1) + 1 for a, ax in zip(m2, axes))
    assert (dst["br"], dst["bc"]) == (axes[0][3], axes[1][3])
    (_, kh, sh, _, dh), (_, kw, sw, _, dw) = axes
    for f, frame in enumerate(frames):
        i, j = divmod(f, m2[1])
        assert cells(frame, "window", grid(root, "source")) == {(i, j)}
        assert cells(frame, "target", dst) == {(i * sh + t * dh, j * sw + q * dw) for t in range(kh) for q in range(kw)}


def test_svg_is_animated_and_frames_strip(cli, tmp_path: Path) -> None:
    path = str(tmp_path / "a.svg")
    cli("kconv", "--input", "5x5", "--kernel", "3", "--stride", "2", "--padding", "1", "--draw", path)
    root, frames = frames_of(path)
    assert len(frames) == 9  # ⌊(5 + 2 − 3)/2⌋ + 1 = 3 per axis
    animations = [a for f in frames for a in f.iter(f"{SVG}animate")]
    assert len(animations) == 9 and all(a.get("repeatCount") == "indefinite" for a in animations)
    assert [f.get("visibility") for f in frames] == ["visible"] + ["hidden"] * 8  # a still viewer shows frame 1
    strip = str(tmp_path / "s.svg")
    run = cli("kconv", "--input", "5x5", "--kernel", "3", "--stride", "2", "--padding", "1", "--draw", strip, "--frames")
    root, frames = frames_of(strip)
    assert run.status == 0 and len(frames) == 9 and not list(root.iter(f"{SVG}animate"))
    assert {f.get("visibility") for f in frames} == {None}  # every frame shows


def test_svg_to_stdout(cli) -> None:
    run = cli("kconv", "--input", "4", "--kernel", "2", "--draw", "-")
    root = ET.fromstring(run.out.split("\n", 1)[1])
    assert root.get("data-frames") == "3"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_svg_screenshot_in_headless_chromium(cli, tmp_path: Path) -> None:
    """Chromium renders the first frame: the kernel's footprint dark on the top-left of the padded input."""
    image = pytest.importorskip("PIL.Image")
    path, png = tmp_path / "a.svg", tmp_path / "a.png"
    cli("kconv", "--input", "5x5", "--kernel", "3", "--stride", "2", "--padding", "1", "--draw", str(path))
    root, _ = frames_of(str(path))
    width, height = int(root.get("width", 0)), int(root.get("height", 0))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars"]
    subprocess.run(["chromium", *flags, f"--window-size={width},{max(height, 400)}", f"--screenshot={png}", path.as_uri()],
                   capture_output=True, timeout=120, check=False)
    if not png.exists():
        pytest.skip("chromium wrote no screenshot")
    picture = image.open(png).convert("RGB")
    src, dst = grid(root, "source"), grid(root, "target")

    def centre(at: dict[str, int], r: int, c: int) -> tuple[int, int, int]:
        return picture.getpixel((at["x"] + c * at["cell"] + at["cell"] // 2 - 8, at["y"] + r * at["cell"] + at["cell"] // 2 - 8))

    def dark(rgb: tuple[int, int, int]) -> bool:
        return sum(rgb) < 3 * 140

    assert dark(centre(src, 0, 0)) and dark(centre(src, 2, 2))  # the window at the first output
    assert not dark(centre(src, 0, 3)) and not dark(centre(src, 3, 1))  # outside it: padding and input
    assert dark(centre(dst, 0, 0)) and not dark(centre(dst, 0, 1))  # the output cell it produces


# ---------------------------------------------------------------------------------------------
# errors: one line, exit 2, nothing on stdout
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--input", "2x2", "--kernel", "3x3"), "kernel 3 exceeds padded input 2x2"),
        (("--input", "2x3", "--kernel", "3x2"), "kernel 3x2 exceeds padded input 2x3"),
        (("--input", "2", "--kernel", "3"), "kernel 3 exceeds padded input 2"),
        (("--input", "5", "--kernel", "2", "--dilation", "5"), "dilated kernel 6 exceeds padded input 5"),
        (("--input", "5", "--kernel", "3x3"), "--kernel must be an integer >= 1 for a 1-D input, got '3x3'"),
        (("--input", "5", "--stride", "1x2", "--kernel", "3"), "--stride must be an integer >= 1 for a 1-D input, got '1x2'"),
        (("--input", "0x3",), "--input must be an integer >= 1 or HxW like 3x3, got '0x3'"),
        (("--input", "5x5x5",), "--input must be an integer >= 1 or HxW like 3x3, got '5x5x5'"),
        (("--input", "3", "--kernel", "3", "--padding", "3", "--transposed"), "padding 3 leaves no output (size -1)"),
        (("--input", "3", "--kernel", "3", "--output-padding", "1", "--transposed"), "--output-padding 1 must be smaller than stride or dilation"),
        (("--input", "3", "--kernel", "3", "--dilation", "2", "--output-padding", "2", "--transposed"),
         "--output-padding 2 must be smaller than stride or dilation"),
        (("--input", "3", "--kernel", "3", "--output-padding", "1"), "--output-padding goes with --transposed"),
        (("--input", "5", "--kernel", "3", "--frames"), "--frames goes with --draw FILE.svg"),
        (("--input", "5", "--kernel", "3", "--draw", "/nonexistent-dir/a.svg"), "--draw: cannot write /nonexistent-dir/a.svg: No such file or directory"),
    ],
)
def test_bad_sizes(cli, args: tuple[str, ...], message: str) -> None:
    run = cli("kconv", *args)
    assert (run.status, run.out, run.err) == (2, "", f"error: {message}\n")


# ---------------------------------------------------------------------------------------------
# the manual's figures (docs/kconv.md) are what the commands print
# ---------------------------------------------------------------------------------------------


def readme_kconv_examples() -> list[tuple[list[str], list[str]]]:
    """(arguments, printed lines) of every text block of the manual's kconv page that starts with `$ layercalc kconv`."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "kconv.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```text\n")[1:]]
    return [(b.splitlines()[0].split()[2:], b.splitlines()[1:]) for b in blocks if b.startswith("$ layercalc kconv")]


@pytest.mark.parametrize(("args", "lines"), readme_kconv_examples(), ids=lambda v: " ".join(v) if v and isinstance(v[0], str) and v[0] == "kconv" else "")
def test_readme_figures(cli, monkeypatch: pytest.MonkeyPatch, args: list[str], lines: list[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # the README shows an 80-column terminal
    printed = [line.rstrip() for line in cli(*args, "-f", "table").out.splitlines()]
    # check errors are float rounding (they may differ in the last bits between BLAS builds)
    def shown(line: str) -> str:
        return re.sub(r"\d\.\de[-+]\d\d", "#", line)
    assert [shown(line) for line in printed] == [shown(line) for line in lines]
