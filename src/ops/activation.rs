//! The transform networks' output mapping `(tanh(x) + 1) / 2` as one
//! candle custom op with a fast CPU forward and backward.
//!
//! Why: candle's CPU `tanh` calls libm's `tanhf` element by element on one
//! thread, and `affine` is a second pass; on the fast network at 640x480
//! those two were a tenth of the frame time. Backward, candle adds
//! `1 - tanh²`, a product and the affine's scale: more passes.
//!
//! How: `(tanh(x) + 1) / 2 = 1 / (1 + exp(-2x))`, with a branch-free
//! polynomial `exp` (Cephes' `expf`, about 1 ulp) that compiles to vector
//! instructions (AVX2 when the CPU has it), in parallel chunks. The
//! backward is `dx = dy · 2y(1 - y)` from the saved output `y`.
//!
//! Non-CPU devices and non-f32 dtypes fall back to candle's ops.

use super::contiguous_f32;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `(tanh(x) + 1) / 2` (= `sigmoid(2x)`), any shape: smooth, inside `0..1`.
pub fn unit_tanh(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return x.tanh()?.affine(0.5, 0.5);
    }
    x.contiguous()?.apply_op1(UnitTanh)
}

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

struct UnitTanh;

impl CustomOp1 for UnitTanh {
    fn name(&self) -> &'static str {
        "stylestream-unit-tanh"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "unit_tanh")?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| forward(x, y));
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?
                .apply_op2_no_bwd(&res.contiguous()?, &UnitTanhBackward)?,
        ))
    }
}

/// `dy · 2y(1 - y)`.
struct UnitTanhBackward;

impl CustomOp2 for UnitTanhBackward {
    fn name(&self) -> &'static str {
        "stylestream-unit-tanh-backward"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dy = contiguous_f32(gs, gl, "unit_tanh")?;
        let y = contiguous_f32(ys, yl, "unit_tanh")?;
        if dy.len() != y.len() {
            candle_core::bail!("unit_tanh backward: gradient and output differ in size")
        }
        let mut dx = vec![0f32; dy.len()];
        dx.par_chunks_mut(CHUNK)
            .zip(dy.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
            .for_each(|(dx, (dy, y))| {
                for ((d, &g), &s) in dx.iter_mut().zip(dy).zip(y) {
                    *d = g * 2.0 * s * (1.0 - s);
                }
            });
        Ok((CpuStorage::F32(dx), gl.shape().clone()))
    }
}

/// `(tanh(v) + 1) / 2` in place, on the calling thread (the direct
/// convolution's output epilogue, `ops::direct`).
pub(crate) fn unit_tanh_inplace(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { inplace_avx2(v) };
    }
    inplace_body(v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn inplace_avx2(v: &mut [f32]) {
    inplace_body(v)
}

#[inline(always)]
fn inplace_body(v: &mut [f32]) {
    for o in v.iter_mut() {
        *o = 1.0 / (1.0 + exp(-2.0 * *o));
    }
}

fn forward(x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { forward_avx2(x, y) };
    }
    forward_body(x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2(x: &[f32], y: &mut [f32]) {
    forward_body(x, y)
}

#[inline(always)]
fn forward_body(x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = 1.0 / (1.0 + exp(-2.0 * v));
    }
}

/// `e^x` for f32, branch-free (Cephes `expf`): `x = n ln2 + r`, `|r| <=
/// ln2/2`, `e^r` by a degree-6 polynomial, `2^n` by exponent bits. Inputs
/// are clamped to `±87.3`, so the result is finite and positive.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding and subtracting rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 87.3);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    e * scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        for i in -8700..=8700 {
            let x = i as f32 * 0.01;
            let ours = f64::from(exp(x));
            let exact = f64::from(x).exp();
            worst = worst.max(((ours - exact) / exact).abs());
        }
        assert!(worst < 5e-7, "relative error {worst}");
    }

    #[test]
    fn matches_candle_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        // Odd size, large and tiny values, more than one chunk.
        let n = 3 * CHUNK + 17;
        let data: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.37).sin() * 12.0) + if i % 97 == 0 { 80.0 } else { 0.0 })
            .collect();
        let x = Var::from_vec(data, (1, 1, 1, n), &dev)?;
        let w = Tensor::rand(-1f32, 1., x.shape(), &dev)?;
        let ours = unit_tanh(x.as_tensor())?;
        let reference = x.as_tensor().tanh()?.affine(0.5, 0.5)?;
        let diff = (&ours - &reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "forward differs by {diff}");
        let g = (&ours * &w)?.sum_all()?.backward()?;
        let g_ref = (&reference * &w)?.sum_all()?.backward()?;
        let (a, b) = (g.get(&x).unwrap(), g_ref.get(&x).unwrap());
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "gradient differs by {diff}");
        Ok(())
    }
}
