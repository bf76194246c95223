//! `ops::{reflection_pad, upsample, instance_norm}` against references built
//! from candle's own ops: forward values, and gradients wrt every input
//! (through candle's autograd on the reference). The f64 runs exercise the
//! fallback paths against the same references.
//!
//! `cargo test --release --test ops_layers -- --ignored --nocapture` prints
//! timings.

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};
use stylestream::ops::instance_norm::instance_norm;
use stylestream::ops::reflection_pad::reflection_pad2d;
use stylestream::ops::upsample::upsample_nearest2x;

const TOL: f64 = 1e-4;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// Max abs difference over the max abs value of the reference.
fn rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(ours.dims(), reference.dims());
    let (a, b) = (values(ours), values(reference));
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

fn assert_close(what: &str, ours: &Tensor, reference: &Tensor) {
    let e = rel_err(ours, reference);
    assert!(e < TOL, "{what}: relative error {e:e}");
}

/// Runs `f` on fresh `Var`s made of `inputs` and returns the output and the
/// gradients of `Σ f(inputs)·weights` wrt every input.
fn forward_backward(
    inputs: &[&Tensor],
    weights_seed: u64,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&tensors).unwrap();
    let w = random(y.dims(), weights_seed).to_dtype(y.dtype()).unwrap();
    let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let g = vars
        .iter()
        .map(|v| grads.get(v).expect("missing gradient").clone())
        .collect();
    (y, g)
}

/// Ours against the reference, forward and every gradient.
fn check(
    what: &str,
    inputs: &[&Tensor],
    ours: impl Fn(&[Tensor]) -> Result<Tensor>,
    reference: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let (y, g) = forward_backward(inputs, 99, ours);
    let (y_ref, g_ref) = forward_backward(inputs, 99, reference);
    assert_eq!(y.dtype(), y_ref.dtype(), "{what}");
    assert_close(&format!("{what} forward"), &y, &y_ref);
    for (i, (a, b)) in g.iter().zip(&g_ref).enumerate() {
        assert_close(&format!("{what} gradient {i}"), a, b);
    }
}

const SHAPES: &[(usize, usize, usize, usize)] = &[
    (1, 3, 17, 23),
    (3, 4, 17, 23),
    (1, 5, 9, 6),
    (3, 2, 9, 6),
    (2, 1, 3, 3),
    (1, 2, 1, 7),
    (1, 32, 64, 48),
];

const DTYPES: &[DType] = &[DType::F32, DType::F64];

// ---------------------------------------------------------------------------
// Reflection padding.

/// `narrow` + `flip` + `cat` on each axis.
fn ref_reflection_pad(x: &Tensor, p: usize) -> Result<Tensor> {
    let pad_axis = |t: &Tensor, dim: usize| -> Result<Tensor> {
        let n = t.dim(dim)?;
        // candle's index_select (behind flip) wants contiguous input.
        let before = t.narrow(dim, 1, p)?.contiguous()?.flip(&[dim])?;
        let after = t.narrow(dim, n - 1 - p, p)?.contiguous()?.flip(&[dim])?;
        Tensor::cat(&[&before, t, &after], dim)
    };
    pad_axis(&pad_axis(x, 2)?, 3)
}

#[test]
fn reflection_pad_matches_pytorch_example() -> Result<()> {
    // torch.nn.ReflectionPad2d(2)(torch.arange(9.).reshape(1, 1, 3, 3))
    let x = Tensor::arange(0f32, 9., &Device::Cpu)?.reshape((1, 1, 3, 3))?;
    let expected = [
        [8., 7., 6., 7., 8., 7., 6.],
        [5., 4., 3., 4., 5., 4., 3.],
        [2., 1., 0., 1., 2., 1., 0.],
        [5., 4., 3., 4., 5., 4., 3.],
        [8., 7., 6., 7., 8., 7., 6.],
        [5., 4., 3., 4., 5., 4., 3.],
        [2., 1., 0., 1., 2., 1., 0.],
    ];
    for dtype in DTYPES {
        let y = reflection_pad2d(&x.to_dtype(*dtype)?, 2)?;
        let got = y
            .squeeze(0)?
            .squeeze(0)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        assert_eq!(got, expected, "{dtype:?}");
    }
    Ok(())
}

#[test]
fn reflection_pad_matches_reference() {
    let mut seed = 0;
    for &(n, c, h, w) in SHAPES {
        let max_pad = h.min(w) - 1;
        let mut pads = vec![1, 2, 4, max_pad];
        pads.retain(|&p| p >= 1 && p <= max_pad);
        pads.dedup();
        for pad in pads {
            for &dtype in DTYPES {
                seed += 1;
                let x = random(&[n, c, h, w], seed).to_dtype(dtype).unwrap();
                check(
                    &format!("reflection_pad2d {n}x{c}x{h}x{w} pad {pad} {dtype:?}"),
                    &[&x],
                    |t| reflection_pad2d(&t[0], pad),
                    |t| ref_reflection_pad(&t[0], pad),
                );
            }
        }
    }
}

