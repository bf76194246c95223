//! `ops::conv2d` against candle's reference convolution (forward and
//! autograd) and against a direct f64 loop, whose backward is the ground
//! truth where candle's own conv2d backward cannot be used (see
//! `candle_backward_works`).
//!
//! `cargo test --release --test ops_conv2d -- --ignored --nocapture` prints
//! timings. Use `--release`: the dev profile compiles dependencies with debug
//! assertions and overflow checks, which run `gemm` (ours and candle's
//! matmul alike) at about 60% of its speed.

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};
use stylestream::ops::conv2d::{conv2d, conv2d_relu};

const TOL: f32 = 1e-4;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Max abs difference over the max abs value of the reference.
fn rel_err(ours: &Tensor, reference: &Tensor) -> f32 {
    assert_eq!(ours.dims(), reference.dims());
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

fn candle_reference(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let y = x.conv2d(w, pad, stride, 1, 1)?;
    match b {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
        None => Ok(y),
    }
}

#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    cin: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    h: usize,
    w: usize,
}

impl Case {
    #[allow(clippy::too_many_arguments)]
    const fn new(
        n: usize,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        h: usize,
        w: usize,
    ) -> Self {
        Self {
            n,
            cin,
            cout,
            kh: k,
            kw: k,
            stride,
            pad,
            h,
            w,
        }
    }

    fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.kh) / self.stride + 1,
            (self.w + 2 * self.pad - self.kw) / self.stride + 1,
        )
    }

    /// candle's conv2d backward derives the transposed convolution's output
    /// padding from the height alone; when the width would need a different
    /// one its input gradient has the wrong width.
    fn candle_backward_works(&self) -> bool {
        let (oh, ow) = self.out_hw();
        let base_h = (oh - 1) * self.stride + self.kh - 2 * self.pad;
        let base_w = (ow - 1) * self.stride + self.kw - 2 * self.pad;
        self.h - base_h == self.w - base_w
    }
}

const CASES: &[Case] = &[
    Case::new(1, 3, 8, 3, 1, 1, 17, 23),
    Case::new(3, 3, 8, 3, 2, 1, 17, 23),
    Case::new(1, 16, 32, 3, 1, 1, 17, 23),
    Case::new(3, 16, 32, 3, 2, 1, 17, 23),
    Case::new(1, 64, 3, 3, 1, 1, 9, 6),
    Case::new(3, 64, 3, 3, 2, 1, 9, 6),
    Case::new(1, 3, 8, 9, 1, 4, 17, 23),
    Case::new(3, 3, 8, 9, 1, 4, 9, 6),
    Case::new(1, 16, 32, 9, 2, 4, 17, 23),
    Case::new(3, 16, 32, 1, 1, 0, 17, 23),
    Case::new(1, 64, 3, 1, 1, 0, 9, 6),
    Case::new(3, 16, 8, 1, 2, 0, 17, 23),
    Case::new(1, 16, 8, 3, 1, 0, 17, 23),
    Case::new(3, 8, 16, 3, 2, 0, 9, 6),
    // Padding larger than the kernel reach: the general col2im backward.
    Case::new(1, 4, 5, 3, 1, 4, 9, 6),
    Case::new(2, 4, 5, 1, 1, 1, 9, 6),
    Case::new(1, 16, 8, 3, 1, 3, 9, 6),
    Case::new(2, 16, 8, 1, 1, 1, 17, 23),
    // Large enough for several row bands per image.
    Case::new(1, 32, 16, 3, 1, 1, 64, 80),
    Case::new(2, 32, 16, 3, 2, 1, 64, 81),
    Case::new(1, 8, 16, 9, 1, 4, 70, 41),
    // Winograd (stride-1 3x3, 16+ channels both ways): few tiles (each
    // phase split between threads), many tiles (blocks per thread), odd
    // sizes, padding 0 and 2 (the input gradient then pads by 2 and 0).
    Case::new(2, 16, 24, 3, 1, 1, 70, 75),
    Case::new(1, 20, 16, 3, 1, 0, 99, 101),
    Case::new(3, 17, 19, 3, 1, 2, 13, 11),
    // Few output channels, large kernel (the output-side scatter forward):
    // several column chunks and row bands, padding and none.
    Case::new(2, 32, 3, 9, 1, 4, 21, 300),
    Case::new(1, 24, 3, 9, 1, 0, 30, 270),
    Case::new(1, 16, 5, 5, 1, 3, 9, 7),
];

