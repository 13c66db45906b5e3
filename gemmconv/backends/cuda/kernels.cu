// CUDA kernels of the CuPy backend. Compiled once per process by cupy.RawModule (NVRTC);
// every size is a launch-time argument, so no shape triggers a recompilation.
// T is the storage type (__half, float, double); arithmetic runs in acc_t<T>
// (float for __half and float, double for double).
#include <cuda_fp16.h>

template <typename T> struct acc_of { typedef float type; };
template <> struct acc_of<double> { typedef double type; };
#define ACC typename acc_of<T>::type

__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }

template <typename T> __device__ __forceinline__ T from_acc(ACC v);
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }

// ---------------------------------------------------------------------------------------------
// im2col: cols (N, C*KH*KW, OH*OW) from x (N, C, H, W); zero padding.
// One warp per column-matrix row (n, c, r, s), i.e. one shifted and strided copy of an input
// plane, 8 rows per block; the lanes walk the row's OH*OW columns, so consecutive lanes write
// consecutive columns (coalesced) and, for stride 1, read consecutive input pixels, and small
// outputs (7x7) still fill the warp.
// grid = (ceil(N*C*KH*KW / 8)), block = (32, 8).
template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols, int N, int C, int H, int W, int KH,
                       int KW, int sh, int sw, int pt, int pl, int dh, int dw, int OH, int OW) {
    const int rows = C * KH * KW;
    const int nr = blockIdx.x * blockDim.y + threadIdx.y;  // n * rows + row
    if (nr >= N * rows) return;
    const int n = nr / rows, row = nr - n * rows;
    const int c = row / (KH * KW), r = (row / KW) % KH, s = row % KW;
    const T* plane = x + (long long)(n * C + c) * H * W;
    T* dst = cols + (long long)nr * OH * OW;
    const T zero = from_acc<T>(0);
    const int P = OH * OW;
    for (int p = threadIdx.x; p < P; p += 32) {
        const int oh = p / OW, ow = p - oh * OW;
        const int ih = oh * sh - pt + r * dh, iw = ow * sw - pl + s * dw;
        dst[p] = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? plane[ih * W + iw] : zero;
    }
}

// ---------------------------------------------------------------------------------------------
// direct_tiled: one block computes a TILE x TILE patch of one output plane (n, k) with
// TILE x (TILE / RY) threads, each summing RY outputs of one column. For each input channel of k's
// group the block stages the patch's receptive field in shared memory (each input pixel is read
// from global memory once per block, not KH*KW times), then every thread sums its taps. Depthwise
// layers (one channel per group) stage one tile per block.
// grid = (tiles_h * tiles_w, K, N), block = (TILE, TILE / RY), dynamic shared memory = in_h*in_w*sizeof(ACC).
template <typename T, int TILE, int RY>
__global__ void direct_tiled(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                             int has_bias, T* __restrict__ out, int C, int H, int W, int K, int Cg, int KH, int KW,
                             int sh, int sw, int pt, int pl, int dh, int dw, int OH, int OW, int groups,
                             int tiles_w) {
    extern __shared__ unsigned char smem_raw[];
    ACC* tile = reinterpret_cast<ACC*>(smem_raw);
    constexpr int THREADS = TILE * (TILE / RY);
    const int k = blockIdx.y, n = blockIdx.z;
    const int ti = blockIdx.x / tiles_w, tj = blockIdx.x - ti * tiles_w;
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * TILE + tx;
    const int in_h = (TILE - 1) * sh + (KH - 1) * dh + 1, in_w = (TILE - 1) * sw + (KW - 1) * dw + 1;
    const int ih0 = ti * TILE * sh - pt, iw0 = tj * TILE * sw - pl;
    const int ow = tj * TILE + tx;
    const int g = k / (K / groups);
    ACC acc[RY];
#pragma unroll
    for (int q = 0; q < RY; ++q) acc[q] = 0;
    for (int cg = 0; cg < Cg; ++cg) {
        const T* plane = x + (long long)(n * C + g * Cg + cg) * H * W;
        __syncthreads();  // the previous channel's taps are done
        for (int i = tid; i < in_h * in_w; i += THREADS) {
            const int a = i / in_w, e = i - a * in_w;
            const int ih = ih0 + a, iw = iw0 + e;
            tile[i] = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? to_acc(plane[ih * W + iw]) : ACC(0);
        }
        __syncthreads();
        const T* wk = w + (long long)(k * Cg + cg) * KH * KW;
        for (int r = 0; r < KH; ++r)
            for (int s = 0; s < KW; ++s) {
                const ACC wv = to_acc(wk[r * KW + s]);
                const ACC* src = tile + (r * dh) * in_w + tx * sw + s * dw;
#pragma unroll
                for (int q = 0; q < RY; ++q) acc[q] += wv * src[(ty + q * (TILE / RY)) * sh * in_w];
            }
    }
    if (ow < OW) {
        const ACC bias = has_bias ? to_acc(b[k]) : ACC(0);
        T* dst = out + (long long)(n * K + k) * OH * OW;
#pragma unroll
        for (int q = 0; q < RY; ++q) {
            const int oh = ti * TILE + ty + q * (TILE / RY);
            if (oh < OH) dst[oh * OW + ow] = from_acc<T>(acc[q] + bias);
        }
    }
}

