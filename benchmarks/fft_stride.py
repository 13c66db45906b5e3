"""Strided convolution through ``fft``: the polyphase split against subsampling the stride-1 outputs, every pass,
interleaved with torch in one process; and which of the two the cost model picks.

    python benchmarks/fft_stride.py [--rounds 3] [--reps 3] [--batches 1 8] [--passes forward grad_input grad_weight]

For each round, pass, batch and layer: torch's pass (``F.conv*d``, or ``torch.ops.aten.convolution_backward`` with
the mask of the one gradient), then ``fft`` with ``fft_tiling.STRIDE_BY`` forced to each way, back to back (median
of ``--reps`` calls after one untimed call). The table gives the median over rounds of each time, the ratio
polyphase / subsample and the way the cost model picks (``STRIDE_BY = None``). Needs torch and rich.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
import torch.nn.functional as F
from _timing import median_time  # benchmarks/ is on sys.path when this script runs
from rich.console import Console
from rich.table import Table

import gemmconv
from gemmconv.core.args import ConvArgs
from gemmconv.planning.validate import validate
from gemmconv.strategies import fft_tiling
from gemmconv.tools.layers import LayerND

#: strided layers with large kernels: AlexNet's first (11x11/4), a 7x7/2 stem, 7x7/2 and 11x11/2 at 56^2, a 1-D filter
#: bank decimating by 4, a 3-D 5^3/2
LAYERS = {layer.name: layer for layer in [
    LayerND("alexnet_k11s4_224", 3, (224, 224), 64, (11, 11), stride=4, padding=2),
    LayerND("stem_k7s2_224", 3, (224, 224), 64, (7, 7), stride=2, padding=3),
    LayerND("k7s2_56", 64, (56, 56), 64, (7, 7), stride=2, padding=3),
    LayerND("k11s2_56", 64, (56, 56), 64, (11, 11), stride=2, padding=5),
    LayerND("sig_k255s4_16384", 16, (16384,), 16, (255,), stride=4, padding=127),
    LayerND("vol5s2_32", 16, (32, 32, 32), 16, (5, 5, 5), stride=2, padding=2),
]}
TORCH = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
FN = {"forward": "conv{}d", "grad_input": "conv{}d_grad_input", "grad_weight": "conv{}d_grad_weight"}


def calls(pass_: str, layer: LayerND, n: int):
    """torch's pass and gemmconv's fft pass as calls of no arguments, and the spec."""
    x, w, b = layer.arrays(n)
    args = layer.conv_args
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
    y = TORCH[layer.ndim](tx, tw, tb, **args)
    gy = np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(np.float32)
    tgy = torch.from_numpy(gy)
    fn = getattr(gemmconv, FN[pass_].format(layer.ndim))
    spec = validate(x, w, None, ConvArgs(**args), ndim=layer.ndim).spec
    if pass_ == "forward":
        return (lambda: TORCH[layer.ndim](tx, tw, tb, **args)), (lambda: fn(x, w, b, strategy="fft", **args)), spec
    mask = [pass_ == "grad_input", pass_ == "grad_weight", False]
    d = layer.ndim

    def torch_pass():
        return torch.ops.aten.convolution_backward(tgy, tx, tw, None, [layer.stride] * d, [layer.padding] * d,
                                                   [1] * d, False, [0] * d, layer.groups, mask)

    if pass_ == "grad_input":
        return torch_pass, (lambda: fn(x.shape, w, gy, strategy="fft", **args)), spec
    return torch_pass, (lambda: fn(x, w.shape, gy, strategy="fft", **args)), spec


def timed(way: str | None, fn, reps: int) -> float:
    fft_tiling.STRIDE_BY = way
    gemmconv.clear_caches()
    try:
        return median_time(fn, reps)
    finally:
        fft_tiling.STRIDE_BY = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--passes", nargs="+", default=list(FN))
    parser.add_argument("--layers", nargs="+", default=list(LAYERS))
    opts = parser.parse_args()
    times: dict[tuple, dict[str, list[float]]] = {}
    picks: dict[tuple, str] = {}
    for _ in range(opts.rounds):
        for pass_ in opts.passes:
            for n in opts.batches:
                for name in opts.layers:
                    torch_fn, fft_fn, spec = calls(pass_, LAYERS[name], n)
                    key = (pass_, n, name)
                    row = times.setdefault(key, {"torch": [], "polyphase": [], "subsample": []})
                    row["torch"].append(median_time(torch_fn, opts.reps))
                    for way in ("polyphase", "subsample"):
                        row[way].append(timed(way, fft_fn, opts.reps))
                    backend = gemmconv.get_backend(np.zeros(1))
                    picks[key] = "polyphase" if fft_tiling.cut(backend, spec, pass_).phases else "subsample"
    table = Table(title=f"fft on strided layers, float32, torch with {torch.get_num_threads()} threads (median of "
                        f"{opts.rounds} rounds)")
    for col in ("pass", "N", "layer", "torch ms", "polyphase ms", "subsample ms", "poly/sub", "faster",
                "cost model picks", "best fft / torch"):
        table.add_column(col)
    for (pass_, n, name), row in times.items():
        t, p, s = (statistics.median(row[k]) for k in ("torch", "polyphase", "subsample"))
        table.add_row(pass_, str(n), name, f"{t * 1e3:.2f}", f"{p * 1e3:.2f}", f"{s * 1e3:.2f}", f"{p / s:.2f}",
                      "polyphase" if p < s else "subsample", picks[(pass_, n, name)], f"{min(p, s) / t:.2f}x")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
