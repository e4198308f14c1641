"""The per-layer report as one self-contained HTML page: a folding layer tree, share bars, totals, memory.

No network access: the CSS, the few lines of script and the SVG are inline. It reads without
JavaScript (blocks fold with <details>, which a keyboard opens too) and in dark mode; the script
only adds "open all / close all" and opens every block before printing. A run of identical
copies of a repeated block shows as its first copy marked ×N, the others folded inside it.
"""

from __future__ import annotations

from html import escape
from typing import Any, Iterator

from .formats import human, human_bytes, input_text

STYLE = """
:root { --fg: #1b1f24; --bg: #ffffff; --dim: #59636e; --line: #d1d9e0; --params: #2f6fdf; --macs: #d9632c;
  --acts: #2da44e; --kv: #8250df; --grad: #bf8700; --opt: #cf222e; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --dim: #9198a1; --line: #3d444d;
  --params: #4493f8; --macs: #f0883e; --acts: #3fb950; --kv: #ab7df8; --grad: #d29922; --opt: #f85149; } }
body { font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 2rem auto;
  max-width: 72rem; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin: 0 } h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem }
.meta, .dim { color: var(--dim) }
table.totals td { padding: 0 1.2rem 0 0 } table.totals td.n { text-align: right; font-variant-numeric: tabular-nums }
.row { display: grid; grid-template-columns: minmax(14rem, 2fr) 8rem 9rem 7rem 8rem 7rem 8rem; gap: .5rem;
  align-items: center; padding: 1px 0; border-bottom: 1px solid var(--line); }
.row > span.n { text-align: right; font-variant-numeric: tabular-nums }
.head { font-weight: 600; border-bottom: 2px solid var(--line) }
details > summary { list-style: none; cursor: pointer } details > summary::-webkit-details-marker { display: none }
details > summary .name::before { content: "▸ "; color: var(--dim) } details[open] > summary .name::before { content: "▾ " }
summary:focus-visible { outline: 2px solid var(--params) }
.kids { margin-left: 1.2rem }
.bar { display: inline-block; height: .7rem; width: 100%; background: var(--line); border-radius: 2px }
.bar > span { display: block; height: 100%; border-radius: 2px }
.bar.p > span { background: var(--params) } .bar.m > span { background: var(--macs) }
.times { color: var(--macs); font-weight: 600; margin-left: .4rem }
.key { margin-right: 1.5rem; white-space: nowrap }
.swatch { display: inline-block; width: .8rem; height: .8rem; margin-right: .3rem; vertical-align: -1px }
button { font: inherit; margin-right: .5rem }
@media print { button { display: none } .row { break-inside: avoid } }
"""

SCRIPT = """
function setAll(open) { document.querySelectorAll('details').forEach(function (d) { d.open = open; }); }
document.getElementById('open-all').addEventListener('click', function () { setAll(true); });
document.getElementById('close-all').addEventListener('click', function () { setAll(false); });
window.addEventListener('beforeprint', function () { setAll(true); });
"""


def _policy() -> str:
    """A Content-Security-Policy that runs the page's own script (by its hash) and nothing else:
    a name in someone else's config that smuggles markup in stays text even if escaping failed."""
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{digest}'"

MEMORY_PARTS = (  # (key in the totals, label, colour variable)
    ("param_bytes", "parameters", "--params"),
    ("activation_bytes", "activations", "--acts"),
    ("kv_cache_bytes", "KV cache", "--kv"),
)
TRAINING_PARTS = (
    ("param_bytes", "parameters", "--params"),
    ("gradient_bytes", "gradients", "--grad"),
    ("optimizer_bytes", "optimizer states", "--opt"),
    ("activation_bytes", "kept activations", "--acts"),
)


