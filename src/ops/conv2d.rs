//! 2-D convolution (NCHW input, OIHW weight, zero padding, dilation 1,
//! groups 1) as a candle custom op with a fast CPU forward and backward.
//!
//! Why not candle's own `Tensor::conv2d` on CPU: its forward materialises the
//! im2col matrix of the whole image (700 MB for a 640x480, 64-channel VGG
//! layer) before one matmul, and its backward is far worse — the gradient
//! wrt the input runs through a naive `conv_transpose2d`, and the gradient
//! wrt the weight is computed even when the weight is a frozen, plain tensor.
//! Gatys style transfer and DeepDream differentiate through VGG19 to the
//! *input image* on every step, so that backward dominates their run time.
//!
//! How it is fast: each convolution takes one of three paths.
//! (Inference of the transform networks' thin 3x3 layers bypasses this op:
//! see `ops::direct`, a fused forward-only convolution.)
//!
//! * **Winograd** (`ops::winograd`) for stride-1 3x3 kernels with at
//!   least 16 input and output channels (VGG19 past its first layer, the
//!   transform networks' residual and upsampling layers): 4x fewer
//!   multiply-adds, forward, input gradient and weight gradient.
//! * **Output-side scatter** for stride-1 layers with few output channels
//!   and a large kernel (the transform networks' last 9x9 layer, 32 -> 3):
//!   see `forward_scatter` and `backward_weight_scatter`.
//! * **Banded im2col + GEMM** for everything else, below.
//!
//! The banded im2col path:
//!
//! * **Row bands.** The output is cut into bands of whole output rows sized
//!   so that a band's im2col panel (`Cin*KH*KW` rows by `band_rows*OW`
//!   pixels, pixel-contiguous, which is the column-major left operand the
//!   `gemm` microkernel wants once it transposes the pixel-contiguous
//!   destination) and its block of output rows fit in about half a MiB of
//!   L2, but hand the GEMM at least 256 pixels. Memory stays bounded
//!   whatever the image size, and the panel is still warm when the GEMM reads
//!   it.
//! * **One GEMM per band, written in place.** `gemm::gemm` takes arbitrary
//!   strides, so each band's `Cout x pixels` product is written straight into
//!   the NCHW output (row stride `OH*OW`); the bias is the initial value of
//!   those rows and the GEMM accumulates onto it, so there is no extra pass.
//! * **Parallel bands.** Bands (of every image of the batch) are independent
//!   and run on rayon's pool with single-threaded GEMMs (with few bands
//!   their count is rounded to a multiple of the thread count); only when
//!   there are fewer bands than threads does the GEMM itself go parallel.
//! * **Backward to the input** for stride 1 (every VGG layer past the first,
//!   and the 9x9 and 3x3 stride-1 layers of the feed-forward net) is the
//!   same banded forward kernel applied to the output gradient with the
//!   spatially flipped, in/out-transposed kernel and padding `K-1-pad`: no
//!   scatter, no overlapping writes, the forward's speed. Strided layers,
//!   and layers with fewer than 16 input channels (whose flipped GEMM would
//!   have only `Cin` rows — 3 for the image), use banded `col2im(Wᵀ·dY)`:
//!   bands over output rows, run in two waves (even, then odd bands) so that
//!   no two concurrent bands add into the same input row and nothing is
//!   computed twice.
//! * **Fused ReLU** ([`conv2d_relu`]): VGG19's convolutions are each followed
//!   by a ReLU. The fused op applies it as the output is written, and its
//!   backward masks the output gradient by `y > 0` as the input-gradient
//!   kernel reads it, where candle's ReLU backward makes several passes and
//!   a gradient sum over every activation.
//! * **Per-thread scratch** (panels, Winograd blocks) is kept between calls.
//! * **Only the gradients that are needed.** The backward returns a weight
//!   (or bias) gradient only when that tensor tracks gradients (a `Var`, or
//!   the result of tracked ops); VGG's plain-tensor weights cost nothing.
//!
//! The backward ops are themselves built without autograd, so second
//! derivatives through this op are not supported.
//!
//! Non-CPU devices and non-f32 dtypes fall back to candle's `conv2d` plus a
//! broadcast bias add, so the function works everywhere (including
//! `--features cuda`).

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::winograd::{self, WinoGeom};

/// `conv2d(input, weight) + bias` with the same padding on all four sides
/// and the same stride in both directions.
///
/// * `input`: `(N, Cin, H, W)`; `weight`: `(Cout, Cin, KH, KW)`; `bias`:
///   `Cout` elements (any shape, usually `(Cout,)`).
/// * Returns `(N, Cout, OH, OW)` with `OH = (H + 2*padding - KH) / stride + 1`
///   (likewise `OW`), contiguous.
///
/// On CPU with f32 tensors this is a custom op with its own backward (see
/// the module docs); elsewhere it is candle's `conv2d`.
pub fn conv2d(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    conv2d_impl(input, weight, bias, stride, padding, false)
}

/// `relu(conv2d(input, weight) + bias)`, as one op: the forward applies the
/// ReLU to each band (or Winograd tile) as it is written, and the backward
/// masks the output gradient by `output > 0` while it reads it (PyTorch's
/// ReLU gradient: 0 at 0), instead of candle's ReLU backward (a comparison,
/// a conversion, a product and a gradient sum: several passes over every
/// activation). Same arguments and shapes as [`conv2d`].
pub fn conv2d_relu(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    conv2d_impl(input, weight, bias, stride, padding, true)
}

