"""verify's plan: what runs, what is reported from an identical twin, what is skipped, and the
memory estimate a plan relies on. Expected sets come from the config's structure."""

from __future__ import annotations

from pathlib import Path

import pytest

from layercalc import analyse
from layercalc.verify import Options
from layercalc.verify.memory import DEFAULT_CAP
from layercalc.verify.planning import places, plan_tasks

ROOT = Path(__file__).resolve().parent.parent


def test_every_layer_of_a_batch_1_config_is_checked_at_batch_2() -> None:
    """Each leaf's batch-2 copy runs, or is reported from a copy with the same type, arguments and input."""
    report = analyse(ROOT / "configs" / "resnet18.yaml")
    leaves = {p for e, p, _, _ in places(report) if not e.children}
    tasks, skipped = plan_tasks(report, Options())
    covered: dict[str, object] = {}
    for t in tasks:
        if t.batch2:
            for p in [t.path, *(p for p, _, _ in t.places)]:
                covered[p] = t
    assert set(covered) == leaves and not skipped
    for p, t in covered.items():  # a twin stands for a place only when it is the same layer
        entry = next(e for e, q, _, _ in places(report) if q == p)
        assert (t.entry.type, t.entry.layer.arguments()) == (entry.type, entry.layer.arguments()), (p, t.path)


def _measured_peak(text: str, path: str) -> tuple[int, int]:
    """(estimated bytes, measured peak bytes of NumPy arrays) of one layer's own check, run as
    verify runs it: its directions and weights made from a noise pool (in the estimate too)."""
    import tracemalloc

    import numpy as np

    from layercalc.verify.checks import check_instance
    from layercalc.verify.differences import DENSE_MAX, SPAN, Noise, generator
    from layercalc.verify.execution import build
    from layercalc.verify.memory import BYTES_PER_NOISE, check_memory, largest_tensors

    report = analyse(text)
    entry = next(e for e, p, _, _ in places(report) if p == path)
    pooled = min(DENSE_MAX, max(largest_tensors(entry)))  # as a run whose largest tensor is this check's
    tracemalloc.start()
    try:
        rng = generator([0, 0], Noise(np.random.default_rng(1), pooled))
        inst = build(entry, path, entry.name, rng)
        tracemalloc.reset_peak()
        rows = check_instance(inst, Options(), rng)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert all(r.passed for r in rows)
    return check_memory(entry) + BYTES_PER_NOISE * (2 * pooled + min(SPAN, pooled)), peak


@pytest.mark.parametrize("extra", ["", ", proj_size: 64", ", proj_size: 64, bidirectional: true"])
def test_memory_estimate_counts_a_recurrent_layers_gate_caches(extra: str) -> None:
    """An LSTM keeps 8 arrays of (N, hidden) per step for its backward: 2 layers x 64 steps x
    8 x 16 x 256 float64 = 16.8 MB of gates, far more than its input and output (2 x 16 x 64 x 256);
    with a projection, m and dL/dm of every step besides."""
    text = "input: [64, 32]\nbatch: 16\nlayers:\n  - lstm: {hidden_size: 256, num_layers: 2%s}\n" % extra
    estimate, peak = _measured_peak(text, "lstm1")
    assert peak > 2 * 64 * 8 * 16 * 256 * 8  # the gates are really there
    assert peak <= estimate <= 3 * peak, (estimate, peak)


def test_memory_estimate_counts_attention_score_matrices() -> None:
    """8 heads x 256 x 256 scores, softmax and their gradients dominate a 256 x 64 input."""
    text = "input: [256, 64]\nlayers:\n  - attention: {num_heads: 8}\n"
    estimate, peak = _measured_peak(text, "attention1")
    assert peak > 2 * 8 * 256 * 256 * 8
    assert peak <= estimate <= 3 * peak, (estimate, peak)


