//! Canonical keys: one byte encoding for the keys of every language.
//!
//! The bindings turn their language's keys into a [`Key`] with a [`KeyWriter`], and the shared
//! mode puts the same bytes on the wire, so Python and Node must produce identical bytes for keys
//! their users consider equal. The writer normalises as Python's `==` does: `True` is `1`, an
//! integral float is the int it equals (`1.0 == 1`, `1e20 == 10**20`), `-0.0` is `0`, and every
//! NaN encodes the same. Sequences (Python tuples and lists, JS arrays) are one kind, so
//! `("user", 42)` in Python is `['user', 42]` in Node.
//!
//! Encoding (stable, part of the shared-mode wire format): one tag byte, then
//! * `0x00` none;
//! * `0x01` int in the i64 range: 8 bytes, big-endian two's complement;
//! * `0x02` int outside it: sign byte (`0` or `1`), LEB128 length, big-endian magnitude;
//! * `0x03` float (non-integral or infinite): 8 bytes, big-endian IEEE 754 bits;
//! * `0x04` str: LEB128 length, UTF-8 bytes;
//! * `0x05` bytes: LEB128 length, bytes;
//! * `0x06` list: LEB128 item count, then the items.

use std::fmt;

use compact_bytes::CompactBytes;
use sha2::{Digest, Sha256};
use smallvec::SmallVec;

const NONE: u8 = 0x00;
const INT: u8 = 0x01;
const BIG_INT: u8 = 0x02;
const FLOAT: u8 = 0x03;
const STR: u8 = 0x04;
const BYTES: u8 = 0x05;
const LIST: u8 = 0x06;

/// A key in its canonical byte encoding; keys of up to 23 bytes (ints, short strings, a
/// decorated function's id with one int argument) need no allocation, in 24 bytes.
///
/// ```
/// use coopcache::{Key, KeyWriter};
///
/// let mut w = KeyWriter::new();
/// w.list(2).str("user").int(42);
/// assert_eq!(w.finish(), Key::from(("user", 42)));
/// assert_eq!(Key::from(1.0), Key::from(1));
/// assert_eq!(Key::from(true), Key::from(1));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(CompactBytes);

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Keys order as their bytes do.
impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Key {
    /// The canonical encoding, as the shared tier stores it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Parses a canonical encoding (for example one read back from the shared tier).
    pub fn from_bytes(bytes: &[u8]) -> Result<Key, KeyError> {
        let rest = KeyValue::parse(bytes)?.1;
        if !rest.is_empty() {
            return Err(KeyError("trailing bytes after the key"));
        }
        Ok(Key(CompactBytes::new(bytes)))
    }

    /// The key as a tree of values, for display and for bindings that hand keys back.
    pub fn decode(&self) -> KeyValue {
        KeyValue::parse(&self.0).expect("a Key always holds a valid encoding").0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.decode(), f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.decode(), f)
    }
}

/// A malformed canonical key encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(&'static str);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid coopcache key encoding: {}", self.0)
    }
}

impl std::error::Error for KeyError {}

