"""The kernel families a strategy composes, which a backend declares it provides by deriving from them.

A backend is a :class:`~gemmconv.backends.base.Backend` (array namespace, device, ownership) deriving
from any of these; :meth:`Backend.provides` says which, and a strategy that needs a family (its
``needs``) is refused on a backend without it. Kernels called from outside return fresh arrays;
``reuse=True`` is the library's own opt-in to a buffer reused on the calling thread.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from ..core.prepared import Prepared
from ..core.spec import ConvSpec
from .base import Backend

__all__ = ["FAMILIES", "Col2imKernels", "DirectGradKernels", "DirectKernels", "FFTKernels", "Im2colKernels",
           "WinogradKernels", "filter_transform"]


class Im2colKernels(Backend):
    """Column packing (im2col), for ``im2col`` and the strided ``1x1``."""

    family = "im2col"

    @abstractmethod
    def im2col(self, x: Any, spec: ConvSpec) -> Any:
        """Column matrices of shape ``(N, C·KH·KW, OH·OW)``, rows ordered (c, r, s), zero padding applied.

        One matrix per image, so the GEMM writes NCHW directly. Rows of group ``g`` are the contiguous
        block ``g·Cg·KH·KW ... (g+1)·Cg·KH·KW``.
        """

    def im2col_part(self, x: Any, spec: ConvSpec, n0: int, n1: int, o0: int, o1: int, ones_row: bool = False,
                    reuse: bool = False) -> Any:
        """Column matrices of images ``n0:n1`` and output rows ``o0:o1``: ``(n1-n0, C·KH·KW, (o1-o0)·OW)``,
        with ``ones_row`` one more row, of ones (a GEMM by weights with the bias as their last column
        then adds the bias). A fresh array, unless ``reuse`` (the library's own opt-in: the caller drops
        it before its next call on this thread) lets a backend write it into a buffer it reuses.

        This default packs the band of input rows those outputs read as a convolution of its own
        (its padding is the part of the original padding it touches) through :meth:`im2col`.
        """
        stride, (before, _), reach = spec.stride[0], spec.padding[0], spec.effective_kernel[0]
        r0 = o0 * stride - before  # first padded-input row read, in input coordinates
        r1 = (o1 - 1) * stride - before + reach  # one past the last
        lo, hi = max(r0, 0), min(r1, spec.size[0])
        sub = spec.along(0, hi - lo, (lo - r0, r1 - hi), n=n1 - n0)
        cols = self.im2col(x[n0:n1, :, lo:hi], sub)  # x rows (N', C, rows, W) -> (N', C·R·S, OB·OW)
        if not ones_row:
            return cols
        ones = self.xp.ones((cols.shape[0], 1, cols.shape[2]), dtype=cols.dtype)
        return self.xp.concatenate([cols, ones], axis=1)  # -> (N', C·R·S + 1, OB·OW)


class DirectKernels(Backend):
    """The direct loop over output pixels and kernel taps, for ``direct``."""

    family = "direct"

    @abstractmethod
    def direct(self, x: Any, w: Any, b: Any | None, spec: ConvSpec, out: Any = None) -> Any:
        """The whole convolution (with zero padding and bias) by direct loops; shape ``spec.out_shape``, written
        into ``out`` (C-contiguous) when given."""

    def direct_runner(self, spec: ConvSpec) -> Prepared:
        """:meth:`direct` for ``spec`` prepared, with what depends only on sizes decided once, and its workspace
        (:meth:`direct_workspace`)."""
        return Prepared(lambda x, w, b, out: self.direct(x, w, b, spec, out), ("direct",), self.direct_workspace(spec))

    def direct_workspace(self, spec: ConvSpec) -> int:
        """Bytes :meth:`direct` holds besides its result (0: none)."""
        return 0


def filter_transform(xp: Any, rows: Any, g: Any) -> Any:
    """``G f G^T`` of every 3x3 filter, one a row of ``rows`` (F, 9), as one GEMM: ``(G ⊗ G) @ rows^T``
    (T², 9) @ (9, F) -> (T², F), in the precision of ``g`` (T, 3), cast back to that of ``rows``."""
    gg = xp.kron(g, g)  # (T², 9): [a·T + b, r·3 + s] = G[a, r]·G[b, s]
    return xp.ascontiguousarray((gg @ rows.astype(g.dtype).T).astype(rows.dtype))


def grad_tiles(xp: Any, gp: Any, m: int, th: int, tw: int, r0: int, r1: int, aa: Any) -> Any:
    """``A t A^T`` of the m x m tiles ``t`` of dL/dy for tile rows ``r0:r1`` of the N·th rows, as one GEMM:
    ``aa`` = A ⊗ A (T², m²) @ the tiles (m², RB·tw·K) -> (T², RB·tw, K). ``gp`` (N, K, th·m, tw·m) is dL/dy
    with zeros past OH, OW (the forward's output tiles)."""
    n, k = gp.shape[0], gp.shape[1]
    six = gp.reshape(n, k, th, m, tw, m)  # (N, K, th·m, tw·m) -> (N, K, th, m, tw, m): tile rows, their rows
    buf = xp.empty((m, m, r1 - r0, tw, k), dtype=gp.dtype)
    r = r0
    while r < r1:  # the tile rows of one image at a time
        image, row = divmod(r, th)
        stop = min(r1, (image + 1) * th)
        # (K, RB, m, tw, m) of one image -> (m, m, RB, tw, K)
        buf[:, :, r - r0: stop - r0] = six[image, :, row: row + stop - r].transpose(2, 4, 1, 3, 0)
        r = stop
    t2 = aa.shape[0]
    return (aa @ buf.reshape(m * m, -1)).reshape(t2, (r1 - r0) * tw, k)  # (T², m²) @ (m², RB·tw·K)


class WinogradKernels(Backend):
    """Winograd's filter, input and output transforms and their multiply, for ``winograd`` and ``winograd_f2``."""

    family = "winograd"

    #: whether Winograd's filter transform is cached (host-checked against a copy of the weights);
    #: a GPU backend recomputes it instead, as the check would need a device->host sync per call
    caches_filters: bool = True

    def winograd_filter(self, w: Any, spec: ConvSpec, g: Any, m: int) -> Any:
        """Winograd's filter transform ``U = G w G^T`` laid out as (T², G, K/G, C/G), ``T = m + 2``.

        ``g`` is the (T, 3) matrix G in the working precision (float64 for float32/float64
        weights, float32 for float16), so the cached transform carries no extra rounding.
        """
        rows = w.reshape(spec.k * spec.cg, 9)  # (K, C/G, 3, 3) -> (K·C/G, 9): rows (g, k, c)
        u = filter_transform(self.xp, rows, g)  # (T², K·C/G)
        return u.reshape((m + 2) ** 2, spec.groups, spec.kg, spec.cg)  # -> (T², G, K/G, C/G)

    def winograd_tiles(self, t: int, c: int, p: int, dtype: Any) -> Any:
        """An uninitialised array for ``p`` transformed input tiles of ``c`` channels, in the layout
        :meth:`winograd_input` returns (here ``(T, T, C, P)``)."""
        return self.xp.empty((t, t, c, p), dtype=dtype)

    def winograd_multiply(self, u: Any, v: Any, spec: ConvSpec, m: int, k0: int, k1: int,
                          reuse: bool = False) -> Any:
        """The products ``M = U V`` of the filter transform (:meth:`winograd_filter`) and input tiles
        (:meth:`winograd_input`) for output channels ``k0:k1`` (all of them when G > 1), in the layout
        :meth:`winograd_output` reads: here ``(T, T, KB, P)``. A fresh array unless ``reuse`` (see
        :meth:`im2col_part`)."""
        t, p = m + 2, v.shape[-1]
        v = v.reshape(t * t, spec.groups, spec.cg, p)  # (T, T, C, P) -> (T², G, C/G, P)
        uk = u if (k0, k1) == (0, spec.k) else u[:, :, k0:k1]  # (T², G, KB/G, C/G); KB < K only when G = 1
        mt = self.matmul(uk, v, scratch=reuse)  # (T², G, KB/G, C/G) @ (T², G, C/G, P) -> (T², G, KB/G, P)
        return mt.reshape(t, t, k1 - k0, p)  # -> (T, T, KB, P)

    def winograd_input_rows(self, x: Any, spec: ConvSpec, m: int, th: int, tw: int, r0: int, r1: int,
                            channels: tuple[int, int] | None = None, out: Any = None, reuse: bool = False) -> Any:
        """:meth:`winograd_input` for tile rows ``r0:r1`` of the ``N·th`` rows: ``(T, T, C, (r1-r0)·tw)``.

        With ``channels=(c0, c1)`` and ``out`` (T, T, C, (r1-r0)·tw), only those input channels are
        transformed, into ``out[:, :, c0:c1]``, and ``out`` is returned.
        Only called in blocks, so only backends whose scheduler cuts work into blocks implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} transforms all tiles at once (its scheduler runs no blocks)")

    def winograd_output_rows(self, mt: Any, b: Any | None, out: Any, spec: ConvSpec, m: int, th: int, tw: int,
                             r0: int, k0: int) -> None:
        """:meth:`winograd_output` of tiles ``mt`` (T, T, KB, RB·tw), tile rows ``r0:r0+RB`` and output
        channels ``k0:k0+KB``, written into ``out`` (N, K, OH, OW).

        Only called in blocks, so only backends whose scheduler cuts work into blocks implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} transforms all tiles at once (its scheduler runs no blocks)")

    def winograd_grad_tiles(self, gp: Any, spec: ConvSpec, m: int, th: int, tw: int, r0: int, r1: int,
                            aa: Any) -> Any:
        """dL/dy's tiles ``A t A^T`` (:func:`grad_tiles`; ``gp`` zero-padded to whole tiles) for tile rows
        ``r0:r1``, in the layout of :meth:`winograd_input` with K channels: here ``(T, T, K, P)``."""
        u = grad_tiles(self.xp, gp, m, th, tw, r0, r1, aa)  # (T², P, K)
        t = m + 2
        return self.xp.ascontiguousarray(u.reshape(t, t, -1, spec.k).transpose(0, 1, 3, 2))  # -> (T, T, K, P)

    def winograd_weight_multiply(self, u: Any, v: Any, spec: ConvSpec, m: int, out: Any = None,
                                 reuse: bool = False) -> Any:
        """Winograd's grad_weight product: per tile element, dL/dy's tiles (:meth:`winograd_grad_tiles`) times
        the input tiles (:meth:`winograd_input`), summed over the tiles: ``(T², G, K/G, C/G)``, into ``out`` when
        given."""
        t2, p = (m + 2) ** 2, v.shape[-1]
        vg = v.reshape(t2, spec.groups, spec.cg, p)  # (T, T, C, P) -> (T², G, C/G, P)
        ug = u.reshape(t2, spec.groups, spec.kg, p)  # (T, T, K, P) -> (T², G, K/G, P)
        # (T², G, K/G, P) @ (T², G, P, C/G) -> (T², G, K/G, C/G)
        return self.matmul(ug, vg.transpose(0, 1, 3, 2), scratch=reuse, out=out)

    @abstractmethod
    def winograd_input(self, x: Any, spec: ConvSpec, m: int, th: int, tw: int, reuse: bool = False) -> Any:
        """Input tiles ``B^T d B`` of shape ``(T, T, C, N·th·tw)`` with ``T = m + 2``, zero padding applied; a
        fresh array unless ``reuse`` (see :meth:`im2col_part`)."""

    @abstractmethod
    def winograd_output(self, mt: Any, b: Any | None, spec: ConvSpec, m: int, th: int, tw: int,
                        out: Any = None) -> Any:
        """Output ``A^T M A`` from tiles ``mt`` of shape ``(T, T, K, N·th·tw)``, cropped, bias added; written into
        ``out`` (C-contiguous, ``spec.out_shape``) when given."""


