"""verify's plan: what runs, what is reported from an identical twin, what is skipped, and the
memory estimate a plan relies on. Expected sets come from the config's structure."""

from __future__ import annotations

from pathlib import Path

from layercalc import analyse
from layercalc.verify import Options
from layercalc.verify.memory import DEFAULT_CAP
from layercalc.verify.planning import places, plan_tasks

ROOT = Path(__file__).resolve().parent.parent


def test_every_layer_of_a_batch_1_config_is_checked_at_batch_2() -> None:
    """Each leaf's batch-2 copy runs, or is reported from a copy with the same type, arguments and input."""
    report = analyse(ROOT / "configs" / "resnet18.yaml")
    leaves = {p for e, p, _, _ in places(report.entries, "") if not e.children}
    tasks, skipped = plan_tasks(report, Options())
    covered: dict[str, object] = {}
    for t in tasks:
        if t.batch2:
            for p in [t.path, *(p for p, _ in t.places)]:
                covered[p] = t
    assert set(covered) == leaves and not skipped
    for p, t in covered.items():  # a twin stands for a place only when it is the same layer
        entry = next(e for e, q, _, _ in places(report.entries, "") if q == p)
        assert (t.entry.type, t.entry.layer.arguments()) == (entry.type, entry.layer.arguments()), (p, t.path)


def _measured_peak(text: str, path: str) -> tuple[int, int]:
    """(estimated bytes, measured peak bytes of NumPy arrays) of one layer's own check."""
    import tracemalloc

    import numpy as np

    from layercalc.verify.checks import check_instance
    from layercalc.verify.execution import build
    from layercalc.verify.memory import check_memory

    report = analyse(text)
    entry = next(e for e, p, _, _ in places(report.entries, "") if p == path)
    tracemalloc.start()
    try:
        rng = np.random.default_rng(0)
        inst = build(entry, path, entry.name, rng)
        tracemalloc.reset_peak()
        rows = check_instance(inst, Options(), rng)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert all(r.passed for r in rows)
    return check_memory(entry), peak


def test_memory_estimate_counts_a_recurrent_layers_gate_caches() -> None:
    """An LSTM keeps 8 arrays of (N, hidden) per step for its backward: 2 layers x 64 steps x
    8 x 16 x 256 float64 = 16.8 MB of gates, far more than its input and output (2 x 16 x 64 x 256)."""
    text = "input: [64, 32]\nbatch: 16\nlayers:\n  - lstm: {hidden_size: 256, num_layers: 2}\n"
    estimate, peak = _measured_peak(text, "lstm1")
    assert peak > 2 * 64 * 8 * 16 * 256 * 8  # the gates are really there
    assert peak <= estimate <= 3 * peak, (estimate, peak)


def test_memory_estimate_counts_attention_score_matrices() -> None:
    """8 heads x 256 x 256 scores, softmax and their gradients dominate a 256 x 64 input."""
    text = "input: [256, 64]\nlayers:\n  - attention: {num_heads: 8}\n"
    estimate, peak = _measured_peak(text, "attention1")
    assert peak > 2 * 8 * 256 * 256 * 8
    assert peak <= estimate <= 3 * peak, (estimate, peak)


def test_llama3_8b_plans_every_layer_within_the_default_budget() -> None:
    """Only checks spanning blocks whose parameters alone exceed the budget are skipped (the
    network end to end, the 32-layer repeat, a decoder layer and its MLP); every layer runs, at
    a shorter input or as a smaller copy where its own size does not fit, and says so."""
    from layercalc.verify.memory import DEFAULT_CAP

    report = analyse(ROOT / "configs" / "llama3_8b.yaml")
    tasks, skipped = plan_tasks(report, Options(max_memory=DEFAULT_CAP))
    leaves = {p for e, p, _, _ in places(report.entries, "") if not e.children}
    covered = {p for t in tasks if not t.batch2 for p in [t.path, *(q for q, _ in t.places), *t.inner]}
    assert leaves <= covered
    assert all(t.need <= DEFAULT_CAP for t in tasks)
    assert {s.path for s in skipped} == {"(network)", "layers", "layers.0", "layers.0.1", "layers.0.1.body.mlp"}
    assert all(s.type != "network" or s.check == "end to end" for s in skipped)
    lm_head = next(t for t in tasks if t.path == "lm_head" and not t.batch2)
    assert lm_head.reduced.startswith("checked as a smaller copy, out_features ") and "(of 128256)" in lm_head.reduced
    attn = next(t for t in tasks if t.path == "layers.0.0.body.self_attn" and not t.batch2)
    assert attn.entry.layer.arguments() == report.entries[1].children[0].children[0].children[1].layer.arguments()
    assert attn.reduced.startswith("checked at input 1x") and attn.entry.input_shape[2] == 4096


def test_a_check_taking_minutes_runs_on_a_shorter_input_with_the_same_weights() -> None:
    """gpt2's tied output head: 1024 x 768 x 50,257 = 3.95e10 MACs a forward at its own input. It is
    checked on fewer tokens with the very same (tied) 50,257 x 768 weight, and says why."""
    report = analyse(ROOT / "configs" / "gpt2.yaml")
    # the default budget is half the memory free now, at most DEFAULT_CAP: fixed here, so the plan
    # does not depend on what else the machine holds
    tasks, _ = plan_tasks(report, Options(max_memory=DEFAULT_CAP))
    head = next(t for t in tasks if t.path == "lm_head" and not t.batch2)
    assert head.reduced.startswith("checked at input 1x32x768: at its own input 1x1024x768 its forward alone takes 3.95e+10")
    assert head.entry.layer.param_shapes(head.entry.input_shape) == {"weight": (50257, 768)}
