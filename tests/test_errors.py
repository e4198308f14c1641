"""ConfigError's value: what each error calls wrong, as data (`exc.value`, `exc.details()`).

Every expected value is worked out by hand from the config, written beside it; the message is
checked too, so a value that drifts from what the message names shows up here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from layercalc import analyse
from layercalc.errors import ConfigError, DocumentError, SchemaError, ShapeError

ERRORS = [
    # (config YAML, error class, line, fragment of the message, expected value, as JSON)
    # conv2d kernel 9 on 7x7: its dilated reach 1·(9 − 1) + 1 = 9 per dim exceeds 7 (no padding)
    ("input: [1, 7, 7]\nlayers:\n  - conv2d: {out_channels: 2, kernel_size: 9}\n",
     ShapeError, 3, "kernel_size 9 exceeds padded input 7x7", (9, 9), [9, 9]),
    # dilation 2, kernel 5: reach 2·4 + 1 = 9 > 7 + 2·0
    ("input: [1, 7, 7]\nlayers:\n  - conv2d: {out_channels: 2, kernel_size: 5, dilation: 2}\n",
     ShapeError, 3, "exceeds padded input 7x7", (9, 9), [9, 9]),
    # convtranspose2d on 1x1, kernel 1, padding 1: (1 − 1)·1 − 2·1 + 1 = −1: the padding is at fault
    ("input: [1, 1, 1]\nlayers:\n  - convtranspose2d: {out_channels: 1, kernel_size: 1, padding: 1}\n",
     ShapeError, 3, "padding 1 leaves no output (size -1x-1)", (1, 1), [1, 1]),
    # upsample with both size and scale_factor: the two arguments that conflict
    ("input: [1, 4, 4]\nlayers:\n  - upsample: {size: 8, scale_factor: 2}\n",
     SchemaError, 3, "set exactly one of size and scale_factor (got both)", {"size": 8, "scale_factor": 2.0}, {"size": 8, "scale_factor": 2.0}),
    # scale_factor 0.2 on 4: floor(4 · 0.2) = 0 outputs: the scale factor is at fault, not the output
    ("input: [1, 4, 4]\nlayers:\n  - upsample: {scale_factor: 0.2}\n",
     ShapeError, 3, "scale_factor 0.2 leaves no output", 0.2, 0.2),
    # flatten start_dim 3 after end_dim 1: both named
    ("input: [2, 3, 4]\nlayers:\n  - flatten: {start_dim: 3, end_dim: 1}\n",
     ShapeError, 3, "start_dim 3 comes after end_dim 1", {"start_dim": 3, "end_dim": 1}, {"start_dim": 3, "end_dim": 1}),
    # a residual whose body changes the channels 2 -> 3: the pair of shapes (batch 1)
    ("input: [2, 3, 4]\nlayers:\n  - residual:\n      body:\n        - conv2d: {out_channels: 3, kernel_size: 1}\n",
     ShapeError, 3, "body gives 1x3x3x4 but shortcut gives 1x2x3x4", ((1, 3, 3, 4), (1, 2, 3, 4)), [[1, 3, 3, 4], [1, 2, 3, 4]]),
    # linear out_features 0: below its minimum of 1
    ("input: [4]\nlayers:\n  - linear: {out_features: 0}\n",
     SchemaError, 3, "out_features", 0, 0),
    # an unknown argument: the key itself
    ("input: [4]\nlayers:\n  - linear: {out_featurs: 2}\n",
     SchemaError, 3, "unknown argument 'out_featurs'", "out_featurs", "out_featurs"),
    # a missing required argument: no value at fault
    ("input: [4]\nlayers:\n  - linear: {bias: false}\n",
     SchemaError, 3, "missing required argument 'out_features'", None, None),
    # groupnorm of 3 channels in 2 groups: num_groups is at fault
    ("input: [3, 4, 4]\nlayers:\n  - groupnorm: {num_groups: 2}\n",
     ShapeError, 3, "num_groups 2 does not divide the 3 channels", 2, 2),
    # a tagged value that is not what its tag says
    ("input: [4]\nlayers:\n  - linear: {out_features: !!int two}\n",
     DocumentError, 3, "is not a valid !!int", "two", "two"),
]


@pytest.mark.parametrize(("text", "kind", "line", "fragment", "value", "data"), ERRORS, ids=[c[3] for c in ERRORS])
def test_value_is_what_the_message_calls_wrong(text: str, kind: type, line: int, fragment: str, value: Any, data: Any) -> None:
    with pytest.raises(ConfigError) as info:
        analyse(text)
    exc = info.value
    assert isinstance(exc, kind) and fragment in exc.message
    assert exc.value == value
    details = exc.details()
    assert details == {"file": "<string>", "line": line, "where": details["where"], "layer": details["layer"],
                       "message": exc.message, "value": data}
    assert json.loads(json.dumps(details)) == details  # plain JSON data


def test_details_name_the_file_line_and_layer(tmp_path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text("input: [1, 7, 7]\nlayers:\n  - relu\n  - conv2d: {out_channels: 2, kernel_size: 9}\n    name: big\n")
    with pytest.raises(ShapeError) as info:
        analyse(str(path))
    assert info.value.details() == {
        "file": str(path), "line": 4, "where": "layers[1]", "layer": "conv2d 'big'",
        "message": "kernel_size 9 exceeds padded input 7x7", "value": [9, 9],
    }
    # the command line's one line is the same location and message
    assert str(info.value) == f"{path}:4: layers[1] (conv2d 'big'): kernel_size 9 exceeds padded input 7x7"
