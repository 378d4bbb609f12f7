//! What the shared tier puts in Redis, and the scripts that keep it consistent.
//!
//! For a cache named `N` and a canonical key `k` (its bytes, binary-safe in Redis):
//! * `coopcache:N:v:k`: the value blob, with the idle TTL (refreshed by `GETEX .. PX` on reads);
//! * `coopcache:N:l:k`: the lease, holding its owner's random token, with the lease TTL;
//! * `coopcache:N:t:TAG`: a set of the value keys stored with that tag (no TTL: tags are few and
//!   foreseeable; members whose value expired are dropped when the tag is invalidated);
//! * channel `coopcache:N`: completions and invalidations (one message per event).
//!
//! `N` is the cache's name encoded ([`encode_name`]): bytes other than ASCII letters, digits,
//! `.`, `_` and `-` are written `%XX`, so an encoded name holds no `:`, no control byte and no
//! character `SCAN`'s patterns give a meaning to. A cache's keys therefore all start with
//! `coopcache:N:` and no other cache's do, whatever either name or key is. [`Names`] makes
//! every name the tier uses in Redis, in one place.
//!
//! A blob is `version, flags, [HMAC-SHA256], tags, payload`. With a secret the MAC covers the
//! key and everything after the MAC, so a value cannot be forged or moved to another key; a blob
//! that fails the check is never handed to a deserializer.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Blob;

/// What a key of a cache holds: the letter after the cache's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value blob.
    Value,
    /// A lease.
    Lease,
    /// The set of value keys stored with a tag.
    TagSet,
}

impl Kind {
    fn letter(self) -> u8 {
        match self {
            Kind::Value => b'v',
            Kind::Lease => b'l',
            Kind::TagSet => b't',
        }
    }
}

/// A cache name as it appears in Redis: ASCII letters, digits, `.`, `_` and `-` as they are,
/// every other byte as `%XX` (so `%` itself too). One name, one encoding, and no encoded name
/// holds `:`, a control byte or a glob character.
pub(crate) fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The names of one cache's keys, patterns and channel in Redis: every name the tier uses
/// there is made here (see the module docs for the layout).
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// `coopcache:N`, with `N` encoded.
    base: Vec<u8>,
}

impl Names {
    pub(crate) fn new(cache: &str) -> Names {
        Names { base: format!("coopcache:{}", encode_name(cache)).into_bytes() }
    }

    /// The key of this kind for `rest` (a canonical key's bytes, a tag).
    pub(crate) fn key(&self, kind: Kind, rest: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.base.len() + 3 + rest.len());
        k.extend_from_slice(&self.base);
        k.push(b':');
        k.push(kind.letter());
        k.push(b':');
        k.extend_from_slice(rest);
        k
    }

    /// A `SCAN` pattern matching every key of this kind of this cache, and no other cache's.
    pub(crate) fn pattern(&self, kind: Kind) -> Vec<u8> {
        let mut p = self.key(kind, b"");
        p.push(b'*');
        p
    }

    /// The cache's channel: completions and invalidations.
    pub(crate) fn channel(&self) -> Vec<u8> {
        self.base.clone()
    }
}

const VERSION: u8 = 1;
const SIGNED: u8 = 1;
const MAC_LEN: usize = 32;

/// A message on the cache's channel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// The value was written; the blob travels with the message so waiters need no GET.
    Done { key: Vec<u8>, blob: Vec<u8> },
    /// A value handed out but not stored.
    NoCache { key: Vec<u8>, blob: Vec<u8> },
    /// The computation failed: the error's type name and message.
    Failed { key: Vec<u8>, type_name: String, message: String },
    /// The lease holder gave up without a result: take the lease.
    Released { key: Vec<u8> },
    /// Drop the key from every local tier.
    Invalidate { key: Vec<u8> },
    /// Drop the tag's entries from every local tier.
    InvalidateTag { tag: String },
    /// Drop everything from every local tier.
    Clear,
}

const DONE: u8 = b'D';
const NOCACHE: u8 = b'N';
const FAILED: u8 = b'E';
const RELEASED: u8 = b'R';
const INVALIDATE: u8 = b'I';
const INVALIDATE_TAG: u8 = b'T';
const CLEAR: u8 = b'C';

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn take_len(b: &[u8]) -> Option<(usize, &[u8])> {
    let mut n = 0usize;
    for (i, &byte) in b.iter().enumerate().take(10) {
        n |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((n, &b[i + 1..]));
        }
    }
    None
}

