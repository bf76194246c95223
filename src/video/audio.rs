//! Audio re-encoding, for the one case copying cannot do: the output
//! container does not take the input's audio codec (Vorbis from a WebM into
//! an MP4, AAC from an MP4 into a WebM).
//!
//! Decode → `abuffer`/`abuffersink` filter graph (which converts sample
//! format, rate and layout and cuts the fixed-size frames AAC and Opus
//! need) → encode. Timestamps follow the input's, so the audio stays in
//! sync with the painted video.

use anyhow::{anyhow, Result};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::codec;
use ffmpeg_next::Codec;
use ffmpeg_next::{encoder, filter, frame, ChannelLayout, Packet, Rational, Rescale};

use super::ff_error;

/// One audio stream being re-encoded.
pub struct AudioTranscoder {
    decoder: ffmpeg::decoder::Audio,
    graph: filter::Graph,
    encoder: encoder::audio::Encoder,
    enc_tb: Rational,
    codec: String,
    /// Output stream index.
    pub ost: usize,
    /// Output stream time base (known after the header is written).
    pub ost_tb: Rational,
}

/// The audio encoder a container gets: AAC for MP4/MOV, Opus for WebM,
/// else the container's default.
fn choose_audio_encoder(muxer: &str, octx: &ffmpeg::format::context::Output) -> Option<Codec> {
    let by_name = match muxer {
        "mp4" | "mov" | "ipod" | "3gp" => Some("aac"),
        "webm" | "ogg" => Some("libopus"),
        _ => None,
    };
    if let Some(c) = by_name.and_then(encoder::find_by_name) {
        return Some(c);
    }
    // SAFETY: the context's muxer is a static AVOutputFormat.
    let id: codec::Id = unsafe { (*(*octx.as_ptr()).oformat).audio_codec }.into();
    encoder::find(id)
}

