//! Inference-only direct 3x3 convolution for few channels, with the layers
//! around it folded in: the reflection padding (and an optional nearest 2x
//! upsampling) of its input, the instance norm + ReLU of the *previous*
//! layer (applied to the input as it is read), and the statistics of its own
//! output (for the instance norm that follows it), or a bias and the output
//! mapping `(tanh + 1) / 2`.
//!
//! Why: the `fast` transform network spends most of its frame on thin,
//! full-resolution layers (3 -> 8, 8 -> 16 stride 2, 8 -> 8 after an
//! upsampling, 8 -> 3 at 640x480). Through the general ops each is a chain
//! of passes over 10-40 MB tensors — upsample, reflection pad, im2col +
//! GEMM (whose panel has `Cin*9` rows for only `Cout <= 16` output rows, a
//! memory-bound product), instance norm (statistics, then normalise +
//! ReLU) — and most of the time goes to moving data rather than to the few
//! multiply-adds. Here each layer is one pass: the input rows a band of
//! output rows needs are built once in a small (L2-resident) buffer,
//! already normalised, rectified, upsampled and reflection-padded, and the
//! output is accumulated in registers, 8 pixels by 8 output channels at a
//! time, each loaded input vector feeding 8 multiply-adds.
//!
//! Why inference-only: the fused layers have no backward. Training runs
//! the same network through the differentiable ops (each with its own CPU
//! backward); `TransformerNet::forward` takes this path only when nothing
//! tracks a gradient (see there), and the tests check that both paths give
//! the same output.
//!
//! Numerics: the statistics are per output row (sum, then the sum of
//! squared deviations from the row's mean, in f32 over one row) merged in
//! f64 with Chan's formula, so the variance has no one-pass cancellation;
//! the norm is applied as `max(a*x + b, 0)` with `a = gamma / sqrt(var +
//! eps)` and `b = beta - mean * a`. The results match the op-by-op path to
//! about 1e-6.
//!
//! CPU and f32 only: callers check the device first.

use rayon::prelude::*;

use super::conv2d::SharedMut;

/// Output channels per register block.
const CO: usize = 8;
/// Output pixels per register block: with [`CO`], 8 AVX2 accumulators
/// (enough to hide the FMA latency on two FMA units), one input vector and
/// the weight broadcasts fit the 16 vector registers; each loaded input
/// vector feeds 8 FMAs.
const PX: usize = 8;
/// Budget (floats) of a band's input buffer: about 256 KiB, well inside L2.
const BAND_FLOATS: usize = 1 << 16;

/// A per-plane map applied to the input as it is read:
/// `max(a[p] * x + b[p], 0)` for plane `p = n * C + c` (a pending instance
/// norm + ReLU).
#[derive(Clone, Debug)]
pub struct ChannelMap {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

impl ChannelMap {
    /// Applies the map in place to `data`, planes of `plane` floats.
    pub fn apply(&self, data: &mut [f32], plane: usize) {
        data.par_chunks_mut(plane.max(1))
            .zip(self.a.par_iter().zip(&self.b))
            .for_each(|(p, (&a, &b))| {
                for v in p {
                    *v = (a * *v + b).max(0.0);
                }
            });
    }
}

/// What the convolution does after the sums.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// Raw output, plus the statistics of each `(n, c)` plane turned into
    /// the [`ChannelMap`] of an instance norm with these `gamma`, `beta`
    /// (zero when absent) and `eps`, followed by ReLU when the map is
    /// applied.
    Norm {
        gamma: &'a [f32],
        beta: Option<&'a [f32]>,
        eps: f64,
    },
    /// `(tanh(y + bias) + 1) / 2`.
    BiasUnitTanh(&'a [f32]),
    /// `y + bias` (bias optional), nothing else.
    Bias(Option<&'a [f32]>),
}

/// One convolution: input `(n, cin, h, w)`, weight `(cout, cin, 3, 3)`.
#[derive(Clone, Copy, Debug)]
pub struct DirectGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    /// 1 or 2.
    pub stride: usize,
    /// Nearest 2x upsampling before the padding.
    pub upsample: bool,
}

impl DirectGeom {
    /// Size of the convolution's (upsampled) input, before padding.
    fn conv_in(&self) -> (usize, usize) {
        if self.upsample {
            (2 * self.h, 2 * self.w)
        } else {
            (self.h, self.w)
        }
    }