/// A key weighs its encoding (on the heap only when it is longer than 23 bytes).
impl crate::weigh::Weigh for Key {
    fn heap_bytes(&self) -> usize {
        if self.0.spilled() { self.0.capacity() } else { 0 }
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    /// A key's bytes hash and compare as the key does, so a cache can be searched with the
    /// bytes of a [`KeyWriter`] before (or without) allocating a `Key`.
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// Builds a [`Key`] item by item, normalising as it goes.
///
/// A list is announced with its length, then its items follow (nested lists likewise). The
/// bindings walk their language's key once and call these methods; no tree is built. Keys of up
/// to 64 bytes are written on the stack, so a hit looked up with [`KeyWriter::as_bytes`] (see
/// [`crate::Cache::hit_with`]) allocates nothing.
#[derive(Default, Clone)]
pub struct KeyWriter(SmallVec<[u8; 64]>);

impl KeyWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// `None` / `null`.
    #[inline]
    pub fn none(&mut self) -> &mut Self {
        self.0.push(NONE);
        self
    }

    /// An int (also a bool: `true` is `1`).
    #[inline]
    pub fn int(&mut self, v: i64) -> &mut Self {
        // One copy of the tag and the bytes together (a binding's hit writes an int key
        // on every call).
        let mut item = [INT; 9];
        item[1..].copy_from_slice(&v.to_be_bytes());
        self.put(&item);
        self
    }

    /// An int of any size, given as sign and big-endian magnitude (leading zeros allowed).
    /// Values in the i64 range encode exactly as [`KeyWriter::int`] does.
    pub fn big_int(&mut self, negative: bool, magnitude_be: &[u8]) -> &mut Self {
        let start = magnitude_be.iter().position(|&b| b != 0);
        let mag = start.map_or(&[][..], |s| &magnitude_be[s..]);
        if mag.len() <= 8 {
            let mut buf = [0u8; 8];
            buf[8 - mag.len()..].copy_from_slice(mag);
            let m = u64::from_be_bytes(buf);
            if !negative && m <= i64::MAX as u64 {
                return self.int(m as i64);
            }
            if negative && m <= 1 << 63 {
                return self.int((m as i64).wrapping_neg());
            }
        }
        self.0.push(BIG_INT);
        self.0.push(negative as u8);
        self.len(mag.len());
        self.put(mag);
        self
    }

    /// A float; an integral one is the int it equals, every NaN is one NaN.
    pub fn float(&mut self, v: f64) -> &mut Self {
        if v.is_nan() {
            self.0.push(FLOAT);
            self.put(&f64::NAN.to_bits().to_be_bytes());
            return self;
        }
        if v.is_finite() && v.fract() == 0.0 {
            if v >= -(2f64.powi(63)) && v < 2f64.powi(63) {
                return self.int(v as i64);
            }
            // |v| >= 2^63: an exact integer mantissa * 2^exp with exp > 0.
            let bits = v.to_bits();
            let exp = ((bits >> 52) & 0x7ff) as i32 - 1075;
            let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
            let mut mag = [0u8; 136];
            let shift = exp as usize;
            // Place mantissa << shift into the big-endian buffer.
            let wide = (mantissa as u128) << (shift % 8);
            let byte_off = shift / 8;
            for i in 0..8 {
                let b = (wide >> (8 * i)) as u8;
                let pos = mag.len() - 1 - byte_off - i;
                mag[pos] = b;
            }
            return self.big_int(v < 0.0, &mag);
        }
        self.0.push(FLOAT);
        self.put(&v.to_bits().to_be_bytes());
        self
    }

    /// A string.
    #[inline]
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.0.push(STR);
        self.len(v.len());
        self.put(v.as_bytes());
        self
    }

    /// A byte string (Python `bytes`, a Node `Buffer` or `Uint8Array`).
    #[inline]
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.push(BYTES);
        self.len(v.len());
        self.put(v);
        self
    }

    /// Starts a list (tuple, array) of `len` items; write the items next.
    #[inline]
    pub fn list(&mut self, len: usize) -> &mut Self {
        self.0.push(LIST);
        self.len(len);
        self
    }

    /// The bytes written so far: the canonical encoding once one complete value is written.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A key written before, as one item (for example inside a list).
    #[inline]
    pub fn key(&mut self, k: &Key) -> &mut Self {
        self.put(&k.0);
        self
    }

    /// What another writer wrote, as it is: a start many keys share (a list announced and
    /// its first items) can be written once and copied into each key.
    ///
    /// ```
    /// use coopcache::{Key, KeyWriter};
    ///
    /// let mut start = KeyWriter::new();
    /// start.list(2).str("user");
    /// let mut w = KeyWriter::new();
    /// w.append(&start).int(42);
    /// assert_eq!(w.finish(), Key::from(("user", 42)));
    /// ```
    #[inline]
    pub fn append(&mut self, other: &KeyWriter) -> &mut Self {
        self.put(&other.0);
        self
    }

    /// The finished key. The caller is responsible for having written one complete value
    /// (lists with as many items as announced); bindings guarantee it by construction.
    pub fn finish(self) -> Key {
        Key(CompactBytes::new(&self.0))
    }

    /// Appends `bytes`. `SmallVec::extend_from_slice` inserts at the end, calling `memmove`
    /// to shift nothing before it copies; this copies only (a hit writes its key with a few
    /// of these).
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let len = self.0.len();
        self.0.reserve(bytes.len());
        // SAFETY: `reserve` made room for `bytes.len()` more bytes after the first `len`, which
        // are written (from a slice that cannot overlap the writer's own buffer) before the
        // length covers them.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.0.as_mut_ptr().add(len), bytes.len());
            self.0.set_len(len + bytes.len());
        }
    }

    #[inline]
    fn len(&mut self, mut n: usize) {
        if n < 0x80 {
            self.0.push(n as u8);
            return;
        }
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }
}