fn conv2d_impl(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
    relu: bool,
) -> Result<Tensor> {
    let f32_cpu = |t: &Tensor| t.dtype() == DType::F32 && t.device().is_cpu();
    if !(f32_cpu(input) && f32_cpu(weight) && bias.is_none_or(f32_cpu)) {
        let y = candle_conv2d(input, weight, bias, stride, padding)?;
        return if relu { y.relu() } else { Ok(y) };
    }
    // Validate here so a bad shape fails at the call, with a clear message.
    let g = Geom::new(input.dims(), weight.dims(), stride, padding, padding)?;
    if let Some(b) = bias {
        if b.elem_count() != g.cout {
            bail!(
                "conv2d: bias has {} elements, the weight has {} output channels",
                b.elem_count(),
                g.cout
            );
        }
    }
    // The kernels read dense NCHW/OIHW slices; `contiguous` is free when the
    // tensor already is, and keeps the autograd graph when it is not.
    let input = input.contiguous()?;
    let weight = weight.contiguous()?;
    let op = Conv2dOp {
        stride,
        padding,
        relu,
    };
    match bias {
        None => input.apply_op2(&weight, op),
        Some(b) => input.apply_op3(&weight, &b.contiguous()?, op),
    }
}

/// candle's own convolution: the fallback for other devices and dtypes.
fn candle_conv2d(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let y = input.conv2d(weight, padding, stride, 1, 1)?;
    match bias {
        None => Ok(y),
        Some(b) => {
            let cout = weight.dim(0)?;
            y.broadcast_add(&b.reshape((1, cout, 1, 1))?)
        }
    }
}

/// Shapes of one convolution, with the padding per axis so that the
/// input-gradient (a convolution with padding `K-1-pad`) reuses the same
/// kernel for non-square kernels.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad_h: usize,
    pad_w: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    fn new(
        x_dims: &[usize],
        w_dims: &[usize],
        stride: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> Result<Self> {
        let &[n, cin, h, w] = x_dims else {
            bail!("conv2d: input must be (N, C, H, W), got {x_dims:?}")
        };
        let &[cout, wcin, kh, kw] = w_dims else {
            bail!("conv2d: weight must be (Cout, Cin, KH, KW), got {w_dims:?}")
        };
        if wcin != cin {
            bail!("conv2d: input has {cin} channels, the weight expects {wcin}")
        }
        if stride == 0 || kh == 0 || kw == 0 {
            bail!("conv2d: stride and kernel sizes must be positive")
        }
        if h + 2 * pad_h < kh || w + 2 * pad_w < kw {
            bail!("conv2d: padded input {h}x{w} (pad {pad_h},{pad_w}) is smaller than the {kh}x{kw} kernel")
        }
        Ok(Self {
            n,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            stride,
            pad_h,
            pad_w,
            oh: (h + 2 * pad_h - kh) / stride + 1,
            ow: (w + 2 * pad_w - kw) / stride + 1,
        })
    }

    /// GEMM depth: one im2col row per (input channel, kernel tap).
    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    fn in_plane(&self) -> usize {
        self.h * self.w
    }

    fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// A 1x1, stride-1, unpadded convolution: the input planes already are
    /// the im2col matrix, so no copy is made.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad_h == 0 && self.pad_w == 0
    }

    /// Few output channels and a large kernel (the transform networks' last
    /// 9x9 layer, 32 -> 3): im2col would write `Cin*KH*KW` panel rows per
    /// pixel for only `Cout` multiply-adds each, a memory-bound GEMM with a
    /// 3-row result. [`forward_scatter`] multiplies the input rows as they
    /// are instead.
    fn scatter_pays(&self) -> bool {
        self.stride == 1 && self.cout < 16 && self.cin >= 16 && self.cout * self.kh * self.kw >= 64
    }

    /// The Winograd geometry when this convolution takes that path.
    fn winograd(&self) -> Option<WinoGeom> {
        let fits = self.kh == 3
            && self.kw == 3
            && self.stride == 1
            && self.pad_h <= 2
            && self.pad_w <= 2
            && winograd::worthwhile(self.cin, self.cout);
        fits.then_some(WinoGeom {
            n: self.n,
            cin: self.cin,
            h: self.h,
            w: self.w,
            cout: self.cout,
            pad_h: self.pad_h,
            pad_w: self.pad_w,
            oh: self.oh,
            ow: self.ow,
        })
    }

    fn out_shape(&self) -> Shape {
        Shape::from((self.n, self.cout, self.oh, self.ow))
    }
}

/// The op candle records in the graph; `cpu_fwd` runs the banded kernel and
/// `bwd` builds the gradients with the (autograd-free) ops below.
struct Conv2dOp {
    stride: usize,
    padding: usize,
    /// A fused ReLU after the bias.
    relu: bool,
}

impl Conv2dOp {
    fn forward(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bias: Option<&[f32]>,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(
            xl.dims(),
            wl.dims(),
            self.stride,
            self.padding,
            self.padding,
        )?;
        let x = dense_f32(xs, xl)?;
        let w = dense_f32(ws, wl)?;
        if let Some(b) = bias {
            if b.len() != g.cout {
                bail!("conv2d: bias has {} elements, expected {}", b.len(), g.cout)
            }
        }
        let y = forward(x, w, bias, self.relu, &g);
        Ok((CpuStorage::F32(y), g.out_shape()))
    }