class Col2imKernels(Backend):
    """col2im, the adjoint of im2col packing, for the gradient with respect to the input (and the transposed
    convolution) by GEMMs."""

    family = "col2im"

    @abstractmethod
    def col2im(self, cols: Any, spec: ConvSpec) -> Any:
        """The input-shaped sum ``(N, C, H, W)`` of column matrices ``cols`` ``(N, C·KH·KW, OH·OW)`` (rows ordered
        (c, r, s) as :meth:`Im2colKernels.im2col` writes them): each entry added at the input position it
        stands for; entries of the padding are dropped. A fresh array."""

    @abstractmethod
    def col2im_part(self, cols: Any, dx: Any, spec: ConvSpec, n0: int, o0: int,
                    channels: tuple[int, int] | None = None, images: int = 0) -> None:
        """:meth:`col2im` of the column matrices ``cols`` (NB, C·KH·KW, OB·OW) of images ``n0..n0+NB`` and output
        rows ``o0..o0+OB``, added into ``dx`` (N, C, H, W); with ``channels=(c0, c1)``, ``cols`` holds the rows of
        input channels ``c0..c1`` only, (NB, (c1 - c0)·KH·KW, OB·OW), and the part runs on the calling thread.
        With ``images`` > 0, ``cols`` is (1, ·, images·OH·OW): those whole images' columns side by side, as one
        GEMM makes them for several images (``o0`` 0). Parts of different images or channels may run at once;
        bands of rows of one image may not."""


