//! Timings of the work stylestream does, matched one for one with
//! `bench/peer_torch.py` so BENCHMARKS.md can give ratios from one run.
//!
//! `cargo bench --bench perf -- [--json OUT] [--only a,b] [--repeat N]`
//!
//! Each result also records `max_rss_mb`, the process's peak resident set
//! size when that benchmark finished (`VmHWM`, which only grows): run a
//! benchmark alone (`--only NAME`) to read its own peak memory. VGG19's
//! weights (80 MB) are loaded only by the benchmarks that use them.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use stylestream::effects::dream::{Dream, DreamConfig};
use stylestream::effects::dream_stream::{DreamStream, StreamConfig};
use stylestream::effects::gatys::{Gatys, GatysConfig};
use stylestream::vgg::{weights::resolve_vgg_path, Layer, Pooling, Vgg19};

use common::{median, time_runs, train_step, transform_net, warm_then_time};

/// The CPU benchmarks run every repeat asked for, however long it takes.
const NO_BUDGET: f64 = f64::INFINITY;

struct Options {
    json: Option<String>,
    only: Option<Vec<String>>,
    repeat: usize,
}

fn parse_args() -> Options {
    let mut opts = Options {
        json: None,
        only: None,
        repeat: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => opts.json = args.next(),
            "--only" => {
                opts.only = args
                    .next()
                    .map(|s| s.split(',').map(String::from).collect())
            }
            "--repeat" => opts.repeat = args.next().and_then(|s| s.parse().ok()).unwrap_or(5),
            _ => {} // cargo bench passes --bench
        }
    }
    opts
}

fn layer(name: &str) -> Layer {
    name.parse().unwrap()
}

/// VGG-space random image, like the peer's.
fn random_vgg_image(h: usize, w: usize) -> Tensor {
    (Tensor::rand(0f32, 255., (1, 3, h, w), &Device::Cpu).unwrap() - 120.0).unwrap()
}

/// Forward to relu4_1 and backward of its mean square to the image: the
/// core of a DeepDream step and of every Gatys step.
fn relu4_1_energy_gradient(vgg: &Vgg19, x: &Var) -> Tensor {
    let l = layer("relu4_1");
    let a = vgg.forward(x.as_tensor(), &[l]).unwrap();
    let loss = a[&l].sqr().unwrap().mean_all().unwrap();
    loss.backward().unwrap().remove(x).unwrap()
}