/// Direct f64 convolution and its exact gradients for `loss = Σ y·r`.
struct Naive {
    y: Vec<f64>,
    dx: Vec<f64>,
    dw: Vec<f64>,
    db: Vec<f64>,
}

#[allow(clippy::needless_range_loop)] // index loops read like the formula
fn naive(c: &Case, x: &[f32], w: &[f32], b: &[f32], r: &[f32]) -> Naive {
    let (oh, ow) = c.out_hw();
    let mut out = Naive {
        y: vec![0.0; c.n * c.cout * oh * ow],
        dx: vec![0.0; x.len()],
        dw: vec![0.0; w.len()],
        db: vec![0.0; c.cout],
    };
    for n in 0..c.n {
        for co in 0..c.cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = ((n * c.cout + co) * oh + oy) * ow + ox;
                    let g = r[yi] as f64;
                    let mut acc = b[co] as f64;
                    out.db[co] += g;
                    for ci in 0..c.cin {
                        for ky in 0..c.kh {
                            let iy = (oy * c.stride + ky) as isize - c.pad as isize;
                            if iy < 0 || iy >= c.h as isize {
                                continue;
                            }
                            for kx in 0..c.kw {
                                let ix = (ox * c.stride + kx) as isize - c.pad as isize;
                                if ix < 0 || ix >= c.w as isize {
                                    continue;
                                }
                                let xi = ((n * c.cin + ci) * c.h + iy as usize) * c.w + ix as usize;
                                let wi = ((co * c.cin + ci) * c.kh + ky) * c.kw + kx;
                                acc += x[xi] as f64 * w[wi] as f64;
                                out.dx[xi] += g * w[wi] as f64;
                                out.dw[wi] += g * x[xi] as f64;
                            }
                        }
                    }
                    out.y[yi] = acc;
                }
            }
        }
    }
    out
}

