//! The CUDA path against the CPU path: every layer the networks use, the
//! Johnson network, VGG19, a training step's gradients and a dream, run on
//! `cuda:0` and on the CPU from the same inputs and weights, must agree
//! within f32 rounding.
//!
//! On the CPU the layers are the project's own kernels (`src/ops`); on a GPU
//! they fall back to candle's CUDA ops, so these tests are what says that
//! both paths compute the same function and the same gradients.
//!
//! Only in a `--features cuda` build (the file is empty otherwise), and only
//! on a machine with a GPU: `scripts/build-cuda.sh` builds the binary,
//! `scripts/gpu-check.sh` runs it there. The VGG19 tests need the weights
//! (`stylestream fetch-vgg`, or `$STYLESTREAM_VGG`).
//!
//! Errors are `max |gpu - cpu| / max |cpu|` over a tensor; the bounds allow
//! for the different summation orders of f32 convolutions and reductions
//! (candle's CUDA matmuls run in full f32, TF32 is off).
#![cfg(feature = "cuda")]

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarBuilder;
use rand::{rngs::StdRng, Rng, SeedableRng};
use stylestream::effects::dream::{Dream, DreamConfig};
use stylestream::models::{preset, TransformerNet};
use stylestream::ops::{
    conv2d::conv2d, instance_norm::instance_norm, pool::max_pool2x2,
    reflection_pad::reflection_pad2d, upsample::upsample_nearest2x,
};
use stylestream::training::init::initial_parameters;
use stylestream::training::objective::PerceptualObjective;
use stylestream::vgg::{weights::resolve_vgg_path, Layer, Pooling, Vgg19};

/// One layer's forward and gradients.
const LAYER_TOL: f64 = 1e-5;
/// Deep networks: errors add up over layers.
const NET_TOL: f64 = 1e-4;
/// Gradients through a whole network and a loss.
const GRAD_TOL: f64 = 1e-3;
/// A training step's parameter gradients, as an L2 relative error: the style
/// loss makes them ill-conditioned in f32. Measured without a GPU (the CPU
/// running candle's ops, the same path as CUDA, against our CPU ops and
/// against f64): every f32 path is off the f64 gradients by up to 6e-3 and
/// the two f32 paths differ by as much; a wrong backward gives ~1.
const TRAIN_GRAD_L2_TOL: f64 = 2e-2;

fn gpu() -> &'static Device {
    static GPU: OnceLock<Device> = OnceLock::new();
    GPU.get_or_init(|| {
        Device::new_cuda(0).unwrap_or_else(|e| {
            panic!("tests/cuda.rs needs a CUDA GPU (cuda:0) and its driver: {e}")
        })
    })
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_device(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// `max |gpu - cpu| / max |cpu|`.
fn rel_err(on_gpu: &Tensor, on_cpu: &Tensor) -> f64 {
    assert_eq!(on_gpu.dims(), on_cpu.dims(), "shapes differ");
    let (a, b) = (values(on_gpu), values(on_cpu));
    assert!(
        a.iter().all(|v| v.is_finite()),
        "the GPU result is not finite"
    );
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// `‖gpu - cpu‖₂ / ‖cpu‖₂`.
fn l2_rel_err(on_gpu: &Tensor, on_cpu: &Tensor) -> f64 {
    assert_eq!(on_gpu.dims(), on_cpu.dims(), "shapes differ");
    let (a, b) = (values(on_gpu), values(on_cpu));
    let diff: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(1e-300)).sqrt()
}

fn assert_close(what: &str, on_gpu: &Tensor, on_cpu: &Tensor, tol: f64) {
    assert!(on_gpu.device().is_cuda(), "{what}: not computed on the GPU");
    assert!(on_cpu.device().is_cpu(), "{what}: not computed on the CPU");
    let e = rel_err(on_gpu, on_cpu);
    println!("{what}: relative error {e:.2e}");
    assert!(
        e < tol,
        "{what}: GPU and CPU differ, relative error {e:e} > {tol:e}"
    );
}

/// Runs `f` on `Var`s holding `inputs` on `device`; returns the output and the
/// gradients of `Σ f(inputs) · r` (r fixed random weights, so every output
/// element matters) with respect to each input.
fn forward_backward(
    device: &Device,
    inputs: &[&Tensor],
    f: &impl Fn(&[Tensor]) -> Result<Tensor>,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(&t.to_device(device).unwrap()).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts).unwrap();
    let r = random(y.dims(), 99).to_device(device).unwrap();
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let g = vars
        .iter()
        .map(|v| {
            grads
                .get(v)
                .cloned()
                .unwrap_or_else(|| v.as_tensor().zeros_like().unwrap())
        })
        .collect();
    (y, g)
}