/// Peak resident set size of this process so far, in MB (`VmHWM`).
fn max_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The 1-minute load average (other work on the machine slows timings).
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn main() {
    stylestream::ops::allocator::keep_freed_memory();
    let opts = parse_args();
    let wanted = |name: &str| {
        opts.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == name))
    };
    let vgg_cell = std::cell::OnceCell::new();
    let vgg = || {
        vgg_cell.get_or_init(|| {
            Vgg19::load(&resolve_vgg_path(None), &Device::Cpu, Pooling::Max)
                .expect("VGG19 weights: run `stylestream fetch-vgg` first")
        })
    };
    let mut results: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut rss: BTreeMap<String, f64> = BTreeMap::new();
    // 1-min load average before and after, for the long dream benchmarks.
    let mut load: BTreeMap<String, (Option<f64>, Option<f64>)> = BTreeMap::new();

    if wanted("matmul_2048") {
        // The machine's limit: what the GEMM kernel reaches on a big square product.
        let a = Tensor::rand(0f32, 1., (2048, 2048), &Device::Cpu).unwrap();
        let b = Tensor::rand(0f32, 1., (2048, 2048), &Device::Cpu).unwrap();
        let runs = warm_then_time(&Device::Cpu, opts.repeat, NO_BUDGET, || {
            a.matmul(&b).unwrap();
        });
        results.insert("matmul_2048".into(), runs);
    }
    for (name, arch, h, w) in [
        ("johnson_fwd_640x480", "johnson", 480, 640),
        ("johnson_fwd_256x256", "johnson", 256, 256),
        ("fast_fwd_640x480", "fast", 480, 640),
    ] {
        if !wanted(name) {
            continue;
        }
        let (net, _) = transform_net(arch, false, &Device::Cpu);
        let frame = Tensor::rand(0f32, 1., (1, 3, h, w), &Device::Cpu).unwrap();
        let runs = warm_then_time(&Device::Cpu, opts.repeat, NO_BUDGET, || {
            net.forward(&frame).unwrap();
        });
        results.insert(name.into(), runs);
        rss.extend(max_rss_mb().map(|m| (name.to_string(), m)));
    }
    for (name, arch, batch) in [
        ("train_step_256_b1", "johnson", 1),
        ("train_step_fast_256_b2", "fast", 2),
    ] {
        if wanted(name) {
            let photos = Tensor::rand(0f32, 1., (batch, 3, 256, 256), &Device::Cpu).unwrap();
            let painting = Tensor::rand(0f32, 1., (1, 3, 512, 512), &Device::Cpu).unwrap();
            let step = train_step(vgg(), arch, photos, &painting);
            let runs = warm_then_time(&Device::Cpu, opts.repeat, NO_BUDGET, step);
            results.insert(name.into(), runs);
            rss.extend(max_rss_mb().map(|m| (name.to_string(), m)));
        }
    }
    if wanted("vgg_fwd_relu5_1_640x480") {
        let x = random_vgg_image(480, 640);
        let runs = warm_then_time(&Device::Cpu, opts.repeat, NO_BUDGET, || {
            vgg().forward(&x, &[layer("relu5_1")]).unwrap();
        });
        results.insert("vgg_fwd_relu5_1_640x480".into(), runs);
    }
    for (name, dream_update) in [
        ("vgg_fwd_bwd_relu4_1_640x480", false),
        ("dream_step_640x480", true),
    ] {
        if !wanted(name) {
            continue;
        }
        let x = Var::from_tensor(&random_vgg_image(480, 640)).unwrap();
        let runs = warm_then_time(&Device::Cpu, opts.repeat, NO_BUDGET, || {
            let g = relu4_1_energy_gradient(vgg(), &x);
            if dream_update {
                // DeepDream's normalised ascent step, as in effects::dream.
                let scale = g.abs().unwrap().mean_all().unwrap();
                let scale = scale.to_scalar::<f32>().unwrap() as f64;
                x.set(&(x.as_tensor() + (g * (1.5 / scale)).unwrap()).unwrap())
                    .unwrap();
            }
        });
        results.insert(name.into(), runs);
    }
    if wanted("dream_frame_640x480") {
        // One 640x480 frame of `stylestream dream` with its default preset
        // (medium: relu4_2, 4 octaves x 10 steps, scale 1.4, step 1.5,
        // jitter 32 with seed 0, tile 640 so the frame is one tile), all of
        // it: octave resizes, jittered normalised steps, detail carried up.
        // No warm-up run: a frame is ~40 steps, and the median of the runs
        // drops a cold first one.
        let frame = Tensor::rand(0f32, 1., (1, 3, 480, 640), &Device::Cpu).unwrap();
        let config = DreamConfig::preset("medium").unwrap();
        let mut dream = Dream::new(vgg(), config).unwrap();
        let before = load_average();
        let runs = time_runs(&Device::Cpu, opts.repeat, NO_BUDGET, || {
            dream.dream(&frame).unwrap();
        });
        load.insert("dream_frame_640x480".into(), (before, load_average()));
        results.insert("dream_frame_640x480".into(), runs);
        rss.extend(max_rss_mb().map(|m| ("dream_frame_640x480".to_string(), m)));
    }
    if wanted("dream_frame_carried_640x480") {
        // The same preset on a video with the default --carry 0.5: a frame
        // that follows another (no scene cut) starts from the previous
        // dream's detail and gets round(10 x (1 - 0.5)) = 5 steps per
        // octave. The warm-up is the stream's first, full frame.
        let frame = Tensor::rand(0f32, 1., (1, 3, 480, 640), &Device::Cpu).unwrap();
        let dream = Dream::new(vgg(), DreamConfig::preset("medium").unwrap()).unwrap();
        let mut stream = DreamStream::new(dream, StreamConfig::default());
        let before = load_average();
        let runs = warm_then_time(&Device::Cpu, opts.repeat, NO_BUDGET, || {
            stream.next_frame(&frame).unwrap();
        });
        assert_eq!(stream.cuts(), 0);
        load.insert(
            "dream_frame_carried_640x480".into(),
            (before, load_average()),
        );
        results.insert("dream_frame_carried_640x480".into(), runs);
    }
    if wanted("gatys_512_100") {
        let content = Tensor::rand(0f32, 1., (1, 3, 384, 512), &Device::Cpu).unwrap();
        let style = Tensor::rand(0f32, 1., (1, 3, 512, 512), &Device::Cpu).unwrap();
        let config = GatysConfig {
            steps: 100,
            ..GatysConfig::default()
        };
        let t = Instant::now();
        let mut gatys = Gatys::new(vgg(), &style, config).unwrap();
        gatys.paint(&content).unwrap();
        results.insert(
            "gatys_512_100".into(),
            vec![t.elapsed().as_secs_f64() * 1e3],
        );
    }

    println!("{:<32} {:>12}", "benchmark", "median ms");
    let mut json = serde_json::Map::new();
    for (name, runs) in &results {
        let m = median(runs.clone());
        println!("{name:<32} {m:>12.1}");
        let mut entry = serde_json::json!({
            "ms": m,
            "runs": runs,
            "threads": rayon::current_num_threads(),
        });
        if let Some((before, after)) = load.get(name) {
            entry["load_before"] = serde_json::json!(before);
            entry["load_after"] = serde_json::json!(after);
        }
        if let Some(mb) = rss.get(name) {
            entry["max_rss_mb"] = serde_json::json!(mb);
        }
        json.insert(name.clone(), entry);
    }
    if let Some(path) = opts.json {
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    }
}
