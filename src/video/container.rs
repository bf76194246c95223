//! The video-file sink: encodes painted frames into a container chosen by
//! the output's extension and carries the input's other streams across.
//!
//! Defaults are what plays everywhere: H.264 (libx264, CRF 23, preset
//! veryfast) in yuv420p for `.mp4`, `.mov`, `.mkv` and `.avi`; VP9
//! (libvpx-vp9, CRF 31, realtime cpu-used 6) for `.webm`; the muxer's own default
//! otherwise. `--codec`, `--crf` and `--preset` change them. The presets
//! are fast ones on purpose: the encoder runs beside the effect and must
//! keep up with it (see [`super::pipeline`]).
//!
//! What is kept from the input:
//! * each frame's timestamp and duration, in the input's own time base, so
//!   constant and variable frame rates, the start time and the total
//!   duration come out as they went in;
//! * the rotation (display matrix) and pixel aspect, so players show the
//!   painted video the way they showed the original;
//! * audio, copied packet for packet when the container takes the codec,
//!   else re-encoded ([`super::audio`]: AAC in MP4/MOV, Opus in WebM);
//!   subtitles where the container takes their codec; container and stream
//!   metadata.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::codec;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::Codec;
use ffmpeg_next::{encoder, media, picture, Dictionary, Packet, Rational};

use super::audio::AudioTranscoder;
use super::frame::RgbFrame;
use super::scale::{Colorimetry, Scaler};
use super::sink::{
    pad_note, temp_path_beside, EncodeOptions, Finished, FrameSink, SinkGeometry, SinkPlan,
    TempOutput,
};
use super::source::DecodedFrame;
use super::{ff_error, one_line, VideoSource};

/// What happens to one input stream other than the painted video.
enum StreamOut {
    /// Packets copied as they are into output stream `ost`.
    Copy {
        ost: usize,
        in_tb: Rational,
        ost_tb: Rational,
    },
    /// Audio decoded and re-encoded for a container that cannot hold it.
    Audio(Box<AudioTranscoder>),
}

/// The video encoder and what it needs to turn painted frames into packets.
struct VideoOut {
    encoder: encoder::video::Encoder,
    ost: usize,
    enc_tb: Rational,
    ost_tb: Rational,
    /// Turns (clockwise quarter turns) that bring upright frames back to the
    /// stored orientation.
    turns_back: u32,
    /// Resizes painted frames to the stored size (`--keep-size`).
    resize: Option<(Scaler, u32, u32)>,
    pad: bool,
    to_yuv: Scaler,
    color: Colorimetry,
    /// Each frame's duration by timestamp: encoders return packets with
    /// the frame's pts but not always its duration, and the last frame's
    /// duration is what makes the output as long as the input.
    durations: BTreeMap<i64, i64>,
}

/// A video file being written under a temporary name.
pub struct ContainerSink {
    // Declared before `temp` so the file is closed before it is removed.
    octx: ffmpeg::format::context::Output,
    video: VideoOut,
    streams: Vec<Option<StreamOut>>,
    dropped: u64,
    temp: TempOutput,
    target: PathBuf,
}

/// Stream metadata that describes the old encoding rather than the
/// content, dropped from the painted video stream.
const STALE_VIDEO_TAGS: &[&str] = &[
    "encoder",
    "duration",
    "number_of_frames",
    "number_of_bytes",
    "bps",
    "_statistics_tags",
    "_statistics_writing_app",
    "_statistics_writing_date_utc",
];

/// The FFmpeg muxer for `path`'s extension.
pub(crate) fn muxer_for(path: &Path) -> Result<(String, *const ffmpeg::ffi::AVOutputFormat)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unknown = || {
        anyhow!(
            "cannot tell the video format of {} from its name: use .mp4, .webm, .mkv, .mov or \
             .avi, a folder (ending in /) for PNG frames, or - for yuv4mpegpipe on stdout",
            path.display()
        )
    };
    let c = CString::new(name).map_err(|_| unknown())?;
    // SAFETY: a valid C string; the result is a static muxer or null.
    let fmt =
        unsafe { ffmpeg::ffi::av_guess_format(std::ptr::null(), c.as_ptr(), std::ptr::null()) };
    if fmt.is_null() {
        return Err(unknown());
    }
    // SAFETY: muxer names are static C strings.
    let muxer = unsafe { CStr::from_ptr((*fmt).name) }
        .to_string_lossy()
        .into_owned();
    if matches!(muxer.as_str(), "image2" | "image2pipe" | "apng" | "webp") {
        bail!(
            "{} is a still-image name: give a video name (.mp4, .webm, .mkv, ...) or a folder \
             ending in / for numbered PNG frames",
            path.display()
        );
    }
    Ok((muxer, fmt))
}

