//! 2x2 max pooling with stride 2 (VGG's pooling), with an exact backward.
//!
//! Why not candle's `max_pool2d`: its backward rebuilds the argmax with a
//! nearest upsample and an equality mask, which scales the gradient by the
//! fraction of maxima in each window (a factor 1/4 for the common single
//! maximum) and misaligns rows and columns when a side is odd. Gatys and
//! DeepDream differentiate through five of these, so the error compounds.
//! Here the backward routes each output gradient to the first maximum of its
//! window, which is what PyTorch does.

use super::contiguous_f32;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Max pooling over 2x2 windows, stride 2, of an NCHW tensor; odd trailing
/// rows/columns are dropped (floor), as in VGG.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return candle_max_pool2x2(x);
    }
    x.apply_op1(MaxPool2x2)
}

/// The fallback for other devices (CUDA) and dtypes, from candle ops with
/// the CPU op's semantics: each window's output is its first maximum (in
/// row-major order), and the backward sends the whole gradient there, as
/// PyTorch does. (candle's own `max_pool2d` backward scales the gradient by
/// the fraction of maxima in the window, 1/4 for one, and misaligns odd
/// sizes.) The window's four cells are weighed by constant 0/1 masks that
/// select the first maximum, so the autograd of the products does the
/// routing.
fn candle_max_pool2x2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = (h / 2, w / 2);
    let x = x
        .narrow(2, 0, 2 * oh)?
        .narrow(3, 0, 2 * ow)?
        .contiguous()?
        .reshape((n, c, oh, 2, ow, 2))?;
    let max = x.detach().max_keepdim(5)?.max_keepdim(3)?;
    let mut taken = max.zeros_like()?;
    let mut out = max.zeros_like()?;
    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        let cell = x.narrow(3, dy, 1)?.narrow(5, dx, 1)?;
        let first = cell
            .detach()
            .eq(&max)?
            .to_dtype(x.dtype())?
            .mul(&taken.affine(-1.0, 1.0)?)?;
        out = (out + cell.mul(&first)?)?;
        taken = (taken + first)?;
    }
    out.reshape((n, c, oh, ow))
}

struct MaxPool2x2;

/// (planes, height, width) of an NCHW layout: pooling works plane by plane.
fn plane_dims(layout: &Layout) -> Result<(usize, usize, usize)> {
    let (n, c, h, w) = layout.shape().dims4()?;
    Ok((n * c, h, w))
}

impl CustomOp1 for MaxPool2x2 {
    fn name(&self) -> &'static str {
        "max-pool-2x2"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let src = contiguous_f32(storage, layout, "max_pool2x2")?;
        let (oh, ow) = (h / 2, w / 2);
        let mut dst = vec![0f32; n * c * oh * ow];
        if oh > 0 && ow > 0 {
            dst.par_chunks_mut(oh * ow)
                .zip(src.par_chunks(h * w))
                .for_each(|(out, plane)| {
                    for oy in 0..oh {
                        let r0 = &plane[2 * oy * w..2 * oy * w + w];
                        let r1 = &plane[(2 * oy + 1) * w..(2 * oy + 1) * w + w];
                        for ox in 0..ow {
                            let x = 2 * ox;
                            out[oy * ow + ox] = r0[x].max(r0[x + 1]).max(r1[x]).max(r1[x + 1]);
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(dst), Shape::from((n, c, oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let arg = arg.contiguous()?;
        let grad = grad_res.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&grad, &MaxPool2x2Backward)?))
    }
}

/// Scatters each output gradient to the first maximum of its 2x2 window.
struct MaxPool2x2Backward;

impl CustomOp2 for MaxPool2x2Backward {
    fn name(&self) -> &'static str {
        "max-pool-2x2-backward"
    }

    fn cpu_fwd(
        &self,
        arg: &CpuStorage,
        arg_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (planes, h, w) = plane_dims(arg_layout)?;
        let src = contiguous_f32(arg, arg_layout, "max_pool2x2")?;
        let g = contiguous_f32(grad, grad_layout, "max_pool2x2")?;
        let (oh, ow) = (h / 2, w / 2);
        let mut dst = vec![0f32; planes * h * w];
        if oh > 0 && ow > 0 {
            dst.par_chunks_mut(h * w)
                .zip(src.par_chunks(h * w))
                .zip(g.par_chunks(oh * ow))
                .for_each(|((out, plane), gp)| {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let base = 2 * oy * w + 2 * ox;
                            let candidates = [base, base + 1, base + w, base + w + 1];
                            let mut best = candidates[0];
                            for &i in &candidates[1..] {
                                if plane[i] > plane[best] {
                                    best = i;
                                }
                            }
                            out[best] += gp[oy * ow + ox];
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(dst), arg_layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_matches_candle_on_odd_sizes() -> Result<()> {
        let x = Tensor::randn(0f32, 1., (2, 3, 7, 9), &Device::Cpu)?;
        let ours = max_pool2x2(&x)?;
        let reference = x.narrow(2, 0, 6)?.narrow(3, 0, 8)?.max_pool2d(2)?;
        let diff = (ours - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }

    #[test]
    fn backward_routes_gradient_to_the_maximum() -> Result<()> {
        let x = Var::from_tensor(&Tensor::new(
            &[[[[1f32, 5., 0.], [2., 3., 0.], [9., 9., 9.]]]],
            &Device::Cpu,
        )?)?;
        let y = max_pool2x2(x.as_tensor())?;
        let grads = (y * 3.0)?.sum_all()?.backward()?;
        let g = grads.get(&x).unwrap().flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(g, vec![0., 3., 0., 0., 0., 0., 0., 0., 0.]);
        Ok(())
    }

    /// The fallback (other devices, here f64 on the CPU) pools and routes
    /// gradients as the CPU op does: ties go to the first maximum.
    #[test]
    fn fallback_matches_the_cpu_op() -> Result<()> {
        let ties = Tensor::new(
            &[[[[1f32, 5., 0., 4.], [2., 3., 4., 4.], [9., 9., 9., 2.]]]],
            &Device::Cpu,
        )?;
        let random = Tensor::randn(0f32, 1., (2, 3, 7, 9), &Device::Cpu)?;
        for x in [ties, random] {
            let v32 = Var::from_tensor(&x)?;
            let v64 = Var::from_tensor(&x.to_dtype(DType::F64)?)?;
            let w = Tensor::randn(0f32, 1., max_pool2x2(&x)?.dims(), &Device::Cpu)?;
            let y32 = max_pool2x2(v32.as_tensor())?;
            let y64 = max_pool2x2(v64.as_tensor())?;
            let g32 = (&y32 * &w)?.sum_all()?.backward()?.remove(&v32).unwrap();
            let g64 = (&y64 * &w.to_dtype(DType::F64)?)?
                .sum_all()?
                .backward()?
                .remove(&v64)
                .unwrap();
            for (a, b) in [(y32, y64), (g32, g64)] {
                let diff = (a - b.to_dtype(DType::F32)?)?.abs()?.max_all()?;
                assert_eq!(diff.to_scalar::<f32>()?, 0.0);
            }
        }
        Ok(())
    }
}
