"""The config loader: the format's rules, YAML hazards, and the exact message for common mistakes."""

from __future__ import annotations

import pytest

from layercalc import analyse, load
from layercalc.document import parse_document
from layercalc.errors import ConfigError, DocumentError

HEAD = "input: [3, 8, 8]\nlayers:\n"


def error_of(write, text: str | bytes, name: str = "net.yaml") -> str:
    """The one-line message a config produces (file name shortened to its base name)."""
    path = write(name, text)
    with pytest.raises(ConfigError) as info:
        analyse(path)
    return str(info.value).replace(path, name)


# the exact text for common mistakes: what a user sees after "error: "
MISTAKES = [
    # a misspelt argument, with a suggestion
    (HEAD + "  - conv2d: {out_channels: 4, kernal_size: 3}\n",
     "net.yaml:3: layers[0] (conv2d 'conv2d1'): unknown argument 'kernal_size' (did you mean kernel_size?)"),
    # an unknown type name, with a suggestion
    (HEAD + "  - relu\n  - conv2: {out_channels: 4}\n",
     "net.yaml:4: layers[1]: unknown layer type 'conv2' (did you mean conv2d?)"),
    # kernel larger than the padded input
    (HEAD + "  - conv2d: {out_channels: 4, kernel_size: 11, padding: 1}\n",
     "net.yaml:3: layers[0] (conv2d 'conv2d1'): kernel_size 11 exceeds padded input 10x10"),
    # a residual whose branches disagree: both shapes shown
    (HEAD + "  - residual:\n      body:\n        - conv2d: {out_channels: 6, kernel_size: 1}\n    name: block\n",
     "net.yaml:3: layers[0] (residual 'block'): body gives 1x6x8x8 but shortcut gives 1x3x8x8;"
     " a residual adds equal shapes"),
    # groups not dividing channels
    (HEAD + "  - conv2d: {out_channels: 4, kernel_size: 1, groups: 2}\n",
     "net.yaml:3: layers[0] (conv2d 'conv2d1'): groups 2 does not divide in_channels 3"),
    # a missing input
    ("layers:\n  - relu\n", "net.yaml:1: missing 'input' (one sample's shape, e.g. [3, 224, 224])"),
    # layers empty
    ("input: [3]\nlayers: []\n", "net.yaml:2: layers: layers is empty; it needs at least one layer"),
    # a string where a number belongs
    (HEAD + "  - linear: {out_features: ten}\n",
     "net.yaml:3: layers[0] (linear 'linear1'): out_features: expected an integer >= 1, got 'ten'"),
    # YAML's true is not 1
    (HEAD + "  - linear: {out_features: true}\n",
     "net.yaml:3: layers[0] (linear 'linear1'): out_features: expected an integer >= 1, got true"),
    # zero and negative sizes
    (HEAD + "  - conv2d: {out_channels: 0, kernel_size: 3}\n",
     "net.yaml:3: layers[0] (conv2d 'conv2d1'): out_channels: expected an integer >= 1, got 0"),
    ("input: [3, -8]\nlayers: [relu]\n",
     "net.yaml:1: input must be 1 to 4 positive integers like [3, 224, 224] or \"3x224x224\", got [3, -8]"),
    # a misspelt top-level key
    ("input: [3]\nlayer:\n  - relu\n", "net.yaml:2: unknown key 'layer' in the config (did you mean layers?)"),
    # a missing required argument
    (HEAD + "  - linear\n", "net.yaml:3: layers[0] (linear 'linear1'): missing required argument 'out_features'"),
    # two type keys in one entry
    (HEAD + "  - {relu: null, tanh: null}\n", "net.yaml:3: layers[0]: a layer entry needs exactly one type key, found relu, tanh"),
    # bad YAML
    (HEAD + "  - conv2d: {out_channels: 4\n", "net.yaml:4: invalid YAML: did not find expected ',' or '}'"
     " (while parsing a flow mapping started on line 3)"),
    # nested: the path names the position inside the block
    (HEAD + "  - sequential:\n      layers:\n        - relu\n        - linear: {out_features: -1}\n",
     "net.yaml:6: layers[0].layers[1] (linear 'linear1'): out_features: expected an integer >= 1, got -1"),
]