fn from_f64(v: &[f64], shape: &[usize]) -> Tensor {
    let v: Vec<f32> = v.iter().map(|&a| a as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

struct Grads {
    y: Tensor,
    dx: Tensor,
    dw: Tensor,
    db: Tensor,
}

/// Forward and backward of `Σ conv(x, w, b)·r` with all three as `Var`s.
fn run_grads(
    conv: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    r: &Tensor,
) -> Result<Grads> {
    let (xv, wv, bv) = (
        Var::from_tensor(x)?,
        Var::from_tensor(w)?,
        Var::from_tensor(b)?,
    );
    let y = conv(xv.as_tensor(), wv.as_tensor(), bv.as_tensor())?;
    let grads = y.mul(r)?.sum_all()?.backward()?;
    let get = |v: &Var| grads.get(v.as_tensor()).cloned().expect("gradient missing");
    Ok(Grads {
        dx: get(&xv),
        dw: get(&wv),
        db: get(&bv),
        y,
    })
}

fn case_tensors(c: &Case, seed: u64) -> (Tensor, Tensor, Tensor, Tensor) {
    let (oh, ow) = c.out_hw();
    let x = random(&[c.n, c.cin, c.h, c.w], seed);
    // Weights at the usual fan-in scale keep outputs O(1) for every case.
    let scale = 1.0 / ((c.cin * c.kh * c.kw) as f64).sqrt();
    let w = (random(&[c.cout, c.cin, c.kh, c.kw], seed + 1) * scale).unwrap();
    let b = random(&[c.cout], seed + 2);
    let r = random(&[c.n, c.cout, oh, ow], seed + 3);
    (x, w, b, r)
}

#[test]
fn forward_matches_candle() {
    for (i, c) in CASES.iter().enumerate() {
        let (x, w, b, _) = case_tensors(c, 100 + i as u64);
        for bias in [None, Some(&b)] {
            let ours = conv2d(&x, &w, bias, c.stride, c.pad).unwrap();
            let reference = candle_reference(&x, &w, bias, c.stride, c.pad).unwrap();
            assert!(ours.is_contiguous());
            let err = rel_err(&ours, &reference);
            assert!(err < TOL, "{c:?} bias={}: rel err {err}", bias.is_some());
        }
    }
}

#[test]
fn backward_matches_candle_and_direct_loops() {
    for (i, c) in CASES.iter().enumerate() {
        let (x, w, b, r) = case_tensors(c, 200 + i as u64);
        let ours = run_grads(
            |x, w, b| conv2d(x, w, Some(b), c.stride, c.pad),
            &x,
            &w,
            &b,
            &r,
        )
        .unwrap();

        let vec = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let truth = naive(c, &vec(&x), &vec(&w), &vec(&b), &vec(&r));
        let checks = [
            ("y", &ours.y, from_f64(&truth.y, ours.y.dims())),
            ("dx", &ours.dx, from_f64(&truth.dx, x.dims())),
            ("dw", &ours.dw, from_f64(&truth.dw, w.dims())),
            ("db", &ours.db, from_f64(&truth.db, b.dims())),
        ];
        for (name, got, want) in &checks {
            let err = rel_err(got, want);
            assert!(err < TOL, "{c:?} {name} vs direct loops: rel err {err}");
        }

        if c.candle_backward_works() {
            let reference = run_grads(
                |x, w, b| candle_reference(x, w, Some(b), c.stride, c.pad),
                &x,
                &w,
                &b,
                &r,
            )
            .unwrap();
            for (name, got, want) in [
                ("dx", &ours.dx, &reference.dx),
                ("dw", &ours.dw, &reference.dw),
                ("db", &ours.db, &reference.db),
            ] {
                let err = rel_err(got, want);
                assert!(err < TOL, "{c:?} {name} vs candle autograd: rel err {err}");
            }
        }
    }
}

/// The fused conv + ReLU against our plain conv followed by candle's ReLU:
/// forward values and every gradient, on every case (Winograd, im2col,
/// strided, 1x1, 9x9, the few-channel col2im backward, batches).
#[test]
fn fused_relu_matches_conv_then_relu() {
    for (i, c) in CASES.iter().enumerate() {
        let (x, w, b, r) = case_tensors(c, 300 + i as u64);
        let fused = run_grads(
            |x, w, b| conv2d_relu(x, w, Some(b), c.stride, c.pad),
            &x,
            &w,
            &b,
            &r,
        )
        .unwrap();
        let reference = run_grads(
            |x, w, b| conv2d(x, w, Some(b), c.stride, c.pad)?.relu(),
            &x,
            &w,
            &b,
            &r,
        )
        .unwrap();
        // About half the outputs are clipped, so the mask matters.
        let zeros = fused
            .y
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .filter(|v| **v == 0.0)
            .count();
        assert!(zeros > 0, "{c:?}: no output clipped, the test is vacuous");
        for (name, got, want) in [
            ("y", &fused.y, &reference.y),
            ("dx", &fused.dx, &reference.dx),
            ("dw", &fused.dw, &reference.dw),
            ("db", &fused.db, &reference.db),
        ] {
            let err = rel_err(got, want);
            assert!(err < TOL, "{c:?} fused {name}: rel err {err}");
        }
        // Without a bias, and with only the input tracked (VGG's case).
        let xv = Var::from_tensor(&x).unwrap();
        let y = conv2d_relu(xv.as_tensor(), &w, None, c.stride, c.pad).unwrap();
        let g = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        let dx = g.get(xv.as_tensor()).unwrap().clone();
        assert!(g.get(&w).is_none());
        let xv2 = Var::from_tensor(&x).unwrap();
        let y2 = conv2d(xv2.as_tensor(), &w, None, c.stride, c.pad)
            .unwrap()
            .relu()
            .unwrap();
        let g2 = y2.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        let err = rel_err(&dx, g2.get(xv2.as_tensor()).unwrap());
        assert!(err < TOL, "{c:?} fused dx without bias: rel err {err}");
    }
}

/// Band planning depends on the thread count (and hands the GEMM the pool
/// when bands are too few): run some cases on 1 and 3 threads too.
#[test]
fn other_thread_counts() {
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            for (i, c) in CASES.iter().enumerate().step_by(3) {
                let (x, w, b, r) = case_tensors(c, 300 + i as u64);
                let ours = run_grads(
                    |x, w, b| conv2d(x, w, Some(b), c.stride, c.pad),
                    &x,
                    &w,
                    &b,
                    &r,
                )
                .unwrap();
                let vec = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let truth = naive(c, &vec(&x), &vec(&w), &vec(&b), &vec(&r));
                for (name, got, want) in [
                    ("y", &ours.y, from_f64(&truth.y, ours.y.dims())),
                    ("dx", &ours.dx, from_f64(&truth.dx, x.dims())),
                    ("dw", &ours.dw, from_f64(&truth.dw, w.dims())),
                ] {
                    let err = rel_err(got, &want);
                    assert!(err < TOL, "{threads} threads {c:?} {name}: rel err {err}");
                }
            }
        });
    }
}

