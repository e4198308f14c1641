"""Loading a config written with templates against the same network written out by hand.

configs/resnet50.yaml builds its 16 bottlenecks from two templates; the same network with every
block written out (as the file read before templates) is generated here. Both must give the same
totals; the templated one may take at most 10% longer. Printed: the medians of whole
`layercalc params CONFIG --total` processes (CPU time, the steadier figure on a shared machine),
and of load + analyse in this process, each with the ratio templated / written out.

    python bench/bench_templates.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from process_time import ROOT, process_seconds  # noqa: E402

from layercalc import analyse  # noqa: E402

TEMPLATED = ROOT / "configs" / "resnet50.yaml"
STAGES = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]  # (width, blocks, first stride)


def _block(width: int, stride: int, down: bool) -> str:
    s = f"stride: {stride}, " if stride != 1 else ""
    text = f"""        - sequential:
            layers:
            - residual:
                body:
                  - conv2d: {{out_channels: {width}, kernel_size: 1, bias: false}}
                  - batchnorm2d
                  - relu
                  - conv2d: {{out_channels: {width}, kernel_size: 3, {s}padding: 1, bias: false}}
                  - batchnorm2d
                  - relu
                  - conv2d: {{out_channels: {width * 4}, kernel_size: 1, bias: false}}
                  - batchnorm2d
"""
    if down:
        text += f"""                shortcut:
                  - conv2d: {{out_channels: {width * 4}, kernel_size: 1, {s}bias: false}}
                  - batchnorm2d
"""
    return text + "            - relu\n"


def written_out() -> str:
    """resnet50 with every bottleneck written out, no templates."""
    text = """name: resnet50
input: [3, 224, 224]
layers:
  - conv2d: {out_channels: 64, kernel_size: 7, stride: 2, padding: 3, bias: false}
    name: conv1
  - batchnorm2d:
    name: bn1
  - relu
  - maxpool2d: {kernel_size: 3, stride: 2, padding: 1}
"""
    for i, (width, blocks, stride) in enumerate(STAGES, 1):
        text += "  - sequential:\n      layers:\n"
        text += "".join(_block(width, stride if b == 0 else 1, b == 0) for b in range(blocks))
        text += f"    name: layer{i}\n"
    return text + """  - adaptiveavgpool2d: {output_size: 1}
    name: avgpool
  - flatten
  - linear: {out_features: 1000}
    name: fc
"""


def in_process(path: str, runs: int) -> float:
    """Median seconds of load + analyse + totals of one config, in this process."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        analyse(path).total  # noqa: B018 (the totals are the work measured)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        plain = os.path.join(tmp, "resnet50_written_out.yaml")
        Path(plain).write_text(written_out())
        a, b = analyse(str(TEMPLATED)).total, analyse(plain).total
        assert a == b, "the templated config and the written-out one differ"
        print(f"resnet50: {a['params']:,} params, {a['macs']:,} MACs in both; "
              f"{len(TEMPLATED.read_text().splitlines())} lines templated, {len(written_out().splitlines())} written out")
        for label, measure in (
            ("process CPU time, params --total", lambda p: statistics.median(
                process_seconds(["params", p, "--total"], clock="cpu") for _ in range(runs))),
            ("load + analyse in process", lambda p: in_process(p, runs)),
        ):
            written, templated = measure(plain), measure(str(TEMPLATED))
            print(f"{label}: written out {written * 1000:.1f} ms, templated {templated * 1000:.1f} ms, "
                  f"ratio {templated / written:.3f} (medians of {runs})")


if __name__ == "__main__":
    main()