#[test]
fn reflection_pad_of_strided_input() -> Result<()> {
    // A transposed (non-contiguous) input, padded by the maximum.
    let x = random(&[2, 3, 6, 9], 7).transpose(2, 3)?;
    check(
        "reflection_pad2d transposed",
        &[&x],
        |t| reflection_pad2d(&t[0].transpose(2, 3)?, 5),
        |t| ref_reflection_pad(&t[0].transpose(2, 3)?, 5),
    );
    Ok(())
}

#[test]
fn reflection_pad_rejects_bad_padding() -> Result<()> {
    let x = random(&[1, 2, 4, 6], 1);
    for pad in [4, 5] {
        let err = reflection_pad2d(&x, pad).unwrap_err().to_string();
        assert!(err.contains("must be smaller"), "{err}");
    }
    let err = reflection_pad2d(&x.transpose(2, 3)?, 4)
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be smaller"), "{err}");
    assert!(reflection_pad2d(&x.flatten_all()?, 1).is_err());
    // Zero padding is the identity.
    let y = reflection_pad2d(&x, 0)?;
    assert_eq!(rel_err(&y, &x), 0.0);
    Ok(())
}

// ---------------------------------------------------------------------------
// Nearest upsampling.

#[test]
fn upsample_matches_reference() {
    let mut seed = 100;
    for &(n, c, h, w) in SHAPES {
        for &dtype in DTYPES {
            seed += 1;
            let x = random(&[n, c, h, w], seed).to_dtype(dtype).unwrap();
            // candle's upsample_nearest2d: right forward, and a right backward
            // as long as its input is used once.
            check(
                &format!("upsample_nearest2x {n}x{c}x{h}x{w} {dtype:?}"),
                &[&x],
                |t| upsample_nearest2x(&t[0]),
                |t| t[0].upsample_nearest2d(2 * h, 2 * w),
            );
        }
    }
}

/// The gradient wrt `x` of `Σ_k Σ up(x)·w_k`, by hand: block sums of `Σ_k w_k`.
fn block_sums(ws: &[&Tensor]) -> Tensor {
    let mut total = ws[0].clone();
    for w in &ws[1..] {
        total = (total + *w).unwrap();
    }
    let (n, c, oh, ow) = total.dims4().unwrap();
    let v = values(&total);
    let (h, w) = (oh / 2, ow / 2);
    let mut out = vec![0f64; n * c * h * w];
    for p in 0..n * c {
        for y in 0..oh {
            for x in 0..ow {
                out[(p * h + y / 2) * w + x / 2] += v[(p * oh + y) * ow + x];
            }
        }
    }
    Tensor::from_vec(out, (n, c, h, w), &Device::Cpu).unwrap()
}

#[test]
fn upsample_gradient_accumulates_when_input_is_reused() -> Result<()> {
    for &dtype in DTYPES {
        for &(n, c, h, w) in &[(1, 3, 17, 23), (3, 2, 9, 6)] {
            let x = Var::from_tensor(&random(&[n, c, h, w], 5).to_dtype(dtype)?)?;
            let w1 = random(&[n, c, 2 * h, 2 * w], 6).to_dtype(dtype)?;
            let w2 = random(&[n, c, 2 * h, 2 * w], 7).to_dtype(dtype)?;
            let w3 = random(&[n, c, h, w], 8).to_dtype(dtype)?;

            // The same upsampling applied twice to one input.
            let loss = ((upsample_nearest2x(&x)? * &w1)?.sum_all()?
                + (upsample_nearest2x(&x)? * &w2)?.sum_all()?)?;
            let g = loss.backward()?.get(&x).unwrap().clone();
            assert_close(&format!("twice {dtype:?}"), &g, &block_sums(&[&w1, &w2]));

            // One upsampled tensor used twice.
            let up = upsample_nearest2x(&x)?;
            let loss = ((&up * &w1)?.sum_all()? + (&up * &w2)?.sum_all()?)?;
            let g = loss.backward()?.get(&x).unwrap().clone();
            assert_close(&format!("shared {dtype:?}"), &g, &block_sums(&[&w1, &w2]));

            // The input also used directly (a skip connection).
            let loss = ((upsample_nearest2x(&x)? * &w1)?.sum_all()?
                + (x.as_tensor() * &w3)?.sum_all()?)?;
            let g = loss.backward()?.get(&x).unwrap().clone();
            let expected = (block_sums(&[&w1]) + w3.to_dtype(DType::F64)?)?;
            assert_close(&format!("skip {dtype:?}"), &g, &expected);
        }
    }
    Ok(())
}