    /// Gradients wrt the input and the weight, each only if that tensor
    /// tracks gradients: frozen weights (VGG) cost nothing. Also returns the
    /// output gradient as the convolution itself sees it (masked by the
    /// fused ReLU), for the bias gradient.
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
        bias_tracks: bool,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Tensor)> {
        let grad = grad.contiguous()?;
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        let dx = if x.track_op() {
            let op = InputGrad {
                stride: self.stride,
                padding: self.padding,
                h,
                w: wd,
            };
            if self.relu {
                // The mask is applied inside the kernel, as it reads dY.
                Some(grad.apply_op3_no_bwd(w, &res.contiguous()?, &op)?)
            } else {
                Some(grad.apply_op2_no_bwd(w, &op)?)
            }
        } else {
            None
        };
        // The weight and bias gradients (trained networks only) read the
        // masked gradient several times: materialise it once.
        let grad = if self.relu && (w.track_op() || bias_tracks) {
            grad.apply_op2_no_bwd(&res.contiguous()?, &ReluMask)?
        } else {
            grad
        };
        let dw = if w.track_op() {
            let op = WeightGrad {
                stride: self.stride,
                padding: self.padding,
                kh,
                kw,
            };
            Some(x.apply_op2_no_bwd(&grad, &op)?)
        } else {
            None
        };
        Ok((dx, dw, grad))
    }
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "stylestream-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(xs, xl, ws, wl, None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.grads(x, w, res, grad, false)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "stylestream-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let b = dense_f32(bs, bl)?;
        self.forward(xs, xl, ws, wl, Some(b))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, grad) = self.grads(x, w, res, grad, b.track_op())?;
        let db = if b.track_op() {
            // Summing the contiguous last axes first keeps candle's
            // reductions on its fast contiguous path.
            Some(grad.sum(3)?.sum(2)?.sum(0)?.reshape(b.shape())?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

/// `dX` from `(dY, W)`; it needs the input's spatial size, which a strided
/// convolution does not determine from `dY`.
struct InputGrad {
    stride: usize,
    padding: usize,
    h: usize,
    w: usize,
}

impl InputGrad {
    fn run(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        mask: Option<&[f32]>,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, cout, oh, ow) = dyl.shape().dims4()?;
        let (wcout, cin, _, _) = wl.shape().dims4()?;
        let g = Geom::new(
            &[n, cin, self.h, self.w],
            wl.dims(),
            self.stride,
            self.padding,
            self.padding,
        )?;
        if (cout, oh, ow) != (wcout, g.oh, g.ow) {
            bail!(
                "conv2d backward: output gradient {:?} does not match {g:?}",
                dyl.dims()
            )
        }
        let dy = dense_f32(dys, dyl)?;
        if mask.is_some_and(|m| m.len() != dy.len()) {
            bail!("conv2d backward: the ReLU mask does not match the output gradient")
        }
        let dx = backward_input(dy, mask, dense_f32(ws, wl)?, &g);
        Ok((CpuStorage::F32(dx), Shape::from((n, cin, self.h, self.w))))
    }
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "stylestream-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run(dys, dyl, ws, wl, None)
    }
}

/// With a third operand, the output `y` of a fused conv + ReLU: `dY` is
/// masked by `y > 0` as it is read.
impl CustomOp3 for InputGrad {
    fn name(&self) -> &'static str {
        "stylestream-conv2d-relu-input-grad"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run(dys, dyl, ws, wl, Some(dense_f32(ys, yl)?))
    }
}

/// `dY · (y > 0)`: the gradient a fused ReLU passes to its convolution.
struct ReluMask;

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "stylestream-relu-mask"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (dy, y) = (dense_f32(dys, dyl)?, dense_f32(ys, yl)?);
        if dy.len() != y.len() {
            bail!("conv2d backward: the ReLU mask does not match the output gradient")
        }
        let out = relu_masked(dy, y);
        Ok((CpuStorage::F32(out), dyl.shape().clone()))
    }
}

/// `dy · (y > 0)`, in parallel chunks.
fn relu_masked(dy: &[f32], y: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; dy.len()];
    out.par_chunks_mut(1 << 14)
        .zip(dy.par_chunks(1 << 14).zip(y.par_chunks(1 << 14)))
        .for_each(|(o, (d, m))| {
            for ((o, &d), &m) in o.iter_mut().zip(d).zip(m) {
                *o = if m > 0.0 { d } else { 0.0 };
            }
        });
    out
}

/// `dW` from `(X, dY)`, summed over the batch.
struct WeightGrad {
    stride: usize,
    padding: usize,
    kh: usize,
    kw: usize,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "stylestream-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, cin, _, _) = xl.shape().dims4()?;
        let (dn, cout, oh, ow) = dyl.shape().dims4()?;
        let g = Geom::new(
            xl.dims(),
            &[cout, cin, self.kh, self.kw],
            self.stride,
            self.padding,
            self.padding,
        )?;
        if (dn, oh, ow) != (n, g.oh, g.ow) {
            bail!(
                "conv2d backward: output gradient {:?} does not match {g:?}",
                dyl.dims()
            )
        }
        let dw = backward_weight(dense_f32(xs, xl)?, dense_f32(dys, dyl)?, &g);
        Ok((
            CpuStorage::F32(dw),
            Shape::from((cout, cin, self.kh, self.kw)),
        ))
    }
}

fn dense_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("conv2d: expected a contiguous tensor"),
    }
}

// ---------------------------------------------------------------------------
// Kernels on dense slices.

/// Scratch budget (f32 elements, 512 KiB) of one band: its im2col panel plus
/// its block of output rows, so that both stay in L2 while the GEMM works on
/// them. Measured on the 2-core Zen 4 target, 2^17..2^19 are within noise of
/// each other; it matters mostly for the few-channel layers, whose panels are
/// small and would otherwise make very tall bands.
const PANEL_FLOATS: usize = 1 << 17;
/// Fewest pixels a band should hand the GEMM: below this the weight matrix
/// is re-streamed for too little work (deep layers have multi-MB weights).
/// This, not the cache budget, sets the band height of the wide-channel
/// layers (a 512-channel 3x3 panel row of 40 pixels is already 720 KiB);
/// GEMMs of 20-40 pixels measured 30% slower than 160-320.
const MIN_BAND_PIXELS: usize = 256;