@pytest.mark.parametrize("text, message", MISTAKES, ids=[m[1].split(": ", 2)[-1][:30] for m in MISTAKES])
def test_common_mistakes_have_exact_messages(write, text: str, message: str) -> None:
    assert error_of(write, text) == message


def test_bare_strings_case_and_defaults(write) -> None:
    report = analyse(write("n.yaml", "input: 3x8x8\nlayers:\n  - Conv2d: {out_channels: 2, kernel_size: 3}\n  - ReLU\n"))
    assert [r["type"] for r in report.rows()] == ["conv2d", "relu"]
    assert report.network.name == "n"


def test_json_config(write) -> None:
    path = write("n.json", '{"input": [4], "batch": 2, "layers": [{"linear": {"out_features": 3}}]}')
    assert analyse(path).total["macs"] == 2 * 4 * 3


def test_json_error_has_a_line(write) -> None:
    text = '{\n  "input": [4],\n  "layers": [\n    {"linear": {"out_features": 0}}\n  ]\n}\n'
    assert error_of(write, text, "n.json").startswith("n.json:4: layers[0] (linear 'linear1'): out_features")


def test_yaml_12_scalars() -> None:
    doc = parse_document("a: 1e-5\nb: yes\nc: true\nd: '3'\ne: 0x10\nf: ~\n")
    assert doc == {"a": 1e-5, "b": "yes", "c": True, "d": "3", "e": 16, "f": None}


def test_eps_in_scientific_notation(write) -> None:
    path = write("n.yaml", "input: [4, 3]\nlayers:\n  - batchnorm1d: {eps: 1e-3}\n")
    assert load(path).nodes[0].layer.eps == 1e-3


def test_duplicate_keys_are_errors() -> None:
    with pytest.raises(DocumentError, match="duplicate key 'input' \\(first on line 1\\)"):
        parse_document("input: [3]\ninput: [4]\n")


def test_tags_never_construct_objects() -> None:
    with pytest.raises(DocumentError, match="tag !!python/object/apply:os.system is not allowed"):
        parse_document("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(DocumentError, match="tag !custom is not allowed"):
        parse_document("a: !custom 3\n")
    assert parse_document("a: !!str 3\n") == {"a": "3"}


def test_alias_bomb_is_rejected_fast() -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    with pytest.raises(DocumentError, match="an alias bomb"):
        parse_document("\n".join(lines) + "\n")


def test_anchors_for_repeated_blocks_work(write) -> None:
    text = (
        "input: [4]\nlayers:\n"
        "  - sequential: &blk {layers: [{linear: {out_features: 4}}, relu]}\n"
        "  - sequential: *blk\n"
    )
    assert analyse(write("n.yaml", text)).total["params"] == 2 * (16 + 4)


def test_more_than_one_document(write) -> None:
    assert error_of(write, "input: [3]\nlayers: [relu]\n---\ninput: [4]\n") == (
        "net.yaml:3: more than one document; a config is one document"
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "net.yaml: empty config"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "net.yaml: binary data, not a YAML or JSON config"),
        (b"input: [3]\nname: caf\xe9\n", "net.yaml:2: not UTF-8 text (byte 0xe9)"),
        (b"- relu\n", "net.yaml:1: a config is a mapping with 'input' and 'layers'"),
    ],
    ids=["empty", "binary", "not-utf8", "not-a-mapping"],
)
def test_unusable_files(write, content: bytes, message: str) -> None:
    assert error_of(write, content) == message


def test_directory_is_an_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load(str(tmp_path))
