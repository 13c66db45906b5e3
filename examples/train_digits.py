"""Train a small CNN on scikit-learn's digits with gemmconv's convolutions and their gradients.

    python examples/train_digits.py [--epochs 20] [--device cpu|cuda] [--plot loss.png]

The network: conv 1 -> 16 (3x3, padding 1), ReLU, conv 16 -> 32 (3x3, stride 2, padding 1), ReLU, a linear
classifier on the 32x4x4 features. Plain minibatch SGD on three quarters of the 1 797 8x8 images (the data set
ships with scikit-learn: no download), tested on the held-out quarter. Every convolution and convolution
gradient is gemmconv's (``conv2d``, ``conv2d_grad_input``, ``conv2d_grad_weight``); the rest is array code of
the device's library (NumPy, or CuPy with ``--device cuda``). Needs ``pip install 'gemmconv[examples]'``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import gemmconv

#: (name, conv2d keywords) of the two convolutions
CONVS = (("conv1", dict(padding=1)), ("conv2", dict(stride=2, padding=1)))


def init_params(xp: Any, rng: np.random.Generator, dtype: str = "float32") -> dict[str, Any]:
    """He-initialised weights, zero biases."""
    def he(shape: tuple[int, ...], fan_in: int) -> Any:
        return xp.asarray(rng.standard_normal(shape) * np.sqrt(2.0 / fan_in), dtype=dtype)

    return {"conv1.w": he((16, 1, 3, 3), 9), "conv1.b": xp.zeros(16, dtype=dtype),
            "conv2.w": he((32, 16, 3, 3), 16 * 9), "conv2.b": xp.zeros(32, dtype=dtype),
            "fc.w": he((32 * 4 * 4, 10), 32 * 4 * 4), "fc.b": xp.zeros(10, dtype=dtype)}


def loss_and_grads(xp: Any, params: dict[str, Any], x: Any, labels: Any) -> tuple[float, dict[str, Any]]:
    """Mean cross-entropy of a batch ``x`` (N, 1, 8, 8) with integer ``labels`` (N,), and its gradient with
    respect to every parameter."""
    n = x.shape[0]
    acts = [x]  # the input of each convolution
    h = x
    for name, kw in CONVS:
        h = xp.maximum(gemmconv.conv2d(h, params[f"{name}.w"], params[f"{name}.b"], **kw), 0)  # conv, ReLU
        acts.append(h)
    feats = h.reshape(n, -1)  # (N, 32, 4, 4) -> (N, 512)
    logits = feats @ params["fc.w"] + params["fc.b"]
    logits = logits - logits.max(axis=1, keepdims=True)
    p = xp.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    loss = -xp.log(p[xp.arange(n), labels] + 1e-12).mean()
    d_logits = p
    d_logits[xp.arange(n), labels] -= 1
    d_logits /= n
    grads = {"fc.w": feats.T @ d_logits, "fc.b": d_logits.sum(axis=0)}
    d_h = (d_logits @ params["fc.w"].T).reshape(h.shape)  # (N, 512) -> (N, 32, 4, 4)
    for i in reversed(range(len(CONVS))):
        name, kw = CONVS[i]
        d_z = d_h * (acts[i + 1] > 0)  # through the ReLU
        w = params[f"{name}.w"]
        grads[f"{name}.w"] = gemmconv.conv2d_grad_weight(acts[i], w.shape, d_z, **kw)
        grads[f"{name}.b"] = d_z.sum(axis=(0, 2, 3))  # the bias's gradient
        if i > 0:  # no gradient is needed for the images
            d_h = gemmconv.conv2d_grad_input(acts[i].shape, w, d_z, **kw)
    return float(loss), grads


def predict(xp: Any, params: dict[str, Any], x: Any) -> Any:
    """Class of each image of ``x``."""
    h = x
    for name, kw in CONVS:
        h = xp.maximum(gemmconv.conv2d(h, params[f"{name}.w"], params[f"{name}.b"], **kw), 0)
    return (h.reshape(x.shape[0], -1) @ params["fc.w"] + params["fc.b"]).argmax(axis=1)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--plot", help="write the loss curve to this PNG")
    opts = parser.parse_args(argv)
    from sklearn.datasets import load_digits  # the examples extra
    from sklearn.model_selection import train_test_split

    if opts.device == "cuda":
        import cupy as xp
    else:
        xp = np
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[:, None]  # (1797, 8, 8) -> (1797, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target, test_size=0.25,
                                                        random_state=opts.seed, stratify=digits.target)
    x_train, x_test, y_train = xp.asarray(x_train), xp.asarray(x_test), xp.asarray(y_train)
    rng = np.random.default_rng(opts.seed)
    params = init_params(xp, rng)
    losses = []
    start = time.perf_counter()
    for epoch in range(opts.epochs):
        order = xp.asarray(rng.permutation(len(x_train)))
        total = 0.0
        for i in range(0, len(order), opts.batch):
            idx = order[i:i + opts.batch]
            loss, grads = loss_and_grads(xp, params, x_train[idx], y_train[idx])
            for key, g in grads.items():
                params[key] -= opts.lr * g
            total += loss * len(idx)
        losses.append(total / len(order))
        print(f"epoch {epoch + 1:3d}  loss {losses[-1]:.4f}")
    elapsed = time.perf_counter() - start
    predicted = predict(xp, params, x_test)
    if xp is not np:
        predicted = xp.asnumpy(predicted)
    accuracy = float((predicted == y_test).mean())
    print(f"trained in {elapsed:.1f} s on {opts.device}")
    print(f"test accuracy: {accuracy:.4f}")
    if opts.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(range(1, len(losses) + 1), losses, marker="o")
        ax.set(xlabel="epoch", ylabel="training loss (cross-entropy)", yscale="log",
               title=f"digits CNN with gemmconv: test accuracy {accuracy:.3f}")
        fig.tight_layout()
        fig.savefig(opts.plot, dpi=120)
        print(f"wrote {opts.plot}")
    return accuracy


if __name__ == "__main__":
    main()