// direct_global: the same sums straight from global memory (one thread per output pixel), for
// receptive fields too large to stage in 48 KB of shared memory (huge dilations or strides).
template <typename T>
__global__ void direct_global(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                              int has_bias, T* __restrict__ out, int N, int C, int H, int W, int K, int Cg, int KH,
                              int KW, int sh, int sw, int pt, int pl, int dh, int dw, int OH, int OW, int groups) {
    const long long total = (long long)N * K * OH * OW;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int ow = idx % OW;
        const int oh = (idx / OW) % OH;
        const int k = (idx / ((long long)OW * OH)) % K;
        const int n = idx / ((long long)OW * OH * K);
        const int g = k / (K / groups);
        ACC acc = has_bias ? to_acc(b[k]) : ACC(0);
        for (int cg = 0; cg < Cg; ++cg) {
            const T* plane = x + (long long)(n * C + g * Cg + cg) * H * W;
            const T* wk = w + (long long)(k * Cg + cg) * KH * KW;
            for (int r = 0; r < KH; ++r) {
                const int ih = oh * sh - pt + r * dh;
                if (ih < 0 || ih >= H) continue;
                for (int s = 0; s < KW; ++s) {
                    const int iw = ow * sw - pl + s * dw;
                    if (iw >= 0 && iw < W) acc += to_acc(wk[r * KW + s]) * to_acc(plane[ih * W + iw]);
                }
            }
        }
        out[idx] = from_acc<T>(acc);
    }
}

