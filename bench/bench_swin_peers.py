"""What each peer tool counts for window attention, measured on torchvision's own modules: its
ShiftedWindowAttention (Swin-T's first shifted block, 1x56x56x96, 3 heads, window 7, shift 3) and
the whole swin_t at 224x224, batch 1; beside each, layercalc's figure under that convention
(configs/swin_t.yaml, and the same block as a one-layer config). The README's window-attention
table comes from this output.

torchvision cannot be installed beside this torch build; a wheel of it in a directory of its own
is enough (its Python models run without its C ops):
    pip install --no-deps --target DIR torchvision
    env --chdir=/tmp LAYERCALC_TORCHVISION=DIR PYTHONPATH=<checkout> python <checkout>/bench/bench_swin_peers.py
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import types
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("torch", "fvcore", "thop", "ptflops", "torchinfo")


def swin_module() -> Any:
    """torchvision.models.swin_transformer, importing a wheel built for another torch without its C ops."""
    extra = os.environ.get("LAYERCALC_TORCHVISION")
    if extra:
        sys.path.insert(0, extra)
    try:
        import torchvision  # noqa: F401
    except RuntimeError:  # its C ops do not load: skip their meta registrations, which need them
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    from torchvision.models import swin_transformer

    return swin_transformer


def tool_counts(model: Any, x: Any) -> dict[str, int]:
    """MACs as each tool reports them (FlopCounterMode: FLOPs / 2), eval, torch.no_grad()."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    logging.getLogger("fvcore").setLevel(logging.CRITICAL)
    out: dict[str, int] = {}
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
        out["torch"] = counter.get_total_flops() // 2
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, (x,))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        out["fvcore"] = int(analysis.total())
        import thop

        out["thop"] = int(thop.profile(model, inputs=(x,), verbose=False)[0])
        import ptflops

        macs, _ = ptflops.get_model_complexity_info(model, tuple(x.shape[1:]), input_constructor=lambda _: x,
                                                    as_strings=False, backend="pytorch",
                                                    print_per_layer_stat=False, verbose=False)
        out["ptflops"] = int(macs)
        import torchinfo

        out["torchinfo"] = int(torchinfo.summary(model, input_data=x, verbose=0).total_mult_adds)
    return out


def main() -> None:
    swin = swin_module()
    import torch

    from layercalc import analyse
    from layercalc.conventions import Costing

    block = {"input": [56, 56, 96], "layers": [{"windowattention": {"num_heads": 3, "window_size": 7, "shift_size": 3}}]}
    cases = [
        ("ShiftedWindowAttention 1x56x56x96", swin.ShiftedWindowAttention(96, [7, 7], [3, 3], 3).eval(),
         torch.randn(1, 56, 56, 96), analyse(block)),
        ("swin_t 1x3x224x224", swin.swin_t().eval(), torch.randn(1, 3, 224, 224), analyse(ROOT / "configs" / "swin_t.yaml")),
    ]
    print(f"{'model':36} {'tool':10} {'tool says':>15} {'layercalc --convention':>24}  match")
    for name, model, x, report in cases:
        measured = tool_counts(model, x)
        for tool in TOOLS:
            ours = Costing(report, tool).total() or 0
            print(f"{name:36} {tool:10} {measured[tool]:>15,} {ours:>24,}  {'yes' if ours == measured[tool] else 'NO'}")
        print(f"{name:36} {'layercalc':10} {'':>15} {report.total['macs']:>24,}")


if __name__ == "__main__":
    main()