/// The same computation on both devices: output and every input gradient.
fn compare(what: &str, inputs: &[&Tensor], tol: f64, f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let (y_cpu, g_cpu) = forward_backward(&Device::Cpu, inputs, &f);
    let (y_gpu, g_gpu) = forward_backward(gpu(), inputs, &f);
    assert_close(&format!("{what}: forward"), &y_gpu, &y_cpu, tol);
    for (i, (a, b)) in g_gpu.iter().zip(&g_cpu).enumerate() {
        assert_close(&format!("{what}: gradient of input {i}"), a, b, tol);
    }
}

#[test]
fn the_gpu_opens_through_the_device_option() {
    let d: stylestream::device::DeviceChoice = "cuda:0".parse().unwrap();
    assert!(d.open().unwrap().is_cuda());
    assert!(candle_core::utils::cuda_is_available());
}

#[test]
fn conv2d_matches() {
    // (batch, cin, h, w, cout, kernel, stride, padding, bias)
    let cases = [
        (2, 3, 17, 23, 8, 3, 1, 1, true),
        (1, 4, 21, 19, 6, 9, 1, 4, true),
        (1, 8, 20, 25, 3, 9, 1, 0, true),
        (2, 5, 17, 23, 7, 3, 2, 1, false),
        (1, 4, 15, 13, 6, 3, 2, 0, false),
        (1, 6, 16, 16, 4, 3, 2, 1, true),
        (3, 16, 9, 11, 32, 3, 1, 0, false),
        (1, 3, 1, 1, 2, 1, 1, 0, true),
    ];
    for (i, &(n, cin, h, w, cout, k, stride, pad, bias)) in cases.iter().enumerate() {
        let x = random(&[n, cin, h, w], 10 + i as u64);
        let wt = (random(&[cout, cin, k, k], 20 + i as u64) * 0.3).unwrap();
        let b = random(&[cout], 30 + i as u64);
        let what = format!("conv2d {n}x{cin}x{h}x{w} -> {cout}, {k}x{k} stride {stride} pad {pad}");
        if bias {
            compare(&what, &[&x, &wt, &b], LAYER_TOL, |t| {
                conv2d(&t[0], &t[1], Some(&t[2]), stride, pad)
            });
        } else {
            compare(&what, &[&x, &wt], LAYER_TOL, |t| {
                conv2d(&t[0], &t[1], None, stride, pad)
            });
        }
    }
}

#[test]
fn reflection_pad_matches() {
    for (i, &(shape, pad)) in [([2, 3, 9, 11], 1), ([1, 4, 12, 7], 4), ([1, 2, 5, 5], 4)]
        .iter()
        .enumerate()
    {
        let x = random(&shape, 40 + i as u64);
        compare(
            &format!("reflection_pad2d {shape:?} pad {pad}"),
            &[&x],
            LAYER_TOL,
            |t| reflection_pad2d(&t[0], pad),
        );
    }
}

#[test]
fn instance_norm_matches() {
    for (i, &(shape, relu, affine)) in [
        ([2, 4, 13, 17], false, true),
        ([2, 4, 13, 17], true, true),
        ([1, 8, 32, 32], true, false),
        ([3, 2, 7, 5], false, false),
    ]
    .iter()
    .enumerate()
    {
        let x = random(&shape, 50 + i as u64).affine(3.0, 0.5).unwrap();
        let c = shape[1];
        let gamma = (random(&[c], 60 + i as u64) + 1.0).unwrap();
        let beta = random(&[c], 70 + i as u64);
        let what = format!("instance_norm {shape:?} relu {relu} affine {affine}");
        if affine {
            compare(&what, &[&x, &gamma, &beta], LAYER_TOL, |t| {
                instance_norm(&t[0], Some(&t[1]), Some(&t[2]), 1e-5, relu)
            });
        } else {
            compare(&what, &[&x], LAYER_TOL, |t| {
                instance_norm(&t[0], None, None, 1e-5, relu)
            });
        }
    }
}