#[test]
fn frozen_weight_gets_no_gradient() {
    let c = Case::new(2, 16, 32, 3, 1, 1, 17, 23);
    let (x, w, b, r) = case_tensors(&c, 7);
    let xv = Var::from_tensor(&x).unwrap();
    for bias in [None, Some(&b)] {
        let y = conv2d(xv.as_tensor(), &w, bias, 1, 1).unwrap();
        let grads = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&w).is_none(), "frozen weight got a gradient");
        assert!(grads.get(&b).is_none(), "frozen bias got a gradient");
        let dx = grads.get(xv.as_tensor()).expect("input gradient");

        let xr = Var::from_tensor(&x).unwrap();
        let yr = candle_reference(xr.as_tensor(), &w, bias, 1, 1).unwrap();
        let gr = yr.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        let err = rel_err(dx, gr.get(xr.as_tensor()).unwrap());
        assert!(err < TOL, "input grad rel err {err}");
    }
}

#[test]
fn no_gradient_work_without_tracked_inputs() {
    // Nothing tracks gradients: the result is a plain tensor.
    let c = Case::new(1, 3, 8, 3, 1, 1, 9, 6);
    let (x, w, b, _) = case_tensors(&c, 9);
    let y = conv2d(&x, &w, Some(&b), 1, 1).unwrap();
    assert!(!y.track_op());
}

#[test]
fn non_contiguous_operands() {
    let c = Case::new(2, 8, 16, 3, 1, 1, 17, 23);
    let (x, w, b, r) = case_tensors(&c, 11);
    // Same values, transposed storage.
    let xt = x
        .transpose(2, 3)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    let wt = w
        .transpose(0, 1)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    let rt = r
        .transpose(2, 3)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    assert!(!xt.is_contiguous() && !wt.is_contiguous() && !rt.is_contiguous());

    let ours = run_grads(|x, w, b| conv2d(x, w, Some(b), 1, 1), &xt, &wt, &b, &rt).unwrap();
    let reference = run_grads(
        |x, w, b| candle_reference(x, w, Some(b), 1, 1),
        &x,
        &w,
        &b,
        &r,
    )
    .unwrap();
    for (name, got, want) in [
        ("y", &ours.y, &reference.y),
        ("dx", &ours.dx, &reference.dx),
        ("dw", &ours.dw, &reference.dw),
        ("db", &ours.db, &reference.db),
    ] {
        let err = rel_err(got, want);
        assert!(err < TOL, "{name}: rel err {err}");
    }
}

#[test]
fn rejects_bad_shapes() {
    let x = random(&[1, 3, 8, 8], 1);
    let w = random(&[4, 5, 3, 3], 2);
    assert!(conv2d(&x, &w, None, 1, 1).is_err(), "channel mismatch");
    let w = random(&[4, 3, 3, 3], 2);
    let b = random(&[5], 3);
    assert!(conv2d(&x, &w, Some(&b), 1, 1).is_err(), "bias length");
    let w = random(&[4, 3, 11, 11], 2);
    assert!(
        conv2d(&x, &w, None, 1, 1).is_err(),
        "kernel larger than input"
    );
    assert!(
        conv2d(&x, &random(&[4, 3, 3, 3], 2), None, 0, 1).is_err(),
        "stride 0"
    );
}

