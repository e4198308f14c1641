"""verify's numeric checks on their own: small and large planted gradient errors must fail a
NUMERIC check (a directional or elementwise comparison with finite differences, not the
comparison with the reference implementation), in float64 and in float32; correct
implementations written differently must pass over many seeds (kinks, ties, batch statistics).

Each mutant's error is stated by its definition (a factor on one gradient), so the expected
verdict does not come from verify's own output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layercalc import analyse
from layercalc.layers import REGISTRY
from layercalc.verify import Options, verify

NUMERIC = ("direction", "elementwise")
ROOT = Path(__file__).resolve().parent.parent


def numeric_failures(result, path: str) -> list:
    """Failed numeric checks of the layer at path (reference comparisons set aside)."""
    return [c for c in result.checks if c.path == path and not c.passed and c.method.startswith(NUMERIC)]


def config(input_shape: list[int], batch: int, *layers: str) -> str:
    body = "".join(f"  - {layer}\n" for layer in layers)
    return f"input: {input_shape}\nbatch: {batch}\nlayers:\n{body}"


def scaled(type_name: str, which: str, factor: float) -> type:
    """The catalog layer with one gradient ('x' or a parameter name) multiplied by factor."""
    base = REGISTRY[type_name]

    def backward(self, dy, params, cache):
        dx, grads = base.backward(self, dy, params, cache)
        if which == "x":
            return dx * np.asarray(factor, dtype=dx.dtype), grads
        grads = dict(grads)
        grads[which] = grads[which] * np.asarray(factor, dtype=grads[which].dtype)
        return dx, grads

    return type(f"Scaled_{type_name}_{which}", (base,), {"backward": backward})


SMALL = 1 + 1e-4  # ten times the default rtol of 1e-5

# (type, gradient, config, layer path): every scaled tensor has at least 10,000 elements
SMALL_ERRORS = [
    ("tanh", "x", config([10000], 1, "tanh"), "tanh1"),
    ("gelu", "x", config([100, 100], 1, "gelu"), "gelu1"),
    ("linear", "x", config([100], 100, "linear: {out_features: 100}"), "linear1"),
    ("conv2d", "x", config([16, 32, 32], 1, "conv2d: {out_channels: 8, kernel_size: 3, padding: 1}"), "conv2d1"),
    ("conv2d", "weight", config([64, 8, 8], 1, "conv2d: {out_channels: 64, kernel_size: 3}"), "conv2d1"),
    ("layernorm", "x", config([100, 128], 1, "layernorm: {normalized_shape: 128}"), "layernorm1"),
    ("batchnorm2d", "x", config([16, 32, 32], 2, "batchnorm2d"), "batchnorm2d1"),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("type_name, which, text, path", SMALL_ERRORS, ids=[f"{c[0]}-{c[1]}" for c in SMALL_ERRORS])
def test_relative_error_of_1e_4_fails_a_numeric_check(type_name: str, which: str, text: str, path: str, dtype: str) -> None:
    report = analyse(text)
    size = np.prod(report.entries[0].input_shape) if which == "x" else np.prod(
        report.entries[0].layer.param_shapes(report.entries[0].input_shape)[which])
    assert size >= 10_000
    result = verify(report, Options(impl=scaled(type_name, which, SMALL), dtype=dtype))
    assert numeric_failures(result, path), [c for c in result.checks if c.method.startswith(NUMERIC)]


LARGE = [  # resnet18's sizes: a layer1 batchnorm, the layer4 1x1 stride-2 shortcut conv
    ("batchnorm2d", "x", config([64, 56, 56], 1, "batchnorm2d"), "batchnorm2d1"),
    ("conv2d", "weight", config([256, 14, 14], 1, "conv2d: {out_channels: 512, kernel_size: 1, stride: 2, bias: false}"), "conv2d1"),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("type_name, which, text, path", LARGE, ids=[f"{c[0]}-{c[1]}" for c in LARGE])
def test_ten_percent_error_in_a_large_layer_fails_its_own_check(type_name: str, which: str, text: str, path: str, dtype: str) -> None:
    result = verify(analyse(text), Options(impl=scaled(type_name, which, 1.1), dtype=dtype, batch2=False))
    assert numeric_failures(result, path)


def _linear_weight_from_first_sample(self, dy, params, cache):
    dx, grads = REGISTRY["linear"].backward(self, dy, params, cache)
    x = cache[0] if isinstance(cache, tuple) else cache
    grads = dict(grads)
    grads["weight"] = dy[:1].T @ x[:1]  # the batch sum forgotten: right at batch 1 only
    return dx, grads


FIRST_SAMPLE = type("FirstSampleLinear", (REGISTRY["linear"],), {"backward": _linear_weight_from_first_sample})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batch_sum_bug_in_a_batch_1_config_fails_at_batch_2(dtype: str) -> None:
    report = analyse(config([20], 1, "linear: {out_features: 30}", "relu"))
    result = verify(report, Options(impl=FIRST_SAMPLE, dtype=dtype))
    failed = numeric_failures(result, "linear1")
    assert failed and all("@ batch 2" in c.check for c in failed), failed


# -- correct implementations written differently: no false alarms ------------------------------


class WhereReLU(REGISTRY["relu"]):
    def forward(self, x, params):
        return np.where(x > 0, x, np.zeros_like(x)), x

    def backward(self, dy, params, x):
        return np.where(x > 0, dy, np.zeros_like(dy)), {}


class ExpTanh(REGISTRY["tanh"]):
    def forward(self, x, params):
        e = np.exp(-2 * np.abs(x))
        y = np.sign(x) * (1 - e) / (1 + e)
        return y, y

    def backward(self, dy, params, y):
        return dy * (1 - y) * (1 + y), {}


class EinsumLinear(REGISTRY["linear"]):
    def forward(self, x, params):
        y = np.einsum("bi,oi->bo", x, params["weight"])
        if "bias" in params:
            y = y + params["bias"]
        return y, x

    def backward(self, dy, params, x):
        grads = {"weight": np.einsum("bo,bi->oi", dy, x)}
        if "bias" in params:
            grads["bias"] = dy.sum(axis=0)
        return np.einsum("bo,oi->bi", dy, params["weight"]), grads


class TextbookBatchNorm(REGISTRY["batchnorm2d"]):
    def forward(self, x, params):
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
        xhat = (x - mean) / np.sqrt(var + self.eps)
        w = params["weight"].reshape(1, -1, 1, 1)
        return w * xhat + params["bias"].reshape(1, -1, 1, 1), (xhat, var, w)

    def backward(self, dy, params, cache):
        xhat, var, w = cache
        m = dy.shape[0] * dy.shape[2] * dy.shape[3]
        dxhat = dy * w
        dx = (m * dxhat - dxhat.sum(axis=(0, 2, 3), keepdims=True)
              - xhat * (dxhat * xhat).sum(axis=(0, 2, 3), keepdims=True)) / (m * np.sqrt(var + self.eps))
        return dx, {"weight": (dy * xhat).sum(axis=(0, 2, 3)), "bias": dy.sum(axis=(0, 2, 3))}


class PiecewiseHardswish(REGISTRY["hardswish"]):
    def forward(self, x, params):
        return np.piecewise(x, [x < -3, (x >= -3) & (x <= 3), x > 3], [0, lambda v: v * (v + 3) / 6, lambda v: v]), x

    def backward(self, dy, params, x):
        # at the ends PyTorch gives the outer pieces' slopes: 0 at -3, 1 at 3
        return dy * np.piecewise(x, [x <= -3, (x > -3) & (x < 3), x >= 3], [0, lambda v: (2 * v + 3) / 6, 1]), {}


NET = config(
    [3, 12, 12], 1,
    "conv2d: {out_channels: 8, kernel_size: 3, padding: 1}", "batchnorm2d", "relu",
    "maxpool2d: {kernel_size: 2}", "hardswish", "residual: {body: [{conv2d: {out_channels: 8, kernel_size: 3, padding: 1}}, tanh]}",
    "relu", "flatten", "linear: {out_features: 10}",
)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("impl", [WhereReLU, ExpTanh, EinsumLinear, TextbookBatchNorm, PiecewiseHardswish], ids=lambda c: c.__name__)
def test_correct_implementations_pass_over_ten_seeds(impl: type, dtype: str) -> None:
    report = analyse(NET)
    for seed in range(10):
        result = verify(report, Options(impl=impl, seed=seed, dtype=dtype))
        assert result.passed, (seed, [c for c in result.checks if not c.passed])


def test_every_shipped_layer_type_passes_at_kinks_over_ten_seeds() -> None:
    text = config([4, 8, 8], 1, "relu6", "leakyrelu", "elu", "hardsigmoid", "maxpool2d: {kernel_size: 2, stride: 1}",
                  "avgpool2d: {kernel_size: 2}", "relu")
    for seed in range(10):
        for dtype in ("float64", "float32"):
            result = verify(analyse(text), Options(seed=seed, dtype=dtype))
            assert result.passed, (seed, dtype, [c for c in result.checks if not c.passed])


@pytest.mark.parametrize("type_name, which, factor", [
    ("linear", "x", -1.0), ("linear", "x", 0.0), ("linear", "x", 2.0), ("conv2d", "weight", 2.0),
])
def test_float32_lenet5_catches_what_it_used_to_pass(type_name: str, which: str, factor: float) -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "configs" / "lenet5.yaml").read_text()
    result = verify(analyse(text), Options(impl=scaled(type_name, which, factor), dtype="float32"))
    failed = [c for c in result.checks if not c.passed and c.method.startswith(NUMERIC)]
    assert failed and {c.type for c in failed if c.path != "(network)"} == {type_name}
    assert any(c.path == "(network)" for c in failed)  # the end-to-end check too


def test_directions_are_made_from_one_read_only_noise_pool() -> None:
    """A run draws its noise once: a direction is the product of two views of it (mean 0,
    variance 1), the pool is never written (a rescale changes the scale kept beside the
    direction), and what a direction adds and dots is u = scale · values."""
    import numpy as np

    from layercalc.verify.differences import DENSE_MAX, Direction, Noise, generator

    noise = Noise(np.random.default_rng(1), 64 * 64)
    rng = generator([0, 0], noise)
    pool = noise.pool.copy()  # uniform on ±√3: mean 0, variance 1
    assert not noise.pool.flags.writeable
    assert abs(pool.mean()) < 0.02 and abs(pool.var() - 1) < 0.02 and np.abs(pool).max() <= 3**0.5
    a, b = Direction((64, 64), 0.5, rng), Direction((64, 64), 0.5, rng)
    assert all(np.shares_memory(v, noise.pool) for v in (*a.views, *b.views))
    u = a.values()
    assert not np.array_equal(u, b.values())
    assert abs(u.mean()) < 0.05 and abs(u.var() - 0.25) < 0.04  # 0.5 · (mean 0, variance 1)
    np.testing.assert_allclose(u, 0.5 * a.views[0] * a.views[1])
    a.rescale(3.0)
    assert np.array_equal(noise.pool, pool)
    u = a.values()
    np.testing.assert_allclose(u, 1.5 * a.views[0] * a.views[1])
    assert a.max_abs() == pytest.approx(float(np.abs(u).max()))
    g = np.random.default_rng(2).standard_normal((64, 64))
    total, root = a.dot(g)
    assert total == pytest.approx(float((g.ravel() * u).sum())) and root == pytest.approx(float(np.linalg.norm(g.ravel() * u)))
    x = np.zeros((64, 64))
    a.add_to(x, 2.0)
    np.testing.assert_allclose(x.ravel(), 2.0 * u)
    big = rng.unit(DENSE_MAX + 1)  # above DENSE_MAX: a fresh array, and the pool stays bounded
    assert big.flags.writeable and noise.pool.size <= 2 * DENSE_MAX
    assert np.array_equal(noise.pool, pool)
    # 600,000 elements: formed in three spans of the reused buffer
    d = Direction((600, 1000), 0.7, generator([0, 1], Noise(np.random.default_rng(4), 600_000)))
    v = d.values()
    h = np.random.default_rng(5).standard_normal((600, 1000))
    assert d.dot(h)[0] == pytest.approx(float((h.ravel() * v).sum()))
    y = np.ones((600, 1000))
    d.add_to(y, -1.0)
    np.testing.assert_allclose(y.ravel(), 1.0 - v)
    assert d.max_abs() == pytest.approx(float(np.abs(v).max()))


def test_directions_sharing_the_pool_are_uncorrelated() -> None:
    """Views of 40,000 numbers from an 80,000-number pool overlap by two thirds on average. As
    products of two views, two directions give a constant error (the worst case for overlapping
    views) <e, u1> and <e, u2> with no correlation over 300 runs (300 pools); as single views,
    the correlation is the overlap, about 0.6."""
    import numpy as np

    from layercalc.verify.differences import Direction, Noise, generator

    e = np.ones(40_000)
    pairs = []
    for seed in range(300):
        rng = generator([seed, 1], Noise(np.random.default_rng([seed, 2]), 40_000))
        pairs.append([Direction((40_000,), 1.0, rng).dot(e)[0] for _ in range(2)])
    assert abs(np.corrcoef(np.array(pairs).T)[0, 1]) < 0.2


@pytest.mark.parametrize("size", [1_000, 100_000])  # kept as a copy, and too large to keep one (SAVE_MAX)
def test_a_quotient_leaves_its_arrays_where_they_were(size: int) -> None:
    """Moves are undone after each quotient: from a saved copy exactly, else by moving back (to
    within an ulp); a quotient that left a weight moved would shift every later check."""
    import numpy as np

    from layercalc.verify.differences import SAVE_MAX, Direction, KinkSides, central, forward_difference

    rng = np.random.default_rng(0)
    arr = rng.standard_normal(size)
    before = arr.copy()
    u = Direction((size,), 1.0, rng)
    g = rng.standard_normal(size)
    quotient, _ = central(lambda watch: np.sin(arr), g, [(arr, u)], 1e-3)
    np.testing.assert_allclose(arr, before, rtol=0, atol=1e-15 if size <= SAVE_MAX else 1e-12)
    assert quotient == pytest.approx(float((g * np.cos(before) * u.values()).sum()), rel=1e-5)
    forward_difference(lambda watch: np.sin(arr), g, [(arr, u)], 1e-3, (np.sin(before), KinkSides()))
    np.testing.assert_allclose(arr, before, rtol=0, atol=1e-15 if size <= SAVE_MAX else 1e-12)


def test_a_float32_block_is_judged_in_float64_and_a_wrong_one_still_fails(monkeypatch) -> None:
    """densenet121's first dense block (6 layers of batchnorm, ReLU and conv, concatenated) checked
    whole in float32: on some CPUs a ReLU input within float32 rounding of its kink falls on the
    other side of it than in the float64 numbers, and the directional check fails by a whole term.
    Whether it does depends on the CPU's kernels, so the test plants an error that only float32
    arithmetic makes (in concat's gradient): the block's float32 check fails, it is judged again in
    float64, where it passes (its layers keep their float32 checks); a concat that drops a branch's
    gradient in every dtype fails there too."""
    from layercalc.layers.blocks import Concat

    options = Options(dtype="float32", only=("denseblock1",))
    assert verify(analyse(ROOT / "configs" / "densenet121.yaml"), options).passed  # whichever way this CPU rounds

    split = Concat.split

    def float32_only_error(self, dy, outs):
        return [d * np.float32(1.01) if d.dtype == np.float32 else d for d in split(self, dy, outs)]

    monkeypatch.setattr(Concat, "split", float32_only_error)
    result = verify(analyse(ROOT / "configs" / "densenet121.yaml"), options)
    assert result.passed
    block = [c for c in result.checks if c.path == "denseblock1" and c.method.startswith("direction")]
    assert block and all("in float64 (the float32 check failed" in c.note for c in block)
    monkeypatch.setattr(Concat, "split", lambda self, dy, outs: [dy[:, :o.shape[1]] * 0 for o in outs])
    broken = verify(analyse(ROOT / "configs" / "densenet121.yaml"), options)
    assert any(not c.passed and c.path == "denseblock1" and c.method.startswith("direction") for c in broken.checks)


@pytest.mark.parametrize(
    "values",
    [
        [0.0, 0.0, 1.5, -0.2],  # a ReLU's zeros: tied
        [0.0, -0.0, 2.0, 3.0],  # a signed zero ties with zero
        [0.0, 1.0, 2.0, 3.0],  # one zero, the rest apart: no tie
        [0.0, 0.0, float("nan"), 1.0],  # a NaN: the sorted gaps decide (a NaN gap ties nothing)
        [0.5, 0.5 + 1e-9, 2.0, 3.0],  # a near-tie, no zero
    ],
)
def test_a_max_pools_ties_are_found_as_by_the_sorted_gaps(values: list[float]) -> None:
    """Whether the derivative of a max pool is undefined at its input: the same answer as the
    smallest gap between the sorted inputs gives, zeros counted without sorting or not."""
    from layercalc.verify import build_network
    from layercalc.verify.checks import _undefined_at
    from layercalc.verify.differences import scale_of

    leaf = build_network(analyse("input: [1, 2, 2]\nlayers:\n  - maxpool2d: {kernel_size: 2}\n"), Options()).leaves()[0]
    x = np.asarray(values).reshape(1, 1, 2, 2)
    step = Options().step
    with np.errstate(invalid="ignore"):
        by_sort = float(np.min(np.diff(np.sort(x.ravel())))) <= 4 * step * scale_of(x)
    assert bool(_undefined_at(leaf, x, step)) == by_sort