def test_memory_estimate_counts_a_tied_weight_its_check_holds() -> None:
    """A head tied to the embedding adds no parameter to the count, but its check holds the
    8,000 x 64 weight, its gradient and the matrix product's temporaries like any other."""
    text = ("input: [16]\nlayers:\n  - embedding: {num_embeddings: 8000, embedding_dim: 64}\n    name: wte\n"
            "  - linear: {out_features: 8000, bias: false, tied_to: wte}\n    name: head\n")
    estimate, peak = _measured_peak(text, "head")
    assert peak > 2 * 8000 * 64 * 8  # the weight and its gradient are really there
    assert peak <= estimate <= 3 * peak, (estimate, peak)


def test_llama3_8b_plans_every_layer_within_the_default_budget() -> None:
    """Only the network end to end is skipped; every layer and block runs, at a shorter input or
    as a smaller copy where its own size does not fit, and says so."""
    report = analyse(ROOT / "configs" / "llama3_8b.yaml")
    tasks, skipped = plan_tasks(report, Options(max_memory=DEFAULT_CAP))
    leaves = {p for e, p, _, _ in places(report) if not e.children}
    covered = {p for t in tasks if not t.batch2 for p in [t.path, *(q for q, _, _ in t.places), *t.inner]}
    assert leaves <= covered
    assert all(t.need <= DEFAULT_CAP for t in tasks)
    assert [(s.path, s.check) for s in skipped] == [("(network)", "end to end")]
    blocks = {t.path: t for t in tasks if t.entry.children}
    assert {"layers", "layers.0", "layers.0.1", "layers.0.1.body.mlp"} <= set(blocks)
    # the 32 decoder layers: two copies, the MLP's hidden width (14,336) halved in both of its
    # projections; the attention and the 4,096-wide residual stream unchanged
    repeat = blocks["layers"]
    assert repeat.reduced.startswith("checked as a smaller copy, 2 copies (of 32); out_features ")
    assert "(of 14336) in gate_proj, up_proj" in repeat.reduced
    assert repeat.entry.copies == 2 and repeat.entry.output_shape[-1] == 4096
    lm_head = next(t for t in tasks if t.path == "lm_head" and not t.batch2)
    assert lm_head.reduced.startswith("checked as a smaller copy, out_features ") and "(of 128256)" in lm_head.reduced
    attn = next(t for t in tasks if t.path == "layers.0.0.body.self_attn" and not t.batch2)
    assert attn.entry.layer.arguments() == report.entries[1].children[0].children[0].children[1].layer.arguments()
    assert attn.reduced.startswith("checked at input 1x") and attn.entry.input_shape[2] == 4096


def test_a_check_taking_minutes_runs_on_a_shorter_input_with_the_same_weights() -> None:
    """gpt2's tied output head: 1024 x 768 x 50,257 = 3.95e10 MACs a forward at its own input. It is
    checked on fewer tokens with the very same (tied) 50,257 x 768 weight, and says why."""
    report = analyse(ROOT / "configs" / "gpt2.yaml")
    # a budget the head fits at its own input (with the run's 67 MB noise pool beside it), fixed
    # so the plan does not depend on what else the machine holds: the MACs alone shorten it
    tasks, _ = plan_tasks(report, Options(max_memory=4 * 10**9))
    head = next(t for t in tasks if t.path == "lm_head" and not t.batch2)
    assert head.reduced.startswith("checked at input 1x32x768: at its own input 1x1024x768 its forward alone takes 3.95e+10")
    assert head.entry.layer.param_shapes(head.entry.input_shape) == {"weight": (50257, 768)}


BLOCKS = """input: [4, 64]
layers:
  - residual:
      body:
        - linear: {out_features: 1024}
          name: up
        - relu
        - linear: {out_features: 64}
          name: down
    repeat: 6
    name: blocks
"""


