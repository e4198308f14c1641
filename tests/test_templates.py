"""Templates (`define:`): the expression parser against Python's integer arithmetic, hand-computed
instances, the names their layers get, every bad input as one line, and a templated config through
every format, --training and verify."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from layercalc import analyse
from layercalc.errors import ConfigError, SchemaError, TemplateError
from layercalc.templates import MAX_EXPR_NESTING, ExprError, parse_expr

ENV = {"in": 24, "a": 7, "b": 0, "c": 3}

# -- the expression parser --------------------------------------------------------------------------


def _leaf() -> st.SearchStrategy[str]:
    return st.one_of(st.integers(0, 60).map(str), st.sampled_from(sorted(ENV)))


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    space = st.sampled_from(["", " "])
    return st.one_of(
        st.tuples(inner, space, st.sampled_from(["+", "-", "*", "//"]), space, inner).map("".join),
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"-{e}"),
        st.tuples(st.sampled_from(["min", "max"]), st.lists(inner, min_size=2, max_size=3))
        .map(lambda t: f"{t[0]}({', '.join(t[1])})"),
    )


EXPRESSIONS = st.recursive(_leaf(), _grow, max_leaves=12)


def _python(text: str) -> int | None:
    """The oracle: Python's own integer arithmetic on the same text (None: it divides by zero)."""
    names = {"min": min, "max": max, **{k: v for k, v in ENV.items() if k != "in"}, "in_": ENV["in"]}
    try:
        # `in` is a Python keyword: the oracle reads it as in_
        return eval(re.sub(r"\bin\b", "in_", text), {"__builtins__": {}}, names)  # noqa: S307 (test oracle)
    except ZeroDivisionError:
        return None


@settings(max_examples=400, deadline=None)
@given(EXPRESSIONS)
def test_expressions_evaluate_as_python_integer_arithmetic(text: str) -> None:
    expected = _python(text)
    expr = parse_expr("${" + text + "}")
    if expected is None:
        with pytest.raises(ExprError, match="divides by zero"):
            expr.evaluate(ENV)
    else:
        assert expr.evaluate(ENV) == expected


@pytest.mark.parametrize("text, value", [
    ("in * 2 + 1", 49), ("in // 5", 4), ("-7 // 2", -4), ("7 - 2 - 3", 2), ("24 // 2 // 3", 4),
    ("2 * -3", -6), ("- - 3", 3), ("min(in, 10) + max(1, 2, 3)", 13), ("(in + 2) * 2", 52),
])
def test_precedence_and_associativity_by_hand(text: str, value: int) -> None:
    assert parse_expr("${" + text + "}").evaluate(ENV) == value


def test_division_by_zero_names_the_expression() -> None:
    with pytest.raises(ExprError, match=r"\$\{a // b\} divides by zero \(7 // 0\)"):
        parse_expr("${a // b}").evaluate(ENV)


def test_deep_nesting_up_to_the_limit_then_a_clean_error() -> None:
    depth = MAX_EXPR_NESTING
    assert parse_expr("${" + "(" * depth + "in" + ")" * depth + "}").evaluate(ENV) == 24
    assert parse_expr("${" + "max(1, " * depth + "5" + ")" * depth + "}").evaluate(ENV) == 5
    for too_deep in (depth + 1, 50_000):  # far past Python's own recursion limit: still one message
        with pytest.raises(ExprError, match="nested more than"):
            parse_expr("${" + "(" * too_deep + "1" + ")" * too_deep + "}")


def test_long_chains_need_no_recursion() -> None:
    assert parse_expr("${" + "1 + " * 20_000 + "1}").evaluate(ENV) == 20_001
    assert parse_expr("${" + "-" * 20_001 + "1}").evaluate(ENV) == -1


@pytest.mark.parametrize("text, fragment", [
    ("${in / 2}", "integer division is //"), ("${in *}", "found the end"), ("${(in}", "expected ')'"),
    ("${in 2}", "expected an operator"), ("${min(in)}", "two or more"), ("${in ** 2}", "expected a number"),
    ("${in.real}", "unexpected '.'"), ("${__import__('os')}", "unexpected"), ("${}", "found the end"),
    ("${max}", "expected '('"), ("in * 2", "not an expression"),
])
def test_syntax_errors_say_what_was_expected(text: str, fragment: str) -> None:
    with pytest.raises(ExprError, match=re.escape(fragment)):
        parse_expr(text)


# -- instances, computed by hand --------------------------------------------------------------------

