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
        return x.max_pool2d(2);
    }
    x.apply_op1(MaxPool2x2)
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
}
