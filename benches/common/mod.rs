//! What both benchmark binaries (perf.rs on the CPU, gpu.rs on a device)
//! need, so that a CPU number and a GPU number come from the same clock and
//! the same work: the timing loop, the median, and the seeded networks and
//! training step that `bench/peer_torch.py` mirrors.
#![allow(dead_code)]

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use stylestream::models::{preset, TransformerNet};
use stylestream::optim::{Adam, AdamConfig};
use stylestream::training::init::initial_parameters;
use stylestream::training::objective::PerceptualObjective;
use stylestream::vgg::{Layer, Vgg19};

/// The median of `runs` (the upper one of an even count).
pub fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(|a, b| a.total_cmp(b));
    runs[runs.len() / 2]
}

/// Times `f` up to `repeat` times (at least once), stopping early once
/// `budget_s` seconds are spent; in ms. The device is synchronised before
/// each clock reading, so that a GPU's queued work is counted where it is
/// done. No warm-up: callers run `f` once first when they want one.
pub fn time_runs(device: &Device, repeat: usize, budget_s: f64, mut f: impl FnMut()) -> Vec<f64> {
    let start = Instant::now();
    let mut runs = Vec::new();
    while runs.len() < repeat.max(1) {
        device.synchronize().unwrap();
        let t = Instant::now();
        f();
        device.synchronize().unwrap();
        runs.push(t.elapsed().as_secs_f64() * 1e3);
        if start.elapsed().as_secs_f64() > budget_s {
            break;
        }
    }
    runs
}

/// VGG19 layers by name.
pub fn layers(names: &[&str]) -> Vec<Layer> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

/// A transform network (preset `arch`) with seeded random weights on
/// `device`: plain tensors for inference, or `Var`s (returned too) for
/// training. The time does not depend on the weights.
pub fn transform_net(
    arch: &str,
    trainable: bool,
    device: &Device,
) -> (TransformerNet, Vec<(String, Var)>) {
    let spec = preset(arch).unwrap();
    let params = initial_parameters(&spec, 0, device).unwrap();
    if !trainable {
        let vb = VarBuilder::from_tensors(params, DType::F32, device);
        return (TransformerNet::new(&spec, vb).unwrap(), Vec::new());
    }
    let vars: Vec<(String, Var)> = params
        .into_iter()
        .map(|(k, t)| (k, Var::from_tensor(&t).unwrap()))
        .collect();
    let tensors = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    (TransformerNet::new(&spec, vb).unwrap(), vars)
}

/// One `stylestream-train` step at its default losses (content relu2_2
/// x150, style relu1_1..relu4_1 x100 against `painting`'s Grams, TV x1) on
/// `photos`: network forward, the objective (VGG19 on the photos for the
/// content target and on the painted batch to relu4_1), backward, Adam, and
/// the losses read back, as `training::trainer` does. Returns the step.
pub fn train_step<'a>(
    vgg: &'a Vgg19,
    arch: &str,
    photos: Tensor,
    painting: &Tensor,
) -> impl FnMut() + 'a {
    let (net, vars) = transform_net(arch, true, photos.device());
    let mut adam = Adam::new(vars, AdamConfig::default()).unwrap();
    let objective = PerceptualObjective::style(
        vgg,
        (&layers(&["relu2_2"]), 150.0),
        painting,
        (
            &layers(&["relu1_1", "relu2_1", "relu3_1", "relu4_1"]),
            100.0,
        ),
        1.0,
    )
    .unwrap();
    move || {
        let painted = net.forward(&photos).unwrap();
        let terms = objective.evaluate(&painted, &photos).unwrap();
        let grads = terms.total.backward().unwrap();
        adam.step(&grads, 1e-3).unwrap();
        // The trainer reads the losses back every step.
        let v = terms.values().unwrap();
        assert!(v.total.is_finite(), "training diverged");
    }
}

/// `f` once to warm up (kernels loaded, buffers allocated), then
/// [`time_runs`].
pub fn warm_then_time(
    device: &Device,
    repeat: usize,
    budget_s: f64,
    mut f: impl FnMut(),
) -> Vec<f64> {
    f();
    time_runs(device, repeat, budget_s, f)
}
