"""examples/train_digits.py: one training step's gradients against torch autograd, and the training run."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

_PATH = pathlib.Path(__file__).parents[1] / "examples" / "train_digits.py"
_spec = importlib.util.spec_from_file_location("train_digits", _PATH)
train_digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_digits)


def test_one_training_step_has_torch_autograd_gradients():
    rng = np.random.default_rng(3)
    params = train_digits.init_params(np, rng, "float64")
    params = {k: v + rng.uniform(-0.1, 0.1, v.shape) for k, v in params.items()}  # biases not all zero
    x = rng.uniform(0, 1, (5, 1, 8, 8))
    labels = rng.integers(0, 10, 5)
    loss, grads = train_digits.loss_and_grads(np, params, x, labels)
    t = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in params.items()}
    h = torch.from_numpy(x)
    for name, kw in train_digits.CONVS:
        h = F.relu(F.conv2d(h, t[f"{name}.w"], t[f"{name}.b"], **kw))
    ref = F.cross_entropy(h.reshape(5, -1) @ t["fc.w"] + t["fc.b"], torch.from_numpy(labels))
    ref.backward()
    assert loss == pytest.approx(float(ref.detach()), rel=1e-9)
    assert set(grads) == set(t)
    for k, g in grads.items():
        np.testing.assert_allclose(g, t[k].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)


def test_training_reaches_the_accuracy_on_the_held_out_quarter(capsys):
    pytest.importorskip("sklearn")
    accuracy = train_digits.main(["--epochs", "20"])
    out = capsys.readouterr().out
    assert accuracy >= 0.95
    assert out.strip().splitlines()[-1] == f"test accuracy: {accuracy:.4f}"
