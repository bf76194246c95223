//! The transform network's spec language and the network itself: parsing,
//! presets, parameter and FLOP counts, forward shapes and range, gradients
//! and checkpoint round trips.

use std::collections::BTreeMap;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use stylestream::models::{
    parameter_shapes, preset, ArchSpec, LayerSpec, SpecError, TransformerNet, FAST_SPEC,
    JOHNSON_SPEC, PRESETS,
};

fn parse_err(s: &str) -> SpecError {
    match s.parse::<ArchSpec>() {
        Ok(spec) => panic!("'{s}' parsed as {spec}"),
        Err(e) => e,
    }
}

/// A fresh, randomly initialised network and its variables.
fn fresh(spec: &ArchSpec) -> Result<(VarMap, TransformerNet)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = TransformerNet::new(spec, vb)?;
    Ok((varmap, net))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    assert_eq!(a.dims(), b.dims());
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

fn min_max(t: &Tensor) -> Result<(f32, f32)> {
    let t = t.flatten_all()?;
    Ok((t.min(0)?.to_scalar()?, t.max(0)?.to_scalar()?))
}

#[test]
fn parses_johnson_spec() -> Result<()> {
    let spec: ArchSpec = JOHNSON_SPEC.parse()?;
    let l = spec.layers();
    assert_eq!(l.len(), 11);
    assert_eq!(
        l[0],
        LayerSpec::Conv {
            kernel: 9,
            stride: 1,
            channels: 32
        }
    );
    assert_eq!(l[1], LayerSpec::Down(64));
    assert_eq!(l[2], LayerSpec::Down(128));
    assert!(l[3..8].iter().all(|l| *l == LayerSpec::Residual(128)));
    assert_eq!(l[8], LayerSpec::Up(64));
    assert_eq!(l[9], LayerSpec::Up(32));
    assert_eq!(
        l[10],
        LayerSpec::Conv {
            kernel: 9,
            stride: 1,
            channels: 3
        }
    );
    assert_eq!(spec.to_string(), JOHNSON_SPEC);
    assert_eq!(preset("johnson"), Some(spec));
    Ok(())
}

#[test]
fn repetition_shorthand_and_whitespace() -> Result<()> {
    let short: ArchSpec = " c9s1-32 , d64,d128, 5xR128 ,u64,u32,c9s1-3 ".parse()?;
    assert_eq!(short, preset("johnson").unwrap());
    // Display writes the canonical, expanded form.
    assert_eq!(short.to_string(), JOHNSON_SPEC);
    let one: ArchSpec = "c3s1-8,1xd16,u8,c3s1-3".parse()?;
    assert_eq!(one.to_string(), "c3s1-8,d16,u8,c3s1-3");
    Ok(())
}

#[test]
fn display_round_trips() -> Result<()> {
    let specs = [
        JOHNSON_SPEC,
        FAST_SPEC,
        "c9s1-3",
        "c1s1-3",
        "c9s2-16,R16,u8,c5s1-3",
        "c3s1-8,u8,d8,c3s1-3",
        "c7s1-64,d128,d256,9xR256,u128,u64,c7s1-3",
    ];
    for s in specs {
        let spec: ArchSpec = s.parse()?;
        let again: ArchSpec = spec.to_string().parse()?;
        assert_eq!(spec, again, "{s}");
    }
    for (name, s) in PRESETS {
        let spec = preset(name).unwrap();
        assert_eq!(spec.to_string(), *s);
        assert_eq!(spec.to_string().parse::<ArchSpec>()?, spec);
    }
    assert_eq!(preset("johnson2"), None);
    Ok(())
}