#[test]
fn upsample_matches() {
    for (i, shape) in [[2, 3, 5, 7], [1, 16, 8, 8]].iter().enumerate() {
        let x = random(shape, 80 + i as u64);
        compare(
            &format!("upsample_nearest2x {shape:?}"),
            &[&x],
            LAYER_TOL,
            |t| upsample_nearest2x(&t[0]),
        );
    }
}

#[test]
fn max_pool_matches() {
    // Odd sides: VGG pools 75x97 frames down to 37x48 and so on.
    for (i, shape) in [[1, 3, 8, 8], [2, 4, 15, 21], [1, 64, 75, 97]]
        .iter()
        .enumerate()
    {
        let x = random(shape, 90 + i as u64);
        compare(&format!("max_pool2x2 {shape:?}"), &[&x], LAYER_TOL, |t| {
            max_pool2x2(&t[0])
        });
    }
}

/// The same seeded Johnson network on both devices.
fn johnson_pair(spec_name: &str) -> (TransformerNet, TransformerNet) {
    let spec = preset(spec_name).unwrap();
    let params = initial_parameters(&spec, 7, &Device::Cpu).unwrap();
    let on = |device: &Device| {
        let tensors: HashMap<String, Tensor> = params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_device(device).unwrap()))
            .collect();
        TransformerNet::new(&spec, VarBuilder::from_tensors(tensors, DType::F32, device)).unwrap()
    };
    (on(&Device::Cpu), on(gpu()))
}

#[test]
fn johnson_forward_matches() {
    let (cpu_net, gpu_net) = johnson_pair("johnson");
    // An odd size (padded by reflection inside the network) and a batch.
    for (n, h, w) in [(1, 67, 93), (2, 128, 96)] {
        let x = Tensor::cat(
            &(0..n)
                .map(|i| (common::synthetic_photo(h, w) * (1.0 - 0.1 * i as f64)).unwrap())
                .collect::<Vec<_>>(),
            0,
        )
        .unwrap();
        let y_cpu = cpu_net.forward(&x).unwrap();
        let y_gpu = gpu_net.forward(&x.to_device(gpu()).unwrap()).unwrap();
        assert_eq!(y_gpu.dims(), [n, 3, h, w]);
        assert_close(
            &format!("johnson forward {n}x3x{h}x{w}"),
            &y_gpu,
            &y_cpu,
            NET_TOL,
        );
    }
}

fn vgg_on(device: &Device) -> Vgg19 {
    Vgg19::load(&resolve_vgg_path(None), device, Pooling::Max).unwrap_or_else(|e| {
        panic!("these tests need the VGG19 weights: run `stylestream fetch-vgg` first ({e:#})")
    })
}

fn layers(names: &[&str]) -> Vec<Layer> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

#[test]
fn vgg_forward_matches() {
    let (vgg_cpu, vgg_gpu) = (vgg_on(&Device::Cpu), vgg_on(gpu()));
    let wanted = layers(&["relu1_1", "relu2_2", "relu3_1", "relu4_2", "relu5_1"]);
    let rgb = common::synthetic_photo(75, 97);
    let a_cpu = vgg_cpu.forward_rgb(&rgb, &wanted).unwrap();
    let a_gpu = vgg_gpu
        .forward_rgb(&rgb.to_device(gpu()).unwrap(), &wanted)
        .unwrap();
    for l in &wanted {
        assert_close(&format!("vgg {}", l.name()), &a_gpu[l], &a_cpu[l], NET_TOL);
    }
}