fn take_bytes(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (n, rest) = take_len(b)?;
    (rest.len() >= n).then(|| rest.split_at(n))
}

/// The head of a `Done` message: what the publish script prepends to the blob it stores.
pub(crate) fn done_head(key: &[u8]) -> Vec<u8> {
    let mut out = vec![DONE];
    put_len(&mut out, key.len());
    out.extend_from_slice(key);
    out
}

impl Message {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let with_key = |kind: u8, key: &[u8], rest: &[u8]| {
            let mut out = vec![kind];
            put_len(&mut out, key.len());
            out.extend_from_slice(key);
            out.extend_from_slice(rest);
            out
        };
        match self {
            Message::Done { key, blob } => with_key(DONE, key, blob),
            Message::NoCache { key, blob } => with_key(NOCACHE, key, blob),
            Message::Failed { key, type_name, message } => {
                let mut rest = Vec::new();
                put_len(&mut rest, type_name.len());
                rest.extend_from_slice(type_name.as_bytes());
                rest.extend_from_slice(message.as_bytes());
                with_key(FAILED, key, &rest)
            }
            Message::Released { key } => with_key(RELEASED, key, &[]),
            Message::Invalidate { key } => with_key(INVALIDATE, key, &[]),
            Message::InvalidateTag { tag } => {
                let mut out = vec![INVALIDATE_TAG];
                out.extend_from_slice(tag.as_bytes());
                out
            }
            Message::Clear => vec![CLEAR],
        }
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Message> {
        let (&kind, rest) = b.split_first()?;
        match kind {
            INVALIDATE_TAG => {
                return Some(Message::InvalidateTag { tag: String::from_utf8(rest.to_vec()).ok()? });
            }
            CLEAR => return Some(Message::Clear),
            _ => {}
        }
        let (key, rest) = take_bytes(rest)?;
        let key = key.to_vec();
        Some(match kind {
            DONE => Message::Done { key, blob: rest.to_vec() },
            NOCACHE => Message::NoCache { key, blob: rest.to_vec() },
            FAILED => {
                let (name, msg) = take_bytes(rest)?;
                Message::Failed {
                    key,
                    type_name: String::from_utf8_lossy(name).into_owned(),
                    message: String::from_utf8_lossy(msg).into_owned(),
                }
            }
            RELEASED => Message::Released { key },
            INVALIDATE => Message::Invalidate { key },
            _ => return None,
        })
    }

    /// The key a completion message is about.
    pub(crate) fn completion_key(&self) -> Option<&[u8]> {
        match self {
            Message::Done { key, .. }
            | Message::NoCache { key, .. }
            | Message::Failed { key, .. }
            | Message::Released { key } => Some(key),
            _ => None,
        }
    }
}

impl Blob {
    /// Encodes (and with a secret, signs) the blob for `key`.
    pub(crate) fn seal(&self, key: &[u8], secret: Option<&[u8]>) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.payload.len() + 16);
        put_len(&mut body, self.tags.len());
        for t in &self.tags {
            put_len(&mut body, t.len());
            body.extend_from_slice(t.as_bytes());
        }
        body.extend_from_slice(&self.payload);
        let mut out = Vec::with_capacity(body.len() + 2 + MAC_LEN);
        out.push(VERSION);
        match secret {
            Some(s) => {
                out.push(SIGNED);
                out.extend_from_slice(&mac(s, key, &body));
            }
            None => out.push(0),
        }
        out.extend_from_slice(&body);
        out
    }

    /// Checks and decodes a blob for `key`. `Err` names why it was refused (never deserialized).
    pub(crate) fn open(key: &[u8], b: &[u8], secret: Option<&[u8]>) -> Result<Blob, &'static str> {
        let [version, flags, rest @ ..] = b else { return Err("truncated") };
        if *version != VERSION {
            return Err("unknown format version");
        }
        let body = match (*flags & SIGNED != 0, secret) {
            (true, Some(s)) => {
                if rest.len() < MAC_LEN {
                    return Err("truncated");
                }
                let (tag, body) = rest.split_at(MAC_LEN);
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(s).expect("any key length");
                m.update(&(key.len() as u64).to_be_bytes());
                m.update(key);
                m.update(body);
                m.verify_slice(tag).map_err(|_| "bad signature")?;
                body
            }
            (false, Some(_)) => return Err("not signed, and this cache has a secret"),
            (true, None) => return Err("signed, and this cache has no secret"),
            (false, None) => rest,
        };
        let (n, mut rest) = take_len(body).ok_or("truncated")?;
        let mut tags = Vec::with_capacity(n.min(16));
        for _ in 0..n {
            let (t, r) = take_bytes(rest).ok_or("truncated")?;
            tags.push(String::from_utf8(t.to_vec()).map_err(|_| "a tag is not UTF-8")?);
            rest = r;
        }
        Ok(Blob { tags, payload: rest.to_vec() })
    }
}

