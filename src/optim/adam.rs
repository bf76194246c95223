//! Adam (Kingma & Ba 2015) with its state exposed, so that a training
//! checkpoint can save and restore it exactly.
//!
//! candle-nn's `AdamW` keeps its moment estimates private; a resumed run
//! would restart them from zero and drift away from an uninterrupted one.
//! Here the state is a plain map of named tensors plus the step count.

use std::collections::HashMap;

use candle_core::{Result, Tensor, Var};

/// Adam's hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Adam over a set of named variables.
pub struct Adam {
    config: AdamConfig,
    vars: Vec<(String, Var)>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    steps: u64,
}

impl Adam {
    /// Starts with zero moments for `vars` (sorted by name, so that the
    /// order, and hence the arithmetic, never depends on hash order).
    pub fn new(mut vars: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let first = vars
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let second = first.clone();
        Ok(Self {
            config,
            vars,
            first,
            second,
            steps: 0,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update with learning rate `lr` from the gradients of `loss`'s
    /// backward pass. Variables without a gradient are left alone.
    pub fn step(&mut self, grads: &candle_core::backprop::GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let AdamConfig { beta1, beta2, eps } = self.config;
        let t = self.steps as i32;
        let bias1 = 1.0 - beta1.powi(t);
        let bias2 = 1.0 - beta2.powi(t);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = ((&self.first[i] * beta1)? + (g * (1.0 - beta1))?)?;
            let v = ((&self.second[i] * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let denom = ((&v / bias2)?.sqrt()? + eps)?;
            let update = ((&m / bias1)? / denom)?;
            var.set(&(var.as_tensor() - (update * lr)?)?)?;
            self.first[i] = m;
            self.second[i] = v;
        }
        Ok(())
    }

    /// The moments as named tensors (`m.NAME`, `v.NAME`), for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("m.{name}"), self.first[i].clone());
            out.insert(format!("v.{name}"), self.second[i].clone());
        }
        out
    }

    /// Restores moments saved by [`Self::state`] and the step count.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.first[i]), ("v", &mut self.second[i])] {
                let key = format!("{prefix}.{name}");
                let t = state.get(&key).ok_or_else(|| {
                    candle_core::Error::Msg(format!("optimizer state {key} missing"))
                })?;
                if t.dims() != var.dims() {
                    candle_core::bail!(
                        "optimizer state {key} is {:?}, expected {:?}",
                        t.dims(),
                        var.dims()
                    );
                }
                *slot = t.to_device(var.device())?;
            }
        }
        self.steps = steps;
        Ok(())
    }
}
