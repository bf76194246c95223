//! Winograd F(4x4, 3x3) convolution: the stride-1 3x3 convolutions of
//! VGG19 (forward, and the input gradient of the backward) and of the
//! transform networks' residual and upsampling layers (forward, input
//! gradient and weight gradient).
//!
//! Why: a direct (im2col + GEMM) 3x3 convolution spends 9 multiply-adds per
//! input channel and output pixel and is bound by the GEMM rate, which
//! PyTorch's oneDNN kernels already reach on this machine. Winograd's
//! minimal filtering computes a 4x4 output tile from a 6x6 input tile with
//! 36 products per channel pair instead of 144: the GEMM work drops 4x, for
//! the price of three cheap linear transforms (Lavin & Gray 2016).
//!
//! How:
//!
//! * The weights are transformed once per call, `U = G g Gᵀ`, into 36
//!   matrices `Cout x Cin` (one per position of the 6x6 tile).
//! * Many tiles (early layers): tiles are processed in blocks of a few
//!   hundred, each block on one thread, sized so that its transformed input
//!   and products stay in the shared L3. For a block: the input transform
//!   `V = Bᵀ d B` writes 36 matrices `Cin x tiles`, 36 GEMMs `M = U · V`
//!   (Cout x tiles) follow, and the output transform `Y = Aᵀ m A` writes
//!   the 4x4 tiles into the NCHW output, adding the bias and applying a
//!   fused ReLU when asked. Few tiles (deep layers): one block per image,
//!   with each of the three phases split between the threads.
//! * The transforms work on 8 tiles of a tile row at once (AVX2 when the CPU
//!   has it, with the rows staged with their zero padding and transposed in
//!   registers; portable code otherwise). Output tiles that overhang the
//!   image are cropped. Scratch buffers are per thread and reused.
//! * An optional *mask* zeroes the input where the mask is not positive as
//!   it is read: the input gradient of a convolution followed by a ReLU is
//!   this convolution of `dy · (y > 0)`, without a masked copy of `dy`.
//! * The weight gradient ([`weight_grad3x3`]) is the transpose of the same
//!   computation: `Gᵀ (Σ_tiles (A dY Aᵀ) ⊙ (Bᵀ d B)) G`, 36 GEMMs summing
//!   over tiles.
//!
//! Accuracy: the transforms use the points 0, ±1, ±2 and ∞ (the usual
//! choice); in f32 results stay within 1e-5 of the largest output magnitude
//! of a direct convolution (typically a few 1e-6; the unit tests below and
//! `tests/ops_conv2d.rs` check it against f64 loops and candle).

// The transforms index small fixed-size arrays by tile row, column and lane,
// as the formulas do; iterator chains would hide that.
#![allow(clippy::needless_range_loop)]

use gemm::Parallelism;
use rayon::prelude::*;

use super::conv2d::{gemm_f32, with_scratch, SharedMut};

/// Output tile side, input tile side, positions per tile.
const M_OUT: usize = 4;
const T_IN: usize = 6;
const POS: usize = T_IN * T_IN;
/// Tiles per SIMD group.
const LANES: usize = 8;

/// Shapes of one stride-1 3x3 convolution with zero padding.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WinoGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub pad_h: usize,
    pub pad_w: usize,
    pub oh: usize,
    pub ow: usize,
}

impl WinoGeom {
    fn tiles_h(&self) -> usize {
        self.oh.div_ceil(M_OUT)
    }

    fn tiles_w(&self) -> usize {
        self.ow.div_ceil(M_OUT)
    }
}

/// Whether Winograd pays off over im2col + GEMM for these channel counts
/// (with few channels the GEMMs are too thin and the transforms dominate).
/// `STYLESTREAM_WINOGRAD=0` in the environment turns it off, to compare.
pub(crate) fn worthwhile(cin: usize, cout: usize) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let enabled =
        *ENABLED.get_or_init(|| std::env::var("STYLESTREAM_WINOGRAD").as_deref() != Ok("0"));
    enabled && cin >= 16 && cout >= 16
}

/// `y = conv3x3(x · [mask > 0], w) (+ bias) (then ReLU)`, stride 1, zero
/// padding `pad_h`/`pad_w`; `w` is `(Cout, Cin, 3, 3)`, `mask` (if any)
/// has `x`'s shape. Returns the dense `(N, Cout, OH, OW)` output.
pub(crate) fn conv3x3(
    x: &[f32],
    mask: Option<&[f32]>,
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &WinoGeom,
) -> Vec<f32> {
    let mut y = vec![0f32; g.n * g.cout * g.oh * g.ow];
    if y.is_empty() {
        return y;
    }
    let u = transform_weights(w, g.cout, g.cin);
    let tiles = g.tiles_h() * g.tiles_w();
    let threads = rayon::current_num_threads().max(1);
    let out = SharedMut(y.as_mut_ptr());
    let (in_len, out_len) = (g.cin * g.h * g.w, g.cout * g.oh * g.ow);
    if g.n * tiles < threads * BLOCK_MODE_TILES {
        // Few tiles (deep layers): one block per image, each of its three
        // phases split between the threads (input channels, tile positions,
        // output channels).
        let nt = tiles.next_multiple_of(LANES);
        let v_len = POS * g.cin * nt;
        with_scratch(v_len + POS * g.cout * nt + LANES, |scratch| {
            let (v, m) = scratch.split_at_mut(v_len);
            for b in 0..g.n {
                let img = &x[b * in_len..][..in_len];
                let msk = mask.map(|m| &m[b * in_len..][..in_len]);
                let vp = SharedMut(v.as_mut_ptr());
                let chunks = channel_chunks(g.cin, threads);
                (0..chunks.len()).into_par_iter().for_each(|i| {
                    // SAFETY: each task writes the rows of its own channels.
                    unsafe { input_transform(img, msk, g, (0, tiles, nt), chunks[i], vp) }
                });
                let mp = SharedMut(m.as_mut_ptr());
                let v = &*v;
                (0..POS).into_par_iter().for_each(|pos| {
                    // SAFETY: M[pos] (Cout x nt) is written by this task only.
                    unsafe { position_gemm(&u, v, mp, g, nt, pos, Parallelism::None) }
                });
                let yb = SharedMut(out.at(b * out_len));
                let chunks = channel_chunks(g.cout, threads);
                let m = &*m;
                (0..chunks.len()).into_par_iter().for_each(|i| {
                    // SAFETY: each task writes the planes of its own channels.
                    unsafe { output_transform(m, g, (0, tiles, nt), chunks[i], bias, relu, yb) }
                });
            }
        });
        return y;
    }
    let plan = BlockPlan::new(g, tiles);
    (0..g.n * plan.count).into_par_iter().for_each(|item| {
        let (b, block) = (item / plan.count, item % plan.count);
        let t0 = block * plan.tiles;
        let t1 = (t0 + plan.tiles).min(tiles);
        let span = (t0, t1, (t1 - t0).next_multiple_of(LANES));
        let img = &x[b * in_len..][..in_len];
        let msk = mask.map(|m| &m[b * in_len..][..in_len]);
        let v_len = POS * g.cin * span.2;
        with_scratch(v_len + POS * g.cout * span.2 + LANES, |scratch| {
            let (v, m) = scratch.split_at_mut(v_len);
            let (vp, mp) = (SharedMut(v.as_mut_ptr()), SharedMut(m.as_mut_ptr()));
            // SAFETY: the buffers are this task's own; it writes only the
            // output tiles t0..t1 of image b, which no other task writes.
            unsafe {
                input_transform(img, msk, g, span, (0, g.cin), vp);
                for pos in 0..POS {
                    position_gemm(&u[..], v, mp, g, span.2, pos, plan.gemm);
                }
                let yb = SharedMut(out.at(b * out_len));
                output_transform(m, g, span, (0, g.cout), bias, relu, yb);
            }
        });
    });
    y
}