#[test]
fn bad_tokens_are_named_with_their_position() {
    let s = "c9s1-32,d64,x12,R128,u64,u32,c9s1-3";
    let e = parse_err(s);
    assert_eq!(
        e,
        SpecError::BadLayer {
            token: "x12".into(),
            position: 3,
            spec: s.into()
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "bad layer 'x12' at position 3 in spec '{s}': expected cKsS-C, dC, RC or uC \
             (optionally repeated as NxL, e.g. 5xR128)"
        )
    );
    for (spec, token, position) in [
        ("c9s1-32,,c9s1-3", "", 2),
        ("c9-32,c9s1-3", "c9-32", 1),
        ("c9s1-32,c9s1", "c9s1", 2),
        ("c9s1-32,r32,c9s1-3", "r32", 2),
        ("c9s1-32,R,c9s1-3", "R", 2),
        ("c9s1-32,d+64,c9s1-3", "d+64", 2),
        ("c9s1-32,d-64,c9s1-3", "d-64", 2),
        ("c9s1-32,R32x5,c9s1-3", "R32x5", 2),
        ("c9s1-32,xR32,c9s1-3", "xR32", 2),
        ("c9s1-32,5x,c9s1-3", "5x", 2),
        ("c9s1-32,é32,c9s1-3", "é32", 2),
    ] {
        match parse_err(spec) {
            SpecError::BadLayer {
                token: t,
                position: p,
                ..
            } => assert_eq!((t.as_str(), p), (token, position), "{spec}"),
            e => panic!("{spec}: {e}"),
        }
    }
}

#[test]
fn bad_values_and_invalid_networks() {
    assert_eq!(parse_err(""), SpecError::Empty);
    assert_eq!(parse_err("  "), SpecError::Empty);
    assert!(ArchSpec::new(vec![]).is_err());

    for (spec, needle) in [
        ("c8s1-32,c9s1-3", "kernel must be odd"),
        ("c9s3-32,c9s1-3", "stride must be 1 or 2"),
        ("c9s0-32,c9s1-3", "stride must be 1 or 2"),
        ("c9s1-0,c9s1-3", "channels must be"),
        ("c9s1-32,0xR32,c9s1-3", "repeat count"),
    ] {
        let e = parse_err(spec);
        assert!(matches!(e, SpecError::BadValue { .. }), "{spec}: {e:?}");
        let msg = e.to_string();
        assert!(msg.contains(needle) && msg.contains(spec), "{spec}: {msg}");
    }

    // A residual block must keep its input's channels.
    let e = parse_err("c9s1-32,d64,R128,u32,c9s1-3");
    assert!(
        matches!(e, SpecError::Invalid { layer: 2, ref token, .. } if token == "R128"),
        "{e:?}"
    );
    assert!(e.to_string().contains("receives 64"), "{e}");
    // The first layer receives RGB.
    let e = parse_err("R32,c9s1-3");
    assert!(e.to_string().contains("receives 3"), "{e}");
    // The last layer is a convolution to RGB.
    let e = parse_err("c9s1-32,c9s1-4");
    assert!(
        matches!(e, SpecError::Invalid { layer: 1, .. }) && e.to_string().contains("RGB"),
        "{e}"
    );
    let e = parse_err("c9s1-32,d3,u3");
    assert!(matches!(e, SpecError::Invalid { layer: 2, .. }), "{e:?}");
    // Every halving is undone.
    assert_eq!(
        parse_err("c9s1-32,d64,u32,d32,c9s1-3"),
        SpecError::Unbalanced {
            spec: "c9s1-32,d64,u32,d32,c9s1-3".into(),
            downs: 2,
            ups: 1
        }
    );
    assert!(matches!(
        parse_err("c9s2-32,c9s1-3"),
        SpecError::Unbalanced {
            downs: 1,
            ups: 0,
            ..
        }
    ));
}