    /// Output size: reflection pad 1, 3x3 kernel.
    pub fn out_hw(&self) -> (usize, usize) {
        let (h, w) = self.conv_in();
        ((h - 1) / self.stride + 1, (w - 1) / self.stride + 1)
    }

    /// Whether this path is the faster one (measured on the 2-core Zen 4
    /// target): few channels, where im2col + GEMM is memory-bound. Wide
    /// layers stay on Winograd or GEMM.
    pub fn pays(cin: usize, cout: usize) -> bool {
        cout <= 32 && cin * cout <= 512
    }

    /// Reflection needs at least two (conv-input) pixels per side.
    pub fn valid(&self) -> bool {
        let (h, w) = self.conv_in();
        h >= 2 && w >= 2 && (self.stride == 1 || self.stride == 2)
    }
}

/// Reflected index of `i` in `-1..=n` for an axis of length `n >= 2`.
#[inline(always)]
fn reflect1(i: isize, n: usize) -> usize {
    if i < 0 {
        1
    } else if i as usize >= n {
        n - 2
    } else {
        i as usize
    }
}

/// The convolution (reflection pad 1, stride `g.stride`, optional upsample
/// before), with `map` applied to the input as read and the `epilogue`.
/// Returns the output `(n, cout, oh, ow)` and, for [`Epilogue::Norm`], the
/// map of the norm that follows.
pub fn conv3x3(
    x: &[f32],
    map: Option<&ChannelMap>,
    weight: &[f32],
    epilogue: Epilogue,
    g: &DirectGeom,
) -> (Vec<f32>, Option<ChannelMap>) {
    assert!(g.valid(), "direct conv3x3: invalid geometry {g:?}");
    assert_eq!(x.len(), g.n * g.cin * g.h * g.w);
    assert_eq!(weight.len(), g.cout * g.cin * 9);
    let (oh, ow) = g.out_hw();
    let op = oh * ow;
    let s = g.stride;
    // Phase arrays: tap kx reads phase kx % s at offset kx / s. Long enough
    // for whole PX blocks (the tail lanes read zeros, their sums dropped).
    let lp = ow.next_multiple_of(2 * PX) + 2;
    // Channels per block: 4 (by 16 pixels) for the 3-channel output layer,
    // else 8 (by 8 pixels).
    let cb = if g.cout <= 4 { 4 } else { CO };
    let groups = g.cout.div_ceil(cb);
    // wg[group][((ci*3 + ky)*3 + kx)*cb + co], zero-padded channels.
    let mut wg = vec![0f32; groups * g.cin * 9 * cb];
    for co in 0..g.cout {
        for ci in 0..g.cin {
            for t in 0..9 {
                wg[((co / cb) * g.cin * 9 + ci * 9 + t) * cb + co % cb] =
                    weight[(co * g.cin + ci) * 9 + t];
            }
        }
    }
    // Band height: the buffer holds cin * ((rows-1)*s + 3) rows of s*lp.
    let per_row = g.cin * s * s * lp;
    let mut rows = (BAND_FLOATS / per_row.max(1)).clamp(1, 32);
    let threads = rayon::current_num_threads().max(1);
    // Enough items to keep every thread busy (and balanced).
    while rows > 2 && g.n * oh.div_ceil(rows) * groups < 8 * threads {
        rows /= 2;
    }
    let rows = rows.min(oh);
    let bands = oh.div_ceil(rows);
    let items = g.n * bands * groups;
    // Every element is written (through `out`) before `set_len` below: no
    // zero-fill, which for a 10 MB buffer is a visible pass of its own.
    let len = g.n * g.cout * op;
    let mut y: Vec<f32> = Vec::with_capacity(len);
    // Per output row: (sum, squared deviations from the row's mean).
    let want_stats = matches!(epilogue, Epilogue::Norm { .. });
    let mut stats = vec![[0f64; 2]; if want_stats { g.n * g.cout * oh } else { 0 }];
    let out = SharedMut(y.as_mut_ptr());
    let st = SharedStats(stats.as_mut_ptr());
    (0..items).into_par_iter().for_each(|item| {
        let b = item / (bands * groups);
        let band = item / groups % bands;
        let grp = item % groups;
        let (r0, r1) = (band * rows, ((band + 1) * rows).min(oh));
        let nrows = (r1 - 1 - r0) * s + 3;
        let img = &x[b * g.cin * g.h * g.w..][..g.cin * g.h * g.w];
        super::conv2d::with_scratch(g.cin * nrows * s * lp + lp * s, |buf| {
            let (buf, tmp) = buf.split_at_mut(g.cin * nrows * s * lp);
            let map_b = map.map(|m| (&m.a[b * g.cin..][..g.cin], &m.b[b * g.cin..][..g.cin]));
            fill_band(img, map_b, g, r0 * s, nrows, lp, buf, tmp);
            let c0 = grp * cb;
            let nco = cb.min(g.cout - c0);
            let bias: [f32; CO] = std::array::from_fn(|co| match epilogue {
                Epilogue::BiasUnitTanh(b) | Epilogue::Bias(Some(b)) if co < nco => b[c0 + co],
                _ => 0.0,
            });
            let wgrp = &wg[grp * g.cin * 9 * cb..][..g.cin * 9 * cb];
            for oy in r0..r1 {
                // SAFETY: this item alone writes rows r0..r1 of channels
                // c0..c0+nco of image b.
                let dst: [SharedMut; CO] = std::array::from_fn(|co| {
                    let c = (c0 + co).min(g.cout - 1);
                    SharedMut(out.at((b * g.cout + c) * op + oy * ow))
                });
                let rowbuf = &buf[(oy - r0) * s * s * lp..];
                row_kernel(rowbuf, wgrp, &bias, g.cin, nrows, s, lp, ow, cb, nco, dst);
                for co in 0..nco {
                    // SAFETY: as above.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut(
                            out.at((b * g.cout + c0 + co) * op + oy * ow),
                            ow,
                        )
                    };
                    match epilogue {
                        Epilogue::BiasUnitTanh(_) => super::activation::unit_tanh_inplace(row),
                        Epilogue::Norm { .. } => {
                            let sum: f32 = row_sum(row);
                            let mean = sum / ow as f32;
                            let dev = row_dev(row, mean);
                            // SAFETY: one entry per (b, c, oy), this item's.
                            unsafe {
                                *st.at(((b * g.cout + c0 + co) * oh) + oy) =
                                    [sum as f64, dev as f64]
                            };
                        }
                        Epilogue::Bias(_) => {}
                    }
                }
            }
        });
    });
    // SAFETY: the items above wrote every row of every channel of every
    // image (bands cover 0..oh, groups cover 0..cout, PX blocks cover 0..ow).
    unsafe { y.set_len(len) };
    let map = match epilogue {
        Epilogue::Norm { gamma, beta, eps } => {
            let mut a = vec![0f32; g.n * g.cout];
            let mut bb = vec![0f32; g.n * g.cout];
            for (p, rows) in stats.chunks_exact(oh.max(1)).enumerate() {
                let (mean, var) = merge_rows(rows, ow);
                let c = p % g.cout;
                let ga = gamma[c] as f64 / (var + eps).sqrt();
                a[p] = ga as f32;
                bb[p] = (beta.map_or(0.0, |b| b[c] as f64) - mean * ga) as f32;
            }
            Some(ChannelMap { a, b: bb })
        }
        _ => None,
    };
    (y, map)
}

