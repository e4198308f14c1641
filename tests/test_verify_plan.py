"""verify's plan: what runs, what is reported from an identical twin, what is skipped, and the
memory estimate a plan relies on. Expected sets come from the config's structure."""

from __future__ import annotations

from pathlib import Path

from layercalc import analyse
from layercalc.verify import Options
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