/// How a dimension of `rows` rows (per image, `images` images) is cut into
/// work items.
#[derive(Clone, Copy, Debug)]
struct Bands {
    rows: usize,
    count: usize,
    /// Threads for the GEMM inside one item: only when there are too few
    /// items to occupy the pool.
    gemm: Parallelism,
}

impl Bands {
    /// Bands of about [`PANEL_FLOATS`] scratch (`floats_per_row` per row:
    /// panel plus output block) but at least [`MIN_BAND_PIXELS`] pixels,
    /// split further when that leaves threads idle.
    fn plan(images: usize, rows: usize, floats_per_row: usize, pixels_per_row: usize) -> Self {
        let threads = rayon::current_num_threads().max(1);
        let rows = rows.max(1);
        let by_cache = PANEL_FLOATS / floats_per_row.max(1);
        let by_gemm = MIN_BAND_PIXELS.div_ceil(pixels_per_row.max(1));
        let band = by_cache.max(by_gemm).clamp(1, rows);
        let mut count = rows.div_ceil(band);
        // With few items, a remainder leaves threads idle at the end (3 bands
        // on 2 threads run at 2/3 speed): round the total up to a multiple of
        // the thread count, which also gives every thread a band at batch 1.
        let total = images.max(1) * count;
        if total < 4 * threads {
            count = total
                .next_multiple_of(threads)
                .div_ceil(images.max(1))
                .min(rows);
        }
        // Equal bands rather than a short last one.
        let band = rows.div_ceil(count);
        Self::exact(images, rows, band)
    }

    /// Bands of exactly `band` rows (the last one shorter).
    fn exact(images: usize, rows: usize, band: usize) -> Self {
        let threads = rayon::current_num_threads().max(1);
        let band = band.clamp(1, rows.max(1));
        let count = rows.max(1).div_ceil(band);
        let gemm = if images * count < threads {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        Self {
            rows: band,
            count,
            gemm,
        }
    }

    fn range(&self, band: usize, total: usize) -> (usize, usize) {
        let r0 = band * self.rows;
        (r0, (r0 + self.rows).min(total))
    }
}

/// A raw output pointer shared by bands that write disjoint regions.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: every user writes only the rows of its own band (disjoint).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// A method rather than field access so closures capture the whole
    /// (Send) wrapper, not the raw pointer.
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers stay within the allocation the pointer came from.
        unsafe { self.0.add(offset) }
    }
}

thread_local! {
    /// Per-thread scratch (im2col panels, Winograd blocks), kept between
    /// calls: a fresh buffer per band costs a page-faulting, zero-filling
    /// allocation each time, a visible share of the layers' time.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest scratch a thread keeps between calls (floats; 64 MB).
const SCRATCH_KEEP: usize = 1 << 24;

/// Runs `f` on this thread's scratch buffer of at least `len` floats
/// (contents unspecified: callers write before they read). Re-entrant: the
/// buffer is taken out while `f` runs, so a nested call (rayon may run
/// another band on this thread while a parallel GEMM waits) gets its own.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    if buf.len() <= SCRATCH_KEEP {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < buf.len() {
                *s = buf;
            }
        });
    }
    r
}

/// `dst (m x n) = [dst +] lhs (m x k) · rhs (k x n)`, strides in elements
/// as (row stride, column stride).
///
/// # Safety
/// Every pointer must cover the elements its strides and sizes address.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: *const f32,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    *dst.add(i * dst_rs + j * dst_cs) = 0.0;
                }
            }
        }
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_cs as isize,
        dst_rs as isize,
        accumulate,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        par,
    )
}

/// For kernel column `kx`, the output columns `[lo, hi)` whose input column
/// `ox*stride + kx - pad` lies inside `0..w`; the rest read padding.
fn valid_cols(kx: usize, pad: usize, stride: usize, w: usize, ow: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(kx).div_ceil(stride).min(ow);
    let hi = if w + pad <= kx {
        0
    } else {
        ((w + pad - kx - 1) / stride + 1).min(ow)
    };
    (lo, hi.max(lo))
}