TINY = """
name: tiny
input: [3, 5, 5]
batch: 2
define:
  tiny:
    args: {out: null, expand: 2}
    layers:
      - conv2d: {out_channels: "${in * expand}", kernel_size: 1, bias: false}
      - relu
      - conv2d: {out_channels: "${out}", kernel_size: 3, padding: 1}
layers:
  - relu
  - tiny: {out: 4}
  - tiny: {out: 4, expand: 3}
  - conv2d: {out_channels: 4, kernel_size: 1}
  - relu
"""


def _rows(text: str) -> dict[str, dict]:
    return {row["path"]: row for row in analyse(text).to_dict()["layers"]}


def test_a_tiny_conv_block_by_hand() -> None:
    rows = _rows(TINY)
    # in = 3 channels, expand 2: 1x1 conv 3->6 without bias, relu, 3x3 conv 6->4 with bias, on 2x5x5
    first = rows["tiny1"]
    assert first["type"] == "tiny" and first["output_shape"] == [2, 4, 5, 5]
    assert rows["tiny1.0"]["params"] == 3 * 6 and rows["tiny1.0"]["macs"] == 2 * 6 * 5 * 5 * 3
    assert rows["tiny1.2"]["params"] == (6 * 9 + 1) * 4 and rows["tiny1.2"]["macs"] == 2 * 4 * 5 * 5 * 6 * 9
    assert first["params"] == 18 + 220 and first["macs"] == 900 + 10_800
    # the second instance reads in = 4 (the first one's output), expand 3: 4->12->4
    second = rows["tiny2"]
    assert rows["tiny2.0"]["output_shape"] == [2, 12, 5, 5]
    assert second["params"] == 4 * 12 + (12 * 9 + 1) * 4
    assert second["macs"] == 2 * 12 * 25 * 4 + 2 * 4 * 25 * 12 * 9


def test_layers_are_named_in_document_order() -> None:
    # as if each instance's layers were written where it stands: the conv2d after the instances
    # is conv2d5, the last relu relu4 (the analysis builds the instances later, names stay put)
    names = {path: row["name"] for path, row in _rows(TINY).items()}
    assert names == {
        "relu1": "relu1", "tiny1": "tiny1", "tiny1.0": "conv2d1", "tiny1.1": "relu2", "tiny1.2": "conv2d2",
        "tiny2": "tiny2", "tiny2.0": "conv2d3", "tiny2.1": "relu3", "tiny2.2": "conv2d4",
        "conv2d5": "conv2d5", "relu4": "relu4",
    }


NESTED = """
input: [4, 6, 6]
define:
  inner:
    args: {k: 1}
    layers:
      - conv2d: {out_channels: "${in * k}", kernel_size: 1}
  outer:
    args: {k: null}
    layers:
      - inner: {k: "${k}"}
      - relu
      - inner: {k: "${k + 1}"}
layers:
  - outer: {k: 2}
  - outer: {k: 1}
    repeat: 2
"""


def test_templates_use_templates_and_repeat() -> None:
    rows = _rows(NESTED)
    # outer k=2 on 4 channels: 4 -> 8 (k) -> 24 (k+1); each 1x1 conv with bias
    assert rows["outer1.0.0"]["output_shape"][1] == 8 and rows["outer1.2.0"]["output_shape"][1] == 24
    assert rows["outer1"]["params"] == (4 * 8 + 8) + (8 * 24 + 24)
    # the repeat's copies each read their own input: 24 -> 24 -> 48, then 48 -> 48 -> 96
    assert rows["outer2.0"]["output_shape"][1] == 48 and rows["outer2.1"]["output_shape"][1] == 96
    assert rows["outer2.1.2"]["type"] == "inner" and rows["outer2.1.2.0"]["name"] == rows["outer2.0.2.0"]["name"]


@pytest.mark.parametrize("shape, layer, width", [
    ([8], "linear: {out_features: \"${in * 2}\"}", 8),  # (N, F): the features
    ([5, 8], "linear: {out_features: \"${in * 2}\"}", 8),  # (N, T, E) read by a linear: E, not T
    ([4, 10], "conv1d: {out_channels: \"${in * 2}\", kernel_size: 1}", 4),  # (N, C, L): the channels
    ([3, 9, 9], "conv2d: {out_channels: \"${in * 2}\", kernel_size: 1}", 3),
])
def test_in_is_the_width_the_first_sized_layer_reads(shape: list[int], layer: str, width: int) -> None:
    text = f"input: {shape}\ndefine:\n  t:\n    layers:\n      - relu\n      - {layer}\nlayers:\n  - t\n"
    row = _rows(text)["t1.1"]
    assert row["params"] == width * 2 * width + width * 2