/// Whether [`weight_grad3x3`] suits these channel counts: each thread
/// sums into its own 36 transformed `Cout x Cin` matrices, fine for the
/// transform networks (128 channels: 2.4 MB), not for VGG's 512x512.
pub(crate) fn weight_grad_fits(g: &WinoGeom) -> bool {
    POS * g.cout * g.cin <= 1 << 20
}

/// The weight gradient of [`conv3x3`] (without mask, bias or ReLU: the
/// caller passes the output gradient the convolution itself sees), by the
/// same transforms: with `V = Bᵀ d B` the transformed input tiles and
/// `D = A dY Aᵀ` the transformed output-gradient tiles, the gradient of
/// `y = Aᵀ[(G w Gᵀ) ⊙ V]A` wrt `w` is `Gᵀ (Σ_tiles D ⊙ V) G`. Per tile
/// position that sum is a GEMM `S[pos] += D[pos] · V[pos]ᵀ` (`Cout x tiles`
/// by `tiles x Cin`): 36 products per 4x4 outputs instead of 144. Returns
/// `(Cout, Cin, 3, 3)`, summed over the batch.
pub(crate) fn weight_grad3x3(x: &[f32], dy: &[f32], g: &WinoGeom) -> Vec<f32> {
    let mut dw = vec![0f32; g.cout * g.cin * 9];
    let tiles = g.tiles_h() * g.tiles_w();
    if dw.is_empty() || tiles == 0 || g.n == 0 {
        return dw;
    }
    // Long blocks: each GEMM sums over a block's tiles, and the longer
    // that sum the less the packing of its operands weighs. One block per
    // worker and image when the batch is small, at most 1024 tiles.
    let threads = rayon::current_num_threads().max(1);
    let per_image = threads.div_ceil(g.n).max(tiles.div_ceil(1024));
    let per = tiles.div_ceil(per_image).next_multiple_of(LANES);
    let plan = BlockPlan {
        tiles: per,
        count: tiles.div_ceil(per),
        gemm: Parallelism::None,
    };
    let items = g.n * plan.count;
    let workers = threads.clamp(1, items);
    let (in_len, out_len) = (g.cin * g.h * g.w, g.cout * g.oh * g.ow);
    let s_len = POS * g.cout * g.cin;
    let partials: Vec<Vec<f32>> = (0..workers)
        .into_par_iter()
        .map(|worker| {
            let mut acc = Vec::with_capacity(s_len);
            acc.resize(s_len, 0f32);
            let sp = SharedMut(acc.as_mut_ptr());
            for item in worker * items / workers..(worker + 1) * items / workers {
                let (b, block) = (item / plan.count, item % plan.count);
                let t0 = block * plan.tiles;
                let t1 = (t0 + plan.tiles).min(tiles);
                let span = (t0, t1, (t1 - t0).next_multiple_of(LANES));
                let img = &x[b * in_len..][..in_len];
                let dyi = &dy[b * out_len..][..out_len];
                let v_len = POS * g.cin * span.2;
                with_scratch(v_len + POS * g.cout * span.2, |scratch| {
                    let (v, d) = scratch.split_at_mut(v_len);
                    // SAFETY: the buffers are this worker's own.
                    unsafe {
                        input_transform(img, None, g, span, (0, g.cin), SharedMut(v.as_mut_ptr()));
                        dy_transform(dyi, g, span, SharedMut(d.as_mut_ptr()));
                        for pos in 0..POS {
                            gemm_f32(
                                g.cout,
                                g.cin,
                                span.2,
                                sp.at(pos * g.cout * g.cin),
                                (g.cin, 1),
                                true,
                                d[pos * g.cout * span.2..].as_ptr(),
                                (span.2, 1),
                                v[pos * g.cin * span.2..].as_ptr(),
                                (1, span.2),
                                plan.gemm,
                            );
                        }
                    }
                });
            }
            acc
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut s = parts.next().expect("at least one worker");
    for p in parts {
        for (a, b) in s.iter_mut().zip(&p) {
            *a += *b;
        }
    }
    // dW = Gᵀ S G for every (co, ci).
    let pair = g.cout * g.cin;
    dw.par_chunks_mut(9).enumerate().for_each(|(k, out)| {
        let mut m = [[0f32; T_IN]; T_IN];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = s[(i * T_IN + j) * pair + k];
            }
        }
        // Gᵀ m: 3x6, then (Gᵀ m) G: 3x3.
        let mut t = [[0f32; T_IN]; 3];
        for j in 0..T_IN {
            let col = gt_times([m[0][j], m[1][j], m[2][j], m[3][j], m[4][j], m[5][j]]);
            for a in 0..3 {
                t[a][j] = col[a];
            }
        }
        for a in 0..3 {
            let row = gt_times(t[a]);
            out[a * 3..a * 3 + 3].copy_from_slice(&row);
        }
    });
    dw
}

/// `Gᵀ s` (3 from 6).
#[inline(always)]
fn gt_times(s: [f32; T_IN]) -> [f32; 3] {
    [
        s[0] / 4.0 - (s[1] + s[2]) / 6.0 + (s[3] + s[4]) / 24.0,
        (s[2] - s[1]) / 6.0 + (s[3] - s[4]) / 12.0,
        (s[3] + s[4] - s[1] - s[2]) / 6.0 + s[5],
    ]
}

/// `D[pos][co][t - t0] = (A dY_t Aᵀ)[pos]` for the output tiles `t0..t1`
/// (outputs past the edge count as 0), all output channels.
///
/// # Safety
/// `d` must hold `POS * Cout * nt` floats, this caller's own.
unsafe fn dy_transform(dy: &[f32], g: &WinoGeom, span: Span, d: SharedMut) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        return avx2::dy_transform(dy, g, span, d);
    }
    dy_transform_portable(dy, g, span, d)
}