#[test]
fn parameter_counts() -> Result<()> {
    // Johnson, by hand (conv weights Cout*Cin*K*K; instance norm 2*C, scale
    // and shift; no conv bias before a norm; a residual block's second norm
    // has no shift; the last conv has a bias):
    //   c9s1-32: 32*3*81 = 7,776 + IN 64                      =     7,840
    //   d64:     64*32*9 = 18,432 + IN 128                    =    18,560
    //   d128:    128*64*9 = 73,728 + IN 256                   =    73,984
    //   R128:    2 * 128*128*9 = 294,912 + IN 256 + scale 128 = 295,296; x5 = 1,476,480
    //   u64:     64*128*9 = 73,728 + IN 128                   =    73,856
    //   u32:     32*64*9 = 18,432 + IN 64                     =    18,496
    //   c9s1-3:  3*32*81 = 7,776 + bias 3                     =     7,779
    //   total                                                 = 1,676,995
    // (Johnson et al.'s 1.68 M = 1,679,235 less the 1,600 conv biases that
    // precede norms and the 640 shifts of the residual blocks' second norms.)
    let johnson = preset("johnson").unwrap();
    assert_eq!(johnson.num_params(), 1_676_995);
    // Fast:
    //   c3s1-8: 8*3*9 = 216 + 16 = 232;  d16: 16*8*9 = 1,152 + 32 = 1,184
    //   d32: 32*16*9 = 4,608 + 64 = 4,672
    //   R32: 2*9,216 + 64 + 32 = 18,528, x2 = 37,056
    //   u8: 8*32*9 = 2,304 + 16 = 2,320;  u8: 8*8*9 = 576 + 16 = 592
    //   c3s1-3: 3*8*9 = 216 + 3 = 219;  total 46,275
    let fast = preset("fast").unwrap();
    assert_eq!(fast.num_params(), 46_275);

    for spec in [johnson, fast] {
        let (varmap, _) = fresh(&spec)?;
        let vars = varmap.data().lock().unwrap();
        let total: usize = vars.values().map(|v| v.elem_count()).sum();
        assert_eq!(total, spec.num_params(), "{spec}");
        // The documented layout is exactly what the network creates.
        let made: BTreeMap<String, Vec<usize>> = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.dims().to_vec()))
            .collect();
        let documented: BTreeMap<String, Vec<usize>> =
            parameter_shapes(&spec).into_iter().collect();
        assert_eq!(made, documented, "{spec}");
    }
    let names: Vec<String> = parameter_shapes(&preset("johnson").unwrap())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for n in [
        "layers.0.conv.weight",
        "layers.0.norm.weight",
        "layers.0.norm.bias",
        "layers.3.conv1.weight",
        "layers.3.norm1.bias",
        "layers.3.norm2.weight",
        "layers.10.conv.weight",
        "layers.10.conv.bias",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    assert!(!names.iter().any(|x| x == "layers.0.conv.bias"));
    assert!(!names.iter().any(|x| x == "layers.3.norm2.bias"));
    Ok(())
}

#[test]
fn flops_and_sizes() {
    let johnson = preset("johnson").unwrap();
    let fast = preset("fast").unwrap();
    // Multiply-adds per pixel of a 640x480 frame (P = 307,200 pixels):
    // johnson: c9s1-32 7,776 + d64 4,608 + d128 4,608 + 10 R convs 9,216 each
    // + u64 18,432 + u32 18,432 + c9s1-3 7,776 = 153,792.
    assert_eq!(johnson.flops(480, 640), 2 * 153_792 * 307_200);
    // fast: 216 + 288 + 288 + 4 x 576 + 576 + 576 + 216 = 4,464.
    assert_eq!(fast.flops(480, 640), 2 * 4_464 * 307_200);
    println!(
        "GFLOP per 640x480 frame: johnson {:.2}, fast {:.3}",
        johnson.flops(480, 640) as f64 / 1e9,
        fast.flops(480, 640) as f64 / 1e9
    );
    // Sizes are padded up to multiples of 4 (two halvings).
    assert_eq!(johnson.size_multiple(), 4);
    assert_eq!(johnson.padded_size(37, 53), (40, 56));
    assert_eq!(johnson.padded_size(480, 640), (480, 640));
    assert_eq!(johnson.flops(37, 53), johnson.flops(40, 56));
    // The deepest point counts, not the number of halvings.
    let zigzag: ArchSpec = "c3s1-8,d8,u8,d8,u8,c3s1-3".parse().unwrap();
    assert_eq!(zigzag.size_multiple(), 2);
    let upfirst: ArchSpec = "c3s1-8,u8,d8,c3s1-3".parse().unwrap();
    assert_eq!(upfirst.size_multiple(), 1);
    // A 9x9 convolution pads by 4, so it needs maps of 5 and more.
    assert_eq!(johnson.min_input_size(), 5);
    // fast's residual blocks at 1/4 size need 2 rows: inputs padded to 8.
    assert_eq!(fast.min_input_size(), 5);
    let convs = johnson.convs(480, 640);
    assert_eq!(convs.len(), 16);
    assert_eq!(
        (convs[5].in_h, convs[5].in_w, convs[5].layer),
        (120, 160, 4)
    );
    assert_eq!((convs[15].out_h, convs[15].out_w), (480, 640));
}