#[test]
fn upsample_rejects_non_4d() {
    assert!(upsample_nearest2x(&random(&[3, 4, 5], 1)).is_err());
}

// ---------------------------------------------------------------------------
// Instance normalisation.

const EPS: f64 = 1e-5;

/// candle ops, two-pass statistics.
fn ref_instance_norm(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let c = x.dim(1)?;
    let mean = x.mean_keepdim((2, 3))?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim((2, 3))?;
    let mut y = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    if let Some(g) = gamma {
        y = y.broadcast_mul(&g.reshape((1, c, 1, 1))?)?;
    }
    if let Some(b) = beta {
        y = y.broadcast_add(&b.reshape((1, c, 1, 1))?)?;
    }
    if relu {
        y = y.relu()?;
    }
    Ok(y)
}

#[test]
fn instance_norm_matches_reference() {
    let mut seed = 200;
    for &(n, c, h, w) in SHAPES {
        for relu in [false, true] {
            for &dtype in DTYPES {
                seed += 3;
                let x = random(&[n, c, h, w], seed).to_dtype(dtype).unwrap();
                let gamma = random(&[c], seed + 1).to_dtype(dtype).unwrap();
                let beta = random(&[c], seed + 2).to_dtype(dtype).unwrap();
                let what = format!("instance_norm {n}x{c}x{h}x{w} relu {relu} {dtype:?}");
                check(
                    &format!("{what} affine"),
                    &[&x, &gamma, &beta],
                    |t| instance_norm(&t[0], Some(&t[1]), Some(&t[2]), EPS, relu),
                    |t| ref_instance_norm(&t[0], Some(&t[1]), Some(&t[2]), EPS, relu),
                );
                check(
                    &format!("{what} plain"),
                    &[&x],
                    |t| instance_norm(&t[0], None, None, EPS, relu),
                    |t| ref_instance_norm(&t[0], None, None, EPS, relu),
                );
                check(
                    &format!("{what} gamma only"),
                    &[&x, &gamma],
                    |t| instance_norm(&t[0], Some(&t[1]), None, EPS, relu),
                    |t| ref_instance_norm(&t[0], Some(&t[1]), None, EPS, relu),
                );
                check(
                    &format!("{what} beta only"),
                    &[&x, &beta],
                    |t| instance_norm(&t[0], None, Some(&t[1]), EPS, relu),
                    |t| ref_instance_norm(&t[0], None, Some(&t[1]), EPS, relu),
                );
            }
        }
    }
}

#[test]
fn instance_norm_gradients_only_where_tracked() -> Result<()> {
    let x = random(&[2, 3, 9, 6], 1);
    let gamma = random(&[3], 2);
    let beta = Var::from_tensor(&random(&[3], 3))?;
    let w = random(&[2, 3, 9, 6], 4);

    // Frozen input and gamma: only beta gets a gradient.
    let y = instance_norm(&x, Some(&gamma), Some(beta.as_tensor()), EPS, true)?;
    let grads = (&y * &w)?.sum_all()?.backward()?;
    assert!(grads.get(&x).is_none());
    assert!(grads.get(&gamma).is_none());
    let db = grads.get(&beta).unwrap().clone();
    let y_ref = ref_instance_norm(&x, Some(&gamma), Some(beta.as_tensor()), EPS, true)?;
    let grads_ref = (&y_ref * &w)?.sum_all()?.backward()?;
    assert_close("dbeta", &db, grads_ref.get(&beta).unwrap());

    // Parameters of another shape with C elements: gradients keep it.
    let gamma4 = Var::from_tensor(&random(&[1, 3, 1, 1], 5))?;
    let y = instance_norm(&x, Some(gamma4.as_tensor()), None, EPS, false)?;
    let grads = (&y * &w)?.sum_all()?.backward()?;
    assert_eq!(grads.get(&gamma4).unwrap().dims(), &[1, 3, 1, 1]);
    Ok(())
}

#[test]
fn instance_norm_is_accurate_on_large_offset_planes() -> Result<()> {
    // Big planes with a mean far from 0: one-pass f32 statistics would lose
    // digits here. The reference is candle's ops in f64. (No ReLU: a value
    // within rounding of 0 could take the other side of the mask.)
    let x = ((random(&[1, 4, 256, 256], 11) * 3.0)? + 20.0)?;
    let gamma = random(&[4], 12);
    let beta = random(&[4], 13);
    let run = |dtype: DType, ours: bool| -> (Tensor, Vec<Tensor>) {
        let inputs: Vec<Tensor> = [&x, &gamma, &beta]
            .iter()
            .map(|t| t.to_dtype(dtype).unwrap())
            .collect();
        let refs: Vec<&Tensor> = inputs.iter().collect();
        forward_backward(&refs, 14, |t| {
            if ours {
                instance_norm(&t[0], Some(&t[1]), Some(&t[2]), EPS, false)
            } else {
                ref_instance_norm(&t[0], Some(&t[1]), Some(&t[2]), EPS, false)
            }
        })
    };
    let (y, g) = run(DType::F32, true);
    let (y64, g64) = run(DType::F64, false);
    assert_close("forward", &y, &y64);
    for (i, (a, b)) in g.iter().zip(&g64).enumerate() {
        assert_close(&format!("gradient {i}"), a, b);
    }
    Ok(())
}