unsafe fn dy_transform_portable(dy: &[f32], g: &WinoGeom, (t0, t1, nt): Span, d: SharedMut) {
    let tw = g.tiles_w();
    let plane_len = g.oh * g.ow;
    for co in 0..g.cout {
        let plane = &dy[co * plane_len..][..plane_len];
        for t in t0..t0 + nt {
            let col = t - t0;
            let mut q = [[0f32; M_OUT]; M_OUT];
            if t < t1 {
                let (oy, ox) = ((t / tw) * M_OUT, (t % tw) * M_OUT);
                for (r, row) in q.iter_mut().enumerate() {
                    if oy + r >= g.oh {
                        break;
                    }
                    let n = M_OUT.min(g.ow - ox);
                    row[..n].copy_from_slice(&plane[(oy + r) * g.ow + ox..][..n]);
                }
            }
            // A q: 6x4, then (A q) Aᵀ: 6x6.
            let mut aq = [[0f32; M_OUT]; T_IN];
            for c in 0..M_OUT {
                let col6 = a_times([q[0][c], q[1][c], q[2][c], q[3][c]]);
                for i in 0..T_IN {
                    aq[i][c] = col6[i];
                }
            }
            for (i, row) in aq.iter().enumerate() {
                let out = a_times(*row);
                for (j, v) in out.into_iter().enumerate() {
                    *d.at(((i * T_IN + j) * g.cout + co) * nt + col) = v;
                }
            }
        }
    }
}

/// `A q` (6 from 4), `A = (Aᵀ)ᵀ`.
#[inline(always)]
fn a_times([q0, q1, q2, q3]: [f32; M_OUT]) -> [f32; T_IN] {
    [
        q0,
        q0 + q1 + q2 + q3,
        q0 - q1 + q2 - q3,
        q0 + 2.0 * q1 + 4.0 * q2 + 8.0 * q3,
        q0 - 2.0 * q1 + 4.0 * q2 - 8.0 * q3,
        q3,
    ]
}

/// Below this many tiles per thread, [`conv3x3`] splits each phase
/// between the threads rather than giving each thread its own blocks.
const BLOCK_MODE_TILES: usize = 256;

/// `[c0, c1)` ranges splitting `channels` into a few chunks per thread.
fn channel_chunks(channels: usize, threads: usize) -> Vec<(usize, usize)> {
    let count = (4 * threads).min(channels).max(1);
    (0..count)
        .map(|i| (i * channels / count, (i + 1) * channels / count))
        .filter(|(a, b)| a < b)
        .collect()
}

/// `M[pos] = U[pos] · V[pos]` for a block of `nt` tiles.
///
/// # Safety
/// `m` must hold `POS * Cout * nt` floats, of which this call writes
/// `M[pos]` only; `v` must hold `POS * Cin * nt`.
unsafe fn position_gemm(
    u: &[f32],
    v: &[f32],
    m: SharedMut,
    g: &WinoGeom,
    nt: usize,
    pos: usize,
    par: Parallelism,
) {
    gemm_f32(
        g.cout,
        nt,
        g.cin,
        m.at(pos * g.cout * nt),
        (nt, 1),
        false,
        u[pos * g.cout * g.cin..].as_ptr(),
        (g.cin, 1),
        v[pos * g.cin * nt..].as_ptr(),
        (nt, 1),
        par,
    )
}

/// How the tiles of one image are cut into blocks.
struct BlockPlan {
    /// Tiles per block (a multiple of [`LANES`]).
    tiles: usize,
    count: usize,
    gemm: Parallelism,
}

/// Floats a block's transformed input and products may take: a few MB,
/// shared L3 rather than L2, since each of the 36 GEMMs then works on one
/// 1/36th of them at a time.
const BLOCK_FLOATS: usize = 1 << 20;
const MIN_BLOCK_TILES: usize = 64;
const MAX_BLOCK_TILES: usize = 512;

impl BlockPlan {
    fn new(g: &WinoGeom, tiles: usize) -> Self {
        let threads = rayon::current_num_threads().max(1);
        let per_tile = POS * (g.cin + g.cout);
        let by_cache = (BLOCK_FLOATS / per_tile.max(1)).clamp(MIN_BLOCK_TILES, MAX_BLOCK_TILES);
        let mut count = tiles.div_ceil(by_cache).max(1);
        // Few blocks: make their total a multiple of the thread count so no
        // thread idles at the end.
        let total = g.n * count;
        if total < 4 * threads {
            count = total.next_multiple_of(threads).div_ceil(g.n.max(1));
        }
        let per = tiles.div_ceil(count).next_multiple_of(LANES);
        let count = tiles.div_ceil(per);
        let gemm = if g.n * count < threads {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        Self {
            tiles: per,
            count,
            gemm,
        }
    }
}

// ---------------------------------------------------------------------------
// Transforms. Each one has a portable body (`#[inline(always)]`) compiled
// twice: as is, and inside an AVX2 + FMA `target_feature` function chosen at
// run time, so the 8-lane loops become single vector instructions.

type Lanes = [f32; LANES];

/// `U[pos][co][ci] = (G g Gᵀ)[pos]` for every kernel `g = w[co][ci]`.
fn transform_weights(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut u = vec![0f32; POS * cout * cin];
    let shared = SharedMut(u.as_mut_ptr());
    (0..cout).into_par_iter().for_each(|co| {
        // SAFETY: this task writes the rows `co` of every U[pos] only.
        unsafe { weight_rows(&w[co * cin * 9..][..cin * 9], co, cout, cin, shared) }
    });
    u
}

#[inline(always)]
unsafe fn weight_rows_body(w: &[f32], co: usize, cout: usize, cin: usize, u: SharedMut) {
    let mut ci = 0;
    while ci < cin {
        let n = LANES.min(cin - ci);
        // k[tap][lane]
        let mut k = [[0f32; LANES]; 9];
        for l in 0..n {
            for (tap, row) in k.iter_mut().enumerate() {
                row[l] = w[(ci + l) * 9 + tap];
            }
        }
        // G g (6x3), column by column, then (G g) Gᵀ row by row.
        let mut t = [[[0f32; LANES]; 3]; T_IN];
        for c in 0..3 {
            let col = g_lanes(&k[c], &k[3 + c], &k[6 + c]);
            for r in 0..T_IN {
                t[r][c] = col[r];
            }
        }
        for (r, row) in t.iter().enumerate() {
            let out = g_lanes(&row[0], &row[1], &row[2]);
            for (c, lanes) in out.iter().enumerate() {
                let dst = u.at(((r * T_IN + c) * cout + co) * cin + ci);
                std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, n);
            }
        }
        ci += n;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weight_rows_avx2(w: &[f32], co: usize, cout: usize, cin: usize, u: SharedMut) {
    weight_rows_body(w, co, cout, cin, u)
}

/// Row `co` of every `U[pos]` from the `cin` kernels `w` of output `co`.
///
/// # Safety
/// `u` must hold `POS * cout * cin` floats; the caller owns row `co`.
unsafe fn weight_rows(w: &[f32], co: usize, cout: usize, cin: usize, u: SharedMut) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        return weight_rows_avx2(w, co, cout, cin, u);
    }
    weight_rows_body(w, co, cout, cin, u)
}