/// The im2col panel of output rows `[r0, r1)` of one image: row
/// `(ci*KH + ky)*KW + kx` holds, pixel after pixel, the input value each
/// output pixel of the band multiplies by tap `(ky, kx)` of channel `ci`.
fn im2col(img: &[f32], g: &Geom, r0: usize, r1: usize, col: &mut [f32]) {
    let p = (r1 - r0) * g.ow;
    let cols: Vec<(usize, usize)> = (0..g.kw)
        .map(|kx| valid_cols(kx, g.pad_w, g.stride, g.w, g.ow))
        .collect();
    let mut rows = col.chunks_exact_mut(p);
    for ci in 0..g.cin {
        let plane = &img[ci * g.in_plane()..(ci + 1) * g.in_plane()];
        for ky in 0..g.kh {
            for (kx, &(lo, hi)) in cols.iter().enumerate() {
                let row = rows.next().expect("panel sized for K rows");
                for (oy, seg) in (r0..r1).zip(row.chunks_exact_mut(g.ow)) {
                    let iy = oy * g.stride + ky;
                    if iy < g.pad_h || iy - g.pad_h >= g.h {
                        seg.fill(0.0);
                        continue;
                    }
                    let src = &plane[(iy - g.pad_h) * g.w..(iy - g.pad_h + 1) * g.w];
                    seg[..lo].fill(0.0);
                    seg[hi..].fill(0.0);
                    // Input column of output column `lo`; valid since lo < hi.
                    if lo < hi {
                        let x0 = lo * g.stride + kx - g.pad_w;
                        if g.stride == 1 {
                            seg[lo..hi].copy_from_slice(&src[x0..x0 + hi - lo]);
                        } else {
                            for (d, s) in seg[lo..hi]
                                .iter_mut()
                                .zip(src[x0..].iter().step_by(g.stride))
                            {
                                *d = *s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The convolution proper: Winograd for stride-1 3x3 kernels with enough
/// channels, otherwise banded im2col + GEMM into the NCHW output; then the
/// ReLU if `relu`.
fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, relu: bool, g: &Geom) -> Vec<f32> {
    if let Some(wg) = g.winograd() {
        return winograd::conv3x3(x, None, w, bias, relu, &wg);
    }
    if g.scatter_pays() {
        return forward_scatter(x, w, bias, relu, g);
    }
    let (k, op) = (g.k(), g.out_plane());
    let mut y = vec![0f32; g.n * g.cout * op];
    if y.is_empty() {
        return y;
    }
    let pointwise = g.is_pointwise();
    let panel = if pointwise { 0 } else { k };
    let bands = Bands::plan(g.n, g.oh, (panel + g.cout) * g.ow, g.ow);
    let out = SharedMut(y.as_mut_ptr());
    (0..g.n * bands.count).into_par_iter().for_each(|item| {
        let (b, band) = (item / bands.count, item % bands.count);
        let (r0, r1) = bands.range(band, g.oh);
        let p = (r1 - r0) * g.ow;
        let scratch = if pointwise { 0 } else { k * p };
        with_scratch(scratch, |col| {
            let img = &x[b * g.cin * g.in_plane()..(b + 1) * g.cin * g.in_plane()];
            let (rhs, rhs_rs) = if pointwise {
                (img[r0 * g.w..].as_ptr(), g.in_plane())
            } else {
                im2col(img, g, r0, r1, col);
                (col.as_ptr(), p)
            };
            let dst = out.at(b * g.cout * op + r0 * g.ow);
            if let Some(bias) = bias {
                for (co, &v) in bias.iter().enumerate() {
                    // SAFETY: row `co` of this band: `p` elements inside `y`,
                    // written by this item only.
                    unsafe { std::slice::from_raw_parts_mut(dst.add(co * op), p) }.fill(v);
                }
            }
            // SAFETY: dst rows are this band's pixels of each output channel;
            // lhs is the dense Cout x K weight; rhs is K rows of `p` pixels.
            unsafe {
                gemm_f32(
                    g.cout,
                    p,
                    k,
                    dst,
                    (op, 1),
                    bias.is_some(),
                    w.as_ptr(),
                    (k, 1),
                    rhs,
                    (rhs_rs, 1),
                    bands.gemm,
                )
            }
            if relu {
                for co in 0..g.cout {
                    // SAFETY: as above, this band's row of channel `co`.
                    let row = unsafe { std::slice::from_raw_parts_mut(dst.add(co * op), p) };
                    for v in row {
                        *v = v.max(0.0);
                    }
                }
            }
        });
    });
    y
}

/// Output columns per work item of [`forward_scatter`].
const SCATTER_COLS: usize = 256;

/// Stride-1 convolution for few output channels ("output-side im2col"):
/// for each input row, `Z = W2 · X_row` with `W2` the `(Cout·KH·KW) x Cin`
/// rearranged weight and `X_row` the row's `Cin x width` pixels read in
/// place (no panel), then every row `(co, ky, kx)` of `Z`, shifted by `kx`,
/// is added to output row `iy + pad - ky` of channel `co`. The GEMM has
/// `Cout·KH·KW` rows (243 for 3 x 9x9) and depth `Cin`; the adds are
/// `1/Cin` of the multiply-adds. Work items are bands of output rows times
/// chunks of output columns (each recomputes the `KH-1` input rows and
/// `KW-1` columns at its edges: a few percent).
fn forward_scatter(x: &[f32], w: &[f32], bias: Option<&[f32]>, relu: bool, g: &Geom) -> Vec<f32> {
    let op = g.out_plane();
    let mut y = vec![0f32; g.n * g.cout * op];
    if y.is_empty() {
        return y;
    }
    let (taps, m) = (g.kh * g.kw, g.cout * g.kh * g.kw);
    // W2[(co*KH + ky)*KW + kx][ci]
    let mut w2 = vec![0f32; m * g.cin];
    for co in 0..g.cout {
        for ci in 0..g.cin {
            for t in 0..taps {
                w2[(co * taps + t) * g.cin + ci] = w[(co * g.cin + ci) * taps + t];
            }
        }
    }
    let threads = rayon::current_num_threads().max(1);
    let col_chunks = g.ow.div_ceil(SCATTER_COLS);
    // Row bands: enough items for every thread, but tall enough that the
    // recomputed KH-1 rows stay a small share.
    let per_image = col_chunks.max(1);
    let want = (2 * threads).div_ceil(g.n * per_image).max(1);
    let row_bands = want.min(g.oh.div_ceil(8 * g.kh).max(1)).max(1);
    let band_rows = g.oh.div_ceil(row_bands);
    let row_bands = g.oh.div_ceil(band_rows);
    let items = g.n * row_bands * col_chunks;
    let out = SharedMut(y.as_mut_ptr());
    let gemm_par = if items < threads {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    (0..items).into_par_iter().for_each(|item| {
        let b = item / (row_bands * col_chunks);
        let (band, chunk) = (item / col_chunks % row_bands, item % col_chunks);
        let (r0, r1) = (band * band_rows, ((band + 1) * band_rows).min(g.oh));
        let (c0, c1) = (chunk * SCATTER_COLS, ((chunk + 1) * SCATTER_COLS).min(g.ow));
        // Input columns [ix0, ix1) that output columns c0..c1 read.
        let ix0 = c0.saturating_sub(g.pad_w);
        let ix1 = (c1 - 1 + g.kw).saturating_sub(g.pad_w).min(g.w);
        if ix0 >= ix1 {
            return;
        }
        let zw = ix1 - ix0;
        with_scratch(m * zw, |z| {
            let img = &x[b * g.cin * g.in_plane()..][..g.cin * g.in_plane()];
            // SAFETY: this item alone writes rows r0..r1, columns c0..c1 of
            // every channel of image b.
            let yimg =
                unsafe { std::slice::from_raw_parts_mut(out.at(b * g.cout * op), g.cout * op) };
            for co in 0..g.cout {
                let v = bias.map_or(0.0, |b| b[co]);
                for oy in r0..r1 {
                    yimg[co * op + oy * g.ow..][c0..c1].fill(v);
                }
            }
            // Input rows [iy0, iy1) that output rows r0..r1 read.
            let iy0 = r0.saturating_sub(g.pad_h);
            let iy1 = (r1 - 1 + g.kh).saturating_sub(g.pad_h).min(g.h);
            for iy in iy0..iy1 {
                // SAFETY: z is m x zw; lhs is the dense m x Cin W2; rhs is
                // Cin rows (plane stride) of zw pixels of input row iy.
                unsafe {
                    gemm_f32(
                        m,
                        zw,
                        g.cin,
                        z.as_mut_ptr(),
                        (zw, 1),
                        false,
                        w2.as_ptr(),
                        (g.cin, 1),
                        img[iy * g.w + ix0..].as_ptr(),
                        (g.in_plane(), 1),
                        gemm_par,
                    )
                };
                for ky in 0..g.kh {
                    // Output row fed by input row iy through kernel row ky.
                    let oy = iy + g.pad_h;
                    if oy < ky || oy - ky < r0 || oy - ky >= r1 {
                        continue;
                    }
                    let oy = oy - ky;
                    for co in 0..g.cout {
                        let dst = &mut yimg[co * op + oy * g.ow..][..g.ow];
                        for kx in 0..g.kw {
                            // ox reads input column ox + kx - pad, which
                            // must lie in [ix0, ix1).
                            let lo = (ix0 + g.pad_w).saturating_sub(kx).max(c0);
                            let hi = (ix1 + g.pad_w).saturating_sub(kx).min(c1);
                            if lo >= hi {
                                continue;
                            }
                            let zrow = &z[((co * g.kh + ky) * g.kw + kx) * zw..][..zw];
                            let src = &zrow[lo + kx - g.pad_w - ix0..][..hi - lo];
                            for (d, s) in dst[lo..hi].iter_mut().zip(src) {
                                *d += *s;
                            }
                        }
                    }
                }
            }
            if relu {
                for co in 0..g.cout {
                    for oy in r0..r1 {
                        for v in &mut yimg[co * op + oy * g.ow..][c0..c1] {
                            *v = v.max(0.0);
                        }
                    }
                }
            }
        });
    });
    y
}

/// Input rows per band of [`backward_weight_scatter`].
const SCATTER_DW_PIXELS: usize = 512;

/// The weight gradient for the geometries of [`forward_scatter`] (few
/// output channels, large kernel): im2col of the *input* would write
/// `Cin*KH*KW` rows per pixel. Instead each output-gradient channel is
/// spread over the input grid: `dZ[(co, ky, kx)][iy, ix] = dY[co][iy + pad -
/// ky][ix + pad - kx]` (`Cout*KH*KW` rows, 243 for 3 x 9x9), and
/// `dW2 = dZ · Xᵀ` reads the input rows in place; `dW2[(co, ky, kx)][ci]`
/// is `dW[co][ci][ky][kx]`. Bands of input rows are shared out between the
/// threads, each summing into its own `dW2`.
fn backward_weight_scatter(x: &[f32], dy: &[f32], g: &Geom) -> Vec<f32> {
    let (taps, m, op, ip) = (
        g.kh * g.kw,
        g.cout * g.kh * g.kw,
        g.out_plane(),
        g.in_plane(),
    );
    let band_rows = SCATTER_DW_PIXELS.div_ceil(g.w).clamp(1, g.h.max(1));
    let bands = g.h.div_ceil(band_rows);
    let items = g.n * bands;
    let workers = rayon::current_num_threads().clamp(1, items.max(1));
    let partials: Vec<Vec<f32>> = (0..workers)
        .into_par_iter()
        .map(|t| {
            let mut acc = vec![0f32; m * g.cin];
            for item in t * items / workers..(t + 1) * items / workers {
                let (b, band) = (item / bands, item % bands);
                let (i0, i1) = (band * band_rows, ((band + 1) * band_rows).min(g.h));
                let p = (i1 - i0) * g.w;
                let dyi = &dy[b * g.cout * op..][..g.cout * op];
                let img = &x[b * g.cin * ip..][..g.cin * ip];
                with_scratch(m * p, |dz| {
                    for co in 0..g.cout {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let row = &mut dz[((co * g.kh + ky) * g.kw + kx) * p..][..p];
                                for (iy, seg) in (i0..i1).zip(row.chunks_exact_mut(g.w)) {
                                    // Output row and columns this input row
                                    // meets through tap (ky, kx).
                                    let oy = (iy + g.pad_h).wrapping_sub(ky);
                                    if oy >= g.oh {
                                        seg.fill(0.0);
                                        continue;
                                    }
                                    let src = &dyi[co * op + oy * g.ow..][..g.ow];
                                    // ix = ox + kx - pad for ox in 0..ow.
                                    let lo = (kx).saturating_sub(g.pad_w).min(g.w);
                                    let hi = (g.ow + kx).saturating_sub(g.pad_w).min(g.w).max(lo);
                                    seg[..lo].fill(0.0);
                                    seg[hi..].fill(0.0);
                                    let ox0 = lo + g.pad_w - kx;
                                    seg[lo..hi].copy_from_slice(&src[ox0..ox0 + hi - lo]);
                                }
                            }
                        }
                    }
                    // SAFETY: acc is m x Cin; lhs is dZ (m rows of p pixels);
                    // rhs is the band's input pixels transposed (p x Cin).
                    unsafe {
                        gemm_f32(
                            m,
                            g.cin,
                            p,
                            acc.as_mut_ptr(),
                            (g.cin, 1),
                            true,
                            dz.as_ptr(),
                            (p, 1),
                            img[i0 * g.w..].as_ptr(),
                            (1, ip),
                            Parallelism::None,
                        )
                    }
                });
            }
            acc
        })
        .collect();
    let mut dw = vec![0f32; g.cout * g.cin * taps];
    for part in &partials {
        for co in 0..g.cout {
            for t in 0..taps {
                let src = &part[(co * taps + t) * g.cin..][..g.cin];
                for (ci, v) in src.iter().enumerate() {
                    dw[(co * g.cin + ci) * taps + t] += *v;
                }
            }
        }
    }
    dw
}

/// `W[co][ci][ky][kx]` → `W'[ci][co][KH-1-ky][KW-1-kx]`: the kernel that
/// turns the stride-1 input gradient into a plain forward convolution.
fn flip_transpose(w: &[f32], g: &Geom) -> Vec<f32> {
    let taps = g.kh * g.kw;
    let mut out = vec![0f32; w.len()];
    // For the deep, small-spatial layers this 9 MB shuffle is a visible part
    // of the backward (~3 ms next to 13 ms for 512 channels at 20x15), so
    // the rows of the result run in parallel. (Reading the forward weight
    // through strides instead, one GEMM per tap, measured slower: the GEMM
    // then repacks a scattered operand for every band.)
    out.par_chunks_mut(g.cout * taps)
        .enumerate()
        .for_each(|(ci, row)| {
            for (co, dst) in row.chunks_exact_mut(taps).enumerate() {
                let src = &w[(co * g.cin + ci) * taps..][..taps];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        });
    out
}

/// Input channels below which the stride-1 input gradient goes through
/// col2im rather than the flipped convolution: that convolution's GEMM has
/// only `Cin` output rows (3 for the image layer), which fills a fraction of
/// the microkernel, while col2im's GEMM has `Cin*KH*KW`.
const FLIPPED_MIN_CIN: usize = 16;

/// `dX` for output gradient `dy` (N, Cout, OH, OW), masked by `mask > 0`
/// (the output of a fused ReLU) when given.
fn backward_input(dy: &[f32], mask: Option<&[f32]>, w: &[f32], g: &Geom) -> Vec<f32> {
    let flipped = g.stride == 1 && g.pad_h < g.kh && g.pad_w < g.kw && g.cin >= FLIPPED_MIN_CIN;
    // dX[ci, y, x] = Σ W[co, ci, ky, kx] · dY[co, y + pad - ky, x + pad - kx]
    // is a correlation of dY, padded by K-1-pad, with the flipped kernel.
    let gt = Geom {
        n: g.n,
        cin: g.cout,
        h: g.oh,
        w: g.ow,
        cout: g.cin,
        kh: g.kh,
        kw: g.kw,
        stride: 1,
        pad_h: (g.kh - 1).saturating_sub(g.pad_h),
        pad_w: (g.kw - 1).saturating_sub(g.pad_w),
        oh: g.h,
        ow: g.w,
    };
    if flipped {
        if let Some(wg) = gt.winograd() {
            // The mask is applied by the input transform as it reads dY.
            return winograd::conv3x3(dy, mask, &flip_transpose(w, g), None, false, &wg);
        }
    }
    let masked;
    let dy = match mask {
        Some(m) => {
            masked = relu_masked(dy, m);
            &masked[..]
        }
        None => dy,
    };
    if flipped {
        return forward(dy, &flip_transpose(w, g), None, false, &gt);
    }
    col2im_input_grad(dy, w, g)
}

/// General (strided, over-padded or few-channel) input gradient: per band
/// of output rows, `dcol = Wᵀ · dY_band`, then col2im accumulates it into
/// the input rows the band read. Neighbouring bands share a few input rows,
/// so the bands run in two waves (even, then odd); bands are at least
/// `KH/stride` rows tall so that two bands of the same wave never touch the
/// same row, and nothing is computed twice.
fn col2im_input_grad(dy: &[f32], w: &[f32], g: &Geom) -> Vec<f32> {
    let (k, op, ip) = (g.k(), g.out_plane(), g.in_plane());
    let mut dx = vec![0f32; g.n * g.cin * ip];
    if dx.is_empty() || op == 0 {
        return dx;
    }
    let planned = Bands::plan(g.n, g.oh, (k + g.cout) * g.ow, g.ow);
    let bands = Bands::exact(g.n, g.oh, planned.rows.max(g.kh.div_ceil(g.stride)));
    let cols: Vec<(usize, usize)> = (0..g.kw)
        .map(|kx| valid_cols(kx, g.pad_w, g.stride, g.w, g.ow))
        .collect();
    let out = SharedMut(dx.as_mut_ptr());
    for wave in 0..2 {
        let items: Vec<usize> = (0..g.n * bands.count)
            .filter(|item| (item % bands.count) % 2 == wave)
            .collect();
        // A wave holds half the bands: let the GEMM use the idle threads.
        let threads = rayon::current_num_threads();
        let gemm_par = if items.len() < threads {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        items.into_par_iter().for_each(|item| {
            let (b, band) = (item / bands.count, item % bands.count);
            let (r0, r1) = bands.range(band, g.oh);
            let p = (r1 - r0) * g.ow;
            with_scratch(k * p, |dcol| {
                // SAFETY: dcol is K x p; lhs is Wᵀ (K x Cout) read from the
                // dense Cout x K weight; rhs is this image's dY rows r0..r1.
                unsafe {
                    gemm_f32(
                        k,
                        p,
                        g.cout,
                        dcol.as_mut_ptr(),
                        (p, 1),
                        false,
                        w.as_ptr(),
                        (1, k),
                        dy[b * g.cout * op + r0 * g.ow..].as_ptr(),
                        (op, 1),
                        gemm_par,
                    )
                };
                // SAFETY: within this wave only this item writes image b's
                // input rows r0*s-pad .. (r1-1)*s-pad+KH (see above).
                let img =
                    unsafe { std::slice::from_raw_parts_mut(out.at(b * g.cin * ip), g.cin * ip) };
                col2im(&dcol[..k * p], g, r0, r1, &cols, img);
            });
        });
    }
    dx
}

/// Adds the panel `dcol` of output rows `[r0, r1)` back onto the input
/// pixels each entry was read from (the adjoint of [`im2col`]).
fn col2im(dcol: &[f32], g: &Geom, r0: usize, r1: usize, cols: &[(usize, usize)], img: &mut [f32]) {
    let p = (r1 - r0) * g.ow;
    let mut rows = dcol.chunks_exact(p);
    for plane in img.chunks_exact_mut(g.in_plane()) {
        for ky in 0..g.kh {
            for (kx, &(lo, hi)) in cols.iter().enumerate() {
                let row = rows.next().expect("dcol has K rows");
                if lo >= hi {
                    continue;
                }
                let x0 = lo * g.stride + kx - g.pad_w;
                for (oy, seg) in (r0..r1).zip(row.chunks_exact(g.ow)) {
                    let iy = oy * g.stride + ky;
                    if iy < g.pad_h || iy - g.pad_h >= g.h {
                        continue;
                    }
                    let dst = &mut plane[(iy - g.pad_h) * g.w..][..g.w];
                    if g.stride == 1 {
                        for (d, s) in dst[x0..x0 + hi - lo].iter_mut().zip(&seg[lo..hi]) {
                            *d += *s;
                        }
                    } else {
                        for (d, s) in dst[x0..].iter_mut().step_by(g.stride).zip(&seg[lo..hi]) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }
}

/// `dW = Σ_images Σ_bands dY_band · panelᵀ`: each thread sums its share of
/// the bands into a private accumulator (no atomics, bounded memory: one
/// `Cout x K` buffer per thread), then the few partial sums are added.
fn backward_weight(x: &[f32], dy: &[f32], g: &Geom) -> Vec<f32> {
    let (k, op) = (g.k(), g.out_plane());
    let len = g.cout * k;
    if len == 0 || g.n == 0 || op == 0 {
        return vec![0f32; len];
    }
    if let Some(wg) = g.winograd() {
        if winograd::weight_grad_fits(&wg) {
            return winograd::weight_grad3x3(x, dy, &wg);
        }
    }
    if g.scatter_pays() {
        return backward_weight_scatter(x, dy, g);
    }
    let pointwise = g.is_pointwise();
    let panel = if pointwise { 0 } else { k };
    let bands = Bands::plan(g.n, g.oh, (panel + g.cout) * g.ow, g.ow);
    let items = g.n * bands.count;
    let workers = rayon::current_num_threads().clamp(1, items);
    let gemm_par = if workers == 1 {
        bands.gemm
    } else {
        Parallelism::None
    };
    let partials: Vec<Vec<f32>> = (0..workers)
        .into_par_iter()
        .map(|t| {
            let mut acc = vec![0f32; len];
            for item in t * items / workers..(t + 1) * items / workers {
                let (b, band) = (item / bands.count, item % bands.count);
                let (r0, r1) = bands.range(band, g.oh);
                let p = (r1 - r0) * g.ow;
                let img = &x[b * g.cin * g.in_plane()..(b + 1) * g.cin * g.in_plane()];
                with_scratch(if pointwise { 0 } else { k * p }, |col| {
                    let (rhs, rhs_cs) = if pointwise {
                        (img[r0 * g.w..].as_ptr(), g.in_plane())
                    } else {
                        im2col(img, g, r0, r1, col);
                        (col.as_ptr(), p)
                    };
                    // SAFETY: acc is Cout x K; lhs is this band's dY (Cout rows of
                    // p pixels); rhs is the panel transposed (p x K).
                    unsafe {
                        gemm_f32(
                            g.cout,
                            k,
                            p,
                            acc.as_mut_ptr(),
                            (k, 1),
                            true,
                            dy[b * g.cout * op + r0 * g.ow..].as_ptr(),
                            (op, 1),
                            rhs,
                            (1, rhs_cs),
                            gemm_par,
                        )
                    }
                });
            }
            acc
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut dw = partials.next().unwrap_or_else(|| vec![0f32; len]);
    for part in partials {
        for (d, s) in dw.iter_mut().zip(&part) {
            *d += *s;
        }
    }
    dw
}