def _leaf_args(entry) -> dict[str, dict]:
    """{leaf name: arguments} of every leaf under an entry."""
    if not entry.children:
        return {entry.name: entry.layer.arguments()}
    return {k: v for c in entry.children for k, v in _leaf_args(c).items()}


def test_a_block_above_the_budget_is_checked_as_a_smaller_copy_of_its_structure() -> None:
    """Each residual (64 -> 1024 -> 64, 132,160 params) is over a 3.5 MB budget (1 MB of it the
    run's noise pool, twice the 65,536-element `up` weight): its copy halves the
    hidden width in `up` only (halving `down` would break the add). The 6-copy repeat runs 2
    copies, each halved further. The network alone is skipped."""
    report = analyse(BLOCKS)
    tasks, skipped = plan_tasks(report, Options(max_memory=3_500_000, batch2=False))
    by_path = {t.path: t for t in tasks}
    assert [s.path for s in skipped] == ["(network)"]
    block = by_path["blocks.0"]
    assert block.reduced.startswith("checked as a smaller copy, out_features 512 (of 1024) in up: ")
    assert _leaf_args(block.entry)["up"]["out_features"] == 512
    assert _leaf_args(block.entry)["down"]["out_features"] == 64
    assert block.entry.params == 64 * 512 + 512 + 512 * 64 + 64
    repeat = by_path["blocks"]
    assert repeat.reduced.startswith("checked as a smaller copy, 2 copies (of 6); out_features ")
    assert repeat.entry.copies == 2 and repeat.entry.type == "repeat"
    assert all(t.need <= 2_500_000 for t in tasks)  # the budget less the pool


def test_a_reduced_block_check_catches_a_wrong_merge_gradient(monkeypatch) -> None:
    """A residual that passes no gradient through its shortcut: no layer's own check can see it,
    only the block's, which runs here as a smaller copy. Correct, the same run passes."""
    from layercalc.layers.blocks import Residual
    from layercalc.verify import verify

    options = Options(max_memory=3_500_000, batch2=False)
    assert verify(analyse(BLOCKS), options).passed
    monkeypatch.setattr(Residual, "split", lambda self, dy, outs: [dy, 0 * dy])
    result = verify(analyse(BLOCKS), options)
    failed = {c.path for c in result.checks if not c.passed}
    assert {"blocks.0", "blocks"} <= failed, failed
    assert not any(c.path.endswith(("up", "down")) for c in result.checks if not c.passed)


CONV3D = """input: [16, 24, 24, 24]
layers:
  - conv3d: {out_channels: 16, kernel_size: 3, padding: 1}
    name: stem
  - residual:
      body:
        - conv3d: {out_channels: 16, kernel_size: 3, padding: 1}
        - relu
        - conv3d: {out_channels: 16, kernel_size: 3, padding: 1}
    name: block
"""


@pytest.mark.parametrize("budget", [60_000_000, 120_000_000])
def test_a_3d_conv_run_stays_within_its_memory_budget(budget: int) -> None:
    """A 3x3x3 conv keeps columns 27 times its input for its backward, and its backward makes
    their gradient: the plan must count them, or the pass over the block (its convs' columns held
    while each conv is checked again inside it) runs far above the budget the plan promised."""
    import tracemalloc

    from layercalc.verify import verify

    report = analyse(CONV3D)
    tracemalloc.start()
    try:
        result = verify(report, Options(max_memory=budget))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.passed and len(result.checks) > 10
    assert peak <= budget, (peak, budget)


def test_a_block_with_explicit_widths_halves_them_together() -> None:
    """`up` gives out_features 1024 and `down` in_features 1024: halving either alone breaks the
    block, both together keep it whole; the note names each."""
    text = BLOCKS.replace("{out_features: 1024}", "{in_features: 64, out_features: 1024}").replace(
        "{out_features: 64}", "{in_features: 1024, out_features: 64}")
    tasks, skipped = plan_tasks(analyse(text), Options(max_memory=3_500_000, batch2=False))
    assert [s.path for s in skipped] == ["(network)"]
    block = next(t for t in tasks if t.path == "blocks.0")
    assert "out_features 512 (of 1024) in up; in_features 512 (of 1024) in down" in block.reduced
    assert _leaf_args(block.entry)["down"]["in_features"] == 512


