"""Dask arrays: each function's lazy, block-by-block counterpart, each block computed by the public function
(``conv`` the forward pass, ``grad`` grad_weight, ``grad_input`` grad_input and the transposed convolution,
``gather`` the halos of neighbouring chunks). Nothing here imports Dask until a Dask array arrives."""
