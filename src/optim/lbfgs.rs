//! Limited-memory BFGS on a single tensor, without line search.
//!
//! This follows the variant PyTorch's `optim.LBFGS` runs with
//! `line_search_fn=None` (and Torch7's `optim.lbfgs`, which the original
//! neural-style used): one function evaluation per step, a first step of
//! `min(1, 1/|g|₁)·lr` along `-g`, then steps of `lr` along the two-loop
//! recursion's direction. Matching it keeps timings and convergence
//! comparable with the PyTorch peer in `bench/`.
//!
//! The caller may move `x` between steps (Gatys projects the image back
//! into the displayable range): the curvature pairs are taken between the
//! points actually visited, so the model stays consistent with them.

use std::collections::VecDeque;

use candle_core::{Result, Tensor, Var};

pub struct Lbfgs {
    lr: f64,
    history_size: usize,
    /// Curvature pairs (s, y, 1/yᵀs), oldest first.
    history: VecDeque<(Tensor, Tensor, f64)>,
    prev_grad: Option<Tensor>,
    /// Where `prev_grad` was taken (flattened).
    prev_x: Option<Tensor>,
    steps: usize,
}

fn dot(a: &Tensor, b: &Tensor) -> Result<f64> {
    (a * b)?
        .sum_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()
}

impl Lbfgs {
    pub fn new(lr: f64, history_size: usize) -> Self {
        Self {
            lr,
            history_size: history_size.max(1),
            history: VecDeque::new(),
            prev_grad: None,
            prev_x: None,
            steps: 0,
        }
    }

    /// Updates `x` given the gradient of the objective at its current value.
    /// Returns false when the direction is no longer a descent direction (the
    /// optimum is reached to float precision), in which case `x` is unchanged.
    pub fn step(&mut self, x: &Var, grad: &Tensor) -> Result<bool> {
        let g = grad.detach().flatten_all()?;
        // A copy: `Var::set` writes into x's storage, which a view shares.
        let x_now = x.as_tensor().flatten_all()?.copy()?;
        let direction = match (&self.prev_grad, &self.prev_x) {
            (Some(prev_g), Some(prev_x)) => {
                let s = (&x_now - prev_x)?;
                let y = (&g - prev_g)?;
                let ys = dot(&y, &s)?;
                if ys > 1e-10 {
                    if self.history.len() == self.history_size {
                        self.history.pop_front();
                    }
                    self.history.push_back((s, y, 1.0 / ys));
                }
                self.two_loop(&g)?
            }
            _ => g.neg()?,
        };
        let t = if self.steps == 0 {
            let l1 = g
                .abs()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
            self.lr * (1.0 / l1.max(f64::MIN_POSITIVE)).min(1.0)
        } else {
            self.lr
        };
        self.steps += 1;
        self.prev_grad = Some(g.clone());
        if dot(&g, &direction)? > -1e-12 {
            self.prev_x = None;
            return Ok(false);
        }
        let step = (direction * t)?;
        x.set(&(x.as_tensor() + step.reshape(x.shape())?)?)?;
        self.prev_x = Some(x_now);
        Ok(true)
    }

    /// The two-loop recursion: approximately `-H⁻¹ g` from the stored pairs.
    fn two_loop(&self, g: &Tensor) -> Result<Tensor> {
        let Some((s_last, y_last, _)) = self.history.back() else {
            return g.neg();
        };
        let h_diag = dot(y_last, s_last)? / dot(y_last, y_last)?;
        let mut q = g.neg()?;
        let mut alphas = Vec::with_capacity(self.history.len());
        for (s, y, rho) in self.history.iter().rev() {
            let alpha = dot(s, &q)? * rho;
            q = (q - (y * alpha)?)?;
            alphas.push(alpha);
        }
        let mut r = (q * h_diag)?;
        for ((s, y, rho), alpha) in self.history.iter().zip(alphas.iter().rev()) {
            let beta = dot(y, &r)? * rho;
            r = (r + (s * (alpha - beta))?)?;
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// On a badly conditioned quadratic, L-BFGS must reach the minimum in a
    /// few steps where gradient descent with the same step would crawl.
    #[test]
    fn minimises_an_ill_conditioned_quadratic() -> Result<()> {
        let dev = Device::Cpu;
        let scales = Tensor::new(&[1f32, 10., 100., 0.5], &dev)?;
        let x = Var::new(&[3f32, -2., 1., 4.], &dev)?;
        let mut opt = Lbfgs::new(1.0, 10);
        for _ in 0..40 {
            let loss = (x.as_tensor().sqr()? * &scales)?.sum_all()?;
            let grads = loss.backward()?;
            if !opt.step(&x, grads.get(&x).unwrap())? {
                break;
            }
        }
        let final_loss = (x.as_tensor().sqr()? * &scales)?
            .sum_all()?
            .to_scalar::<f32>()?;
        assert!(final_loss < 1e-6, "loss {final_loss}");
        Ok(())
    }
}