def test_a_copy_the_layer_refuses_is_passed_over_not_raised() -> None:
    """Halving the vocabulary would put padding_idx 19,999 outside it, which the embedding refuses:
    that halving is passed over (the block is reduced another way), and verify still runs."""
    text = ("input: [1]\nlayers:\n  - sequential:\n      layers:\n"
            "        - embedding: {num_embeddings: 20000, embedding_dim: 32, padding_idx: 19999}\n"
            "        - linear: {out_features: 20000}\n          name: head\n    name: lm\n")
    tasks, skipped = plan_tasks(analyse(text), Options(max_memory=30_000_000, batch2=False))
    lm = next(t for t in tasks if t.path == "lm")
    assert lm.reduced.startswith("checked as a smaller copy, out_features ") and "(of 20000) in head" in lm.reduced
    assert "num_embeddings" not in lm.reduced  # the vocabulary stays: padding_idx needs it
    assert [s.path for s in skipped] == ["(network)"]


@pytest.mark.parametrize("text", [CONV3D, BLOCKS, (ROOT / "configs" / "lenet5.yaml").read_text(),
                                  (ROOT / "configs" / "gru_classifier.yaml").read_text()])
def test_the_noise_pool_is_drawn_once_and_counted_in_the_plan(text: str, monkeypatch) -> None:
    """The pool every direction and weight is a view of is drawn at its final size before the
    first check (it never grows mid-run), and the plan leaves room for it beside every check."""
    from layercalc.verify import differences, verify
    from layercalc.verify.memory import noise_bytes, noise_elements
    from layercalc.verify.planning import network_entry

    made: list = []
    init = differences.Noise.__init__

    def recording(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        made.append((self, self.pool.size))

    monkeypatch.setattr(differences.Noise, "__init__", recording)
    report = analyse(text)
    assert verify(report, Options()).passed
    (noise, size), = made
    assert noise.pool.size == size == noise_elements(network_entry(report))
    pool = noise_bytes(network_entry(report))  # the pool and the buffer directions are formed in
    budget = pool + 1_000_000  # 1 MB beside them: the larger checks are cut to fit
    tasks, _ = plan_tasks(report, Options(max_memory=budget))
    assert any(t.reduced for t in tasks)
    assert all(t.need + pool <= budget for t in tasks)


def test_a_copy_halved_to_one_says_so() -> None:
    """A 4,096 -> 2 linear over a 465 KB budget (197 KB of it the noise pool and its buffer) runs as a copy with
    one output, and its note says so (an argument of 1 is still a change)."""
    text = "input: [4096]\nlayers:\n  - linear: {out_features: 2}\n    name: fc\n"
    tasks, _ = plan_tasks(analyse(text), Options(max_memory=465_000, batch2=False))
    fc = next(t for t in tasks if t.path == "fc")
    assert fc.reduced.startswith("checked as a smaller copy, out_features 1 (of 2): "), fc.reduced


def test_a_tied_head_too_large_runs_as_a_smaller_copy() -> None:
    """gpt2's head adds no parameter (tied to wte) but its check holds the 50,257 x 768 weight:
    under a 500 MB budget it runs as a copy with fewer outputs, not skipped."""
    report = analyse(ROOT / "configs" / "gpt2.yaml")
    tasks, skipped = plan_tasks(report, Options(max_memory=500_000_000))
    head = next(t for t in tasks if t.path == "lm_head" and not t.batch2)
    assert head.reduced.startswith("checked as a smaller copy, out_features ") and "(of 50257)" in head.reduced
    assert "lm_head" not in {s.path for s in skipped}
