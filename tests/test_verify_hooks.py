"""verify and the Layer hooks that sequence models use: token-id inputs (Layer.input_ids) and
tied weights (Layer.shared_params). Two small layer types are defined here for the test only
(a lookup table and a linear reading a table's weight), registered for the module's duration."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from layercalc import analyse
from layercalc.layers import REGISTRY
from layercalc.layers.base import Arg, Int, Layer, Shape
from layercalc.verify import Options, verify


class Lookup(Layer):
    """y[n, l] = weight[x[n, l]]: reads integer ids in [0, num)."""

    type_name = "test_lookup"
    args = (Arg("num", Int()), Arg("dim", Int()))
    num: int
    dim: int

    def input_ids(self) -> int | None:
        return self.num

    def output_shape(self, x: Shape) -> Shape:
        return (*x, self.dim)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"weight": (self.num, self.dim)}

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        assert x.dtype.kind == "i" and x.min() >= 0 and x.max() < self.num  # ids, as promised
        return params["weight"][x], x

    def backward(self, dy: Any, params: dict[str, Any], x: Any) -> tuple[Any, dict[str, Any]]:
        dw = np.zeros_like(params["weight"])
        np.add.at(dw, x.reshape(-1), dy.reshape(-1, self.dim))
        return None, {"weight": dw}


class TiedOut(Layer):
    """y = x Wᵀ with W an earlier lookup's weight (counted once, at its owner)."""

    type_name = "test_tied_out"
    args = (Arg("num", Int()),)
    num: int

    def output_shape(self, x: Shape) -> Shape:
        return (*x[:-1], self.num)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"weight": (self.num, x[-1])}

    def shared_params(self) -> dict[str, str]:
        return {"weight": "emb"}

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        return x @ params["weight"].T, x

    def backward(self, dy: Any, params: dict[str, Any], x: Any) -> tuple[Any, dict[str, Any]]:
        return dy @ params["weight"], {"weight": dy.reshape(-1, self.num).T @ x.reshape(-1, x.shape[-1])}


@pytest.fixture(autouse=True)
def registered():
    REGISTRY.update({c.type_name: c for c in (Lookup, TiedOut)})
    yield
    for c in (Lookup, TiedOut):
        REGISTRY.pop(c.type_name)


TEXT = ("input: [12]\nlayers:\n  - test_lookup: {num: 50, dim: 16}\n    name: emb\n  - tanh\n"
        "  - test_tied_out: {num: 50}\n    name: out\n")


def test_token_ids_are_drawn_and_never_differentiated() -> None:
    report = analyse(TEXT)
    result = verify(report, Options())
    assert result.passed, [c for c in result.checks if not c.passed]
    numeric = [c for c in result.checks if c.method.startswith(("direction", "elementwise"))]
    for c in numeric:  # the lookup and the whole network: parameters only, never dL/dx
        if c.path in ("emb", "(network)"):
            assert "x" not in c.check.replace("dL/d(", "(").strip("()").split(", ")[0:1] and "dL/dx" not in c.check, c
    assert any(c.path == "emb" for c in numeric) and any(c.path == "(network)" for c in numeric)


def test_a_wrong_lookup_gradient_still_fails() -> None:
    def halved(self, dy, params, x):
        dx, grads = Lookup.backward(self, dy, params, x)
        return dx, {"weight": grads["weight"] * 0.5}

    wrong = type("HalvedLookup", (Lookup,), {"backward": halved})
    result = verify(analyse(TEXT), Options(impl=wrong))
    assert any(c.path == "emb" and not c.passed and c.method.startswith("direction") for c in result.checks)


def test_a_tied_weight_is_counted_once_at_its_owner() -> None:
    result = verify(analyse(TEXT), Options())
    params = {c.path: c for c in result.checks if c.check == "params"}
    assert params["out"].passed and "arrays 0," in params["out"].note  # its weight is emb's
    assert params["(network)"].passed and "arrays 800," in params["(network)"].note  # 50 x 16 once