def test_a_frozen_instance_freezes_its_layers() -> None:
    text = TINY.replace("  - tiny: {out: 4}\n", "  - tiny: {out: 4}\n    trainable: false\n")
    total = analyse(text).to_dict()["total"]
    assert total["params"] - total["trainable_params"] == 238
    with pytest.raises(ConfigError, match="trainable: true inside"):
        analyse(text.replace("      - relu\n", "      - relu:\n        trainable: true\n"))


# -- bad input: one line, exit 2, naming the file, line, instance, template and expression ----------

BAD = [
    ("unknown name", "      - conv2d: {out_channels: \"${outt * 2}\", kernel_size: 1}", "- blk: {out: 4}",
     ["bad.yaml:6:", "template blk", "unknown name 'outt'", "${outt * 2}", "did you mean out?"]),
    ("division by zero", "      - conv2d: {out_channels: \"${out // (in - 4)}\", kernel_size: 1}", "- blk: {out: 4}",
     ["bad.yaml:8:", "(blk 'blk1')", "template blk", "${out // (in - 4)} divides by zero"]),
    ("non-integer", "      - conv2d: {out_channels: \"${out}\", kernel_size: 1}", "- blk: {out: 1.5}",
     ["bad.yaml:8:", "(blk 'blk1')", "template blk's arguments are integers", "1.5"]),
    ("non-integer value", "      - conv2d: {out_channels: \"${in - out}\", kernel_size: 1}", "- blk: {out: 4}",
     ["bad.yaml:8:", "(blk 'blk1')", "template blk", "line 6", "got 0 (from ${in - out})"]),
    ("arg missing", "      - conv2d: {out_channels: \"${out}\", kernel_size: 1}", "- blk: {}",
     ["bad.yaml:8:", "(blk 'blk1')", "missing required argument 'out'"]),
    ("arg unknown", "      - conv2d: {out_channels: \"${out}\", kernel_size: 1}", "- blk: {out: 3, wide: 2}",
     ["bad.yaml:8:", "(blk 'blk1')", "unknown argument 'wide'"]),
    ("syntax", "      - conv2d: {out_channels: \"${out * (in + }\", kernel_size: 1}", "- blk: {out: 4}",
     ["bad.yaml:6:", "template blk", "cannot read ${out * (in + }"]),
    ("recursion", "      - blk: {out: \"${out}\"}", "- blk: {out: 4}",
     ["bad.yaml:6:", "define.blk", "template blk uses itself (blk -> blk)"]),
    ("unknown type", "      - conv2dd: {out_channels: \"${out}\"}", "- blk: {out: 4}",
     ["bad.yaml:6:", "template blk", "unknown layer type 'conv2dd'", "did you mean conv2d?"]),
]


def _bad(layer: str, use: str) -> str:
    return (f"input: [4, 8, 8]\ndefine:\n  blk:\n    args: {{out: null}}\n    layers:\n{layer}\n"
            f"layers:\n  {use}\n")