/// `G · [g0, g1, g2]ᵀ` on 8 lanes.
#[inline(always)]
fn g_lanes(g0: &Lanes, g1: &Lanes, g2: &Lanes) -> [Lanes; T_IN] {
    let mut o = [[0f32; LANES]; T_IN];
    for l in 0..LANES {
        let col = g_times([g0[l], g1[l], g2[l]]);
        for r in 0..T_IN {
            o[r][l] = col[r];
        }
    }
    o
}

/// `G · [g0, g1, g2]ᵀ`.
#[inline(always)]
fn g_times([g0, g1, g2]: [f32; 3]) -> [f32; T_IN] {
    [
        g0 / 4.0,
        -(g0 + g1 + g2) / 6.0,
        -(g0 - g1 + g2) / 6.0,
        g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
        g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
        g2,
    ]
}

#[inline(always)]
fn lanes_op(a: &Lanes, b: &Lanes, f: impl Fn(f32, f32) -> f32) -> Lanes {
    let mut o = [0f32; LANES];
    for l in 0..LANES {
        o[l] = f(a[l], b[l]);
    }
    o
}

/// `Bᵀ z` on 8 lanes.
#[inline(always)]
fn bt_times(z: &[Lanes; T_IN]) -> [Lanes; T_IN] {
    let mut o = [[0f32; LANES]; T_IN];
    for l in 0..LANES {
        let (z0, z1, z2, z3, z4, z5) = (z[0][l], z[1][l], z[2][l], z[3][l], z[4][l], z[5][l]);
        o[0][l] = 4.0 * z0 - 5.0 * z2 + z4;
        o[1][l] = -4.0 * (z1 + z2) + (z3 + z4);
        o[2][l] = 4.0 * (z1 - z2) + (z4 - z3);
        o[3][l] = 2.0 * (z3 - z1) + (z4 - z2);
        o[4][l] = 2.0 * (z1 - z3) + (z4 - z2);
        o[5][l] = 4.0 * z1 - 5.0 * z3 + z5;
    }
    o
}

/// `Aᵀ m` on 8 lanes.
#[inline(always)]
fn at_times(m: &[Lanes; T_IN]) -> [Lanes; M_OUT] {
    let mut o = [[0f32; LANES]; M_OUT];
    for l in 0..LANES {
        let (m0, m1, m2, m3, m4, m5) = (m[0][l], m[1][l], m[2][l], m[3][l], m[4][l], m[5][l]);
        let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        o[0][l] = m0 + s12 + s34;
        o[1][l] = d12 + 2.0 * d34;
        o[2][l] = s12 + 4.0 * s34;
        o[3][l] = d12 + 8.0 * d34 + m5;
    }
    o
}

/// Where a group's 8 tiles start: input row and column of each lane's
/// tile origin (may be negative: padding), and whether the lanes are valid.
struct Group {
    iy: [isize; LANES],
    ix: [isize; LANES],
    valid: [bool; LANES],
    /// All lanes in one tile row, consecutive, and fully inside the input
    /// (with 2 columns to spare, for the vector loads): then lane `l` reads
    /// columns `ix[0] + 4l ..` of the same rows.
    interior: bool,
}

impl Group {
    fn new(g: &WinoGeom, t0: usize, t1: usize, first: usize) -> Self {
        let tw = g.tiles_w();
        let mut grp = Group {
            iy: [0; LANES],
            ix: [0; LANES],
            valid: [false; LANES],
            interior: true,
        };
        for l in 0..LANES {
            let t = first + l;
            let valid = t < t1;
            let t = if valid { t } else { t0 };
            let (ty, tx) = (t / tw, t % tw);
            grp.iy[l] = (ty * M_OUT) as isize - g.pad_h as isize;
            grp.ix[l] = (tx * M_OUT) as isize - g.pad_w as isize;
            grp.valid[l] = valid;
        }
        let (y0, x0) = (grp.iy[0], grp.ix[0]);
        grp.interior = grp.valid.iter().all(|&v| v)
            && grp.iy.iter().all(|&y| y == y0)
            && (0..LANES).all(|l| grp.ix[l] == x0 + (M_OUT * l) as isize)
            && y0 >= 0
            && y0 + T_IN as isize <= g.h as isize
            && x0 >= 0
            && x0 + (M_OUT * LANES + M_OUT) as isize <= g.w as isize;
        grp
    }
}

/// Loads the 6x6 input tiles of a group (with the mask applied).
#[inline(always)]
fn load_tiles(
    plane: &[f32],
    mask: Option<&[f32]>,
    g: &WinoGeom,
    grp: &Group,
    d: &mut [[Lanes; T_IN]; T_IN],
) {
    if grp.interior {
        let (y0, x0) = (grp.iy[0] as usize, grp.ix[0] as usize);
        for r in 0..T_IN {
            let row = &plane[(y0 + r) * g.w + x0..][..M_OUT * (LANES - 1) + T_IN];
            match mask {
                None => {
                    for c in 0..T_IN {
                        for l in 0..LANES {
                            d[r][c][l] = row[M_OUT * l + c];
                        }
                    }
                }
                Some(m) => {
                    let mrow = &m[(y0 + r) * g.w + x0..][..M_OUT * (LANES - 1) + T_IN];
                    for c in 0..T_IN {
                        for l in 0..LANES {
                            let i = M_OUT * l + c;
                            d[r][c][l] = if mrow[i] > 0.0 { row[i] } else { 0.0 };
                        }
                    }
                }
            }
        }
        return;
    }
    for l in 0..LANES {
        for r in 0..T_IN {
            let y = grp.iy[l] + r as isize;
            for c in 0..T_IN {
                let x = grp.ix[l] + c as isize;
                let inside =
                    grp.valid[l] && y >= 0 && (y as usize) < g.h && x >= 0 && (x as usize) < g.w;
                d[r][c][l] = if inside {
                    let i = y as usize * g.w + x as usize;
                    match mask {
                        Some(m) if m[i] <= 0.0 => 0.0,
                        _ => plane[i],
                    }
                } else {
                    0.0
                };
            }
        }
    }
}

/// Tiles `t0..t1` of an image, processed as `nt` (a multiple of [`LANES`])
/// columns of the block's matrices.
type Span = (usize, usize, usize);

