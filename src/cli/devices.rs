//! `stylestream devices`: the cameras `--input webcam:N` can open, with
//! their formats, and the GPUs `--device cuda:N` can use.

use std::collections::BTreeMap;

use anyhow::Result;
use stylestream::live::camera::list_cameras;

/// List cameras (with their formats) and GPUs.
///
/// Cameras are numbered as `--input webcam:N` takes them; each format line
/// is a pixel format and size with the frame rates the camera offers.
/// stylestream reads MJPEG and YUYV; `--camera-size` and `--camera-fps`
/// choose among them.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    println!("cameras:");
    match list_cameras() {
        Err(e) => println!("  cannot list cameras: {e:#}"),
        Ok(cams) if cams.is_empty() => println!(
            "  none found (no V4L2 camera). `stylestream stylize --input VIDEO --realtime` runs \
             the live filter on a video file instead"
        ),
        Ok(cams) => {
            for c in cams {
                println!("  webcam:{}  {} ({})", c.index, c.name, c.description);
                match c.formats {
                    Err(e) => println!("      formats unknown: {e}"),
                    Ok(formats) if formats.is_empty() => println!("      no formats offered"),
                    Ok(formats) => {
                        // format -> size -> rates
                        let mut by: BTreeMap<(String, u32, u32), Vec<u32>> = BTreeMap::new();
                        for f in formats {
                            by.entry((f.format().to_string(), f.width(), f.height()))
                                .or_default()
                                .push(f.frame_rate());
                        }
                        for ((fmt, w, h), mut rates) in by {
                            rates.sort_unstable_by(|a, b| b.cmp(a));
                            rates.dedup();
                            let rates: Vec<String> = rates.iter().map(|r| r.to_string()).collect();
                            let note = if fmt == "MJPEG" || fmt == "YUYV" {
                                ""
                            } else {
                                "  (not read by stylestream)"
                            };
                            println!("      {fmt:<5} {w}x{h} at {} fps{note}", rates.join(", "));
                        }
                    }
                }
            }
        }
    }
    println!("GPUs:");
    for line in gpu_lines() {
        println!("  {line}");
    }
    Ok(())
}

#[cfg(feature = "cuda")]
fn gpu_lines() -> Vec<String> {
    if !candle_core::utils::cuda_is_available() {
        return vec!["CUDA build, but no CUDA runtime available".into()];
    }
    let mut lines = Vec::new();
    for i in 0..64 {
        match candle_core::Device::new_cuda(i) {
            Ok(_) => lines.push(format!("cuda:{i}")),
            Err(e) if i == 0 => {
                lines.push(format!("no usable GPU: {e}"));
                break;
            }
            Err(_) => break,
        }
    }
    lines
}

#[cfg(not(feature = "cuda"))]
fn gpu_lines() -> Vec<String> {
    vec![
        "this build has no CUDA support (build with `--features cuda`, see README: GPU); \
         everything runs on the CPU"
            .into(),
    ]
}
