"""Accelerator presets: dense peak FLOP/s per precision, memory and memory bandwidth, with sources.

Every figure is the vendor's published one for one device (one GPU, one TPU chip), dense: where a
datasheet quotes 2:4 structured sparsity ("with sparsity"), the dense figure is half of it.
Memory is taken as the datasheet states it, in decimal units (80 GB = 80e9 bytes) unless the
source says GiB; what a framework can allocate is somewhat less (driver and context reserve some).
"""

from __future__ import annotations

import sys
from fractions import Fraction
from typing import NamedTuple

from .errors import UsageError

TERA = 10**12
GIGA = 10**9
GIB = 2**30

# the matmul precisions a peak can be asked for; each dtype of a config maps to one of them
PRECISIONS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")
DTYPE_PRECISION = {"float64": "fp64", "float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "int8": "int8"}


class Gpu(NamedTuple):
    """One accelerator: dense peak FLOP/s per precision, memory (bytes), bandwidth (bytes/s), source."""

    name: str
    title: str
    peak: dict[str, float]  # precision -> FLOP/s (OP/s for int8), dense
    memory: int  # bytes
    bandwidth: float  # bytes/s
    source: str

    def peak_for(self, precision: str) -> float:
        """Dense peak FLOP/s at a precision; UsageError if the device has no such matmul path."""
        if precision not in self.peak:
            have = ", ".join(self.peak)
            raise UsageError(f"{self.name} has no published {precision} peak (it lists {have}); give --peak-tflops")
        return self.peak[precision]


def _tf(**figures: float) -> dict[str, float]:
    """Precision -> FLOP/s from TFLOP/s figures."""
    return {k: v * TERA for k, v in figures.items()}


GPUS: dict[str, Gpu] = {g.name: g for g in (
    Gpu("a100-40gb", "NVIDIA A100 40GB SXM", _tf(fp64=19.5, fp32=19.5, tf32=156, bf16=312, fp16=312, int8=624),
        40 * GIGA, 1555 * GIGA, "NVIDIA A100 Tensor Core GPU datasheet"),
    Gpu("a100-80gb", "NVIDIA A100 80GB SXM", _tf(fp64=19.5, fp32=19.5, tf32=156, bf16=312, fp16=312, int8=624),
        80 * GIGA, 2039 * GIGA, "NVIDIA A100 Tensor Core GPU datasheet"),
    Gpu("h100-sxm", "NVIDIA H100 SXM", _tf(fp64=67, fp32=67, tf32=494.5, bf16=989.5, fp16=989.5, fp8=1979, int8=1979),
        80 * GIGA, 3350 * GIGA, "NVIDIA H100 Tensor Core GPU datasheet (sparse halved)"),
    Gpu("h100-pcie", "NVIDIA H100 PCIe", _tf(fp64=51, fp32=51, tf32=378, bf16=756, fp16=756, fp8=1513, int8=1513),
        80 * GIGA, 2000 * GIGA, "NVIDIA H100 Tensor Core GPU datasheet (sparse halved)"),
    Gpu("h200", "NVIDIA H200 SXM", _tf(fp64=67, fp32=67, tf32=494.5, bf16=989.5, fp16=989.5, fp8=1979, int8=1979),
        141 * GIGA, 4800 * GIGA, "NVIDIA H200 Tensor Core GPU datasheet (sparse halved)"),
    Gpu("b200", "NVIDIA B200 (HGX)", _tf(fp64=37, fp32=75, tf32=1100, bf16=2250, fp16=2250, fp8=4500, int8=4500),
        180 * GIGA, 7700 * GIGA, "NVIDIA HGX B200 datasheet, per GPU (sparse halved)"),
    Gpu("l4", "NVIDIA L4", _tf(fp32=30.3, tf32=60, bf16=121, fp16=121, fp8=242.5, int8=242.5),
        24 * GIGA, 300 * GIGA, "NVIDIA L4 Tensor Core GPU datasheet (sparse halved)"),
    Gpu("l40s", "NVIDIA L40S", _tf(fp32=91.6, tf32=183, bf16=362.05, fp16=362.05, fp8=733, int8=733),
        48 * GIGA, 864 * GIGA, "NVIDIA L40S GPU datasheet (sparse halved)"),
    Gpu("rtx-4090", "NVIDIA GeForce RTX 4090", _tf(fp32=82.6, tf32=82.6, bf16=165.2, fp16=165.2, fp8=330.3, int8=660.6),
        24 * GIGA, 1008 * GIGA, "NVIDIA Ada GPU architecture whitepaper (FP32 accumulate)"),
    Gpu("mi300x", "AMD Instinct MI300X", _tf(fp64=163.4, fp32=163.4, tf32=653.7, bf16=1307.4, fp16=1307.4, fp8=2614.9,
                                              int8=2614.9),
        192 * GIGA, 5300 * GIGA, "AMD Instinct MI300X accelerator datasheet (dense)"),
    Gpu("tpu-v4", "Google Cloud TPU v4 (one chip)", _tf(bf16=275, int8=275),
        32 * GIB, 1200 * GIGA, "Google Cloud TPU v4 documentation (32 GiB HBM)"),
    Gpu("tpu-v5e", "Google Cloud TPU v5e (one chip)", _tf(bf16=197, int8=394),
        16 * GIGA, 819 * GIGA, "Google Cloud TPU v5e documentation"),
)}


def gpu(name: str) -> Gpu:
    """The preset of a name (any case); UsageError with the known names otherwise."""
    key = name.strip().lower()
    if key not in GPUS:
        from .config import suggest  # only on the way to an error message

        raise UsageError(f"unknown GPU {name!r}{suggest(key, GPUS)}; known: {', '.join(GPUS)}")
    return GPUS[key]


def custom(base: Gpu | None, peak_tflops: float | None, memory_gb: float | None, bandwidth_gbs: float | None,
           precision: str, needs_bandwidth: bool = True) -> Gpu:
    """A preset with figures overridden (or a device described only by them); UsageError if one the
    plan reads is missing (a training plan reads no bandwidth)."""
    for flag, value, unit in (("--peak-tflops", peak_tflops, TERA), ("--gpu-memory", memory_gb, GIGA),
                              ("--bandwidth", bandwidth_gbs, GIGA)):
        if value is not None and not (0 < value < float("inf")):
            raise UsageError(f"{flag} must be a positive number, got {value}")
        if value is not None and value * unit == float("inf"):  # finite in TFLOP/s or GB, not in FLOP/s or bytes
            raise UsageError(f"{flag} {value:g} is too large")
    if base is None:
        asked = (("--peak-tflops", peak_tflops), ("--gpu-memory", memory_gb)) + (
            (("--bandwidth", bandwidth_gbs),) if needs_bandwidth else ())
        missing = [f for f, v in asked if v is None]
        if missing:
            raise UsageError(f"give --gpu NAME (see `layercalc gpus`), or describe the device with "
                             f"{', '.join(missing)} as well")
        base = Gpu("custom", "custom device", {}, 0, 0.0, "given on the command line")
    peak = dict(base.peak)
    if peak_tflops is not None:
        peak[precision] = peak_tflops * TERA
    return base._replace(
        peak=peak,
        memory=base.memory if memory_gb is None else int(memory_gb * GIGA),
        bandwidth=base.bandwidth if bandwidth_gbs is None else bandwidth_gbs * GIGA,
    )


def as_float(value: Fraction, what: str) -> float:
    """A plan's time, rate or MFU as a float; UsageError when the device's figures and the
    measurements put it past the largest one (10^300 tokens on a device of 10^-300 TFLOP/s)."""
    try:
        return float(value)
    except OverflowError:
        raise UsageError(f"{what} is beyond the largest float ({sys.float_info.max:.3g}): "
                         "check the device's figures and the measurements") from None


def listing() -> list[dict[str, object]]:
    """Every preset as plain data: name, title, peak TFLOP/s per precision, memory bytes, bandwidth bytes/s, source."""
    return [
        {"name": g.name, "title": g.title, "peak_tflops": {k: v / TERA for k, v in g.peak.items()},
         "memory_bytes": g.memory, "bandwidth_bytes_per_second": g.bandwidth, "source": g.source}
        for g in GPUS.values()
    ]