/// A decoded key, for display and for handing keys back to a language.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    /// `None` / `null`.
    None,
    /// An int in the i64 range.
    Int(i64),
    /// An int outside the i64 range: sign and big-endian magnitude.
    BigInt {
        /// Whether the int is negative.
        negative: bool,
        /// Big-endian magnitude without leading zeros.
        magnitude: Vec<u8>,
    },
    /// A non-integral or infinite float, or NaN.
    Float(f64),
    /// A string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A sequence.
    List(Vec<KeyValue>),
}

impl KeyValue {
    fn parse(b: &[u8]) -> Result<(KeyValue, &[u8]), KeyError> {
        let (&tag, rest) = b.split_first().ok_or(KeyError("empty"))?;
        Ok(match tag {
            NONE => (KeyValue::None, rest),
            INT => {
                let (v, rest) = take(rest, 8)?;
                (KeyValue::Int(i64::from_be_bytes(v.try_into().unwrap())), rest)
            }
            BIG_INT => {
                let (sign, rest) = take(rest, 1)?;
                let (n, rest) = read_len(rest)?;
                let (m, rest) = take(rest, n)?;
                let v = KeyValue::BigInt { negative: sign[0] == 1, magnitude: m.to_vec() };
                (v, rest)
            }
            FLOAT => {
                let (v, rest) = take(rest, 8)?;
                (KeyValue::Float(f64::from_bits(u64::from_be_bytes(v.try_into().unwrap()))), rest)
            }
            STR => {
                let (n, rest) = read_len(rest)?;
                let (s, rest) = take(rest, n)?;
                let s = std::str::from_utf8(s).map_err(|_| KeyError("a str is not UTF-8"))?;
                (KeyValue::Str(s.to_owned()), rest)
            }
            BYTES => {
                let (n, rest) = read_len(rest)?;
                let (s, rest) = take(rest, n)?;
                (KeyValue::Bytes(s.to_vec()), rest)
            }
            LIST => {
                let (n, mut rest) = read_len(rest)?;
                let mut items = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    let (item, r) = KeyValue::parse(rest)?;
                    items.push(item);
                    rest = r;
                }
                (KeyValue::List(items), rest)
            }
            _ => return Err(KeyError("unknown tag")),
        })
    }
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::None => f.write_str("None"),
            KeyValue::Int(v) => write!(f, "{v}"),
            KeyValue::BigInt { negative, magnitude } => {
                f.write_str(if *negative { "-0x" } else { "0x" })?;
                magnitude.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            KeyValue::Float(v) => write!(f, "{v:?}"),
            KeyValue::Str(s) => write!(f, "{s:?}"),
            KeyValue::Bytes(b) => write!(f, "b{:?}", String::from_utf8_lossy(b)),
            KeyValue::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

fn take(b: &[u8], n: usize) -> Result<(&[u8], &[u8]), KeyError> {
    if b.len() < n {
        return Err(KeyError("truncated"));
    }
    Ok(b.split_at(n))
}

fn read_len(b: &[u8]) -> Result<(usize, &[u8]), KeyError> {
    let mut n = 0usize;
    for (i, &byte) in b.iter().enumerate().take(10) {
        n |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((n, &b[i + 1..]));
        }
    }
    Err(KeyError("bad length"))
}