/// Mean and biased variance of a plane from its rows' (sum, squared
/// deviations), each over `w` pixels (Chan et al.'s parallel update).
fn merge_rows(rows: &[[f64; 2]], w: usize) -> (f64, f64) {
    let (mut n, mut mean, mut m2) = (0f64, 0f64, 0f64);
    let nr = w as f64;
    for &[sum, dev] in rows {
        let mr = sum / nr;
        let delta = mr - mean;
        let tot = n + nr;
        mean += delta * nr / tot;
        m2 += dev + delta * delta * n * nr / tot;
        n = tot;
    }
    (mean, if n > 0.0 { m2 / n } else { 0.0 })
}

#[derive(Clone, Copy)]
struct SharedStats(*mut [f64; 2]);
// SAFETY: every item writes only its own rows' entries.
unsafe impl Send for SharedStats {}
unsafe impl Sync for SharedStats {}
impl SharedStats {
    fn at(self, i: usize) -> *mut [f64; 2] {
        // SAFETY: callers stay within the allocation.
        unsafe { self.0.add(i) }
    }
}

/// Sum in 16 independent lanes (vectorises).
fn row_sum(row: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += *v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `Σ (x - mean)²` in 16 independent lanes.
fn row_dev(row: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            let d = *v - mean;
            *a += d * d;
        }
    }
    acc.iter().sum::<f32>()
        + chunks
            .remainder()
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum::<f32>()
}