/// Whether the muxer can store `id`: `Some(true/false)`, or `None` when it
/// does not say (then copying is tried).
fn container_takes(fmt: *const ffmpeg::ffi::AVOutputFormat, id: codec::Id) -> Option<bool> {
    // SAFETY: a static muxer; any codec id is accepted.
    let r = unsafe {
        ffmpeg::ffi::avformat_query_codec(fmt, id.into(), ffmpeg::ffi::FF_COMPLIANCE_NORMAL)
    };
    match r {
        1 => Some(true),
        0 => Some(false),
        _ => None,
    }
}

/// Codecs FFmpeg's muxer accepts in a container but players do not
/// (Vorbis in MP4 is an FFmpeg extension): re-encoded rather than copied,
/// so the output plays everywhere the container does.
fn nonstandard_in(muxer: &str, id: codec::Id) -> bool {
    matches!(muxer, "mp4" | "mov" | "ipod" | "3gp") && matches!(id, codec::Id::VORBIS)
}

/// Whether the encoder has a private option `name` (`crf`, `preset`...).
fn has_option(codec: Codec, name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `priv_class` is a static AVClass (or null); searching a
    // class through a pointer to its pointer is the documented
    // AV_OPT_SEARCH_FAKE_OBJ idiom.
    unsafe {
        let class = (*codec.as_ptr()).priv_class;
        if class.is_null() {
            return false;
        }
        let obj = &class as *const *const ffmpeg::ffi::AVClass as *mut std::ffi::c_void;
        !ffmpeg::ffi::av_opt_find(
            obj,
            c.as_ptr(),
            std::ptr::null(),
            0,
            ffmpeg::ffi::AV_OPT_SEARCH_FAKE_OBJ,
        )
        .is_null()
    }
}

/// The encoder `--codec` names, or the container's default.
pub(crate) fn choose_video_encoder(
    muxer: &str,
    fmt: *const ffmpeg::ffi::AVOutputFormat,
    requested: Option<&str>,
) -> Result<Codec> {
    if let Some(name) = requested {
        let codec = encoder::find_by_name(name)
            .ok_or_else(|| anyhow!("--codec {name}: this FFmpeg build has no encoder of that name (see `ffmpeg -encoders`)"))?;
        if codec.medium() != media::Type::Video {
            bail!("--codec {name} is not a video encoder");
        }
        if container_takes(fmt, codec.id()) == Some(false) {
            bail!("--codec {name}: the {muxer} container cannot hold {} video; choose another codec or extension", codec.id().name());
        }
        return Ok(codec);
    }
    let preferred = match muxer {
        "mp4" | "mov" | "matroska" | "avi" | "ipod" | "3gp" | "flv" | "mpegts" => "libx264",
        "webm" => "libvpx-vp9",
        _ => "",
    };
    if let Some(c) = encoder::find_by_name(preferred) {
        return Ok(c);
    }
    // SAFETY: a static muxer.
    let id: codec::Id = unsafe { (*fmt).video_codec }.into();
    encoder::find(id).ok_or_else(|| {
        anyhow!(
            "this FFmpeg build has no encoder for {} video, the default of {muxer}; install one or pass --codec",
            id.name()
        )
    })
}

/// Maps an x264 preset name to libvpx/libaom `cpu-used` (higher is faster).
fn cpu_used_for(preset: &str, max: i32) -> Option<i32> {
    let v = match preset {
        "ultrafast" => 8,
        "superfast" => 7,
        "veryfast" => 6,
        "faster" => 5,
        "fast" => 4,
        "medium" => 3,
        "slow" => 2,
        "slower" => 1,
        "veryslow" | "placebo" => 0,
        n => n.parse().ok()?,
    };
    Some(v.min(max))
}