/// The id that stands for a memoized function in its calls' keys: the first 8 bytes of the
/// SHA-256 of its qualified name (Python's `module.qualname`). Every process that shares a
/// cache makes the same id for the same name, as the name itself would; unlike the name, a
/// key of the id and one int argument (23 bytes) is held inline by [`Key`], with no allocation
/// per entry. Two names share an id with the odds of a 64-bit hash collision (about 1 in
/// 10^19 per pair of functions in one cache).
///
/// ```
/// assert_eq!(coopcache::function_id("app.users.profile"), coopcache::function_id("app.users.profile"));
/// assert_ne!(coopcache::function_id("app.users.profile"), coopcache::function_id("app.users.avatar"));
/// ```
pub fn function_id(qualified_name: &str) -> [u8; 8] {
    let digest = Sha256::digest(qualified_name.as_bytes());
    let mut id = [0; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

/// Writes one value of a Rust type into a key; implemented for the types keys are made of.
pub trait IntoKeyPart {
    /// Appends `self` to `w`.
    fn write_to(&self, w: &mut KeyWriter);
}

macro_rules! int_part {
    ($($t:ty),*) => {$(
        impl IntoKeyPart for $t {
            fn write_to(&self, w: &mut KeyWriter) {
                w.int(*self as i64);
            }
        }
    )*};
}
int_part!(i8, i16, i32, i64, u16, u32, bool);

impl IntoKeyPart for u64 {
    fn write_to(&self, w: &mut KeyWriter) {
        w.big_int(false, &self.to_be_bytes());
    }
}

impl IntoKeyPart for f64 {
    fn write_to(&self, w: &mut KeyWriter) {
        w.float(*self);
    }
}

impl IntoKeyPart for str {
    fn write_to(&self, w: &mut KeyWriter) {
        w.str(self);
    }
}

impl IntoKeyPart for String {
    fn write_to(&self, w: &mut KeyWriter) {
        w.str(self);
    }
}

/// Byte strings: `&[u8]` is one `bytes` item (not a list of ints).
impl IntoKeyPart for [u8] {
    fn write_to(&self, w: &mut KeyWriter) {
        w.bytes(self);
    }
}

impl IntoKeyPart for () {
    fn write_to(&self, w: &mut KeyWriter) {
        w.none();
    }
}

impl<T: IntoKeyPart + ?Sized> IntoKeyPart for &T {
    fn write_to(&self, w: &mut KeyWriter) {
        (**self).write_to(w);
    }
}

impl<T: IntoKeyPart> IntoKeyPart for Option<T> {
    fn write_to(&self, w: &mut KeyWriter) {
        match self {
            Some(v) => v.write_to(w),
            None => {
                w.none();
            }
        }
    }
}

impl<T: IntoKeyPart> IntoKeyPart for [T] {
    fn write_to(&self, w: &mut KeyWriter) {
        w.list(self.len());
        self.iter().for_each(|item| item.write_to(w));
    }
}

impl<T: IntoKeyPart> IntoKeyPart for Vec<T> {
    fn write_to(&self, w: &mut KeyWriter) {
        self.as_slice().write_to(w);
    }
}

macro_rules! tuple_part {
    ($n:expr; $($name:ident)+) => {
        impl<$($name: IntoKeyPart),+> IntoKeyPart for ($($name,)+) {
            #[allow(non_snake_case)]
            fn write_to(&self, w: &mut KeyWriter) {
                let ($($name,)+) = self;
                w.list($n);
                $($name.write_to(w);)+
            }
        }
    };
}
tuple_part!(1; A);
tuple_part!(2; A B);
tuple_part!(3; A B C);
tuple_part!(4; A B C D);
tuple_part!(5; A B C D E);

impl<T: IntoKeyPart> From<T> for Key {
    fn from(v: T) -> Key {
        let mut w = KeyWriter::new();
        v.write_to(&mut w);
        w.finish()
    }
}