// ---------------------------------------------------------------------------------------------
// Winograd F(M x M, 3 x 3) transforms (Lavin & Gray). The matrices are local constant arrays
// indexed only by unrolled loop counters, so they fold into immediates.
template <int M> struct wino;
template <> struct wino<2> {
    static constexpr int T = 4;
    template <typename A> __device__ static __forceinline__ A bt(int a, int e) {
        const A m[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
        return m[a][e];
    }
    template <typename A> __device__ static __forceinline__ A at(int a, int e) {
        const A m[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
        return m[a][e];
    }
};
template <> struct wino<4> {
    static constexpr int T = 6;
    template <typename A> __device__ static __forceinline__ A bt(int a, int e) {
        const A m[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                           {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
        return m[a][e];
    }
    template <typename A> __device__ static __forceinline__ A at(int a, int e) {
        const A m[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
        return m[a][e];
    }
};

// winograd_input: v (T*T, C, P) = B^T d B for every input tile d, P = N*th*tw tiles.
// One thread per (c, tile); consecutive threads take consecutive tiles, so the T*T stores
// are coalesced.
template <typename T, int M>
__global__ void winograd_input(const T* __restrict__ x, T* __restrict__ v, int N, int C, int H, int W, int th,
                               int tw, int pt, int pl) {
    constexpr int TT = wino<M>::T;
    const long long P = (long long)N * th * tw;
    const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (idx >= (long long)C * P) return;
    const int c = idx / P;
    const long long p = idx - c * P;
    const int n = p / (th * tw);
    const int rem = p - (long long)n * th * tw;
    const int i = rem / tw, j = rem - (rem / tw) * tw;
    const T* plane = x + (long long)(n * C + c) * H * W;
    ACC d[TT][TT], tmp[TT][TT];
#pragma unroll
    for (int a = 0; a < TT; ++a) {
        const int ih = i * M - pt + a;
#pragma unroll
        for (int e = 0; e < TT; ++e) {
            const int iw = j * M - pl + e;
            d[a][e] = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? to_acc(plane[ih * W + iw]) : ACC(0);
        }
    }
#pragma unroll
    for (int a = 0; a < TT; ++a)  // tmp = B^T d
#pragma unroll
        for (int e = 0; e < TT; ++e) {
            ACC s = 0;
#pragma unroll
            for (int z = 0; z < TT; ++z) s += wino<M>::template bt<ACC>(a, z) * d[z][e];
            tmp[a][e] = s;
        }
    const long long stride = (long long)C * P;
#pragma unroll
    for (int a = 0; a < TT; ++a)  // v = tmp B
#pragma unroll
        for (int e = 0; e < TT; ++e) {
            ACC s = 0;
#pragma unroll
            for (int z = 0; z < TT; ++z) s += tmp[a][z] * wino<M>::template bt<ACC>(e, z);
            v[(a * TT + e) * stride + idx] = from_acc<T>(s);
        }
}

// winograd_output: out (N, K, OH, OW) = A^T m A (+ bias) for every tile m of mt (T*T, K, P), cropped.
template <typename T, int M>
__global__ void winograd_output(const T* __restrict__ mt, T* __restrict__ out, const T* __restrict__ b,
                                int has_bias, int N, int K, int OH, int OW, int th, int tw) {
    constexpr int TT = wino<M>::T;
    const long long P = (long long)N * th * tw;
    const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (idx >= (long long)K * P) return;
    const int k = idx / P;
    const long long p = idx - k * P;
    const int n = p / (th * tw);
    const int rem = p - (long long)n * th * tw;
    const int i = rem / tw, j = rem - (rem / tw) * tw;
    const long long stride = (long long)K * P;
    ACC m[TT][TT], tmp[M][TT];
#pragma unroll
    for (int a = 0; a < TT; ++a)
#pragma unroll
        for (int e = 0; e < TT; ++e) m[a][e] = to_acc(mt[(a * TT + e) * stride + idx]);
#pragma unroll
    for (int a = 0; a < M; ++a)  // tmp = A^T m
#pragma unroll
        for (int e = 0; e < TT; ++e) {
            ACC s = 0;
#pragma unroll
            for (int z = 0; z < TT; ++z) s += wino<M>::template at<ACC>(a, z) * m[z][e];
            tmp[a][e] = s;
        }
    const ACC bias = has_bias ? to_acc(b[k]) : ACC(0);
    T* plane = out + (long long)(n * K + k) * OH * OW;
#pragma unroll
    for (int a = 0; a < M; ++a) {
        const int oh = i * M + a;
#pragma unroll
        for (int e = 0; e < M; ++e) {
            const int ow = j * M + e;
            ACC s = 0;
#pragma unroll
            for (int z = 0; z < TT; ++z) s += tmp[a][z] * wino<M>::template at<ACC>(e, z);
            if (oh < OH && ow < OW) plane[oh * OW + ow] = from_acc<T>(s + bias);
        }
    }
}

// winograd_filter: u (T*T, K, Cg) = G g G^T for every 3x3 filter g of w (K, Cg, 3, 3), computed in
// double and rounded once. One thread per filter; consecutive threads write consecutive filters.
template <int M> struct wino_g;
template <> struct wino_g<2> {
    __device__ static __forceinline__ double at(int a, int e) {
        const double m[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
        return m[a][e];
    }
};
template <> struct wino_g<4> {
    __device__ static __forceinline__ double at(int a, int e) {
        const double m[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6},  {0, 0, 1}};
        return m[a][e];
    }
};

template <typename T, int M>
__global__ void winograd_filter(const T* __restrict__ w, T* __restrict__ u, long long filters) {
    constexpr int TT = wino<M>::T;
    const long long f = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (f >= filters) return;
    double g[3][3], tmp[TT][3];
#pragma unroll
    for (int r = 0; r < 3; ++r)
#pragma unroll
        for (int s = 0; s < 3; ++s) g[r][s] = (double)to_acc(w[f * 9 + r * 3 + s]);
#pragma unroll
    for (int a = 0; a < TT; ++a)  // tmp = G g
#pragma unroll
        for (int s = 0; s < 3; ++s) {
            double acc = 0;
#pragma unroll
            for (int r = 0; r < 3; ++r) acc += wino_g<M>::at(a, r) * g[r][s];
            tmp[a][s] = acc;
        }
#pragma unroll
    for (int a = 0; a < TT; ++a)  // u = tmp G^T
#pragma unroll
        for (int e = 0; e < TT; ++e) {
            double acc = 0;
#pragma unroll
            for (int s = 0; s < 3; ++s) acc += tmp[a][s] * wino_g<M>::at(e, s);
            u[(a * TT + e) * filters + f] = from_acc<T>((ACC)acc);
        }
}

#undef ACC