/// Encoder options for `--crf` and `--preset`, with sane defaults for
/// encoders whose own defaults are poor (libvpx's is a low fixed bitrate).
/// Options the encoder does not have are reported as notes and skipped.
fn encoder_options(
    codec: Codec,
    opts: &EncodeOptions,
    notes: &mut Vec<String>,
) -> (Dictionary<'static>, Option<usize>) {
    let name = codec.name().to_string();
    let mut dict = Dictionary::new();
    let mut bit_rate = None;
    let crf = opts.crf;
    match name.as_str() {
        "libvpx-vp9" | "libvpx" => {
            let vp9 = name == "libvpx-vp9";
            // Constant quality needs a zero target bitrate on VP9; VP8 uses
            // the bitrate as a ceiling.
            dict.set(
                "crf",
                &format!("{}", crf.unwrap_or(if vp9 { 31.0 } else { 10.0 })),
            );
            bit_rate = Some(if vp9 { 0 } else { 8_000_000 });
            // Realtime mode, cpu-used 6: libvpx's "good" modes run at a
            // third of the speed and would hold back the pipeline.
            let preset = opts.preset.as_deref().unwrap_or("veryfast");
            match cpu_used_for(preset, 8) {
                Some(c) if c >= 6 => {
                    dict.set("deadline", "realtime");
                    dict.set("cpu-used", &c.to_string());
                }
                Some(c) => {
                    dict.set("deadline", "good");
                    dict.set("cpu-used", &c.to_string());
                }
                None => notes.push(format!(
                    "--preset {preset}: not a preset name or number for {name}; using its default"
                )),
            }
            if vp9 {
                dict.set("row-mt", "1");
            }
        }
        "libaom-av1" => {
            dict.set("crf", &format!("{}", crf.unwrap_or(30.0)));
            bit_rate = Some(0);
            let preset = opts.preset.as_deref().unwrap_or("veryfast");
            match cpu_used_for(preset, 8) {
                Some(c) => dict.set("cpu-used", &c.to_string()),
                None => notes.push(format!(
                    "--preset {preset}: not a preset name or number for {name}"
                )),
            }
            dict.set("row-mt", "1");
        }
        "libsvtav1" => {
            dict.set("crf", &format!("{}", crf.unwrap_or(35.0)));
            let preset = opts.preset.as_deref().unwrap_or("veryfast");
            let p = match preset {
                "ultrafast" => Some(12),
                "superfast" => Some(11),
                "veryfast" => Some(10),
                "faster" => Some(9),
                "fast" => Some(8),
                "medium" => Some(7),
                "slow" => Some(5),
                "slower" => Some(3),
                "veryslow" | "placebo" => Some(1),
                n => n.parse::<i32>().ok(),
            };
            match p {
                Some(p) => dict.set("preset", &p.to_string()),
                None => notes.push(format!(
                    "--preset {preset}: not a preset name or number for {name}"
                )),
            }
        }
        _ => {
            if let Some(c) = crf {
                if has_option(codec, "crf") {
                    dict.set("crf", &format!("{c}"));
                } else {
                    notes.push(format!("--crf is not an option of {name}: ignored"));
                }
            }
            // x264's own default (medium) costs about 40 ms a 640x360 frame
            // on two cores, more than a style network on a GPU: veryfast
            // keeps the encoder off the critical path, for files ~20%
            // larger at the same CRF (`--preset medium` or slower to trade
            // back).
            let default =
                matches!(name.as_str(), "libx264" | "libx264rgb" | "libx265").then_some("veryfast");
            if let Some(p) = opts.preset.as_deref().or(default) {
                if has_option(codec, "preset") {
                    dict.set("preset", p);
                } else {
                    notes.push(format!("--preset is not an option of {name}: ignored"));
                }
            }
        }
    }
    (dict, bit_rate)
}