/// Builds the band's input rows: padded-input rows `py0 .. py0 + nrows`
/// of every channel, each as `s` phase arrays of `lp` floats
/// (`phase[p][j] = padded[j*s + p]`), `map` applied, zeros past the end.
#[allow(clippy::too_many_arguments)]
fn fill_band(
    img: &[f32],
    map: Option<(&[f32], &[f32])>,
    g: &DirectGeom,
    py0: usize,
    nrows: usize,
    lp: usize,
    buf: &mut [f32],
    tmp: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { fill_band_avx2(img, map, g, py0, nrows, lp, buf, tmp) };
    }
    fill_band_body(img, map, g, py0, nrows, lp, buf, tmp)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn fill_band_avx2(
    img: &[f32],
    map: Option<(&[f32], &[f32])>,
    g: &DirectGeom,
    py0: usize,
    nrows: usize,
    lp: usize,
    buf: &mut [f32],
    tmp: &mut [f32],
) {
    fill_band_body(img, map, g, py0, nrows, lp, buf, tmp)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fill_band_body(
    img: &[f32],
    map: Option<(&[f32], &[f32])>,
    g: &DirectGeom,
    py0: usize,
    nrows: usize,
    lp: usize,
    buf: &mut [f32],
    tmp: &mut [f32],
) {
    let (ch, cw) = g.conv_in();
    let s = g.stride;
    let plane = g.h * g.w;
    let pw = cw + 2;
    for ci in 0..g.cin {
        let (a, b) = map.map_or((1.0, 0.0), |(a, b)| (a[ci], b[ci]));
        let relu = map.is_some();
        for r in 0..nrows {
            let cy = reflect1((py0 + r) as isize - 1, ch);
            let iy = if g.upsample { cy / 2 } else { cy };
            let src = &img[ci * plane + iy * g.w..][..g.w];
            let dst = &mut buf[(ci * nrows + r) * s * lp..][..s * lp];
            // The padded row, into dst (stride 1) or tmp (stride 2).
            let prow: &mut [f32] = if s == 1 { &mut dst[..] } else { &mut tmp[..] };
            if g.upsample {
                for (d, &v) in prow[1..1 + cw].chunks_exact_mut(2).zip(src) {
                    let y = if relu { (a * v + b).max(0.0) } else { v };
                    d[0] = y;
                    d[1] = y;
                }
            } else if relu {
                for (d, &v) in prow[1..1 + cw].iter_mut().zip(src) {
                    *d = (a * v + b).max(0.0);
                }
            } else {
                prow[1..1 + cw].copy_from_slice(src);
            }
            prow[0] = prow[2];
            prow[pw - 1] = prow[pw - 3];
            let plen = prow.len();
            prow[pw..plen.min(s * lp)].fill(0.0);
            if s == 2 {
                let (even, odd) = dst.split_at_mut(lp);
                let n_even = pw.div_ceil(2);
                for j in 0..n_even {
                    even[j] = tmp[2 * j];
                }
                even[n_even..].fill(0.0);
                let n_odd = pw / 2;
                for j in 0..n_odd {
                    odd[j] = tmp[2 * j + 1];
                }
                odd[n_odd..].fill(0.0);
            }
        }
    }
}

/// One output row of up to `cb` (4 or 8) channels: `dst[co][ox] =
/// bias[co] + Σ w · input`, the input being the band buffer from this row's
/// first padded row on, the weights packed `cb` channels per tap.
#[allow(clippy::too_many_arguments)]
fn row_kernel(
    rowbuf: &[f32],
    w: &[f32],
    bias: &[f32; CO],
    cin: usize,
    nrows: usize,
    s: usize,
    lp: usize,
    ow: usize,
    cb: usize,
    nco: usize,
    dst: [SharedMut; CO],
) {
    assert!(rowbuf.len() >= ((cin - 1) * nrows + 3) * s * lp && w.len() >= cin * 9 * cb);
    assert!(ow.next_multiple_of(2 * PX) + 2 <= lp && nco <= cb && cb <= CO);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above); the reads stay
        // inside `rowbuf` and `w` (asserted above, see the kernel).
        return unsafe {
            if cb == 4 {
                row_kernel_avx2::<4, 2>(rowbuf, w, bias, cin, nrows, s, lp, ow, nco, dst)
            } else {
                row_kernel_avx2::<8, 1>(rowbuf, w, bias, cin, nrows, s, lp, ow, nco, dst)
            }
        };
    }
    row_kernel_portable(rowbuf, w, bias, cin, nrows, s, lp, ow, cb, nco, dst)
}