@pytest.mark.parametrize("case, layer, use, fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_templates_are_one_line_exit_2(cli, write, case: str, layer: str, use: str, fragments: list[str]) -> None:
    run = cli("params", write("bad.yaml", _bad(layer, use)), "--total")
    assert run.status == 2 and run.out == ""
    assert run.err.count("\n") == 1 and "Traceback" not in run.err
    for fragment in fragments:
        assert fragment in run.err, (fragment, run.err)


DEFINE_ERRORS = [
    ("  Conv2d:\n    layers: [relu]\n", "shadows the catalog type conv2d"),
    ("  a:\n    layers: [b]\n  b:\n    layers: [c]\n  c:\n    layers: [a]\n", "template a uses itself (a -> b -> c -> a)"),
    ("  blk:\n    layers: [relu]\n  BLK:\n    layers: [relu]\n", "defined twice"),
    ("  blk:\n    args: {in: 3}\n    layers: [relu]\n", "'in' means something of its own"),
    ("  blk:\n    args: {k: 1.5}\n    layers: [relu]\n", "k's default"),
    ("  blk:\n    args: {k: 1}\n", "missing 'layers'"),
    ("  blk:\n    layers: []\n", "non-empty list"),
    ("  blk:\n    layer: [relu]\n", "unknown key 'layer'"),
    ("  my.blk:\n    layers: [relu]\n", "a template name is a word"),
    ("  blk: [relu]\n", "expected a mapping with args and layers"),
]


@pytest.mark.parametrize("define, fragment", DEFINE_ERRORS)
def test_bad_definitions(define: str, fragment: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(fragment)):
        analyse(f"input: [4]\ndefine:\n{define}layers:\n  - relu\n")


def test_an_instance_error_is_a_template_error_at_the_instance() -> None:
    with pytest.raises(TemplateError) as info:
        analyse(_bad("      - conv2d: {out_channels: \"${out // (in - 4)}\", kernel_size: 1}", "- blk: {out: 4}"))
    assert info.value.loc.line == 8 and info.value.loc.layer == "blk 'blk1'"


def test_expressions_outside_a_template_are_plain_strings(cli, write) -> None:
    run = cli("params", write("net.yaml", "input: [4]\nlayers:\n  - linear: {out_features: \"${in}\"}\n"), "--total")
    assert run.status == 2 and "out_features" in run.err and "${in}" in run.err


# -- a templated config through everything ----------------------------------------------------------

MBCONV = """
input: [8, 12, 12]
define:
  mbconv:
    args: {out: null, expand: 1, kernel: 3, stride: 1}
    layers:
      - conv2d: {out_channels: "${in * expand}", kernel_size: 1, bias: false}
      - batchnorm2d
      - relu6
      - conv2d: {out_channels: "${in * expand}", kernel_size: "${kernel}", stride: "${stride}",
                 padding: "${kernel // 2}", groups: "${in * expand}", bias: false}
      - batchnorm2d
      - conv2d: {out_channels: "${out}", kernel_size: 1, bias: false}
layers:
  - mbconv: {out: 16, expand: 6, stride: 2}
  - residual:
      body:
        - mbconv: {out: 16, expand: 2, kernel: 5}
    repeat: 2
  - adaptiveavgpool2d: {output_size: 1}
  - flatten
  - linear: {out_features: 10}
"""


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "tsv", "markdown", "html"])
def test_every_format_on_a_templated_config(cli, write, fmt: str) -> None:
    run = cli("summary", write("mb.yaml", MBCONV), "--format", fmt)
    assert run.status == 0, run.err
    assert "mbconv" in run.out


def test_training_and_totals_on_a_templated_config(cli, write) -> None:
    path = write("mb.yaml", MBCONV)
    data = json.loads(cli("summary", path, "--format", "json", "--training").out)
    # mbconv1 on 8 channels, expand 6, k3: 8*48 + 2*48 (norm) + 48*9 + 2*48 + 48*16
    first = next(r for r in data["layers"] if r["path"] == "mbconv1")
    assert first["params"] == 8 * 48 + 96 + 48 * 9 + 96 + 48 * 16
    assert cli("params", path, "--total").out.strip() == str(data["total"]["params"])


def test_verify_passes_on_a_templated_config(cli, write) -> None:
    run = cli("verify", write("mb.yaml", MBCONV), "--format", "tsv")
    assert run.status == 0, run.err
    assert "0 failed" in run.err + run.out


def test_nesting_is_bounded_before_python_recursion_is() -> None:
    chain = "".join(f"  t{i}:\n    layers: [t{i + 1}]\n" for i in range(400)) + "  t400:\n    layers: [relu]\n"
    with pytest.raises(SchemaError, match="templates nested more than 50 deep"):
        analyse(f"input: [4]\ndefine:\n{chain}layers:\n  - t0\n")
    blocks = "{sequential: {layers: [" * 60 + "relu" + "]}}" * 60
    with pytest.raises(SchemaError, match="blocks and templates nested more than 50 deep"):
        analyse(f"input: [4]\ndefine:\n  t:\n    layers:\n      - {blocks}\nlayers:\n  - t\n")


def test_a_repeat_count_may_be_an_expression() -> None:
    text = ("input: [4]\ndefine:\n  stack:\n    args: {n: null}\n    layers:\n"
            "      - linear: {out_features: 4}\n        repeat: \"${n * 2}\"\nlayers:\n  - stack: {n: 3}\n")
    rows = _rows(text)
    assert rows["stack1.0"]["type"] == "repeat" and rows["stack1"]["params"] == 6 * (4 * 4 + 4)


def test_a_template_may_start_with_an_embedding() -> None:
    text = ("input: [16]\ndefine:\n  lm:\n    args: {vocab: null, width: 8}\n    layers:\n"
            "      - embedding: {num_embeddings: \"${vocab}\", embedding_dim: \"${width}\"}\n"
            "      - linear: {out_features: \"${vocab}\"}\nlayers:\n  - lm: {vocab: 100}\n")
    report = analyse(text).to_dict()
    assert report["input_dtype"] == "int64"
    assert report["total"]["params"] == 100 * 8 + 8 * 100 + 100