#[test]
fn forward_keeps_size_and_range() -> Result<()> {
    for name in ["johnson", "fast"] {
        let spec = preset(name).unwrap();
        let (_, net) = fresh(&spec)?;
        for shape in [(1, 3, 64, 64), (2, 3, 37, 53), (1, 3, 5, 7)] {
            let x = Tensor::rand(0f32, 1., shape, &Device::Cpu)?;
            let y = net.forward(&x)?;
            assert_eq!(y.dims4()?, shape, "{name}");
            let (lo, hi) = min_max(&y)?;
            assert!(
                (0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi),
                "{name} {shape:?}: {lo}..{hi}"
            );
            // A fresh network paints texture, not a constant.
            assert!(hi - lo > 1e-3, "{name} {shape:?}: {lo}..{hi}");
        }
    }
    Ok(())
}

#[test]
fn batch_items_are_independent() -> Result<()> {
    // Instance norm and per-image padding: an image's output does not
    // depend on the rest of the batch.
    let (_, net) = fresh(&preset("fast").unwrap())?;
    let x = Tensor::rand(0f32, 1., (3, 3, 37, 53), &Device::Cpu)?;
    let all = net.forward(&x)?;
    for i in 0..3 {
        let one = net.forward(&x.narrow(0, i, 1)?)?;
        assert!(max_abs_diff(&one, &all.narrow(0, i, 1)?)? < 1e-5);
    }
    Ok(())
}

#[test]
fn rejects_bad_inputs() -> Result<()> {
    let (_, net) = fresh(&preset("johnson").unwrap())?;
    let e = net
        .forward(&Tensor::zeros((1, 3, 4, 64), DType::F32, &Device::Cpu)?)
        .unwrap_err();
    assert!(e.to_string().contains("at least 5"), "{e}");
    let e = net
        .forward(&Tensor::zeros((1, 4, 32, 32), DType::F32, &Device::Cpu)?)
        .unwrap_err();
    assert!(e.to_string().contains("RGB"), "{e}");
    assert!(net
        .forward(&Tensor::zeros((3, 32, 32), DType::F32, &Device::Cpu)?)
        .is_err());
    Ok(())
}

/// Every parameter can change the output. A dead one gets a gradient below
/// 1e-9 here (a conv bias before instance norm, or a shift on a residual
/// block's second norm, which is why the network has neither); the
/// smallest live ones get ~3e-4.
#[test]
fn gradients_reach_every_parameter() -> Result<()> {
    for name in ["johnson", "fast"] {
        let spec = preset(name).unwrap();
        let (varmap, net) = fresh(&spec)?;
        let x = Tensor::rand(0f32, 1., (2, 3, 30, 34), &Device::Cpu)?;
        let target = Tensor::rand(0f32, 1., (2, 3, 30, 34), &Device::Cpu)?;
        let loss = (net.forward(&x)? - target)?.sqr()?.mean_all()?;
        let grads = loss.backward()?;
        let vars = varmap.data().lock().unwrap();
        assert_eq!(vars.len(), parameter_shapes(&spec).len());
        for (n, v) in vars.iter() {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient for {n}"));
            assert_eq!(g.dims(), v.dims());
            let (lo, hi) = min_max(g)?;
            assert!(lo.is_finite() && hi.is_finite(), "{name} {n}");
            assert!(
                lo.abs().max(hi.abs()) > 1e-6,
                "{name}: zero gradient for {n}"
            );
        }
    }
    Ok(())
}

