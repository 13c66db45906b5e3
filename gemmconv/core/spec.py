"""The normalised description of one convolution call.

:class:`ConvSpec` holds every size and hyper-parameter of a call after validation, so strategies,
predicates and kernels read plain integers and never re-parse user arguments. Spatial quantities are
tuples with one entry per spatial axis (``ndim`` of them, 2 today); the 2-D names (``height``, ``kh``,
``sh``, ``pt``, ...) are views of those tuples for the 2-D kernels.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property

__all__ = ["NO_LIMITS", "PADDING_MODES", "ConvSpec", "Limits"]

#: padding modes of ``torch.nn.Conv2d``; ``"zeros"`` is handled inside the kernels,
#: the others by padding the input explicitly before the strategy runs.
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

_ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8, "complex64": 8, "complex128": 16}


def out_size(size: int, before: int, after: int, kernel: int, stride: int, dilation: int) -> int:
    """Output length of one axis (torch's formula)."""
    return (size + before + after - (kernel - 1) * dilation - 1) // stride + 1


def _view(index: int, doc: str) -> cached_property[int]:
    """A 2-D name for entry ``index`` of :attr:`ConvSpec._plane`, remembered on first use."""

    def get(spec: ConvSpec) -> int:
        return spec._plane[index]

    get.__doc__ = doc
    return cached_property(get)


@dataclass(frozen=True)
class ConvSpec:
    """Sizes and hyper-parameters of one convolution (channels first, cross-correlation).

    Derived sizes (``out_size``, ``out_shape``, ``flops``, ...) are computed once per spec.

    Attributes
    ----------
    n, c, k : int
        Batch, input channels, output channels.
    size : tuple of int
        The input's spatial sizes, one per spatial axis (``(height, width)`` in 2-D).
    kernel : tuple of int
        The kernel's spatial sizes.
    stride, dilation : tuple of int
        Per spatial axis.
    padding : tuple of (int, int)
        Padding (before, after) per spatial axis; asymmetric only for ``padding="same"`` with an even
        effective kernel, as in torch.
    groups : int
        Number of groups; ``c`` and ``k`` are multiples of it.
    padding_mode : str
        One of :data:`PADDING_MODES`.
    dtype : str
        Name of the floating or complex dtype shared by input, weight and bias.

    Resource limits (a workspace bound) are not part of the convolution: they travel beside it as
    :class:`Limits`.
    """

    n: int
    c: int
    k: int
    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str
    dtype: str

    # --- every D ---------------------------------------------------------------------------------------

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.size)

    @cached_property
    def cg(self) -> int:
        """Input channels per group."""
        return self.c // self.groups

    @cached_property
    def kg(self) -> int:
        """Output channels per group."""
        return self.k // self.groups

    @cached_property
    def effective_kernel(self) -> tuple[int, ...]:
        """The dilated kernel's spatial sizes."""
        return tuple((r - 1) * d + 1 for r, d in zip(self.kernel, self.dilation, strict=True))

    @cached_property
    def padded_size(self) -> tuple[int, ...]:
        """The input's spatial sizes with the padding added."""
        return tuple(s + lo + hi for s, (lo, hi) in zip(self.size, self.padding, strict=True))

    @cached_property
    def out_size(self) -> tuple[int, ...]:
        """The output's spatial sizes."""
        return tuple(out_size(s, lo, hi, r, st, d) for s, (lo, hi), r, st, d
                     in zip(self.size, self.padding, self.kernel, self.stride, self.dilation, strict=True))

    @cached_property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of the batched input, ``(n, c, *size)``."""
        return (self.n, self.c, *self.size)

    @cached_property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the weights, ``(k, c / groups, *kernel)``."""
        return (self.k, self.cg, *self.kernel)

    @cached_property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of the batched result, ``(n, k, *out_size)``."""
        return (self.n, self.k, *self.out_size)

    @cached_property
    def padded(self) -> bool:
        """Whether any side is padded."""
        return any(lo or hi for lo, hi in self.padding)

    @cached_property
    def strided(self) -> bool:
        """Whether any stride exceeds 1."""
        return any(s != 1 for s in self.stride)

    @cached_property
    def taps(self) -> int:
        """Kernel taps per input channel (the product of the kernel's sizes)."""
        return math.prod(self.kernel)

    @cached_property
    def flops(self) -> int:
        """Multiply-adds times two of the direct algorithm (the count all strategies are quoted in)."""
        return 2 * self.n * self.k * math.prod(self.out_size) * self.cg * self.taps

    @cached_property
    def itemsize(self) -> int:
        """Bytes of one element of :attr:`dtype`."""
        return _ITEMSIZE[self.dtype]

    @cached_property
    def padded_bytes(self) -> int:
        """Bytes of the batched input padded (the copy a padding mode other than zeros makes)."""
        return self.n * self.c * math.prod(self.padded_size) * self.itemsize

    def pads_explicitly(self, pads_zeros: bool) -> bool:
        """Whether the input is padded explicitly before a strategy runs: for padding modes other than zeros,
        and for a strategy that does not pad with zeros itself (``pads_zeros``)."""
        return self.padded and (self.padding_mode != "zeros" or not pads_zeros)

    def without_padding(self) -> ConvSpec:
        """The spec of the same convolution applied to an input that was padded explicitly."""
        return dataclasses.replace(self, size=self.padded_size, padding=((0, 0),) * self.ndim,
                                   padding_mode="zeros")

    def along(self, axis: int, size: int, padding: tuple[int, int], n: int | None = None) -> ConvSpec:
        """The same convolution with spatial ``axis`` (0 for the first) of input ``size`` and ``padding``
        (before, after), and ``n`` images if given: a band or a block of the input along that axis."""
        sizes, pads = list(self.size), list(self.padding)
        sizes[axis], pads[axis] = size, padding
        return dataclasses.replace(self, size=tuple(sizes), padding=tuple(pads), n=self.n if n is None else n)

    # --- the 2-D names, for the 2-D kernels ----------------------------------------------------------

    @cached_property
    def _plane(self) -> tuple[int, ...]:
        """``(height, width, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, ekh, ekw, oh, ow)``; only a 2-D spec has them."""
        if len(self.size) != 2:
            raise AttributeError(f"a {self.ndim}-D convolution has no 2-D sizes (height, kh, sh, pt, ...); "
                                 "read size, kernel, stride, padding and dilation instead")
        (h, w), (kh, kw), (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = (
            self.size, self.kernel, self.stride, self.padding, self.dilation)
        (ekh, ekw), (oh, ow) = self.effective_kernel, self.out_size
        return h, w, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, ekh, ekw, oh, ow

    height = _view(0, "Input height (2-D).")
    width = _view(1, "Input width (2-D).")
    kh = _view(2, "Kernel height (2-D).")
    kw = _view(3, "Kernel width (2-D).")
    sh = _view(4, "Vertical stride (2-D).")
    sw = _view(5, "Horizontal stride (2-D).")
    pt = _view(6, "Padding at the top (2-D).")
    pb = _view(7, "Padding at the bottom (2-D).")
    pl = _view(8, "Padding at the left (2-D).")
    pr = _view(9, "Padding at the right (2-D).")
    dh = _view(10, "Vertical dilation (2-D).")
    dw = _view(11, "Horizontal dilation (2-D).")
    ekh = _view(12, "Effective (dilated) kernel height (2-D).")
    ekw = _view(13, "Effective (dilated) kernel width (2-D).")
    oh = _view(14, "Output height (2-D).")
    ow = _view(15, "Output width (2-D).")


@dataclass(frozen=True)
class Limits:
    """Resources a call may use, beside its :class:`ConvSpec`.

    Attributes
    ----------
    workspace : int or None
        Bytes of temporary memory ``im2col``, the strided ``1x1`` and ``fft`` may hold; None: no bound
        (``conv2d``'s ``workspace_limit``).
    """

    workspace: int | None = None

    def padding_explicitly(self, spec: ConvSpec, pads_zeros: bool) -> Limits | str:
        """What is left of these limits to a strategy (which pads with zeros itself where ``pads_zeros``) once the
        input (or its gradient) is padded explicitly for ``spec`` (a padding mode other than zeros): the padded
        copy's bytes come off the workspace. A reason where the copy alone is above it."""
        if self.workspace is None or not spec.pads_explicitly(pads_zeros):
            return self
        copy = spec.padded_bytes
        if copy == 0:
            return self
        if copy > self.workspace:
            return (f"the input (or its gradient) padded explicitly ({spec.padding_mode!r}) alone needs {copy} "
                    f"bytes, above workspace_limit={self.workspace}")
        return Limits(workspace=self.workspace - copy)


#: no bound on anything
NO_LIMITS = Limits()
