"""Plans (serve) and the accelerator list as rows: a table for people, csv/tsv/markdown for programs.

A plan is a few sections of named figures. People get each figure in units beside its exact
value; machine formats get one row a figure: section, item, the exact value, its unit.
"""

from __future__ import annotations

from typing import Any, Iterator

from .formats import human, human_bytes, table_text

Row = tuple[str, str, Any, str]  # section, item, exact value, unit


def _seconds(x: float) -> str:
    """0.00749 -> '7.49 ms': three significant digits in s, ms or µs."""
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x / 1e-9:.3g} ns"


def serve_rows(data: dict[str, Any]) -> Iterator[Row]:
    """The serving plan's figures in reading order."""
    s, m, pre, dec, b = data["setup"], data["memory"], data["prefill"], data["decode"], data["bounds"]
    yield ("setup", "gpu", data["gpu"], "")
    for key in ("gpus", "tp", "weights_dtype", "kv_dtype", "batch", "prompt", "generate"):
        yield ("setup", key, s[key], "")
    for key in ("weights", "kv_cache_per_token", "kv_cache", "activations", "peak", "available"):
        yield ("memory", key, m[key], "bytes")
    yield ("memory", "fits", m["fits"], "")
    yield ("memory", "max_batch", m["max_batch"], "sequences")
    yield ("prefill", "flops", pre["flops"], "FLOPs")
    yield ("prefill", "bytes", pre["bytes"], "bytes")
    for key in ("flops", "bytes", "flops_first_token", "bytes_first_token"):
        yield ("decode", key, dec[key], "FLOPs" if key.startswith("flops") else "bytes")
    yield ("bounds", "ttft_seconds", b["ttft_seconds"], "s, at least")
    yield ("bounds", "tpot_seconds", b["tpot_seconds"], "s, at least")
    yield ("bounds", "tokens_per_second", b["tokens_per_second"], "tokens/s, at most")


def _shown(value: Any, unit: str) -> str:
    """A figure for people: bytes in decimal units, counts with SI prefixes, times in s/ms/µs."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "bytes":
        return f"{human_bytes(value)} ({value:,})"
    if unit == "FLOPs":
        return f"{human(value, 'FLOP')} ({round(value):,})"
    if unit.startswith("s,"):
        return _seconds(value) + " or more"
    if unit.startswith("tokens/s"):
        return f"{value:,.1f} tokens/s or fewer"
    return str(value) if not isinstance(value, int) else f"{value:,}"


def serve_lines(data: dict[str, Any]) -> list[str]:
    """The serving plan for a terminal: a title, then each section's figures aligned."""
    rows = list(serve_rows(data))
    width = max(len(item) for _, item, _, _ in rows)
    s = data["setup"]
    device = f"{s['gpus']} × {data['gpu']}" if data["gpu"] else "no device given (--gpu: fit and time bounds)"
    lines = [f"{data['name']} on {device}, tp {s['tp']}",
             f"prompt {s['prompt']}, generate {s['generate']}, batch {s['batch']}; weights {s['weights_dtype']},"
             f" KV cache {s['kv_dtype']}"]
    section = ""
    for sec, item, value, unit in rows:
        if sec == "setup":
            continue
        if sec != section:
            lines += ["", sec]
            section = sec
        lines.append(f"  {item.ljust(width)}  {_shown(value, unit)}")
    m = data["memory"]
    if m["fits"] is False:
        lines += ["", f"does not fit: {human_bytes(m['peak'] - m['available'])} short on each device"]
    lines += ["", "Bounds are rooflines: a step takes at least max(FLOPs/peak, bytes/bandwidth)."]
    return lines


def serve_text(fmt: str, data: dict[str, Any]) -> str:
    """The serving plan as csv/tsv/markdown: one row a figure, exact values."""
    return table_text(fmt, ("section", "item", "value", "unit"),
                      ([sec, item, "" if v is None else str(v).lower() if isinstance(v, bool) else str(v), unit]
                       for sec, item, v, unit in serve_rows(data)))


def gpus_rows(listing: list[dict[str, Any]]) -> list[list[str]]:
    """The presets as rows: name, bf16 and fp8 dense TFLOP/s, memory, bandwidth, source."""
    rows = []
    for g in listing:
        peak = g["peak_tflops"]
        rows.append([g["name"], f"{peak.get('bf16', 0):g}", f"{peak['fp8']:g}" if "fp8" in peak else "—",
                     f"{g['memory_bytes'] / 1e9:.4g}", f"{g['bandwidth_bytes_per_second'] / 1e9:.4g}", g["source"]])
    return rows


GPUS_HEADER = ("name", "bf16_tflops", "fp8_tflops", "memory_gb", "bandwidth_gb_s", "source")


def gpus_text(fmt: str, listing: list[dict[str, Any]]) -> str:
    """The presets as csv/tsv/markdown."""
    return table_text(fmt, GPUS_HEADER, gpus_rows(listing))


def gpus_lines(listing: list[dict[str, Any]]) -> list[str]:
    """The presets for a terminal: aligned columns, dense peaks, decimal GB and GB/s."""
    header = ("GPU", "bf16 TFLOP/s", "fp8 TFLOP/s", "memory GB", "GB/s")
    rows = [r[:5] for r in gpus_rows(listing)]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(5)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    lines = [fmt(header)] + [fmt(r) for r in rows]
    lines += ["", "Dense peaks (sparse datasheet figures halved). Sources:"]
    lines += [f"  {g['name']}: {g['source']}" for g in listing]
    return lines