def _tree(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (pre-order, with depths) as nested nodes {"row", "kids"}."""
    root: list[dict[str, Any]] = []
    stack: list[tuple[int, list[dict[str, Any]]]] = [(-1, root)]
    for row in rows:
        while stack[-1][0] >= row["depth"]:
            stack.pop()
        node = {"row": row, "kids": []}
        stack[-1][1].append(node)
        stack.append((row["depth"], node["kids"]))
    return root


def _signature(node: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two copies the same: every row's type, shape, params and MACs below, names aside."""
    r = node["row"]
    own = (r["type"], tuple(r["output_shape"]), r["params"], r["macs"])
    return (own, tuple(_signature(k) for k in node["kids"]))


def _runs(kids: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive identical siblings grouped, so that a stack of equal copies shows once."""
    run: list[dict[str, Any]] = []
    for kid in kids:
        if run and _signature(run[0]) != _signature(kid):
            yield run
            run = []
        run.append(kid)
    if run:
        yield run


def _bar(kind: str, part: int, whole: int) -> str:
    share = 100 * part / whole if whole else 0.0
    return (f'<span class="bar {kind}" title="{share:.1f}%" role="img" aria-label="{share:.1f}%">'
            f'<span style="width:{share:.2f}%"></span></span>')


def _cells(row: dict[str, Any], total: dict[str, Any], times: int) -> str:
    """One row's cells: name (×N), type, output shape, params, MACs and their share bars."""
    mark = f'<span class="times">×{times}</span>' if times > 1 else ""
    shape = "×".join(str(d) for d in row["output_shape"][1:])
    macs = row["macs"]
    return (f'<span class="name">{escape(row["name"])}{mark}</span><span class="dim">{escape(row["type"])}</span>'
            f'<span>{shape}</span><span class="n">{row["params"]:,}</span>{_bar("p", row["params"], total["params"])}'
            f'<span class="n">{"—" if macs is None else f"{macs:,}"}</span>{_bar("m", macs or 0, total["macs"] or 0)}')


def _nodes(nodes: list[dict[str, Any]], total: dict[str, Any], opened: int) -> Iterator[str]:
    """HTML of sibling nodes: blocks fold (the top `opened` levels open), leaves are rows."""
    for run in _runs(nodes):
        first = run[0]
        cells = _cells(first["row"], total, len(run))
        if not first["kids"] and len(run) == 1:
            yield f'<div class="row">{cells}</div>'
            continue
        state = " open" if first["row"]["depth"] < opened else ""
        yield f'<details{state}><summary class="row">{cells}</summary><div class="kids">'
        yield from _nodes(first["kids"], total, opened)
        if len(run) > 1:  # the others are the same: their names only, not their layers again
            names = ", ".join(escape(k["row"]["name"]) for k in run[1:])
            yield (f'<details><summary class="dim">the other {len(run) - 1} identical copies</summary>'
                   f'<p class="dim">{names}</p></details>')
        yield "</div></details>"


def _memory_svg(parts: list[tuple[str, int, str]]) -> str:
    """A stacked bar of the memory parts (widths in percent of the whole) and its legend, exact bytes in titles."""
    whole = sum(b for _, b, _ in parts) or 1
    x, bars, legend = 0.0, [], []
    for label, size, colour in parts:
        w = 100 * size / whole
        bars.append(f'<rect x="{x:.3f}%" y="0" width="{w:.3f}%" height="22" style="fill:var({colour})">'
                    f'<title>{escape(label)}: {size:,} bytes</title></rect>')
        legend.append(f'<span class="key"><span class="swatch" style="background:var({colour})"></span>'
                      f'{escape(label)} {human_bytes(size)}</span>')
        x += w
    return (f'<svg width="100%" height="22" role="img" aria-label="memory breakdown" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(bars)}</svg>\n<p>{"".join(legend)}</p>')


def _totals(data: dict[str, Any]) -> str:
    """The totals as the table's footer gives them: exact integers and three-digit units."""
    total = data["total"]
    lines = [("params", total["params"], human(total["params"])),
             ("trainable params", total["trainable_params"], human(total["trainable_params"])),
             ("buffers", total["buffers"], human(total["buffers"])),
             ("MACs", total["macs"], human(total["macs"]) if total["macs"] is not None else "—"),
             ("FLOPs", total["flops"], human(total["flops"]) if total["flops"] is not None else "—")]
    training = data.get("training")
    if training:
        lines += [("backward MACs", training["backward_macs"], human(training["backward_macs"])),
                  ("training FLOPs", training["training_flops"], human(training["training_flops"]))]
    body = "".join(f'<tr><td>{k}</td><td class="n">{"—" if v is None else f"{v:,}"}</td><td class="dim">{h}</td></tr>'
                   for k, v, h in lines)
    return f'<table class="totals">{body}</table>'


def report_html(data: dict[str, Any], command: str = "summary") -> str:
    """The whole page for report data (the JSON of summary/params/flops)."""
    total, training = data["total"], data.get("training")
    source = training if training else total
    keys = TRAINING_PARTS if training else MEMORY_PARTS
    parts = [(label, source[key], colour) for key, label, colour in keys if source.get(key)]
    name = escape(data["name"])
    shape = input_text(data["input"], "×")
    convention = data.get("convention", "layercalc")
    head = '<div class="row head"><span>Layer</span><span>Type</span><span>Output</span>' \
           '<span class="n">Params</span><span>share</span><span class="n">MACs</span><span>share</span></div>'
    tree = "\n".join(_nodes(_tree(data["layers"]), total, opened=1))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_policy()}">
<title>layercalc {escape(command)}: {name}</title><style>{STYLE}</style></head>
<body>
<header><h1>{name}</h1>
<p class="meta">input {shape}, batch {data["batch"]}, {escape(data["dtype"])}; counted as {escape(convention)}</p></header>
<h2>Totals</h2>
{_totals(data)}
<h2>Memory{" of a training step" if training else ""}</h2>
{_memory_svg(parts)}
<h2>Layers</h2>
<p><button type="button" id="open-all">Open all</button><button type="button" id="close-all">Close all</button></p>
{head}
{tree}
<script>{SCRIPT}</script>
</body></html>
"""


def write_layers(data: dict[str, Any], page: Any) -> None:
    """summary/params/flops as the HTML page."""
    page.file.write(report_html(data, page.command))


def write_plan(data: dict[str, Any], page: Any) -> None:
    """A training or serving plan as a page: its sections as tables, memory as a stacked bar."""
    from .plans import serve_rows, train_rows

    rows = list(train_rows(data) if "layout" in data else serve_rows(data))
    memory = data["memory"]
    keys = (("weights", "--params"), ("gradients", "--grad"), ("optimizer_states", "--opt"),
            ("master_weights", "--macs"), ("activations", "--acts"), ("kv_cache", "--kv"), ("buffers", "--line"))
    parts = [(k.replace("_", " "), memory[k], colour) for k, colour in keys if memory.get(k)]
    sections: dict[str, list[str]] = {}
    for section, item, value, unit in rows:
        shown = "—" if value is None else f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) \
            else f"{value:.4g}" if isinstance(value, float) else str(value)
        sections.setdefault(section, []).append(
            f'<tr><td>{escape(item)}</td><td class="n">{escape(shown)}</td><td class="dim">{escape(unit)}</td></tr>')
    body = "".join(f'<h2>{escape(name)}</h2><table class="totals">{"".join(lines)}</table>'
                   for name, lines in sections.items())
    kind = "training" if "layout" in data else "serving"
    page.file.write(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>layercalc {kind} plan: {escape(data["name"])}</title><style>{STYLE}</style></head>
<body><header><h1>{escape(data["name"])}: {kind} plan</h1>
<p class="meta">bytes per device; times are estimates (roofline bounds or an MFU)</p></header>
<h2>Memory per device</h2>
{_memory_svg(parts)}
{body}
</body></html>
""")