impl AudioTranscoder {
    /// Adds an output stream re-encoding input stream `ist`.
    pub fn new(
        ist: &ffmpeg::Stream,
        octx: &mut ffmpeg::format::context::Output,
        muxer: &str,
        global_header: bool,
    ) -> Result<Self> {
        let codec = choose_audio_encoder(muxer, octx).ok_or_else(|| {
            anyhow!("no audio encoder for the {muxer} container in this FFmpeg build")
        })?;
        let audio_codec = codec
            .audio()
            .map_err(|e| anyhow!("{} is not an audio encoder: {}", codec.name(), ff_error(&e)))?;
        let in_tb = ist.time_base();
        let mut dctx = codec::context::Context::from_parameters(ist.parameters())
            .map_err(|e| anyhow!("cannot decode it: {}", ff_error(&e)))?;
        // SAFETY: a valid, not yet opened codec context.
        unsafe {
            (*dctx.as_mut_ptr()).pkt_timebase = in_tb.into();
        }
        let decoder = dctx
            .decoder()
            .audio()
            .map_err(|e| anyhow!("cannot decode it: {}", ff_error(&e)))?;

        let channels = decoder.channels().max(1) as i32;
        let in_layout = if decoder.channel_layout().bits() == 0 {
            ChannelLayout::default(channels)
        } else {
            decoder.channel_layout()
        };
        let layout = audio_codec
            .channel_layouts()
            .map(|cls| cls.best(channels))
            .unwrap_or(in_layout);
        let rate = {
            let rates: Vec<i32> = audio_codec.rates().map(|r| r.collect()).unwrap_or_default();
            let want = decoder.rate() as i32;
            if rates.is_empty() || rates.contains(&want) {
                want
            } else if rates.contains(&48000) {
                48000
            } else {
                rates[0]
            }
        };
        let sample_format = audio_codec.formats().and_then(|mut f| f.next()).unwrap_or(
            ffmpeg::format::Sample::F32(ffmpeg::format::sample::Type::Planar),
        );

        let mut ectx = codec::context::Context::new_with_codec(codec);
        ectx.set_threading(ffmpeg::threading::Config::count(0));
        let mut enc = ectx
            .encoder()
            .audio()
            .map_err(|e| anyhow!("cannot set up {}: {}", codec.name(), ff_error(&e)))?;
        enc.set_rate(rate);
        enc.set_channel_layout(layout);
        enc.set_channels(layout.channels());
        enc.set_format(sample_format);
        // 64 kb/s a channel: transparent for AAC and Opus on most material.
        enc.set_bit_rate(64_000 * layout.channels().max(1) as usize);
        let enc_tb = Rational(1, rate);
        enc.set_time_base(enc_tb);
        if global_header {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let encoder = enc
            .open_as(codec)
            .map_err(|e| anyhow!("cannot open {}: {}", codec.name(), ff_error(&e)))?;
        let ost = {
            let mut ost = octx
                .add_stream(codec)
                .map_err(|e| anyhow!("cannot add a stream: {}", ff_error(&e)))?;
            ost.set_parameters(&encoder);
            ost.set_time_base(enc_tb);
            let mut meta = ffmpeg::Dictionary::new();
            for (k, v) in ist.metadata().iter() {
                if !k.eq_ignore_ascii_case("encoder") {
                    meta.set(k, v);
                }
            }
            ost.set_metadata(meta);
            // SAFETY: valid stream pointers.
            unsafe {
                (*ost.as_mut_ptr()).disposition = (*ist.as_ptr()).disposition;
            }
            ost.index()
        };

        let mut graph = filter::Graph::new();
        let args = format!(
            "time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
            in_tb.numerator(),
            in_tb.denominator(),
            decoder.rate(),
            decoder.format().name(),
            in_layout.bits()
        );
        let abuffer = filter::find("abuffer").ok_or_else(|| anyhow!("FFmpeg lacks abuffer"))?;
        let abuffersink =
            filter::find("abuffersink").ok_or_else(|| anyhow!("FFmpeg lacks abuffersink"))?;
        let graph_err = |e: ffmpeg::Error| anyhow!("cannot convert its samples: {}", ff_error(&e));
        graph.add(&abuffer, "in", &args).map_err(graph_err)?;
        graph.add(&abuffersink, "out", "").map_err(graph_err)?;
        {
            let mut out = graph
                .get("out")
                .ok_or_else(|| anyhow!("internal: no sink"))?;
            out.set_sample_format(sample_format);
            out.set_channel_layout(layout);
            out.set_sample_rate(rate as u32);
        }
        graph
            .output("in", 0)
            .and_then(|p| p.input("out", 0))
            .and_then(|p| p.parse("anull"))
            .map_err(graph_err)?;
        graph.validate().map_err(graph_err)?;
        if !codec
            .capabilities()
            .contains(codec::capabilities::Capabilities::VARIABLE_FRAME_SIZE)
        {
            if let Some(mut out) = graph.get("out") {
                out.sink().set_frame_size(encoder.frame_size());
            }
        }
        Ok(Self {
            decoder,
            graph,
            encoder,
            enc_tb,
            codec: codec.name().to_string(),
            ost,
            ost_tb: enc_tb,
        })
    }

    /// The encoder's name (for the notes).
    pub fn codec_name(&self) -> &str {
        &self.codec
    }

    /// Decodes a packet and writes whatever encoded audio is ready.
    /// Errors are single damaged packets; the caller counts them.
    pub fn push(
        &mut self,
        packet: &Packet,
        octx: &mut ffmpeg::format::context::Output,
    ) -> Result<(), String> {
        let sent = self.decoder.send_packet(packet).map_err(|e| ff_error(&e));
        self.pull_decoded(octx)?;
        sent
    }

    /// Flushes decoder, filter and encoder at the end of the input.
    pub fn finish(&mut self, octx: &mut ffmpeg::format::context::Output) -> Result<(), String> {
        let _ = self.decoder.send_eof();
        self.pull_decoded(octx)?;
        if let Some(mut src) = self.graph.get("in") {
            let _ = src.source().flush();
        }
        self.pull_filtered(octx)?;
        let _ = self.encoder.send_eof();
        self.pull_encoded(octx)
    }

    fn pull_decoded(&mut self, octx: &mut ffmpeg::format::context::Output) -> Result<(), String> {
        let mut decoded = frame::Audio::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let ts = decoded.timestamp();
            decoded.set_pts(ts);
            if let Some(mut src) = self.graph.get("in") {
                src.source().add(&decoded).map_err(|e| ff_error(&e))?;
            }
            self.pull_filtered(octx)?;
        }
        Ok(())
    }

    fn pull_filtered(&mut self, octx: &mut ffmpeg::format::context::Output) -> Result<(), String> {
        let mut filtered = frame::Audio::empty();
        loop {
            let Some(mut sink) = self.graph.get("out") else {
                return Ok(());
            };
            let sink_tb = sink.sink().time_base();
            if sink.sink().frame(&mut filtered).is_err() {
                return Ok(());
            }
            let pts = filtered.pts().map(|p| p.rescale(sink_tb, self.enc_tb));
            filtered.set_pts(pts);
            self.encoder
                .send_frame(&filtered)
                .map_err(|e| ff_error(&e))?;
            self.pull_encoded(octx)?;
        }
    }

    fn pull_encoded(&mut self, octx: &mut ffmpeg::format::context::Output) -> Result<(), String> {
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(self.ost);
            packet.rescale_ts(self.enc_tb, self.ost_tb);
            packet.write_interleaved(octx).map_err(|e| ff_error(&e))?;
        }
        Ok(())
    }
}