#[test]
fn vgg_image_gradient_matches() {
    // The core of a dream step and of Gatys: d mean(relu4_2²) / d image.
    let (vgg_cpu, vgg_gpu) = (vgg_on(&Device::Cpu), vgg_on(gpu()));
    let l = layers(&["relu4_2"])[0];
    let x = (random(&[1, 3, 75, 97], 5) * 100.0).unwrap();
    let grad = |vgg: &Vgg19, device: &Device| {
        let v = Var::from_tensor(&x.to_device(device).unwrap()).unwrap();
        let a = vgg.forward(v.as_tensor(), &[l]).unwrap();
        let loss = a[&l].sqr().unwrap().mean_all().unwrap();
        (loss.backward().unwrap().remove(&v).unwrap(), loss)
    };
    let (g_cpu, loss_cpu) = grad(&vgg_cpu, &Device::Cpu);
    let (g_gpu, loss_gpu) = grad(&vgg_gpu, gpu());
    assert_close("vgg relu4_2 energy", &loss_gpu, &loss_cpu, NET_TOL);
    assert_close(
        "vgg relu4_2 energy: image gradient",
        &g_gpu,
        &g_cpu,
        GRAD_TOL,
    );
}

#[test]
fn training_step_gradients_match() {
    // One step of `stylestream-train`'s default objective on the Johnson
    // network: loss value and the gradient of every parameter.
    let spec = preset("johnson").unwrap();
    let params = initial_parameters(&spec, 3, &Device::Cpu).unwrap();
    let photos = Tensor::cat(
        &[
            common::synthetic_photo(64, 64),
            common::synthetic_painting(64, 64),
        ],
        0,
    )
    .unwrap();
    let painting = common::synthetic_painting(96, 80);
    let run = |device: &Device| {
        let vgg = vgg_on(device);
        let vars: HashMap<String, Var> = params
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Var::from_tensor(&v.to_device(device).unwrap()).unwrap(),
                )
            })
            .collect();
        let tensors = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let net = TransformerNet::new(&spec, VarBuilder::from_tensors(tensors, DType::F32, device))
            .unwrap();
        let objective = PerceptualObjective::style(
            &vgg,
            (&layers(&["relu2_2"]), 150.0),
            &painting.to_device(device).unwrap(),
            (
                &layers(&["relu1_1", "relu2_1", "relu3_1", "relu4_1"]),
                100.0,
            ),
            1.0,
        )
        .unwrap();
        let photos = photos.to_device(device).unwrap();
        let painted = net.forward(&photos).unwrap();
        let terms = objective.evaluate(&painted, &photos).unwrap();
        let grads = terms.total.backward().unwrap();
        let g: HashMap<String, Tensor> = vars
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    grads.get(v).expect("a parameter without gradient").clone(),
                )
            })
            .collect();
        (terms.total, g)
    };
    let (loss_cpu, g_cpu) = run(&Device::Cpu);
    let (loss_gpu, g_gpu) = run(gpu());
    assert_close("training loss", &loss_gpu, &loss_cpu, NET_TOL);
    let mut names: Vec<&String> = g_cpu.keys().collect();
    names.sort();
    let mut worst = (0.0, "");
    for name in names {
        assert!(g_gpu[name].device().is_cuda());
        let e = l2_rel_err(&g_gpu[name], &g_cpu[name]);
        println!("training gradient {name}: L2 relative error {e:.2e}");
        if e > worst.0 {
            worst = (e, name);
        }
    }
    assert!(
        worst.0 < TRAIN_GRAD_L2_TOL,
        "training gradient {}: GPU and CPU differ, L2 relative error {:e} > {TRAIN_GRAD_L2_TOL:e}",
        worst.1,
        worst.0
    );
}

#[test]
fn dream_matches() {
    // A whole small dream (2 octaves x 3 steps, the same jitter sequence):
    // normalised steps keep the GPU's rounding differences small.
    let (vgg_cpu, vgg_gpu) = (vgg_on(&Device::Cpu), vgg_on(gpu()));
    let config = DreamConfig {
        layers: layers(&["relu3_3"]),
        octaves: 2,
        steps: 3,
        tile_size: 0,
        ..DreamConfig::default()
    };
    let frame = common::synthetic_photo(72, 88);
    let out_cpu = Dream::new(&vgg_cpu, config.clone())
        .unwrap()
        .dream(&frame)
        .unwrap();
    let out_gpu = Dream::new(&vgg_gpu, config)
        .unwrap()
        .dream(&frame.to_device(gpu()).unwrap())
        .unwrap();
    assert_close("dream 2 octaves x 3 steps", &out_gpu, &out_cpu, 2e-3);
}
