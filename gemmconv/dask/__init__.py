"""Dask arrays: the public functions' lazy, block-by-block counterparts, each block computed by the public function
itself (``conv`` the forward pass, ``grad`` grad_weight, ``grad_input`` grad_input and the transposed convolution,
``gather`` the halos of neighbouring chunks).

Imported only when a call is given a Dask array (:mod:`gemmconv.api._dask_hook`, the one way in); these are what
the hook calls, with the public functions' arguments and their keywords as one ``ConvArgs``.
"""

from __future__ import annotations

from .conv import conv2d
from .grad import conv2d_grad_weight
from .grad_input import conv2d_grad_input, conv_transpose2d

__all__ = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight", "conv_transpose2d"]
