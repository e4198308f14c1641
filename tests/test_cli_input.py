"""What a user types or saves: every --input form, -l sizes, layer names, tabs, wide encodings."""

from __future__ import annotations

import codecs
import json

import pytest

NESTED = """\
input: [4]
layers:
  - relu
  - residual:
      body:
        - relu
        - linear: {out_features: 4}
  - relu
  - linear: {out_features: 2}
"""


@pytest.mark.parametrize("form", ["3x8x8", "[3, 8, 8]", "3,8,8", "3, 8, 8", "[3,8,8]"])
def test_every_input_form_means_the_same_shape(cli, form: str) -> None:
    run = cli("shapes", "-l", "relu", "--input", form, "-f", "json")
    assert run.status == 0, run.err
    assert json.loads(run.out)["layers"][0]["output_shape"] == [1, 3, 8, 8]


def test_a_bad_input_names_the_option(cli) -> None:
    run = cli("shapes", "-l", "relu", "--input", "3,a,8")
    assert run.status == 2 and run.out == ""
    assert run.err.startswith("error: --layer: --input must be") and "'3,a,8'" in run.err


# a superscript two and an Arabic-Indic three pass str.isdigit() (int() takes the second, not the
# first); an underscore int() would read as 30; none is a size a user means
@pytest.mark.parametrize("form", ["3x\u00b2", "3x\u0663", "3_0x8", "3x+8", "3x8x"])
def test_a_size_that_is_not_plain_digits_is_one_line_exit_2(cli, write, form: str) -> None:
    config = write("net.yaml", "input: [4]\nlayers:\n  - relu\n")
    for args in (("shapes", config, "--input", form), ("shapes", "-l", "relu", "--input", form)):
        run = cli(*args)
        assert (run.status, run.out, run.err.count("\n")) == (2, "", 1), run.err
        assert "--input must be 1 to 4 positive integers" in run.err and repr(form) in run.err
    run = cli("kconv", "--input", form.replace("3x", "", 1) if form.startswith("3x") else form)
    assert (run.status, run.out, run.err.count("\n")) == (2, "", 1) and run.err.startswith("error: --input must be"), run.err
    run = cli("summary", "-l", f"conv2d:out_channels=4,kernel_size={form}", "--input", "3x8x8")
    assert (run.status, run.out, run.err.count("\n")) == (2, "", 1) and "kernel_size" in run.err, run.err


def test_inline_sizes_take_the_x_form(cli) -> None:
    # kernel 3x5 on 8x8: (8 - 3) + 1 = 6 rows, (8 - 5) + 1 = 4 columns; weight 4·3·3·5 + 4 = 184
    run = cli("summary", "-l", "conv2d:out_channels=4,kernel_size=3x5", "--input", "3x8x8", "-f", "json")
    row = json.loads(run.out)["layers"][0]
    assert row["output_shape"] == [1, 4, 6, 4] and row["params"] == 4 * 3 * 3 * 5 + 4


def test_default_names_are_unique_in_the_whole_network(cli, write) -> None:
    rows = json.loads(cli("params", write("n.yaml", NESTED), "-f", "json").out)["layers"]
    # numbered per type in execution order, whatever the nesting: relu1, then relu2 inside the block
    assert [r["name"] for r in rows] == ["relu1", "residual1", "relu2", "linear1", "relu3", "linear2"]
    assert len({r["name"] for r in rows}) == len(rows)


def test_a_default_name_skips_one_the_user_took(cli, write) -> None:
    text = "input: [4]\nlayers:\n  - relu:\n    name: relu2\n  - relu\n  - relu\n"
    rows = json.loads(cli("params", write("n.yaml", text), "-f", "json").out)["layers"]
    assert [r["name"] for r in rows] == ["relu2", "relu1", "relu3"]


def test_sibling_names_must_differ(cli, write) -> None:
    text = "input: [4]\nlayers:\n  - relu:\n    name: act\n  - tanh\n  - sigmoid:\n    name: act\n"
    path = write("n.yaml", text)
    run = cli("params", path)
    assert run.status == 2 and run.out == ""
    assert run.err == (
        f"error: {path}:6: layers[2] (sigmoid 'act'): name 'act' is already used by"
        " layers[0]; sibling layers need different names\n"
    )


def test_the_same_name_in_different_blocks_is_fine(cli, write) -> None:
    text = (
        "input: [4]\nlayers:\n  - sequential: {layers: [{relu: null, name: act}]}\n"
        "  - sequential: {layers: [{relu: null, name: act}]}\n"
    )
    assert cli("params", write("n.yaml", text), "--total").out == "0\n"


@pytest.mark.parametrize("text, line", [("input: [4]\nlayers:\n\t- relu\n", 3), ("input: [4]\nlayers:\n  - linear:\n\t\tout_features: 3\n", 4)], ids=["list-item", "mapping"])
def test_tab_indentation_is_named(cli, write, text: str, line: int) -> None:
    path = write("tabs.yaml", text)
    run = cli("params", path)
    assert run.status == 2 and run.out == ""
    assert run.err == f"error: {path}:{line}: invalid YAML: a tab indents this line; YAML indents with spaces only\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-be"])
def test_wide_encodings_with_a_byte_order_mark_are_read(cli, write, encoding: str) -> None:
    text = "input: [5]\nlayers:\n  - linear: {out_features: 2}\n"  # 5·2 + 2 = 12 params
    bom = {"utf-16-be": codecs.BOM_UTF16_BE, "utf-32-be": codecs.BOM_UTF32_BE}.get(encoding, b"")
    path = write("wide.yaml", bom + text.encode(encoding))
    assert cli("params", path, "--total").out == "12\n"


def test_wide_text_without_a_mark_is_named(cli, write) -> None:
    path = write("wide.yaml", "input: [5]\nlayers: [relu]\n".encode("utf-16-le"))
    run = cli("params", path)
    assert run.status == 2
    assert run.err == f"error: {path}: UTF-16 or UTF-32 text without a byte-order mark; save it as UTF-8\n"


def test_bare_layercalc_prints_the_help_and_succeeds(cli) -> None:
    run = cli()
    assert run.status == 0 and "Usage: layercalc" in run.out and run.err == ""


@pytest.mark.parametrize("spec, key", [
    ("linear:out_features=4,out_features=5", "out_features"),
    ("conv2d:out_channels=2,kernel_size=3,kernel_size=[3,5]", "kernel_size"),
    ("linear:out_features=4,name=a,name=b", "name"),
])
def test_a_duplicated_layer_argument_is_refused(cli, spec: str, key: str) -> None:
    """-l kept the last of a repeated key silently (a 3 -> 5 linear for out_features=4,out_features=5);
    a config file refuses a duplicate key, and so does the command line."""
    run = cli("summary", "-l", "relu", "-l", spec, "--input", "3x4x4")
    assert run.status == 2 and run.out == ""
    assert run.err == f"error: --layer:2: layers[1]: duplicate key {key!r} in {spec!r}\n"
