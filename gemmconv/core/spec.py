"""The normalised description of one convolution call.

:class:`ConvSpec` holds every size and hyper-parameter of a call after
validation, so strategies, predicates and kernels read plain integers and never
re-parse user arguments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

__all__ = ["NO_LIMITS", "PADDING_MODES", "ConvSpec", "Limits"]

#: padding modes of ``torch.nn.Conv2d``; ``"zeros"`` is handled inside the kernels,
#: the others by padding the input explicitly before the strategy runs.
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

_ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}


@dataclass(frozen=True)
class ConvSpec:
    """Sizes and hyper-parameters of one 2-D convolution (NCHW, cross-correlation).

    Derived sizes (``oh``, ``out_shape``, ``flops``, ...) are computed once per spec.

    Attributes
    ----------
    n, c, height, width : int
        Batch, input channels, input height and width (``oh`` and ``ow`` are the output's).
    k, kh, kw : int
        Output channels, kernel height and width.
    sh, sw : int
        Strides.
    pt, pb, pl, pr : int
        Padding at the top, bottom, left and right (asymmetric only for
        ``padding="same"`` with an even effective kernel, as in torch).
    dh, dw : int
        Dilations.
    groups : int
        Number of groups; ``c`` and ``k`` are multiples of it.
    padding_mode : str
        One of :data:`PADDING_MODES`.
    dtype : str
        Name of the floating dtype shared by input, weight and bias.

    Resource limits (a workspace bound) are not part of the convolution: they travel beside it as
    :class:`Limits`.
    """

    n: int
    c: int
    height: int
    width: int
    k: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pb: int
    pl: int
    pr: int
    dh: int
    dw: int
    groups: int
    padding_mode: str
    dtype: str

    @cached_property
    def cg(self) -> int:
        """Input channels per group."""
        return self.c // self.groups

    @cached_property
    def kg(self) -> int:
        """Output channels per group."""
        return self.k // self.groups

    @cached_property
    def ekh(self) -> int:
        """Effective (dilated) kernel height."""
        return (self.kh - 1) * self.dh + 1

    @cached_property
    def ekw(self) -> int:
        """Effective (dilated) kernel width."""
        return (self.kw - 1) * self.dw + 1

    @cached_property
    def oh(self) -> int:
        """Output height."""
        return (self.height + self.pt + self.pb - self.ekh) // self.sh + 1

    @cached_property
    def ow(self) -> int:
        """Output width."""
        return (self.width + self.pl + self.pr - self.ekw) // self.sw + 1

    @cached_property
    def out_shape(self) -> tuple[int, int, int, int]:
        """Shape of the batched result, ``(n, k, oh, ow)``."""
        return (self.n, self.k, self.oh, self.ow)

    @cached_property
    def padded(self) -> bool:
        """Whether any side is padded."""
        return bool(self.pt or self.pb or self.pl or self.pr)

    @cached_property
    def flops(self) -> int:
        """Multiply-adds times two of the direct algorithm (the count all strategies are quoted in)."""
        return 2 * self.n * self.k * self.oh * self.ow * self.cg * self.kh * self.kw

    @cached_property
    def itemsize(self) -> int:
        """Bytes of one element of :attr:`dtype`."""
        return _ITEMSIZE[self.dtype]

    def pads_explicitly(self, pads_zeros: bool) -> bool:
        """Whether the input is padded explicitly before a strategy runs: for padding modes other than zeros,
        and for a strategy that does not pad with zeros itself (``pads_zeros``)."""
        return self.padded and (self.padding_mode != "zeros" or not pads_zeros)

    def without_padding(self) -> ConvSpec:
        """The spec of the same convolution applied to an input that was padded explicitly."""
        return dataclasses.replace(
            self,
            height=self.height + self.pt + self.pb,
            width=self.width + self.pl + self.pr,
            pt=0, pb=0, pl=0, pr=0,
            padding_mode="zeros",
        )


@dataclass(frozen=True)
class Limits:
    """Resources a call may use, beside its :class:`ConvSpec`.

    Attributes
    ----------
    workspace : int or None
        Bytes of temporary memory ``im2col`` (and the strided ``1x1``) may hold; None: no bound
        (``conv2d``'s ``workspace_limit``).
    """

    workspace: int | None = None


#: no bound on anything
NO_LIMITS = Limits()