class DirectGradKernels(Backend):
    """The direct loop of the gradient with respect to the weights."""

    family = "direct_grad"

    @abstractmethod
    def direct_grad_weight(self, x: Any, gy: Any, spec: ConvSpec) -> Any:
        """dL/dw ``(K, C/G, KH, KW)`` of ``spec`` from its input ``x`` ``(N, C, H, W)`` and dL/dy ``gy``
        ``(N, K, OH, OW)``, by a loop over taps and output pixels (zero padding read as zeros). A fresh array."""

    def direct_grad_workspace(self, spec: ConvSpec) -> int:
        """Bytes :meth:`direct_grad_weight` holds besides its result (0: none)."""
        return 0


class FFTKernels(Backend):
    """Discrete Fourier transforms over an array's trailing axes, for ``fft``."""

    family = "fft"

    @abstractmethod
    def fast_length(self, n: int, real: bool) -> int:
        """The smallest length ``>= n`` whose transform is fast (a product of small primes), for a real input's
        transform (``real``) or a complex one's."""

    @abstractmethod
    def spectrum(self, a: Any, shape: tuple[int, ...], axes: tuple[int, ...], real: bool) -> Any:
        """The DFT of ``a`` over ``axes``, each zero-padded at its end to its length in ``shape``: the half spectrum
        of a real ``a`` (its last transformed axis ``shape[-1] // 2 + 1`` long) where ``real``, else the full one.
        A fresh complex array."""

    @abstractmethod
    def signal(self, a: Any, shape: tuple[int, ...], axes: tuple[int, ...], real: bool, overwrite: bool = False,
               keep: tuple[slice, ...] | None = None) -> Any:
        """The inverse of :meth:`spectrum`: the signal of lengths ``shape`` over ``axes`` whose transform is ``a``;
        real where ``real``. With ``keep`` (one slice per axis), only those positions (a backend may skip the
        others' work: each axis but the last can be cut to its kept positions before the next is transformed).
        A fresh array or a view of one; with ``overwrite``, ``a`` (a temporary) may be destroyed (a backend may
        then transform it in place)."""


#: family name (what a strategy's ``needs`` lists) -> the mixin a backend derives from to provide it
FAMILIES: dict[str, type] = {"im2col": Im2colKernels, "direct": DirectKernels, "winograd": WinogradKernels,
                             "col2im": Col2imKernels, "direct_grad": DirectGradKernels, "fft": FFTKernels}