/// One group of 8 tiles, channels `c0..c1`, portable code.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn input_group(
    img: &[f32],
    mask: Option<&[f32]>,
    g: &WinoGeom,
    grp: &Group,
    col: usize,
    nt: usize,
    (c0, c1): (usize, usize),
    v: SharedMut,
) {
    let plane_len = g.h * g.w;
    for ci in c0..c1 {
        let plane = &img[ci * plane_len..][..plane_len];
        let mplane = mask.map(|m| &m[ci * plane_len..][..plane_len]);
        let mut d = [[[0f32; LANES]; T_IN]; T_IN];
        load_tiles(plane, mplane, g, grp, &mut d);
        // Bᵀ d: transform each column (over rows r).
        let mut cols = [[[0f32; LANES]; T_IN]; T_IN]; // cols[c][i]
        for c in 0..T_IN {
            let z = [d[0][c], d[1][c], d[2][c], d[3][c], d[4][c], d[5][c]];
            cols[c] = bt_times(&z);
        }
        // (Bᵀ d) B: transform each row i (over columns c).
        for i in 0..T_IN {
            let z = [
                cols[0][i], cols[1][i], cols[2][i], cols[3][i], cols[4][i], cols[5][i],
            ];
            let out = bt_times(&z);
            for (j, lanes) in out.iter().enumerate() {
                let dst = v.at(((i * T_IN + j) * g.cin + ci) * nt + col);
                std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, LANES);
            }
        }
    }
}

#[inline(always)]
unsafe fn input_transform_body(
    img: &[f32],
    mask: Option<&[f32]>,
    g: &WinoGeom,
    (t0, t1, nt): Span,
    channels: (usize, usize),
    v: SharedMut,
) {
    let mut first = t0;
    while first < t0 + nt {
        let grp = Group::new(g, t0, t1, first);
        input_group(img, mask, g, &grp, first - t0, nt, channels, v);
        first += LANES;
    }
}