#[test]
fn other_dtypes_fall_back_to_candle() {
    let x = random(&[1, 3, 9, 6], 1).to_dtype(DType::F64).unwrap();
    let w = random(&[4, 3, 3, 3], 2).to_dtype(DType::F64).unwrap();
    let b = random(&[4], 3).to_dtype(DType::F64).unwrap();
    let ours = conv2d(&x, &w, Some(&b), 2, 1).unwrap();
    let reference = candle_reference(&x, &w, Some(&b), 2, 1).unwrap();
    let diff = (ours - reference)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(diff < 1e-12);
}

// ---------------------------------------------------------------------------
// Timing (ignored by default).

fn time<F: FnMut() -> Result<()>>(mut f: F) -> f64 {
    f().unwrap(); // warm-up: page faults, rayon pool, gemm caches
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut runs = 0;
    // At least 3 runs (1 for the multi-second candle backward), up to 2 s.
    loop {
        let spent = start.elapsed().as_secs_f64();
        if runs >= 20 || (runs >= 3 && spent > 2.0) || (runs >= 1 && spent > 6.0) {
            break;
        }
        let t = Instant::now();
        f().unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    best
}

/// The machine's GEMM rate right now (the other processes on a shared box
/// move it a lot): candle's 2048^3 f32 matmul.
fn bench_matmul_ceiling() {
    let a = random(&[2048, 2048], 5);
    let b = random(&[2048, 2048], 6);
    let t = time(|| {
        a.matmul(&b)?;
        Ok(())
    });
    println!(
        "candle matmul 2048^3: {:7.2} ms {:6.1} GFLOP/s",
        t * 1e3,
        2.0 * 2048f64.powi(3) / t / 1e9
    );
}

fn bench_layer(cin: usize, cout: usize, h: usize, w: usize, with_candle: bool) {
    let x = random(&[1, cin, h, w], 1);
    let wt = (random(&[cout, cin, 3, 3], 2) * 0.05).unwrap();
    let b = random(&[cout], 3);
    let flops = 2.0 * (cout * cin * 9 * h * w) as f64;
    let gf = |f: f64, t: f64| f / t / 1e9;

    let fwd = |conv: &dyn Fn(&Tensor) -> Result<Tensor>| {
        time(|| {
            conv(&x)?;
            Ok(())
        })
    };
    // Forward + backward to the input (weights frozen, as in Gatys/DeepDream).
    let fwd_bwd = |conv: &dyn Fn(&Tensor) -> Result<Tensor>| {
        let xv = Var::from_tensor(&x).unwrap();
        time(|| {
            let grads = conv(xv.as_tensor())?.sum_all()?.backward()?;
            assert!(grads.get(xv.as_tensor()).is_some());
            Ok(())
        })
    };
    let ours = |x: &Tensor| conv2d(x, &wt, Some(&b), 1, 1);
    let theirs = |x: &Tensor| candle_reference(x, &wt, Some(&b), 1, 1);

    let (f, fb) = (fwd(&ours), fwd_bwd(&ours));
    println!(
        "{cin:>3}->{cout:<3} 3x3 {w}x{h}: ours   fwd {:7.2} ms {:6.1} GFLOP/s | fwd+bwd(x) {:7.2} ms {:6.1} GFLOP/s",
        f * 1e3,
        gf(flops, f),
        fb * 1e3,
        gf(2.0 * flops, fb)
    );
    if with_candle {
        let (f, fb) = (fwd(&theirs), fwd_bwd(&theirs));
        println!(
            "{cin:>3}->{cout:<3} 3x3 {w}x{h}: candle fwd {:7.2} ms {:6.1} GFLOP/s | fwd+bwd(x) {:7.2} ms {:6.1} GFLOP/s",
            f * 1e3,
            gf(flops, f),
            fb * 1e3,
            gf(2.0 * flops, fb)
        );
    }
}

/// GFLOP/s count 2·Cout·Cin·9·H·W per forward and twice that for forward +
/// input gradient (candle's backward also computes the unused weight
/// gradient; that is part of what it costs).
#[test]
#[ignore]
fn bench_vgg_layers() {
    println!("rayon threads: {}", rayon::current_num_threads());
    bench_matmul_ceiling();
    // CONV_BENCH_CANDLE=0 skips candle's (slow) timings.
    let candle = std::env::var("CONV_BENCH_CANDLE").as_deref() != Ok("0");
    bench_layer(64, 64, 240, 320, candle);
    bench_layer(256, 256, 120, 160, candle);
    // The rest of VGG19's shapes at a 320x240 input, ours only.
    bench_layer(3, 64, 240, 320, false);
    bench_layer(128, 128, 120, 160, false);
    bench_layer(256, 256, 60, 80, false);
    bench_layer(512, 512, 30, 40, false);
    bench_layer(512, 512, 15, 20, false);
}

// ---------------------------------------------------------------------------
// `ops::direct`: the inference-only fused direct 3x3 convolution (input map,
// reflection padding, upsampling, norm statistics or bias + (tanh + 1) / 2),
// against the same layers composed from candle's ops. It has no backward
// (inference only), so there is no gradient to check.

mod direct_conv {
    use super::*;
    use stylestream::ops::direct::{conv3x3, ChannelMap, DirectGeom, Epilogue};

    fn to_vec(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// Reflection padding by 1 with candle's `index_select`.
    fn reflect_pad1(x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let idx = |n: usize| {
            let v: Vec<u32> = (0..n + 2)
                .map(|i| match i {
                    0 => 1,
                    i if i == n + 1 => n as u32 - 2,
                    i => i as u32 - 1,
                })
                .collect();
            Tensor::new(v, &Device::Cpu)
        };
        x.index_select(&idx(h)?, 2)?.index_select(&idx(w)?, 3)
    }

    /// The layers the fused op stands for, from candle's ops: map (per
    /// plane `max(a*x + b, 0)`), upsample, reflection pad, conv, bias.
    fn reference_conv(
        x: &Tensor,
        map: Option<&ChannelMap>,
        w: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        upsample: bool,
    ) -> Result<Tensor> {
        let (n, c, h, wd) = x.dims4()?;
        let mut x = x.clone();
        if let Some(m) = map {
            let a = Tensor::from_vec(m.a.clone(), (n, c, 1, 1), &Device::Cpu)?;
            let b = Tensor::from_vec(m.b.clone(), (n, c, 1, 1), &Device::Cpu)?;
            x = x.broadcast_mul(&a)?.broadcast_add(&b)?.relu()?;
        }
        if upsample {
            x = x.upsample_nearest2d(2 * h, 2 * wd)?;
        }
        candle_reference(&reflect_pad1(&x)?, w, bias, stride, 0)
    }

    const CASES: &[(usize, usize, usize, usize, usize, usize, bool)] = &[
        // (n, cin, cout, h, w, stride, upsample)
        (1, 3, 8, 17, 23, 1, false),
        (2, 8, 16, 20, 33, 2, false),
        (1, 16, 32, 15, 9, 2, false),
        (2, 32, 8, 7, 11, 1, true),
        (1, 8, 8, 9, 13, 1, true),
        (3, 8, 3, 12, 41, 1, false),
        (2, 5, 13, 2, 2, 1, false),
        (1, 4, 20, 3, 8, 2, true),
        (1, 2, 9, 2, 3, 2, false),
    ];

    #[test]
    fn matches_candle_layers() {
        let mut seed = 900;
        for &(n, cin, cout, h, w, stride, upsample) in CASES {
            seed += 5;
            let what = format!("direct {n}x{cin}x{h}x{w} -> {cout} s{stride} up {upsample}");
            let g = DirectGeom {
                n,
                cin,
                h,
                w,
                cout,
                stride,
                upsample,
            };
            let x = random(&[n, cin, h, w], seed);
            let wt = random(&[cout, cin, 3, 3], seed + 1);
            let bias = random(&[cout], seed + 2);
            let gamma = random(&[cout], seed + 3);
            let beta = random(&[cout], seed + 4);
            let (xv, wv) = (to_vec(&x), to_vec(&wt));
            let map = ChannelMap {
                a: to_vec(&random(&[n * cin], seed + 6)),
                b: to_vec(&random(&[n * cin], seed + 7)),
            };
            for map in [None, Some(&map)] {
                let (oh, ow) = g.out_hw();
                let reference = reference_conv(&x, map, &wt, None, stride, upsample).unwrap();
                assert_eq!(reference.dims4().unwrap(), (n, cout, oh, ow), "{what}");
                let shape = [n, cout, oh, ow];
                // Raw output and the map of the norm that follows.
                let epi = Epilogue::Norm {
                    gamma: &to_vec(&gamma),
                    beta: Some(&to_vec(&beta)),
                    eps: 1e-5,
                };
                let (y, next) = conv3x3(&xv, map, &wv, epi, &g);
                let y = Tensor::from_vec(y, &shape, &Device::Cpu).unwrap();
                let e = rel_err(&y, &reference);
                assert!(e < TOL, "{what} map {}: {e:e}", map.is_some());
                let next = next.expect("a norm map");
                let mut normed = to_vec(&y);
                next.apply(&mut normed, oh * ow);
                let normed = Tensor::from_vec(normed, &shape, &Device::Cpu).unwrap();
                let ref_norm = {
                    let mean = reference.mean_keepdim((2, 3)).unwrap();
                    let c = reference.broadcast_sub(&mean).unwrap();
                    let var = c.sqr().unwrap().mean_keepdim((2, 3)).unwrap();
                    c.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
                        .unwrap()
                        .broadcast_mul(&gamma.reshape((1, cout, 1, 1)).unwrap())
                        .unwrap()
                        .broadcast_add(&beta.reshape((1, cout, 1, 1)).unwrap())
                        .unwrap()
                        .relu()
                        .unwrap()
                };
                let e = rel_err(&normed, &ref_norm);
                assert!(e < TOL, "{what} norm map {}: {e:e}", map.is_some());
                // Bias, and bias + (tanh + 1) / 2.
                let ref_bias = reference
                    .broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap())
                    .unwrap();
                let bv = to_vec(&bias);
                let (y, none) = conv3x3(&xv, map, &wv, Epilogue::Bias(Some(&bv)), &g);
                assert!(none.is_none());
                let y = Tensor::from_vec(y, &shape, &Device::Cpu).unwrap();
                let e = rel_err(&y, &ref_bias);
                assert!(e < TOL, "{what} bias map {}: {e:e}", map.is_some());
                let (y, _) = conv3x3(&xv, map, &wv, Epilogue::BiasUnitTanh(&bv), &g);
                let y = Tensor::from_vec(y, &shape, &Device::Cpu).unwrap();
                let ref_tanh = ref_bias.tanh().unwrap().affine(0.5, 0.5).unwrap();
                let e = rel_err(&y, &ref_tanh);
                assert!(e < TOL, "{what} tanh map {}: {e:e}", map.is_some());
            }
        }
    }

    #[test]
    fn norm_statistics_survive_a_large_offset() {
        // A plane far from zero (mean 1000, spread 1): the one-pass
        // variance would cancel; the per-row deviations do not.
        let (n, cin, cout, h, w) = (1, 1, 1, 40, 70);
        let g = DirectGeom {
            n,
            cin,
            h,
            w,
            cout,
            stride: 1,
            upsample: false,
        };
        let x = (random(&[n, cin, h, w], 77) + 1000.0).unwrap();
        let mut wv = vec![0f32; 9];
        wv[4] = 1.0; // identity kernel: the output is the input
        let (y, map) = conv3x3(
            &to_vec(&x),
            None,
            &wv,
            Epilogue::Norm {
                gamma: &[1.0],
                beta: Some(&[0.0]),
                eps: 0.0,
            },
            &g,
        );
        let map = map.unwrap();
        let yv: Vec<f64> = y.iter().map(|&v| v as f64).collect();
        let mean = yv.iter().sum::<f64>() / yv.len() as f64;
        let var = yv.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / yv.len() as f64;
        let a = 1.0 / var.sqrt();
        assert!(
            ((map.a[0] as f64) - a).abs() / a < 1e-5,
            "{} vs {a}",
            map.a[0]
        );
        let b = -mean * a;
        assert!(
            ((map.b[0] as f64) - b).abs() / b.abs() < 1e-5,
            "{} vs {b}",
            map.b[0]
        );
    }
}
