"""Dask arrays: the public functions' lazy, block-by-block counterparts, each block computed by the public function
itself (``conv`` the forward pass, ``grad`` grad_weight, ``grad_input`` grad_input and the transposed convolution,
``gather`` the halos of neighbouring chunks).

Imported only when a call is given a Dask array (:mod:`gemmconv.api._dask_hook`, the one way in); these are what
the hook calls, with the public functions' arguments, their keywords as one ``ConvArgs`` and the number of
spatial dimensions.
"""

from __future__ import annotations

from .conv import conv_nd
from .grad import grad_weight_nd
from .grad_input import grad_input_nd, transpose_nd

__all__ = ["conv_nd", "grad_input_nd", "grad_weight_nd", "transpose_nd"]