/// What both video outputs (a converted file, a live recording) ask of
/// their encoder.
pub(crate) struct VideoStreamSpec<'a> {
    pub width: u32,
    pub height: u32,
    pub pixel: Pixel,
    pub time_base: Rational,
    pub frame_rate: Option<Rational>,
    /// `--crf` and `--preset` (see [`encoder_options`] for the defaults).
    pub encode: &'a EncodeOptions,
}

/// Sets up `codec` for `spec` (`configure` adds the caller's settings:
/// colour, pixel aspect), opens it with the options for `--crf` and
/// `--preset` (notes for those the encoder lacks), and adds its stream to
/// `octx` (writing `target`): the open encoder and the stream's index.
pub(crate) fn open_video_stream(
    octx: &mut ffmpeg::format::context::Output,
    target: &str,
    codec: Codec,
    spec: &VideoStreamSpec<'_>,
    configure: impl FnOnce(&mut encoder::video::Video),
    notes: &mut Vec<String>,
) -> Result<(encoder::video::Encoder, usize)> {
    let global_header = octx
        .format()
        .flags()
        .contains(ffmpeg::format::Flags::GLOBAL_HEADER);
    let mut ctx = codec::context::Context::new_with_codec(codec);
    ctx.set_threading(ffmpeg::threading::Config::kind(
        ffmpeg::threading::Type::Frame,
    ));
    let mut enc = ctx.encoder().video().map_err(|e| {
        anyhow!(
            "cannot set up the {} encoder: {}",
            codec.name(),
            ff_error(&e)
        )
    })?;
    let (w, h) = (spec.width, spec.height);
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(spec.pixel);
    enc.set_time_base(spec.time_base);
    enc.set_frame_rate(spec.frame_rate);
    if global_header {
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    configure(&mut enc);
    let (dict, bit_rate) = encoder_options(codec, spec.encode, notes);
    if let Some(b) = bit_rate {
        enc.set_bit_rate(b);
    }
    let encoder = enc.open_with(dict).map_err(|e| {
        anyhow!(
            "cannot open the {} encoder for {w}x{h} {} (check --codec, --crf and --preset): {}",
            codec.name(),
            spec.pixel.descriptor().map(|d| d.name()).unwrap_or("?"),
            ff_error(&e)
        )
    })?;
    let mut ost = octx
        .add_stream(codec)
        .map_err(|e| anyhow!("cannot write {target}: {}", ff_error(&e)))?;
    ost.set_parameters(&encoder);
    ost.set_time_base(spec.time_base);
    if let Some(r) = spec.frame_rate {
        ost.set_avg_frame_rate(r);
        ost.set_rate(r);
    }
    Ok((encoder, ost.index()))
}

/// The pixel format to encode in: yuv420p where the encoder takes it (what
/// every player decodes), else the encoder's first.
pub(crate) fn choose_pixel_format(codec: Codec) -> Pixel {
    let formats: Vec<Pixel> = codec
        .video()
        .ok()
        .and_then(|v| v.formats().map(|f| f.collect()))
        .unwrap_or_default();
    if formats.is_empty() || formats.contains(&Pixel::YUV420P) {
        Pixel::YUV420P
    } else {
        formats[0]
    }
}

/// Whether a pixel format subsamples chroma (so its frames need even sizes).
fn subsampled(format: Pixel) -> bool {
    format
        .descriptor()
        .map(|d| d.log2_chroma_w() > 0 || d.log2_chroma_h() > 0)
        .unwrap_or(false)
}

/// A colour matrix swscale can produce, else unspecified (BT.601 inside
/// swscale, which is what players assume for untagged video).
fn output_space(space: ffmpeg::color::Space) -> ffmpeg::color::Space {
    use ffmpeg::color::Space as S;
    match space {
        S::BT709 | S::BT470BG | S::SMPTE170M | S::SMPTE240M | S::FCC | S::BT2020NCL => space,
        _ => S::Unspecified,
    }
}

/// Copies stream-level metadata, leaving out `skip` keys (any case).
fn copy_metadata(from: ffmpeg::DictionaryRef<'_>, skip: &[&str]) -> Dictionary<'static> {
    let mut d = Dictionary::new();
    for (k, v) in from.iter() {
        if !skip.contains(&k.to_ascii_lowercase().as_str()) {
            d.set(k, v);
        }
    }
    d
}

impl ContainerSink {
    /// Sets up the output: the video encoder, the other streams (copied or
    /// re-encoded, or left out with a note), metadata, and the header.
    pub fn open(
        target: &Path,
        source: &VideoSource,
        geometry: &SinkGeometry,
        opts: &EncodeOptions,
    ) -> Result<SinkPlan> {
        let t = target.display().to_string();
        let (muxer, fmt) = muxer_for(target)?;
        let temp = TempOutput::new(temp_path_beside(target));
        let mut octx = ffmpeg::format::output_as(&temp.path, &muxer)
            .map_err(|e| anyhow!("cannot write {t}: {}", ff_error(&e)))?;
        let global_header = octx
            .format()
            .flags()
            .contains(ffmpeg::format::Flags::GLOBAL_HEADER);
        let info = source.info().clone();
        let input = source.input();
        let mut notes = Vec::new();

        // The painted video.
        let codec = choose_video_encoder(&muxer, fmt, opts.codec.as_deref())?;
        let pixel = choose_pixel_format(codec);
        let (ow, oh) = (geometry.out_width, geometry.out_height);
        let pad = subsampled(pixel) && (ow % 2 == 1 || oh % 2 == 1);
        if pad {
            notes.push(pad_note(ow, oh));
        }
        let (ew, eh) = if pad {
            (ow + ow % 2, oh + oh % 2)
        } else {
            (ow, oh)
        };
        let color = Colorimetry {
            space: output_space(info.color.space),
            range: ffmpeg::color::Range::MPEG,
            primaries: info.color.primaries,
            transfer: info.color.transfer,
        };
        let spec = VideoStreamSpec {
            width: ew,
            height: eh,
            pixel,
            time_base: info.time_base,
            frame_rate: info.frame_rate,
            encode: opts,
        };
        let sar = info.sample_aspect;
        let (encoder, video_ost) = open_video_stream(
            &mut octx,
            &t,
            codec,
            &spec,
            |enc| {
                if sar.numerator() > 0 && sar.denominator() > 0 {
                    enc.set_aspect_ratio(sar);
                }
                enc.set_colorspace(color.space);
                enc.set_color_range(color.range);
                enc.set_color_primaries(color.primaries);
                enc.set_color_transfer_characteristic(color.transfer);
            },
            &mut notes,
        )?;
        {
            let mut ost = octx
                .stream_mut(video_ost)
                .ok_or_else(|| anyhow!("cannot write {t}: the video stream vanished"))?;
            if let Some(ist) = input.stream(info.stream) {
                ost.set_metadata(copy_metadata(ist.metadata(), STALE_VIDEO_TAGS));
            }
            // SAFETY: the stream pointer is valid while `octx` lives; side
            // data is allocated by FFmpeg and owned by the stream.
            unsafe {
                let st = ost.as_mut_ptr();
                if sar.numerator() > 0 && sar.denominator() > 0 {
                    (*st).sample_aspect_ratio = sar.into();
                }
                if let Some(ist) = input.stream(info.stream) {
                    (*st).disposition = (*ist.as_ptr()).disposition;
                }
                if let Some(m) = &info.display_matrix {
                    let p = ffmpeg::ffi::av_stream_new_side_data(
                        st,
                        ffmpeg::ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
                        m.len(),
                    );
                    if !p.is_null() {
                        std::ptr::copy_nonoverlapping(m.as_ptr(), p, m.len());
                    }
                }
            }
        }

        // The other streams, in input order.
        let n = input.nb_streams() as usize;
        let mut pass_streams = vec![false; n];
        let mut plan: Vec<Option<StreamOut>> = (0..n).map(|_| None).collect();
        let (mut copied, mut reencoded) = (0, 0);
        for ist in input.streams() {
            let i = ist.index();
            if i == info.stream {
                continue;
            }
            let params = ist.parameters();
            let medium = params.medium();
            let id = params.id();
            let what = format!(
                "stream {i} ({} {})",
                format!("{medium:?}").to_lowercase(),
                id.name()
            );
            // SAFETY: a valid stream of the input.
            let attached_pic = unsafe { (*ist.as_ptr()).disposition }
                & ffmpeg::ffi::AV_DISPOSITION_ATTACHED_PIC
                != 0;
            let copyable = match medium {
                media::Type::Audio | media::Type::Subtitle => !attached_pic,
                _ => false,
            };
            if !copyable {
                notes.push(format!(
                    "{what} left out: only audio and subtitles are carried over"
                ));
                continue;
            }
            if container_takes(fmt, id) != Some(false) && !nonstandard_in(&muxer, id) {
                let mut ost = octx
                    .add_stream(encoder::find(codec::Id::None))
                    .map_err(|e| anyhow!("cannot write {t}: {}", ff_error(&e)))?;
                ost.set_parameters(params);
                ost.set_time_base(ist.time_base());
                ost.set_metadata(copy_metadata(ist.metadata(), &[]));
                // SAFETY: valid stream pointers. A codec tag is specific to
                // the input container; zero lets the muxer choose its own.
                unsafe {
                    (*(*ost.as_mut_ptr()).codecpar).codec_tag = 0;
                    (*ost.as_mut_ptr()).disposition = (*ist.as_ptr()).disposition;
                }
                plan[i] = Some(StreamOut::Copy {
                    ost: ost.index(),
                    in_tb: ist.time_base(),
                    ost_tb: ist.time_base(),
                });
                pass_streams[i] = true;
                if medium == media::Type::Audio {
                    copied += 1;
                }
            } else if medium == media::Type::Audio {
                match AudioTranscoder::new(&ist, &mut octx, &muxer, global_header) {
                    Ok(tr) => {
                        notes.push(format!(
                            "{what}: {muxer} does not take {}, re-encoded as {}",
                            id.name(),
                            tr.codec_name()
                        ));
                        plan[i] = Some(StreamOut::Audio(Box::new(tr)));
                        pass_streams[i] = true;
                        reencoded += 1;
                    }
                    Err(e) => notes.push(format!("{what} left out: {e:#}")),
                }
            } else {
                notes.push(format!(
                    "{what} left out: {muxer} cannot hold {} subtitles",
                    id.name()
                ));
            }
        }
        octx.set_metadata(copy_metadata(input.metadata(), &["encoder"]));

        octx.write_header()
            .map_err(|e| anyhow!("cannot write {t}: {}", ff_error(&e)))?;
        // The muxer may have chosen other time bases (WebM uses 1/1000).
        let tb_of = |o: &ffmpeg::format::context::Output, i: usize| {
            o.stream(i)
                .map(|s| s.time_base())
                .unwrap_or(Rational(1, 1000))
        };
        let video_ost_tb = tb_of(&octx, video_ost);
        for p in plan.iter_mut().flatten() {
            match p {
                StreamOut::Copy { ost, ost_tb, .. } => *ost_tb = tb_of(&octx, *ost),
                StreamOut::Audio(tr) => tr.ost_tb = tb_of(&octx, tr.ost),
            }
        }

        let turns_back = (4 - geometry.turns % 4) % 4;
        // Size of the painted frame once turned back to the stored orientation.
        let (sw, sh) = if turns_back % 2 == 1 {
            (geometry.height, geometry.width)
        } else {
            (geometry.width, geometry.height)
        };
        let resize = ((sw, sh) != (ow, oh)).then(|| {
            (
                Scaler::new(Pixel::RGB24, ow, oh, Colorimetry::default()),
                ow,
                oh,
            )
        });
        let video = VideoOut {
            encoder,
            ost: video_ost,
            enc_tb: info.time_base,
            ost_tb: video_ost_tb,
            turns_back,
            resize,
            pad,
            to_yuv: Scaler::new(pixel, ew, eh, color),
            color,
            durations: BTreeMap::new(),
        };
        Ok(SinkPlan {
            sink: Box::new(ContainerSink {
                octx,
                video,
                streams: plan,
                dropped: 0,
                temp,
                target: target.to_path_buf(),
            }),
            pass_streams,
            notes,
            audio_copied: copied,
            audio_reencoded: reencoded,
        })
    }

    /// Writes every packet the video encoder has ready.
    fn drain_video(&mut self) -> Result<()> {
        let v = &mut self.video;
        let mut packet = Packet::empty();
        while v.encoder.receive_packet(&mut packet).is_ok() {
            if let Some(d) = packet.pts().and_then(|pts| v.durations.remove(&pts)) {
                packet.set_duration(d);
            }
            packet.set_stream(v.ost);
            packet.rescale_ts(v.enc_tb, v.ost_tb);
            packet
                .write_interleaved(&mut self.octx)
                .map_err(|e| anyhow!("cannot write {}: {}", self.target.display(), ff_error(&e)))?;
        }
        Ok(())
    }
}

/// Durations remembered at most, in case an encoder changes timestamps
/// (then the muxer derives durations itself); bounds memory.
const MAX_PENDING_DURATIONS: usize = 1024;

impl FrameSink for ContainerSink {
    fn write_frame(&mut self, frame: &DecodedFrame) -> Result<()> {
        let v = &mut self.video;
        let mut rgb: RgbFrame = frame.image.to_rgb().rotate_cw(v.turns_back);
        if let Some((scaler, w, h)) = v.resize.as_mut() {
            if (rgb.width, rgb.height) != (*w, *h) {
                let scaled = scaler.run(&rgb.to_ffmpeg(), Colorimetry::default())?;
                rgb = RgbFrame::from_ffmpeg(&scaled)?;
            }
        }
        if v.pad {
            rgb = rgb.pad_to_even();
        }
        let mut yuv = v.to_yuv.run(&rgb.to_ffmpeg(), Colorimetry::default())?;
        yuv.set_pts(Some(frame.pts));
        yuv.set_kind(picture::Type::None);
        yuv.set_color_space(v.color.space);
        yuv.set_color_range(v.color.range);
        yuv.set_color_primaries(v.color.primaries);
        yuv.set_color_transfer_characteristic(v.color.transfer);
        v.durations.insert(frame.pts, frame.duration);
        while v.durations.len() > MAX_PENDING_DURATIONS {
            v.durations.pop_first();
        }
        v.encoder.send_frame(&yuv).map_err(|e| {
            anyhow!(
                "the {} encoder failed: {}",
                self.target.display(),
                ff_error(&e)
            )
        })?;
        self.drain_video()
    }

    fn write_packet(&mut self, stream: usize, mut packet: Packet) -> Result<()> {
        let result = match self.streams.get_mut(stream) {
            Some(Some(StreamOut::Copy { ost, in_tb, ost_tb })) => {
                packet.rescale_ts(*in_tb, *ost_tb);
                packet.set_stream(*ost);
                packet.set_position(-1);
                packet
                    .write_interleaved(&mut self.octx)
                    .map_err(|e| ff_error(&e))
            }
            Some(Some(StreamOut::Audio(tr))) => tr.push(&packet, &mut self.octx),
            _ => Ok(()),
        };
        // A packet the muxer refuses (a timestamp out of order in a damaged
        // input) is counted and skipped, like damaged video packets.
        if result.is_err() {
            self.dropped += 1;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Finished> {
        let t = self.target.display().to_string();
        self.video
            .encoder
            .send_eof()
            .map_err(|e| anyhow!("cannot finish {t}: {}", ff_error(&e)))?;
        self.drain_video()?;
        for s in self.streams.iter_mut().flatten() {
            if let StreamOut::Audio(tr) = s {
                if tr.finish(&mut self.octx).is_err() {
                    self.dropped += 1;
                }
            }
        }
        self.octx
            .write_trailer()
            .map_err(|e| anyhow!("cannot finish {t}: {}", ff_error(&e)))?;
        let ContainerSink {
            octx,
            temp,
            dropped,
            target,
            ..
        } = *self;
        drop(octx); // closes the file
        File::open(&temp.path)
            .and_then(|f| f.sync_all())
            .map_err(|e| anyhow!("cannot write {t}: {}", one_line(&e)))?;
        let bytes = std::fs::metadata(&temp.path).map(|m| m.len()).unwrap_or(0);
        temp.persist(&target)?;
        Ok(Finished {
            bytes,
            dropped_packets: dropped,
        })
    }
}
