"""The token layers' NumPy forward and backward by hand (torch-free: embedding lookups, the padding
row, the class token), each expected array worked out in its comment."""

from __future__ import annotations

import numpy as np
import pytest

from layercalc.errors import SchemaError
from layercalc.layers import REGISTRY


def test_class_token_is_prepended_along_the_sequence() -> None:
    token = np.array([[[7.0, 8.0]]])
    x = np.arange(12.0).reshape(2, 3, 2)
    y, cache = REGISTRY["clstoken"]().forward(x, {"class_token": token})
    assert y.shape == (2, 4, 2)
    np.testing.assert_array_equal(y[:, 0], [[7.0, 8.0], [7.0, 8.0]])
    np.testing.assert_array_equal(y[:, 1:], x)


def test_embedding_lookup_and_scatter_add_by_hand() -> None:
    # table rows r0..r3 = [0, 1], [10, 11], [20, 21], [30, 31]; ids [[1, 3, 1]] look up r1, r3, r1.
    # dy = [[a], [b], [c]] sends a + c to row 1 and b to row 3 (an id used twice gets both gradients)
    table = np.array([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0], [30.0, 31.0]])
    ids = np.array([[1, 3, 1]])
    dy = np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    emb = REGISTRY["embedding"](num_embeddings=4, embedding_dim=2)
    y, cache = emb.forward(ids, {"weight": table})
    np.testing.assert_array_equal(y, [[[10, 11], [30, 31], [10, 11]]])
    dx, grads = emb.backward(dy, {"weight": table}, cache)
    assert dx is None  # token ids are integers: no input gradient
    np.testing.assert_array_equal(grads["weight"], [[0, 0], [6, 8], [0, 0], [3, 4]])
    # padding_idx -3 is row 1 (of 4): its lookups read the row, as F.embedding does (torch gives
    # [[10, 11], [30, 31], [10, 11]]), and the row gets no gradient
    padded = REGISTRY["embedding"](num_embeddings=4, embedding_dim=2, padding_idx=-3)
    y, cache = padded.forward(ids, {"weight": table})
    np.testing.assert_array_equal(y, [[[10, 11], [30, 31], [10, 11]]])
    _, grads = padded.backward(dy, {"weight": table}, cache)
    np.testing.assert_array_equal(grads["weight"], [[0, 0], [0, 0], [0, 0], [3, 4]])


def test_padding_idx_range_is_pytorchs() -> None:
    # PyTorch accepts padding_idx in [-V, V - 1]
    REGISTRY["embedding"](num_embeddings=4, embedding_dim=2, padding_idx=-4)
    REGISTRY["embedding"](num_embeddings=4, embedding_dim=2, padding_idx=3)
    for bad in (4, -5):
        with pytest.raises(SchemaError, match=r"outside \[-4, 3\]"):
            REGISTRY["embedding"](num_embeddings=4, embedding_dim=2, padding_idx=bad)


def test_class_token_gradient_sums_over_the_batch() -> None:
    dy = np.arange(12.0).reshape(2, 3, 2)  # sample 0 rows [0 1] [2 3] [4 5]; sample 1 rows [6 7] ...
    dx, grads = REGISTRY["clstoken"]().backward(dy, {"class_token": np.zeros((1, 1, 2))}, None)
    np.testing.assert_array_equal(dx, dy[:, 1:])
    np.testing.assert_array_equal(grads["class_token"], [[[0 + 6, 1 + 7]]])
    assert REGISTRY["clstoken"]().param_shapes((2, 3, 2)) == {"class_token": (1, 1, 2)}