#[test]
fn checkpoint_round_trip() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for name in ["johnson", "fast"] {
        let spec = preset(name).unwrap();
        let (varmap, net) = fresh(&spec)?;
        let path = dir.path().join(format!("{name}.safetensors"));
        varmap.save(&path)?;
        let x = Tensor::rand(0f32, 1., (1, 3, 37, 53), &Device::Cpu)?;
        let want = net.forward(&x)?;

        // SAFETY: the file was just written by this test and is not modified
        // while mapped.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu)? };
        let mmaped = TransformerNet::new(&spec, vb)?.forward(&x)?;
        let loaded = TransformerNet::load(&spec, &path, &Device::Cpu)?.forward(&x)?;
        // The loaded weights are plain tensors, so these two take the fused
        // inference path (identical to each other) while the `Var` network
        // runs op by op (the same numbers to rounding).
        assert_eq!(max_abs_diff(&mmaped, &loaded)?, 0.0, "{name}");
        assert!(max_abs_diff(&loaded, &want)? < 1e-4, "{name}");
    }

    // Weights of another architecture are refused by name.
    let err = TransformerNet::load(
        &preset("johnson").unwrap(),
        &dir.path().join("fast.safetensors"),
        &Device::Cpu,
    )
    .err()
    .expect("fast weights must not load as johnson");
    let msg = err.to_string();
    assert!(
        msg.contains("not for architecture") && msg.contains("layers.10.conv.bias"),
        "{msg}"
    );
    let wider: ArchSpec = "c3s1-16,d16,d32,R32,R32,u8,u8,c3s1-3".parse()?;
    let msg = TransformerNet::load(&wider, &dir.path().join("fast.safetensors"), &Device::Cpu)
        .err()
        .expect("shape mismatch")
        .to_string();
    assert!(
        msg.contains("layers.0.conv.weight is [8, 3, 3, 3], expected [16, 3, 3, 3]"),
        "{msg}"
    );
    let msg = TransformerNet::load(
        &wider,
        &dir.path().join("missing.safetensors"),
        &Device::Cpu,
    )
    .err()
    .expect("missing file")
    .to_string();
    assert!(msg.contains("missing.safetensors"), "{msg}");
    Ok(())
}

/// `cargo test --release --test transformer -- --ignored --nocapture`
/// prints forward times at 640x480 and the convolutions' share of FLOPs.
#[test]
#[ignore]
fn timing_640x480() -> Result<()> {
    for name in ["fast", "johnson"] {
        let spec = preset(name).unwrap();
        let (_, net) = fresh(&spec)?;
        let x = Tensor::rand(0f32, 1., (1, 3, 480, 640), &Device::Cpu)?;
        net.forward(&x)?; // warm-up
        let runs = if name == "fast" { 20 } else { 3 };
        let t0 = std::time::Instant::now();
        for _ in 0..runs {
            net.forward(&x)?;
        }
        let secs = t0.elapsed().as_secs_f64() / runs as f64;
        let gflop = spec.flops(480, 640) as f64 / 1e9;
        println!(
            "{name}: {:.1} ms/frame ({:.1} frames/s), {gflop:.2} GFLOP, {:.1} GFLOP/s",
            secs * 1e3,
            1.0 / secs,
            gflop / secs
        );
    }
    Ok(())
}

