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
    # a recurrent state (kept whatever the length, part of kv_cache) only where a layer keeps one
    memory = ("weights", "kv_cache_per_token", *(["state_per_sequence"] if "state_per_sequence" in m else []),
              "kv_cache", "activations", "peak", "available")
    for key in memory:
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
    if data.get("routing"):  # a mixture of experts: what a step reads depends on the routing
        lines += [f"Weights read: {data['routing']}."]
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


def train_rows(data: dict[str, Any]) -> Iterator[Row]:
    """The training plan's figures in reading order."""
    yield ("layout", "gpu", data["gpu"], "")
    for key, value in data["layout"].items():
        yield ("layout", key, value, "")
    c = data["compute"]
    yield ("compute", "flops_per_step", c["flops_per_step"], "FLOPs")
    yield ("compute", "model_flops_per_step", c["model_flops_per_step"], "FLOPs")
    yield ("compute", "flops_megatron_per_step", c["flops_megatron_per_step"], "FLOPs")
    yield ("compute", "flops_per_token", c["flops_per_token"], "FLOPs")
    yield ("compute", "flops_6nd_per_token", c["flops_6nd_per_token"], "FLOPs")
    yield ("compute", "tokens_per_step", c["tokens_per_step"], "")
    m = data["memory"]
    for key in ("weights", "gradients", "optimizer_states", "master_weights", "activations", "buffers", "peak",
                "available"):
        yield ("memory", key, m[key], "bytes")
    yield ("memory", "fits", m["fits"], "")
    t = data["time"]
    yield ("time", "mfu", t["mfu"], "fraction")
    yield ("time", "mfu_6nd", t["mfu_6nd"], "fraction")
    for key in ("step_seconds", "total_seconds"):
        yield ("time", key, t[key], "s")
    yield ("time", "tokens_per_second", t["tokens_per_second"], "tokens/s")
    yield ("time", "gpu_hours", t["gpu_hours"], "GPU-hours")


def _estimate(value: Any, unit: str) -> str:
    """A time-section figure for people (estimates, so three significant digits)."""
    if value is None:
        return "—"
    if unit == "fraction":
        return f"{value * 100:.1f}%"
    if unit == "s":
        return _seconds(value) if value < 3600 else f"{value / 3600:,.1f} h ({value / 86400:,.1f} days)"
    if unit == "tokens/s":
        return f"{value:,.0f} tokens/s"
    return f"{value:,.0f} GPU-hours"


def train_lines(data: dict[str, Any]) -> list[str]:
    """The training plan for a terminal."""
    lay = data["layout"]
    device = f"{lay['gpus']} × {data['gpu']}" if data["gpu"] else f"{lay['gpus']} devices (--gpu: fit and time)"
    lines = [f"{data['name']} on {device}: tp {lay['tp']}, pp {lay['pp']}, dp {lay['dp']}, ZeRO {lay['zero']}"
             f"{', sp' if lay['sp'] else ''}",
             f"batch {lay['global_batch']} in micro-batches of {lay['micro_batch']}; {lay['precision']}, "
             f"{lay['optimizer']}, recompute {lay['recompute']}{', FlashAttention' if lay['flash'] else ''}"]
    rows = [r for r in train_rows(data) if r[0] != "layout"]
    width = max(len(item) for _, item, _, _ in rows)
    section = ""
    for sec, item, value, unit in rows:
        if sec != section:
            lines += ["", sec + (" (an estimate)" if sec == "time" else "")]
            section = sec
        text = _estimate(value, unit) if sec == "time" else _shown(value, unit)
        lines.append(f"  {item.ljust(width)}  {text}")
    m = data["memory"]
    if m["fits"] is False:
        lines += ["", f"does not fit: {human_bytes(m['peak'] - m['available'])} short on each device"]
    return lines


def train_text(fmt: str, data: dict[str, Any]) -> str:
    """The training plan as csv/tsv/markdown: one row a figure, exact values."""
    return table_text(fmt, ("section", "item", "value", "unit"),
                      ([sec, item, "" if v is None else str(v).lower() if isinstance(v, bool) else str(v), unit]
                       for sec, item, v, unit in train_rows(data)))


SEARCH_HEADER = ("rank", "tp", "pp", "dp", "zero", "sp", "micro_batch", "recompute", "step_seconds",
                 "tokens_per_second", "peak_bytes")


def search_rows(found: list[dict[str, Any]]) -> list[list[str]]:
    """Each fitting layout as a row, fastest first."""
    return [[str(i), str(c["layout"]["tp"]), str(c["layout"]["pp"]), str(c["layout"]["dp"]),
             str(c["layout"]["zero"]), "yes" if c["layout"]["sp"] else "no", str(c["layout"]["micro_batch"]),
             c["layout"]["recompute"], f"{c['step_seconds']:.4g}", f"{c['tokens_per_second']:.4g}",
             str(c["memory"]["peak"])] for i, c in enumerate(found, 1)]


def search_text(fmt: str, found: list[dict[str, Any]]) -> str:
    """The layouts as csv/tsv/markdown."""
    return table_text(fmt, SEARCH_HEADER, search_rows(found))


def search_lines(found: list[dict[str, Any]], limit: int = 20) -> list[str]:
    """The fastest layouts for a terminal (an estimate: step time at the MFU with the pipeline bubble)."""
    if not found:
        return ["No layout fits: give more devices, a smaller micro-batch or a lower precision."]
    header = ("#", "tp", "pp", "dp", "ZeRO", "sp", "micro", "recompute", "step", "tokens/s", "peak memory")
    rows = [r[:8] + [_seconds(float(r[8])), f"{float(r[9]):,.0f}", human_bytes(int(r[10]))]
            for r in search_rows(found[:limit])]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    more = f"; {len(found) - limit} more with -f csv" if len(found) > limit else ""
    lines += ["", f"{len(found)} layouts fit{more}. Estimates: FLOPs with recompute at the MFU, times the",
              "pipeline bubble (1 + (p-1)/m); communication is not modelled."]
    return lines


# ---- writers for the registry: (data, page) -> None ----------------------------------------------

def _lines(lines: list[str], page: Any) -> None:
    page.file.write("\n".join(lines) + "\n")


def write_serve(data: dict[str, Any], page: Any) -> None:
    """The serving plan: aligned sections for people, one row a figure for programs."""
    page.file.write(serve_text(page.format, data)) if page.format in ("csv", "tsv", "markdown") \
        else _lines(serve_lines(data), page)


def write_train(data: dict[str, Any], page: Any) -> None:
    """The training plan: aligned sections for people, one row a figure for programs."""
    page.file.write(train_text(page.format, data)) if page.format in ("csv", "tsv", "markdown") \
        else _lines(train_lines(data), page)


def write_search(data: list[dict[str, Any]], page: Any) -> None:
    """The layouts that fit, fastest first."""
    page.file.write(search_text(page.format, data)) if page.format in ("csv", "tsv", "markdown") \
        else _lines(search_lines(data), page)


def write_gpus(data: list[dict[str, Any]], page: Any) -> None:
    """The accelerator presets."""
    page.file.write(gpus_text(page.format, data)) if page.format in ("csv", "tsv", "markdown") \
        else _lines(gpus_lines(data), page)