/// The AVX2 + FMA kernel for blocks of `C` channels by `V` vectors of 8
/// pixels (`C * V = 8` accumulators), written with intrinsics so that the
/// accumulators stay in registers (the auto-vectorised portable loop kept
/// them on the stack).
///
/// # Safety
/// AVX2 and FMA; `rowbuf` holds rows `ci * nrows + ky` (`ky < 3`) of `s *
/// lp` floats for every `ci < cin`, with `lp >= ow` rounded up to `8 * V`
/// plus 2; `w` holds `cin * 9 * C` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_kernel_avx2<const C: usize, const V: usize>(
    rowbuf: &[f32],
    w: &[f32],
    bias: &[f32; CO],
    cin: usize,
    nrows: usize,
    s: usize,
    lp: usize,
    ow: usize,
    nco: usize,
    dst: [SharedMut; CO],
) {
    use std::arch::x86_64::*;
    let off: [usize; 3] = std::array::from_fn(|kx| (kx % s) * lp + kx / s);
    let block = 8 * V;
    let mut ox0 = 0;
    while ox0 < ow {
        let mut acc: [[__m256; V]; C] = std::array::from_fn(|co| [_mm256_set1_ps(bias[co]); V]);
        let mut wp = w.as_ptr();
        for ci in 0..cin {
            for ky in 0..3 {
                let row = rowbuf.as_ptr().add((ci * nrows + ky) * s * lp + ox0);
                for &o in &off {
                    let v: [__m256; V] =
                        std::array::from_fn(|j| _mm256_loadu_ps(row.add(o + 8 * j)));
                    for (co, acc) in acc.iter_mut().enumerate() {
                        let wv = _mm256_broadcast_ss(&*wp.add(co));
                        for (a, v) in acc.iter_mut().zip(&v) {
                            *a = _mm256_fmadd_ps(wv, *v, *a);
                        }
                    }
                    wp = wp.add(C);
                }
            }
        }
        let n = block.min(ow - ox0);
        for (d, acc) in dst.iter().zip(&acc).take(nco) {
            let mut lanes = [0f32; 16];
            for (j, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(lanes.as_mut_ptr().add(8 * j), *a);
            }
            std::ptr::copy_nonoverlapping(lanes.as_ptr(), d.at(ox0), n);
        }
        ox0 += block;
    }
}

/// The same without SIMD intrinsics (other CPUs).
#[allow(clippy::too_many_arguments)]
fn row_kernel_portable(
    rowbuf: &[f32],
    w: &[f32],
    bias: &[f32; CO],
    cin: usize,
    nrows: usize,
    s: usize,
    lp: usize,
    ow: usize,
    cb: usize,
    nco: usize,
    dst: [SharedMut; CO],
) {
    let mut ox0 = 0;
    while ox0 < ow {
        let mut acc = [[0f32; PX]; CO];
        for (a, &b) in acc.iter_mut().zip(bias) {
            *a = [b; PX];
        }
        for ci in 0..cin {
            for ky in 0..3 {
                let row = &rowbuf[(ci * nrows + ky) * s * lp..][..s * lp];
                for kx in 0..3 {
                    let at = (kx % s) * lp + kx / s + ox0;
                    let v = &row[at..at + PX];
                    let wv = &w[((ci * 3 + ky) * 3 + kx) * cb..][..cb];
                    for (a, &wc) in acc.iter_mut().zip(wv) {
                        for (a, &x) in a.iter_mut().zip(v) {
                            *a += wc * x;
                        }
                    }
                }
            }
        }
        let n = PX.min(ow - ox0);
        for (d, a) in dst.iter().zip(&acc).take(nco) {
            // SAFETY: `d` is this item's output row of `ow` pixels.
            unsafe { std::ptr::copy_nonoverlapping(a.as_ptr(), d.at(ox0), n) };
        }
        ox0 += PX;
    }
}