/// The whole network's gradient against central finite differences, for a
/// few elements of every kind of parameter: checks that the custom ops'
/// backward passes compose correctly (each op is also tested alone).
/// Deterministic (seeded weights, fixed inputs), because a network this
/// small has ReLU kinks close enough that some random draws would make the
/// finite differences themselves unreliable.
#[test]
fn gradients_match_finite_differences() -> Result<()> {
    let spec: ArchSpec = "c3s1-4,d8,R8,u4,c3s1-3".parse().unwrap();
    let varmap = VarMap::new();
    for (name, t) in stylestream::training::init::initial_parameters(&spec, 3, &Device::Cpu)? {
        let var = candle_core::Var::from_tensor(&t)?;
        varmap.data().lock().unwrap().insert(name, var);
    }
    let net = TransformerNet::new(
        &spec,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    let pattern = |n: usize, f: f32| -> Result<Tensor> {
        let v: Vec<f32> = (0..n).map(|i| ((i as f32 * f).sin() + 1.0) / 2.0).collect();
        Ok(Tensor::from_vec(v, (2, 3, 13, 17), &Device::Cpu)?)
    };
    let n = 2 * 3 * 13 * 17;
    let x = pattern(n, 0.37)?;
    let weights = pattern(n, 1.13)?.affine(2.0, -1.0)?;
    let loss_of =
        |net: &TransformerNet| -> Result<Tensor> { Ok((net.forward(&x)? * &weights)?.sum_all()?) };
    let grads = loss_of(&net)?.backward()?;
    let mut vars: Vec<(String, candle_core::Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let eps = 1e-3f32;
    let mut checked = 0;
    for (name, var) in &vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()?
            .to_vec1::<f32>()?;
        let base = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        for &i in &[0, base.len() / 2, base.len() - 1] {
            let at = |delta: f32| -> Result<f32> {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu)?)?;
                Ok(loss_of(&net)?.to_scalar::<f32>()?)
            };
            let numeric = (at(eps)? - at(-eps)?) / (2.0 * eps);
            var.set(&Tensor::from_vec(base.clone(), var.dims(), &Device::Cpu)?)?;
            let analytic = g[i];
            let tol = 0.1 * numeric.abs().max(analytic.abs()) + 3e-2;
            assert!(
                (numeric - analytic).abs() <= tol,
                "{name}[{i}]: backward {analytic}, finite difference {numeric}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 3 * 10);
    Ok(())
}

/// A saved model is an ordinary shared file: readable by everyone the
/// umask allows (safetensors' own writer would leave it at mode 0600), and
/// it loads back with the same tensors.
#[cfg(unix)]
#[test]
fn saved_models_are_shareable_and_load_back() -> Result<()> {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    let spec = stylestream::models::preset("fast").unwrap();
    let params: HashMap<String, Tensor> =
        stylestream::training::init::initial_parameters(&spec, 3, &Device::Cpu)?
            .into_iter()
            .collect();
    let info = stylestream::models::ModelInfo::new(spec, "random", "style", serde_json::json!({}));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shared.safetensors");
    stylestream::models::save_model(&path, &params, &info)?;

    // The same mode as any file the process creates (0644 under the usual
    // umask 022), not owner-only.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"x")?;
    let mode = |p: &std::path::Path| -> Result<u32> {
        Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
    };
    assert_eq!(mode(&path)?, mode(&plain)?);

    let (_, loaded) = stylestream::models::load_model(&path, &Device::Cpu)?;
    assert_eq!(loaded.style, "random");
    Ok(())
}

/// With plain (untracked) weights on the CPU the forward takes the fused
/// inference path (`ops::direct`); with trainable `Var`s it runs op by op.
/// Both must give the same picture.
#[test]
fn inference_path_matches_op_by_op_path() -> Result<()> {
    for name in ["fast", "johnson"] {
        let spec = preset(name).unwrap();
        let (varmap, tracked) = fresh(&spec)?;
        let plain: std::collections::HashMap<String, Tensor> = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        let plain = TransformerNet::new(
            &spec,
            VarBuilder::from_tensors(plain, DType::F32, &Device::Cpu),
        )?;
        for shape in [(1, 3, 64, 64), (2, 3, 37, 53), (1, 3, 5, 7), (3, 3, 30, 18)] {
            let x = Tensor::rand(0f32, 1., shape, &Device::Cpu)?;
            let d = max_abs_diff(&plain.forward(&x)?, &tracked.forward(&x)?)?;
            assert!(d < 1e-4, "{name} {shape:?}: {d:e}");
        }
    }
    Ok(())
}