#[test]
fn instance_norm_of_strided_input() -> Result<()> {
    let x = random(&[2, 3, 6, 9], 21).transpose(2, 3)?;
    let gamma = random(&[3], 22);
    let beta = random(&[3], 23);
    check(
        "instance_norm transposed",
        &[&x, &gamma, &beta],
        |t| instance_norm(&t[0], Some(&t[1]), Some(&t[2]), EPS, true),
        |t| ref_instance_norm(&t[0], Some(&t[1]), Some(&t[2]), EPS, true),
    );
    Ok(())
}

#[test]
fn instance_norm_rejects_bad_arguments() {
    let x = random(&[1, 3, 4, 4], 1);
    let bad = random(&[4], 2);
    let err = instance_norm(&x, Some(&bad), None, EPS, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("gamma has 4 elements"), "{err}");
    let err = instance_norm(&x, None, Some(&bad), EPS, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("beta has 4 elements"), "{err}");
    assert!(instance_norm(&x, None, None, -1.0, false).is_err());
    assert!(instance_norm(&x.flatten_all().unwrap(), None, None, EPS, false).is_err());
}

// ---------------------------------------------------------------------------
// Timing (ignored by default).

/// Best of several runs after a warm-up.
fn time<F: FnMut() -> Result<()>>(mut f: F) -> f64 {
    f().unwrap();
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut runs = 0;
    loop {
        let spent = start.elapsed().as_secs_f64();
        if runs >= 20 || (runs >= 3 && spent > 1.0) {
            break;
        }
        let t = Instant::now();
        f().unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    best * 1e3
}

/// Forward, and forward + backward, in ms. The backward starts from
/// `y.backward()` (a gradient of ones), so that the timing is the op's and
/// not that of a loss built on top of it; candle's gradient store adds the
/// usual `ones_like` and `zeros + grad` passes to both sides alike.
fn bench_pair(inputs: &[&Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) -> (f64, f64) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let plain: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
    let fwd = time(|| {
        f(&plain)?;
        Ok(())
    });
    let both = time(|| {
        f(&tensors)?.backward()?;
        Ok(())
    });
    (fwd, both)
}

fn report(name: &str, ours: (f64, f64), theirs: (f64, f64)) {
    println!(
        "{name:<32} forward {:8.2} ms (candle {:8.2})   fwd+bwd {:8.2} ms (candle {:8.2})",
        ours.0, theirs.0, ours.1, theirs.1
    );
}

#[test]
#[ignore]
fn bench_layers() {
    println!("threads: {}", rayon::current_num_threads());
    for &(c, h, w) in &[(32, 256, 256), (64, 240, 320)] {
        println!("-- 1x{c}x{h}x{w} input");
        let x = random(&[1, c, h, w], 1);
        let gamma = random(&[c], 2);
        let beta = random(&[c], 3);
        for pad in [1, 4] {
            report(
                &format!("reflection_pad2d pad {pad}"),
                bench_pair(&[&x], |t| reflection_pad2d(&t[0], pad)),
                bench_pair(&[&x], |t| ref_reflection_pad(&t[0], pad)),
            );
        }
        report(
            "upsample_nearest2x",
            bench_pair(&[&x], |t| upsample_nearest2x(&t[0])),
            bench_pair(&[&x], |t| t[0].upsample_nearest2d(2 * h, 2 * w)),
        );
        for relu in [false, true] {
            report(
                &format!("instance_norm affine relu {relu}"),
                bench_pair(&[&x, &gamma, &beta], |t| {
                    instance_norm(&t[0], Some(&t[1]), Some(&t[2]), EPS, relu)
                }),
                bench_pair(&[&x, &gamma, &beta], |t| {
                    ref_instance_norm(&t[0], Some(&t[1]), Some(&t[2]), EPS, relu)
                }),
            );
        }
        // What any op pays: one full-size copy forward, and backward the
        // gradient store's `ones_like` and `zeros + grad`.
        let baseline = bench_pair(&[&x], |t| t[0].affine(1.0, 0.0));
        report("(baseline: candle affine)", baseline, baseline);
    }
}
