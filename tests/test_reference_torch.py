"""The NumPy forward and backward of every layer type (and block) against torch autograd.

Batchnorm runs in training mode on both sides (batch statistics), dropout as the identity.
"""

from __future__ import annotations

import numpy as np
import pytest

from layercalc import analyse
from layercalc.verify import backward, forward
from layercalc.verify import Options, plan
from test_layers import CASES

torch = pytest.importorskip("torch")
# float64 on both sides; 1e-7 because torch's hardsigmoid/hardswish use a float32 1/6 constant
TOL = {"rtol": 1e-7, "atol": 1e-9}
torch_models = pytest.importorskip("torch_models")


@pytest.mark.parametrize("entry, x_shape", [(c[0], c[1]) for c in CASES], ids=lambda v: str(v)[:40])
def test_forward_and_backward_match_torch(entry: object, x_shape: tuple[int, ...]) -> None:
    if x_shape[0] == 1 and any(k in str(entry) for k in ("batchnorm", "residual")) and len(x_shape) == 2:
        pytest.skip("batch statistics need more than one value per channel")
    config = {"input": list(x_shape[1:]), "batch": x_shape[0], "layers": [entry]}
    root, _ = plan(analyse(config), Options(seed=3))
    rng = np.random.default_rng(4)
    x = rng.standard_normal(x_shape)
    y, cache = forward(root, x)
    dy = rng.standard_normal(y.shape)
    grads: dict = {}
    dx = backward(root, dy, cache, grads)

    model, _ = torch_models.build(config)
    model = model.double().train()
    for m in model.modules():
        if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d)):
            m.eval()
    ours = root.all_params()
    theirs = list(model.parameters())
    assert len(ours) == len(theirs)
    for (_, _, arr), p in zip(ours, theirs):
        assert tuple(p.shape) == arr.shape
        p.data = torch.tensor(arr)
    tx = torch.tensor(x, requires_grad=True)
    ty = model(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    for (owner, name, _), p in zip(ours, theirs):
        np.testing.assert_allclose(grads[owner][name], p.grad.numpy(), **TOL)