/// The 8 tiles from `first` (those before `t1`), channels `c0..c1`,
/// portable code.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn output_group(
    m: &[f32],
    g: &WinoGeom,
    (t0, t1, nt): Span,
    first: usize,
    (c0, c1): (usize, usize),
    bias: Option<&[f32]>,
    relu: bool,
    y: SharedMut,
) {
    let tw = g.tiles_w();
    let plane_len = g.oh * g.ow;
    let col = first - t0;
    // Output origin of each lane (no padding on the output side).
    let mut oy = [0usize; LANES];
    let mut ox = [0usize; LANES];
    let mut valid = [false; LANES];
    for l in 0..LANES {
        let t = first + l;
        valid[l] = t < t1;
        let t = t.min(t1 - 1);
        oy[l] = (t / tw) * M_OUT;
        ox[l] = (t % tw) * M_OUT;
    }
    for co in c0..c1 {
        let b = bias.map_or(0.0, |b| b[co]);
        let mut mm = [[[0f32; LANES]; T_IN]; T_IN];
        for (i, row) in mm.iter_mut().enumerate() {
            for (j, lanes) in row.iter_mut().enumerate() {
                lanes.copy_from_slice(&m[((i * T_IN + j) * g.cout + co) * nt + col..][..LANES]);
            }
        }
        // Aᵀ m: over rows i, for each column j.
        let mut cols = [[[0f32; LANES]; M_OUT]; T_IN]; // cols[j][r]
        for j in 0..T_IN {
            let z = [mm[0][j], mm[1][j], mm[2][j], mm[3][j], mm[4][j], mm[5][j]];
            cols[j] = at_times(&z);
        }
        let plane = std::slice::from_raw_parts_mut(y.at(co * plane_len), plane_len);
        for r in 0..M_OUT {
            let z = [
                cols[0][r], cols[1][r], cols[2][r], cols[3][r], cols[4][r], cols[5][r],
            ];
            let mut out = at_times(&z); // out[c][lane]
            for lanes in out.iter_mut() {
                let add = lanes_op(lanes, &[b; LANES], |a, b| a + b);
                *lanes = if relu {
                    lanes_op(&add, &[0.0; LANES], |a, z| a.max(z))
                } else {
                    add
                };
            }
            for l in 0..LANES {
                if !valid[l] || oy[l] + r >= g.oh {
                    continue;
                }
                let row = &mut plane[(oy[l] + r) * g.ow..][..g.ow];
                for c in 0..M_OUT.min(g.ow - ox[l]) {
                    row[ox[l] + c] = out[c][l];
                }
            }
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform_body(
    m: &[f32],
    g: &WinoGeom,
    span: Span,
    channels: (usize, usize),
    bias: Option<&[f32]>,
    relu: bool,
    y: SharedMut,
) {
    let mut first = span.0;
    while first < span.1 {
        output_group(m, g, span, first, channels, bias, relu, y);
        first += LANES;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_transform_avx2(
    img: &[f32],
    mask: Option<&[f32]>,
    g: &WinoGeom,
    span: Span,
    channels: (usize, usize),
    v: SharedMut,
) {
    avx2::input_transform(img, mask, g, span, channels, v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform_avx2(
    m: &[f32],
    g: &WinoGeom,
    span: Span,
    channels: (usize, usize),
    bias: Option<&[f32]>,
    relu: bool,
    y: SharedMut,
) {
    avx2::output_transform(m, g, span, channels, bias, relu, y)
}

/// The transforms with AVX2 intrinsics for the groups of 8 tiles that lie
/// in one tile row, inside the image (almost all of them): whole rows are
/// loaded as vectors and transposed in registers, where the portable code
/// gathers element by element. Edge groups take the portable path.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use crate::ops::conv2d::with_scratch;
    use std::arch::x86_64::*;

    /// Columns 0..6 of 8 consecutive tiles (4 apart) starting at `p`: lane
    /// `l` of result `c` is `p[4l + c]`. Reads `p[0..36]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_lanes(p: *const f32) -> [__m256; T_IN] {
        let [c0, c1, c2, c3] = transpose_in(
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        );
        // Columns 4 and 5 are columns 0 and 1 of the next tile.
        let [c4, c5, _, _] = transpose_in(
            _mm256_loadu_ps(p.add(4)),
            _mm256_loadu_ps(p.add(12)),
            _mm256_loadu_ps(p.add(20)),
            _mm256_loadu_ps(p.add(28)),
        );
        [c0, c1, c2, c3, c4, c5]
    }

    /// `v0..v3` hold 8 tiles' 4 columns tile after tile (2 tiles per
    /// vector); returns column `c` of every tile in vector `c`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn transpose_in(v0: __m256, v1: __m256, v2: __m256, v3: __m256) -> [__m256; 4] {
        let a0 = _mm256_permute2f128_ps::<0x20>(v0, v2); // t0 | t4
        let a1 = _mm256_permute2f128_ps::<0x31>(v0, v2); // t1 | t5
        let a2 = _mm256_permute2f128_ps::<0x20>(v1, v3); // t2 | t6
        let a3 = _mm256_permute2f128_ps::<0x31>(v1, v3); // t3 | t7
        let u0 = _mm256_unpacklo_ps(a0, a1);
        let u1 = _mm256_unpackhi_ps(a0, a1);
        let u2 = _mm256_unpacklo_ps(a2, a3);
        let u3 = _mm256_unpackhi_ps(a2, a3);
        [
            _mm256_shuffle_ps::<0x44>(u0, u2),
            _mm256_shuffle_ps::<0xEE>(u0, u2),
            _mm256_shuffle_ps::<0x44>(u1, u3),
            _mm256_shuffle_ps::<0xEE>(u1, u3),
        ]
    }

    /// The inverse of [`transpose_in`]: from column vectors to 32 floats,
    /// tile after tile.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn transpose_out(c: [__m256; 4], dst: *mut f32) {
        let u0 = _mm256_unpacklo_ps(c[0], c[1]);
        let u1 = _mm256_unpackhi_ps(c[0], c[1]);
        let u2 = _mm256_unpacklo_ps(c[2], c[3]);
        let u3 = _mm256_unpackhi_ps(c[2], c[3]);
        let a0 = _mm256_shuffle_ps::<0x44>(u0, u2); // t0 | t4
        let a1 = _mm256_shuffle_ps::<0xEE>(u0, u2); // t1 | t5
        let a2 = _mm256_shuffle_ps::<0x44>(u1, u3); // t2 | t6
        let a3 = _mm256_shuffle_ps::<0xEE>(u1, u3); // t3 | t7
        _mm256_storeu_ps(dst, _mm256_permute2f128_ps::<0x20>(a0, a1));
        _mm256_storeu_ps(dst.add(8), _mm256_permute2f128_ps::<0x20>(a2, a3));
        _mm256_storeu_ps(dst.add(16), _mm256_permute2f128_ps::<0x31>(a0, a1));
        _mm256_storeu_ps(dst.add(24), _mm256_permute2f128_ps::<0x31>(a2, a3));
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn bt(z: [__m256; T_IN]) -> [__m256; T_IN] {
        let s = _mm256_set1_ps;
        let (z1z2, z3z4) = (_mm256_add_ps(z[1], z[2]), _mm256_add_ps(z[3], z[4]));
        let (d12, d43) = (_mm256_sub_ps(z[1], z[2]), _mm256_sub_ps(z[4], z[3]));
        let (d31, d42) = (_mm256_sub_ps(z[3], z[1]), _mm256_sub_ps(z[4], z[2]));
        [
            _mm256_fmadd_ps(s(4.0), z[0], _mm256_fmadd_ps(s(-5.0), z[2], z[4])),
            _mm256_fmadd_ps(s(-4.0), z1z2, z3z4),
            _mm256_fmadd_ps(s(4.0), d12, d43),
            _mm256_fmadd_ps(s(2.0), d31, d42),
            _mm256_fmadd_ps(s(-2.0), d31, d42),
            _mm256_fmadd_ps(s(4.0), z[1], _mm256_fmadd_ps(s(-5.0), z[3], z[5])),
        ]
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn at(m: [__m256; T_IN]) -> [__m256; M_OUT] {
        let s = _mm256_set1_ps;
        let (s12, d12) = (_mm256_add_ps(m[1], m[2]), _mm256_sub_ps(m[1], m[2]));
        let (s34, d34) = (_mm256_add_ps(m[3], m[4]), _mm256_sub_ps(m[3], m[4]));
        [
            _mm256_add_ps(_mm256_add_ps(m[0], s12), s34),
            _mm256_fmadd_ps(s(2.0), d34, d12),
            _mm256_fmadd_ps(s(4.0), s34, s12),
            _mm256_add_ps(_mm256_fmadd_ps(s(8.0), d34, d12), m[5]),
        ]
    }

    /// Tile rows of a block: `(ty, tx_lo, tx_hi)` for the tiles
    /// `t0..t1` (`t = ty * tw + tx`).
    fn tile_rows(t0: usize, t1: usize, tw: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        let (ya, yb) = (t0 / tw, (t1 - 1) / tw);
        (ya..=yb).map(move |ty| {
            let lo = if ty == ya { t0 % tw } else { 0 };
            let hi = if ty == yb { (t1 - 1) % tw + 1 } else { tw };
            (ty, lo, hi)
        })
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn input_transform(
        img: &[f32],
        mask: Option<&[f32]>,
        g: &WinoGeom,
        (t0, t1, nt): Span,
        (c0, c1): (usize, usize),
        v: SharedMut,
    ) {
        let plane_len = g.h * g.w;
        let tw = g.tiles_w();
        let zero = _mm256_setzero_ps();
        // Columns past the block's tiles must read as zeros (the weight
        // gradient sums over all `nt` columns).
        for pos in 0..POS {
            for ci in c0..c1 {
                let row = v.at((pos * g.cin + ci) * nt);
                for col in t1 - t0..nt {
                    *row.add(col) = 0.0;
                }
            }
        }
        // Per channel and tile row, the 6 input rows the tiles read are
        // staged with their zero padding (and the mask applied), so every
        // group of 8 tiles is loaded as whole vectors.
        let max_groups = tw.div_ceil(LANES);
        let sw = M_OUT * LANES * max_groups + M_OUT;
        with_scratch(T_IN * sw, |stage| {
            for ci in c0..c1 {
                let plane = &img[ci * plane_len..][..plane_len];
                let mplane = mask.map(|m| &m[ci * plane_len..][..plane_len]);
                for (ty, lo, hi) in tile_rows(t0, t1, tw) {
                    let groups = (hi - lo).div_ceil(LANES);
                    let width = M_OUT * LANES * groups + M_OUT;
                    // Staged column j is input column 4*lo - pad_w + j.
                    let x_first = (M_OUT * lo) as isize - g.pad_w as isize;
                    for r in 0..T_IN {
                        let dst = &mut stage[r * sw..][..width];
                        let iy = (ty * M_OUT + r) as isize - g.pad_h as isize;
                        if iy < 0 || iy >= g.h as isize {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * g.w..][..g.w];
                        let a = (-x_first).clamp(0, width as isize) as usize;
                        let b = (g.w as isize - x_first).clamp(a as isize, width as isize) as usize;
                        dst[..a].fill(0.0);
                        dst[b..].fill(0.0);
                        let sx = (x_first + a as isize) as usize;
                        match mplane {
                            None => dst[a..b].copy_from_slice(&src[sx..sx + b - a]),
                            Some(mp) => {
                                let mrow = &mp[iy as usize * g.w..][..g.w];
                                for ((d, &s), &m) in
                                    dst[a..b].iter_mut().zip(&src[sx..]).zip(&mrow[sx..])
                                {
                                    *d = if m > 0.0 { s } else { 0.0 };
                                }
                            }
                        }
                    }
                    for k in 0..groups {
                        let mut d = [[zero; T_IN]; T_IN]; // d[r][c]
                        for (r, row) in d.iter_mut().enumerate() {
                            *row = row_lanes(stage.as_ptr().add(r * sw + M_OUT * LANES * k));
                        }
                        let mut t = [[zero; T_IN]; T_IN]; // t[c][i]
                        for c in 0..T_IN {
                            t[c] = bt([d[0][c], d[1][c], d[2][c], d[3][c], d[4][c], d[5][c]]);
                        }
                        let first = ty * tw + lo + LANES * k;
                        let valid = LANES.min(hi - (lo + LANES * k));
                        let col = first - t0;
                        for i in 0..T_IN {
                            let out = bt([t[0][i], t[1][i], t[2][i], t[3][i], t[4][i], t[5][i]]);
                            for (j, o) in out.into_iter().enumerate() {
                                let dst = v.at(((i * T_IN + j) * g.cin + ci) * nt + col);
                                if valid == LANES {
                                    _mm256_storeu_ps(dst, o);
                                } else {
                                    let mut lanes = [0f32; LANES];
                                    _mm256_storeu_ps(lanes.as_mut_ptr(), o);
                                    std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, valid);
                                }
                            }
                        }
                    }
                }
            }
        });
    }

    /// `A q` (6 from 4) on vectors.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn a_vec(q: [__m256; M_OUT]) -> [__m256; T_IN] {
        let s = _mm256_set1_ps;
        let (s02, s13) = (_mm256_add_ps(q[0], q[2]), _mm256_add_ps(q[1], q[3]));
        let e = _mm256_fmadd_ps(s(4.0), q[2], q[0]); // q0 + 4 q2
        let f = _mm256_fmadd_ps(s(8.0), q[3], _mm256_mul_ps(s(2.0), q[1])); // 2 q1 + 8 q3
        [
            q[0],
            _mm256_add_ps(s02, s13),
            _mm256_sub_ps(s02, s13),
            _mm256_add_ps(e, f),
            _mm256_sub_ps(e, f),
            q[3],
        ]
    }

    /// [`super::dy_transform`] with whole-vector loads (rows staged with
    /// zeros past the output's edges) and 8 tiles per step.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dy_transform(dy: &[f32], g: &WinoGeom, (t0, t1, nt): Span, d: SharedMut) {
        let tw = g.tiles_w();
        let plane_len = g.oh * g.ow;
        for pos in 0..POS {
            for co in 0..g.cout {
                let row = d.at((pos * g.cout + co) * nt);
                for col in t1 - t0..nt {
                    *row.add(col) = 0.0;
                }
            }
        }
        let width = M_OUT * LANES * tw.div_ceil(LANES);
        let mut stage = vec![0f32; M_OUT * width];
        let zero = _mm256_setzero_ps();
        for co in 0..g.cout {
            let plane = &dy[co * plane_len..][..plane_len];
            for (ty, lo, hi) in tile_rows(t0, t1, tw) {
                let oy = ty * M_OUT;
                // Staged column j is output column 4*lo + j.
                let x0 = M_OUT * lo;
                let n = (M_OUT * (hi - lo).div_ceil(LANES) * LANES).min(width);
                for r in 0..M_OUT {
                    let dst = &mut stage[r * width..][..n];
                    if oy + r >= g.oh {
                        dst.fill(0.0);
                        continue;
                    }
                    let valid = n.min(g.ow - x0);
                    dst[..valid].copy_from_slice(&plane[(oy + r) * g.ow + x0..][..valid]);
                    dst[valid..].fill(0.0);
                }
                let groups = (hi - lo).div_ceil(LANES);
                for k in 0..groups {
                    let mut q = [[zero; M_OUT]; M_OUT]; // q[r][c]
                    for (r, qr) in q.iter_mut().enumerate() {
                        let p = stage.as_ptr().add(r * width + M_OUT * LANES * k);
                        *qr = transpose_in(
                            _mm256_loadu_ps(p),
                            _mm256_loadu_ps(p.add(8)),
                            _mm256_loadu_ps(p.add(16)),
                            _mm256_loadu_ps(p.add(24)),
                        );
                    }
                    let mut aq = [[zero; M_OUT]; T_IN]; // aq[i][c]
                    for c in 0..M_OUT {
                        let col6 = a_vec([q[0][c], q[1][c], q[2][c], q[3][c]]);
                        for i in 0..T_IN {
                            aq[i][c] = col6[i];
                        }
                    }
                    let first = ty * tw + lo + LANES * k;
                    let valid = LANES.min(hi - (lo + LANES * k));
                    let col = first - t0;
                    for (i, row) in aq.iter().enumerate() {
                        let out = a_vec(*row);
                        for (j, o) in out.into_iter().enumerate() {
                            let dst = d.at(((i * T_IN + j) * g.cout + co) * nt + col);
                            if valid == LANES {
                                _mm256_storeu_ps(dst, o);
                            } else {
                                let mut lanes = [0f32; LANES];
                                _mm256_storeu_ps(lanes.as_mut_ptr(), o);
                                std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, valid);
                            }
                        }
                    }
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn output_transform(
        m: &[f32],
        g: &WinoGeom,
        (t0, t1, nt): Span,
        (c0, c1): (usize, usize),
        bias: Option<&[f32]>,
        relu: bool,
        y: SharedMut,
    ) {
        let tw = g.tiles_w();
        let plane_len = g.oh * g.ow;
        let mut tail = [0f32; M_OUT * M_OUT * LANES];
        // Channel by channel, groups in order, so that each output plane is
        // written as a stream.
        for co in c0..c1 {
            let b = _mm256_set1_ps(bias.map_or(0.0, |b| b[co]));
            let plane = y.at(co * plane_len);
            for (ty, lo, hi) in tile_rows(t0, t1, tw) {
                let oy = ty * M_OUT;
                let rows = M_OUT.min(g.oh - oy);
                let mut tx = lo;
                while tx < hi {
                    let col = ty * tw + tx - t0;
                    let ox = tx * M_OUT;
                    // Lanes past the row's tiles read other columns of M
                    // (the buffer has LANES floats of slack at its end) and
                    // are dropped.
                    let cols = (M_OUT * (hi - tx)).min(M_OUT * LANES).min(g.ow - ox);
                    let mut mm = [[_mm256_setzero_ps(); T_IN]; T_IN];
                    for (i, row) in mm.iter_mut().enumerate() {
                        for (j, lanes) in row.iter_mut().enumerate() {
                            *lanes = _mm256_loadu_ps(
                                m.as_ptr().add(((i * T_IN + j) * g.cout + co) * nt + col),
                            );
                        }
                    }
                    let mut a = [[_mm256_setzero_ps(); M_OUT]; T_IN]; // a[j][r]
                    for j in 0..T_IN {
                        a[j] = at([mm[0][j], mm[1][j], mm[2][j], mm[3][j], mm[4][j], mm[5][j]]);
                    }
                    for r in 0..rows {
                        let mut o = at([a[0][r], a[1][r], a[2][r], a[3][r], a[4][r], a[5][r]]);
                        for lanes in o.iter_mut() {
                            *lanes = _mm256_add_ps(*lanes, b);
                            if relu {
                                *lanes = _mm256_max_ps(*lanes, _mm256_setzero_ps());
                            }
                        }
                        let dst = plane.add((oy + r) * g.ow + ox);
                        if cols == M_OUT * LANES {
                            transpose_out(o, dst);
                        } else {
                            transpose_out(o, tail.as_mut_ptr());
                            std::ptr::copy_nonoverlapping(tail.as_ptr(), dst, cols);
                        }
                    }
                    tx += LANES;
                }
            }
        }
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `V[pos][ci][t - t0] = (Bᵀ d B)[pos]` for tiles `t0..t1` and input
/// channels `c0..c1` (the lanes up to `t0 + nt` hold zeros).
///
/// # Safety
/// `v` must hold `POS * Cin * nt` floats; no one else may write the rows of
/// channels `c0..c1` meanwhile.
unsafe fn input_transform(
    img: &[f32],
    mask: Option<&[f32]>,
    g: &WinoGeom,
    span: Span,
    channels: (usize, usize),
    v: SharedMut,
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        return input_transform_avx2(img, mask, g, span, channels, v);
    }
    input_transform_body(img, mask, g, span, channels, v)
}

/// Writes the output tiles `t0..t1` of channels `c0..c1` of one image from
/// the products `M[pos][co][t - t0]`.
///
/// # Safety
/// `y` must point to the image's dense `Cout x OH x OW` output; no one else
/// may write those tiles of those channels meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform(
    m: &[f32],
    g: &WinoGeom,
    span: Span,
    channels: (usize, usize),
    bias: Option<&[f32]>,
    relu: bool,
    y: SharedMut,
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        return output_transform_avx2(m, g, span, channels, bias, relu, y);
    }
    output_transform_body(m, g, span, channels, bias, relu, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution in f64.
    fn direct(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &WinoGeom) -> Vec<f64> {
        let mut y = vec![0f64; g.n * g.cout * g.oh * g.ow];
        for b in 0..g.n {
            for co in 0..g.cout {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut s = bias.map_or(0.0, |b| f64::from(b[co]));
                        for ci in 0..g.cin {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let iy = oy as isize + ky as isize - g.pad_h as isize;
                                    let ix = ox as isize + kx as isize - g.pad_w as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((b * g.cin + ci) * g.h + iy as usize) * g.w
                                        + ix as usize];
                                    let wv = w[((co * g.cin + ci) * 3 + ky) * 3 + kx];
                                    s += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        y[((b * g.cout + co) * g.oh + oy) * g.ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn weight_gradient_matches_direct_sums() {
        for &(n, cin, cout, h, w, pad) in &[
            (1, 3, 5, 7, 9, 1),
            (2, 4, 3, 13, 38, 1),
            (1, 16, 20, 101, 90, 1),
            (3, 9, 8, 50, 37, 0),
            (1, 2, 2, 3, 3, 2),
        ] {
            let g = WinoGeom {
                n,
                cin,
                h,
                w,
                cout,
                pad_h: pad,
                pad_w: pad,
                oh: h + 2 * pad - 2,
                ow: w + 2 * pad - 2,
            };
            let x = lcg(n * cin * h * w, 5);
            let dy = lcg(n * cout * g.oh * g.ow, 6);
            let mut reference = vec![0f64; cout * cin * 9];
            for b in 0..n {
                for co in 0..cout {
                    for ci in 0..cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let mut s = 0f64;
                                for oy in 0..g.oh {
                                    for ox in 0..g.ow {
                                        let iy = oy as isize + ky as isize - pad as isize;
                                        let ix = ox as isize + kx as isize - pad as isize;
                                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize
                                        {
                                            continue;
                                        }
                                        s += f64::from(
                                            x[((b * cin + ci) * h + iy as usize) * w + ix as usize],
                                        ) * f64::from(
                                            dy[((b * cout + co) * g.oh + oy) * g.ow + ox],
                                        );
                                    }
                                }
                                reference[((co * cin + ci) * 3 + ky) * 3 + kx] += s;
                            }
                        }
                    }
                }
            }
            let ours = weight_grad3x3(&x, &dy, &g);
            let scale = reference.iter().fold(0f64, |m, v| m.max(v.abs()));
            for (a, b) in ours.iter().zip(&reference) {
                assert!(
                    (f64::from(*a) - b).abs() <= 1e-5 * scale,
                    "{g:?}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn matches_direct_convolution() {
        for &(n, cin, cout, h, w, pad) in &[
            (1, 3, 5, 7, 9, 1),
            (2, 4, 3, 13, 38, 1),
            (1, 17, 16, 40, 45, 1),
            (2, 5, 6, 6, 6, 0),
            (1, 2, 2, 3, 3, 2),
            (1, 1, 1, 1, 1, 1),
            // Enough tiles for the block-parallel mode, with several blocks.
            (1, 16, 20, 101, 90, 1),
            (3, 9, 8, 50, 37, 0),
        ] {
            let g = WinoGeom {
                n,
                cin,
                h,
                w,
                cout,
                pad_h: pad,
                pad_w: pad,
                oh: h + 2 * pad - 2,
                ow: w + 2 * pad - 2,
            };
            let x = lcg(n * cin * h * w, 1);
            let wt = lcg(cout * cin * 9, 2);
            let bias = lcg(cout, 3);
            let mask = lcg(n * cin * h * w, 4);
            let reference = direct(&x, &wt, Some(&bias), &g);
            let ours = conv3x3(&x, None, &wt, Some(&bias), false, &g);
            let scale = reference.iter().fold(0f64, |m, v| m.max(v.abs()));
            for (a, b) in ours.iter().zip(&reference) {
                assert!(
                    (f64::from(*a) - b).abs() <= 1e-5 * scale,
                    "{g:?}: {a} vs {b}"
                );
            }
            // Fused ReLU, and the mask.
            let relu = conv3x3(&x, None, &wt, Some(&bias), true, &g);
            for (a, b) in relu.iter().zip(&ours) {
                assert_eq!(*a, b.max(0.0));
            }
            let masked: Vec<f32> = x
                .iter()
                .zip(&mask)
                .map(|(v, m)| if *m > 0.0 { *v } else { 0.0 })
                .collect();
            let reference = direct(&masked, &wt, None, &g);
            let ours = conv3x3(&x, Some(&mask), &wt, None, false, &g);
            for (a, b) in ours.iter().zip(&reference) {
                assert!(
                    (f64::from(*a) - b).abs() <= 1e-5 * scale.max(1e-6),
                    "{g:?} masked"
                );
            }
        }
    }
}