fn mac(secret: &[u8], key: &[u8], body: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    m.update(&(key.len() as u64).to_be_bytes());
    m.update(key);
    m.update(body);
    m.finalize().into_bytes().into()
}

/// Writes the value, clears the lease and announces it, only if `token` still owns the lease:
/// a holder that lost its lease never overwrites a newer value.
/// KEYS: lease, value. ARGV: token, blob, idle ms, channel, message head, tag set keys...
pub(crate) const PUBLISH_VALUE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[1])
for i = 6, #ARGV do
  redis.call('SADD', ARGV[i], KEYS[2])
end
redis.call('PUBLISH', ARGV[4], ARGV[5] .. ARGV[2])
return 1
"#;

/// Clears the lease and announces an outcome that is not stored (nocache, error, release),
/// if `token` still owns the lease. KEYS: lease. ARGV: token, channel, message.
pub(crate) const PUBLISH_OUTCOME: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"#;

/// Extends the lease if `token` still owns it. KEYS: lease. ARGV: token, ttl ms.
pub(crate) const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"#;

/// Deletes a tag's values and the tag set. KEYS: tag set. Returns how many values went.
pub(crate) const INVALIDATE_TAG_SCRIPT: &str = r#"
local members = redis.call('SMEMBERS', KEYS[1])
local n = 0
for _, k in ipairs(members) do n = n + redis.call('DEL', k) end
redis.call('DEL', KEYS[1])
return n
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_so_no_cache_reaches_another() {
        assert_eq!(encode_name("users-v1.2_x"), "users-v1.2_x");
        assert_eq!(encode_name("users:v:archive"), "users%3Av%3Aarchive");
        assert_eq!(encode_name("*"), "%2A");
        assert_eq!(encode_name("a%3A"), "a%253A");
        assert_eq!(encode_name("a\x04é"), "a%04%C3%A9");
        let n = Names::new("x:t:a");
        assert_eq!(n.key(Kind::TagSet, b"b"), b"coopcache:x%3At%3Aa:t:b");
        assert_eq!(n.pattern(Kind::Value), b"coopcache:x%3At%3Aa:v:*");
        assert_eq!(n.channel(), b"coopcache:x%3At%3Aa");
    }

    #[test]
    fn messages_round_trip() {
        let all = [
            Message::Done { key: b"k".to_vec(), blob: vec![1, 2] },
            Message::NoCache { key: vec![0; 200], blob: vec![] },
            Message::Failed { key: b"k".to_vec(), type_name: "ValueError".into(), message: "bad".into() },
            Message::Released { key: b"k".to_vec() },
            Message::Invalidate { key: b"k".to_vec() },
            Message::InvalidateTag { tag: "user:1".into() },
            Message::Clear,
        ];
        for m in all {
            assert_eq!(Message::decode(&m.encode()), Some(m));
        }
        let mut head = done_head(b"k");
        head.extend_from_slice(&[9]);
        assert_eq!(Message::decode(&head), Some(Message::Done { key: b"k".to_vec(), blob: vec![9] }));
    }

    #[test]
    fn blobs_are_signed_for_their_key() {
        let b = Blob { tags: vec!["t".into()], payload: b"payload".to_vec() };
        let sealed = b.seal(b"k1", Some(b"secret"));
        assert_eq!(Blob::open(b"k1", &sealed, Some(b"secret")), Ok(b.clone()));
        assert_eq!(Blob::open(b"k2", &sealed, Some(b"secret")), Err("bad signature"));
        assert_eq!(Blob::open(b"k1", &sealed, Some(b"other")), Err("bad signature"));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(Blob::open(b"k1", &tampered, Some(b"secret")), Err("bad signature"));
        assert!(Blob::open(b"k1", &b.seal(b"k1", None), Some(b"secret")).is_err());
        assert_eq!(Blob::open(b"k1", &b.seal(b"k1", None), None), Ok(b));
    }
}
