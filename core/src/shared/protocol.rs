//! What the shared tier puts in Redis, and the scripts that keep it consistent.
//!
//! For a cache named `N` and a canonical key `k` (its bytes, binary-safe in Redis):
//! * `coopcache:N:v:k`: the value blob, with the idle TTL (refreshed by `GETEX .. PX` on reads);
//! * `coopcache:N:l:k`: the lease, holding its owner's random token, with the lease TTL;
//! * `coopcache:N:t:TAG`: a set of the value keys stored with that tag (no TTL: tags are few and
//!   foreseeable; members whose value expired are dropped when the tag is invalidated);
//! * `coopcache:N:e:`: the cache's epoch, a counter that every tag invalidation and every clear
//!   moves on; `coopcache:N:h:TAG`, the epoch of the tag's last invalidation, and
//!   `coopcache:N:c:`, the epoch of the last clear (no TTL: one per tag, one per cache);
//! * channel `coopcache:N`: invalidations, clears and refreshes (one message per event), which
//!   every process of the cache receives;
//! * channel `coopcache:N:w:{H}` (`H` as in a value's hash tag, below): the completions of the
//!   keys of that hash, which only the processes waiting for one receive (each subscribes while
//!   it waits). On a cluster it is a sharded channel (`SSUBSCRIBE`/`SPUBLISH`) in the key's
//!   slot, so the scripts that end a lease publish on it from the node that holds the lease.
//!
//! A lease's value is its owner's token: a random part, `:`, and the epoch when it was taken.
//! An invalidation wins over a computation that was running when it reached Redis: the key's
//! invalidation marks the key's lease (appending `!`), so its holder no longer owns it; a tag's
//! invalidation or a clear records an epoch later than the lease's. The publish script then
//! does not write the value (it still reaches the callers that were waiting for it, unstored),
//! and a caller that arrives after the invalidation takes a marked lease, or one taken before
//! the last clear, over and computes afresh.
//!
//! `N` is the cache's name encoded ([`encode_name`]): bytes other than ASCII letters, digits,
//! `.`, `_` and `-` are written `%XX`, so an encoded name holds no `:`, no control byte and no
//! character `SCAN`'s patterns give a meaning to. A cache's keys therefore all start with
//! `coopcache:N:` and no other cache's do, whatever either name or key is. [`Names`] makes
//! every name the tier uses in Redis, in one place.
//!
//! A blob is `version, flags, [HMAC-SHA256], written, tags, payload`; `written` is when it was
//! computed (8 bytes, big-endian milliseconds of the writer's wall clock), which tells a
//! process refreshing a value ahead (`refresh_after`) whether another process refreshed it
//! lately. With a secret the MAC covers the cache's name, the key and everything after the
//! MAC, so a value cannot be forged nor moved to another key or another cache; a blob that
//! fails the check is never handed to a deserializer.
//!
//! A refresh (`refresh_after`) is computed by one process for the whole fleet, under the
//! key's lease; the processes that wait for it get its value on the key's channel. The others
//! hold their old copy locally, not due yet by their own clock: the publish script of a
//! refresh that stored its value also sends `Refreshed {key, written}` on the cache's channel
//! (small: no blob, since decoding is the binding's and needs its language's thread). A process
//! that holds a copy of the key older than `written` marks it due, so its next hit still
//! returns that copy at once and starts a refresh of its own, which finds the value written
//! lately in Redis and takes it without computing. A copy as new or newer (the writer's own,
//! or one that a process took or computed since), one being refreshed now (that refresh asks
//! Redis), or one of a cache without `refresh_after` is left as it is; a key no longer held
//! (invalidated, expired) has nothing to mark.
//!
//! With a secret, every message on the channel is signed too: `S`, an HMAC-SHA256 of the cache
//! name and the message, then the message. A message that is not signed (or not for this
//! cache) is dropped, so a forged `Failed` raises in no waiter and a forged `Clear` clears
//! nothing. (A message is not bound to a moment: one that was genuinely sent can be sent
//! again by whoever can publish on the channel.) Values and messages are signed in separate
//! domains, so neither's MAC stands for the other.

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
    /// The cache's epoch: a counter every tag invalidation and every clear moves on.
    Epoch,
    /// The epoch of a tag's last invalidation.
    TagEpoch,
    /// The epoch of the cache's last clear.
    Cleared,
}

impl Kind {
    fn letter(self) -> u8 {
        match self {
            Kind::Value => b'v',
            Kind::Lease => b'l',
            Kind::TagSet => b't',
            Kind::Epoch => b'e',
            Kind::TagEpoch => b'h',
            Kind::Cleared => b'c',
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
    /// On a Redis Cluster: names carry hash tags (see [`Names::key`]).
    cluster: bool,
}

impl Names {
    pub(crate) fn new(cache: &str, cluster: bool) -> Names {
        Names { base: format!("coopcache:{}", encode_name(cache)).into_bytes(), cluster }
    }

    /// The key of this kind for `rest` (a canonical key's bytes, a tag).
    ///
    /// On a cluster, a key's value and lease carry the hash tag `{H}` (`H`, 16 hex digits of a
    /// hash of the key's bytes, so a key holding `{` or `}` cannot move it): both are in one
    /// slot, which the publish and invalidation scripts need. The cache's epoch and last
    /// clear share the tag `{coopcache:N}`. A tag's set and epoch have no tag: each is used
    /// alone.
    pub(crate) fn key(&self, kind: Kind, rest: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.base.len() + 21 + rest.len());
        k.extend_from_slice(&self.base);
        k.push(b':');
        k.push(kind.letter());
        k.push(b':');
        if self.cluster {
            match kind {
                Kind::Value | Kind::Lease => {
                    k.extend_from_slice(format!("{{{:016x}}}", fnv1a(rest)).as_bytes())
                }
                Kind::Epoch | Kind::Cleared => {
                    k.push(b'{');
                    k.extend_from_slice(&self.base);
                    k.push(b'}');
                }
                Kind::TagSet | Kind::TagEpoch => {}
            }
        }
        k.extend_from_slice(rest);
        k
    }

    /// A `SCAN` pattern matching every key of this kind of this cache, and no other cache's.
    pub(crate) fn pattern(&self, kind: Kind) -> Vec<u8> {
        let mut p = self.base.clone();
        p.extend_from_slice(&[b':', kind.letter(), b':', b'*']);
        p
    }

    /// Whether the names are a cluster's (with hash tags).
    pub(crate) fn cluster(&self) -> bool {
        self.cluster
    }

    /// The cache's channel: invalidations and clears, for every process of the cache.
    pub(crate) fn channel(&self) -> Vec<u8> {
        self.base.clone()
    }

    /// The channel of a key's completions (see the module docs), for the processes waiting
    /// for one. Keys of one hash share it; a message names its key, so each picks its own.
    pub(crate) fn key_channel(&self, key: &[u8]) -> Vec<u8> {
        let mut c = self.base.clone();
        c.extend_from_slice(format!(":w:{{{:016x}}}", fnv1a(key)).as_bytes());
        c
    }

    /// The command that publishes on a key's channel: sharded on a cluster.
    pub(crate) fn publish(&self) -> &'static str {
        if self.cluster { "SPUBLISH" } else { "PUBLISH" }
    }
}

/// FNV-1a, 64 bits: a hash every process computes alike, whatever its build.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Version 3: blobs say when they were written (version 2's did not; older blobs are misses,
/// as version 1's, whose MAC did not cover the cache's name).
const VERSION: u8 = 3;
const SIGNED: u8 = 1;
const MAC_LEN: usize = 32;
/// The first byte of a signed message.
const SIGNED_MESSAGE: u8 = b'S';

/// A message on the cache's channel. A completion names the key and the lease it ends (its
/// holder's token, the lease key's value), so a process waits for the computation it found
/// running, and no other's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// The value was written; the blob travels with the message so waiters need no GET.
    Done { key: Vec<u8>, token: Vec<u8>, blob: Vec<u8> },
    /// A value handed out but not stored.
    NoCache { key: Vec<u8>, token: Vec<u8>, blob: Vec<u8> },
    /// The computation failed: the error's type name and message.
    Failed { key: Vec<u8>, token: Vec<u8>, type_name: String, message: String },
    /// The lease holder gave up without a result: take the lease.
    Released { key: Vec<u8>, token: Vec<u8> },
    /// Drop the key from every local tier.
    Invalidate { key: Vec<u8> },
    /// Drop the tag's entries from every local tier.
    InvalidateTag { tag: String },
    /// Drop everything from every local tier.
    Clear,
    /// Another process refreshed the key's value, written at `written` (wall-clock ms, as in
    /// a blob): a local copy older than that falls due (see the module docs).
    Refreshed { key: Vec<u8>, written: u64 },
}

const DONE: u8 = b'D';
const NOCACHE: u8 = b'N';
const FAILED: u8 = b'E';
const RELEASED: u8 = b'R';
const INVALIDATE: u8 = b'I';
const INVALIDATE_TAG: u8 = b'T';
const CLEAR: u8 = b'C';
const REFRESHED: u8 = b'F';

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

/// The head of a `Done` (or `NoCache`) message: what the publish script prepends to the
/// blob it stores (or could not store).
fn value_head(kind: u8, key: &[u8], token: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    put_len(&mut out, key.len());
    out.extend_from_slice(key);
    put_len(&mut out, token.len());
    out.extend_from_slice(token);
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
            Message::Done { key, token, blob } => [value_head(DONE, key, token), blob.clone()].concat(),
            Message::NoCache { key, token, blob } => [value_head(NOCACHE, key, token), blob.clone()].concat(),
            Message::Failed { key, token, type_name, message } => {
                let mut out = value_head(FAILED, key, token);
                put_len(&mut out, type_name.len());
                out.extend_from_slice(type_name.as_bytes());
                out.extend_from_slice(message.as_bytes());
                out
            }
            Message::Released { key, token } => value_head(RELEASED, key, token),
            Message::Invalidate { key } => with_key(INVALIDATE, key, &[]),
            Message::InvalidateTag { tag } => {
                let mut out = vec![INVALIDATE_TAG];
                out.extend_from_slice(tag.as_bytes());
                out
            }
            Message::Clear => vec![CLEAR],
            Message::Refreshed { key, written } => with_key(REFRESHED, key, &written.to_be_bytes()),
        }
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Message> {
        let (&kind, rest) = b.split_first()?;
        match kind {
            INVALIDATE_TAG => {
                return Some(Message::InvalidateTag { tag: String::from_utf8(rest.to_vec()).ok()? });
            }
            CLEAR => return (rest.is_empty()).then_some(Message::Clear),
            _ => {}
        }
        let (key, rest) = take_bytes(rest)?;
        let key = key.to_vec();
        match kind {
            INVALIDATE => return rest.is_empty().then_some(Message::Invalidate { key }),
            REFRESHED => {
                let written = u64::from_be_bytes(rest.try_into().ok()?);
                return Some(Message::Refreshed { key, written });
            }
            _ => {}
        }
        let (token, rest) = take_bytes(rest)?;
        let token = token.to_vec();
        Some(match kind {
            DONE => Message::Done { key, token, blob: rest.to_vec() },
            NOCACHE => Message::NoCache { key, token, blob: rest.to_vec() },
            FAILED => {
                let (name, msg) = take_bytes(rest)?;
                Message::Failed {
                    key,
                    token,
                    type_name: String::from_utf8_lossy(name).into_owned(),
                    message: String::from_utf8_lossy(msg).into_owned(),
                }
            }
            RELEASED if rest.is_empty() => Message::Released { key, token },
            _ => return None,
        })
    }

    /// The key and the lease a completion message is about.
    pub(crate) fn completion(&self) -> Option<(&[u8], &[u8])> {
        match self {
            Message::Done { key, token, .. }
            | Message::NoCache { key, token, .. }
            | Message::Failed { key, token, .. }
            | Message::Released { key, token } => Some((key, token)),
            _ => None,
        }
    }
}

/// Signs and checks what one cache puts in Redis (values and messages) with its secret, if it
/// has one; without a secret it only encodes and decodes.
pub(crate) struct Signer {
    cache: Vec<u8>,
    secret: Option<Vec<u8>>,
}

impl Signer {
    pub(crate) fn new(cache: &str, secret: Option<&[u8]>) -> Signer {
        Signer { cache: cache.as_bytes().to_vec(), secret: secret.map(<[u8]>::to_vec) }
    }

    /// HMAC-SHA256 of `parts` (each with its length, so no two lists of parts sign alike)
    /// in `domain`, for this cache.
    fn mac(&self, secret: &[u8], domain: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
        for part in [domain, &self.cache[..]].iter().chain(parts) {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part);
        }
        m
    }

    /// Encodes (and with a secret, signs) the blob for `key`.
    pub(crate) fn seal(&self, key: &[u8], blob: &Blob, written_ms: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(blob.payload.len() + 24);
        body.extend_from_slice(&written_ms.to_be_bytes());
        put_len(&mut body, blob.tags.len());
        for t in &blob.tags {
            put_len(&mut body, t.len());
            body.extend_from_slice(t.as_bytes());
        }
        body.extend_from_slice(&blob.payload);
        let mut out = Vec::with_capacity(body.len() + 2 + MAC_LEN);
        out.push(VERSION);
        match &self.secret {
            Some(s) => {
                out.push(SIGNED);
                out.extend_from_slice(&self.mac(s, b"value", &[key, &body]).finalize().into_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&body);
        out
    }

    /// Checks and decodes a blob for `key`, with when it was written (milliseconds, see the
    /// module docs). `Err` names why it was refused (never deserialized).
    pub(crate) fn open(&self, key: &[u8], b: &[u8]) -> Result<(Blob, u64), &'static str> {
        let [version, flags, rest @ ..] = b else { return Err("truncated") };
        if *version != VERSION {
            return Err("unknown format version");
        }
        let body = match (*flags & SIGNED != 0, &self.secret) {
            (true, Some(s)) => {
                if rest.len() < MAC_LEN {
                    return Err("truncated");
                }
                let (tag, body) = rest.split_at(MAC_LEN);
                self.mac(s, b"value", &[key, body]).verify_slice(tag).map_err(|_| "bad signature")?;
                body
            }
            (false, Some(_)) => return Err("not signed, and this cache has a secret"),
            (true, None) => return Err("signed, and this cache has no secret"),
            (false, None) => rest,
        };
        let (written, body) = body.split_first_chunk::<8>().ok_or("truncated")?;
        let (n, mut rest) = take_len(body).ok_or("truncated")?;
        let mut tags = Vec::with_capacity(n.min(16));
        for _ in 0..n {
            let (t, r) = take_bytes(rest).ok_or("truncated")?;
            tags.push(String::from_utf8(t.to_vec()).map_err(|_| "a tag is not UTF-8")?);
            rest = r;
        }
        Ok((Blob { tags, payload: rest.to_vec() }, u64::from_be_bytes(*written)))
    }

    /// A message as it goes on the channel (signed, with a secret).
    pub(crate) fn message(&self, msg: &Message) -> Vec<u8> {
        self.envelope(&msg.encode(), &[])
    }

    /// The head of a `Done` message for the sealed blob `sealed` of `key`: what the publish
    /// script sends before the blob (signed for the whole message, with a secret).
    pub(crate) fn done_head(&self, key: &[u8], token: &[u8], sealed: &[u8]) -> Vec<u8> {
        self.envelope(&value_head(DONE, key, token), sealed)
    }

    /// The head of a `NoCache` message for the sealed blob `sealed` of `key`: what the publish
    /// script sends before the blob when Redis refuses to store it.
    pub(crate) fn nocache_head(&self, key: &[u8], token: &[u8], sealed: &[u8]) -> Vec<u8> {
        self.envelope(&value_head(NOCACHE, key, token), sealed)
    }

    /// `head` then `tail` is the message; returns what goes before `tail` on the channel.
    fn envelope(&self, head: &[u8], tail: &[u8]) -> Vec<u8> {
        let Some(s) = &self.secret else { return head.to_vec() };
        let mut m = self.mac(s, b"message", &[]);
        m.update(&((head.len() + tail.len()) as u64).to_be_bytes());
        m.update(head);
        m.update(tail);
        let mut out = Vec::with_capacity(1 + MAC_LEN + head.len());
        out.push(SIGNED_MESSAGE);
        out.extend_from_slice(&m.finalize().into_bytes());
        out.extend_from_slice(head);
        out
    }

    /// A message from the channel, checked. `Err` names why it was dropped.
    pub(crate) fn read(&self, b: &[u8]) -> Result<Message, &'static str> {
        let inner = match (b.first() == Some(&SIGNED_MESSAGE), &self.secret) {
            (true, Some(s)) => {
                if b.len() < 1 + MAC_LEN {
                    return Err("a truncated message");
                }
                let (tag, inner) = b[1..].split_at(MAC_LEN);
                self.mac(s, b"message", &[inner])
                    .verify_slice(tag)
                    .map_err(|_| "a message with a bad signature")?;
                inner
            }
            (false, Some(_)) => return Err("a message not signed, and this cache has a secret"),
            (true, None) => return Err("a signed message, and this cache has no secret"),
            (false, None) => b,
        };
        Message::decode(inner).ok_or("a message in an unknown format")
    }
}

/// Takes the key's lease for this process: free, or stale (taken before the key's
/// invalidation or before a clear: a caller arriving after either starts a computation of its
/// own, as on the local tier). The lease's value is the owner's token: a random part, `:`, and
/// the cache's epoch when it was taken.
/// A holder that published between the caller's read and this script leaves a value, not a
/// free lease: a value there that is not the one the caller's read refused (a bad signature,
/// or too old for a refresh) means "read it" (`{2}`), so the key is not computed twice.
/// KEYS: lease, epoch, cleared, value. ARGV: random part, lease ms, the start of the value the
/// read refused ([`seen`]; empty: it found none). Returns `{1, token}` (taken), `{0, PTTL,
/// holder's token}` or `{2}`.
pub(crate) const TAKE_LEASE: &str = r#"
local now = redis.call('GETRANGE', KEYS[4], 0, math.max(#ARGV[3], 1) - 1)
if now ~= '' and now ~= ARGV[3] then return {2} end
local mine = ARGV[1] .. ':' .. (redis.call('GET', KEYS[2]) or '0')
if redis.call('SET', KEYS[1], mine, 'NX', 'PX', ARGV[2]) then return {1, mine} end
local held = redis.call('GET', KEYS[1])
local snap = tonumber(string.match(held, ':(%d+)$'))
local cleared = tonumber(redis.call('GET', KEYS[3]) or '0')
if string.sub(held, -1) == '!' or (snap and snap < cleared) then
  redis.call('SET', KEYS[1], mine, 'PX', ARGV[2])
  return {1, mine}
end
return {0, redis.call('PTTL', KEYS[1]), held}
"#;

/// Writes the value, clears the lease and announces it, only if `token` still owns the lease
/// and nothing invalidated the value since the lease was taken: not its key (its lease is then
/// marked, so the token no longer owns it), not one of its tags, not a clear. A holder that
/// lost its lease never overwrites a newer value. A value that is not written is announced as
/// not stored to the processes waiting for this lease, which get it all the same, as this
/// process's own callers do.
///
/// If Redis refuses a write (OOM under `noeviction`, a tag key of another type), nothing more
/// is written, the lease is cleared all the same and the value announced as not stored, so the
/// waiting processes get it at once; the refusal is returned. The tag sets are written first:
/// a value is never stored without the tag sets that let its tags' invalidation find it.
///
/// A refresh that wrote its value also tells every process on the cache's channel
/// (`Refreshed`, see the module docs).
///
/// KEYS: lease, value, cleared, then each tag's set and then each tag's epoch. ARGV: token,
/// blob, idle ms, the key's channel, `Done` head, `NoCache` head, the cache's channel, the
/// `Refreshed` message (empty: not a refresh). Returns 1 (written), 0 (not written: not the
/// owner, or invalidated) or the refusal's error text.
pub(crate) const PUBLISH_VALUE: &str = r#"
local held = redis.call('GET', KEYS[1])
local snap = tonumber(string.match(ARGV[1], ':(%d+)$')) or 0
local fresh = held == ARGV[1] and tonumber(redis.call('GET', KEYS[3]) or '0') <= snap
local tags = (#KEYS - 3) / 2
for i = 1, tags do
  if fresh and tonumber(redis.call('GET', KEYS[3 + tags + i]) or '0') > snap then fresh = false end
end
local function unstored(r)
  if held == ARGV[1] or held == ARGV[1] .. '!' then redis.call('DEL', KEYS[1]) end
  redis.call('PUBLISH', ARGV[4], ARGV[6] .. ARGV[2])
  return r
end
if not fresh then return unstored(0) end
for i = 1, tags do
  local r = redis.pcall('SADD', KEYS[3 + i], KEYS[2])
  if type(r) == 'table' and r.err then return unstored(r.err) end
end
local r = redis.pcall('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if type(r) == 'table' and r.err then return unstored(r.err) end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[4], ARGV[5] .. ARGV[2])
if ARGV[8] ~= '' then redis.call('PUBLISH', ARGV[7], ARGV[8]) end
return 1
"#;

/// Announces an outcome that is not stored (nocache, error, release) to the processes waiting
/// for this lease, and clears the lease if `token` still owns it (or owned it until the key's
/// invalidation marked it). KEYS: lease. ARGV: token, the key's channel, message, the publish
/// command (`SPUBLISH` on a cluster). Returns 1 if it owned the lease.
pub(crate) const PUBLISH_OUTCOME: &str = r#"
local held = redis.call('GET', KEYS[1])
local owned = held == ARGV[1]
if owned or held == ARGV[1] .. '!' then redis.call('DEL', KEYS[1]) end
redis.call(ARGV[4], ARGV[2], ARGV[3])
if owned then return 1 end
return 0
"#;

/// Extends the lease if `token` still owns it. KEYS: lease. ARGV: token, ttl ms.
pub(crate) const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"#;

/// Deletes a key's value, marks its lease (if any) as taken before this invalidation (its
/// holder no longer owns it, and the next caller takes it over), and announces it.
/// KEYS: value, lease. ARGV: channel, message.
pub(crate) const INVALIDATE_KEY_SCRIPT: &str = r#"
redis.call('DEL', KEYS[1])
local held = redis.call('GET', KEYS[2])
if held and string.sub(held, -1) ~= '!' then redis.call('SET', KEYS[2], held .. '!', 'KEEPTTL') end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"#;

/// Moves the cache's epoch on and records it as the tag's, so a computation whose lease was
/// taken before does not store a value with that tag; deletes the tag's values and its set,
/// and announces it. KEYS: tag set, epoch, tag's epoch. ARGV: channel, message. Returns how
/// many values went.
pub(crate) const INVALIDATE_TAG_SCRIPT: &str = r#"
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], epoch)
local members = redis.call('SMEMBERS', KEYS[1])
local n = 0
for _, k in ipairs(members) do n = n + redis.call('DEL', k) end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n
"#;

/// Moves the cache's epoch on and records it as the last clear's, so no computation whose
/// lease was taken before stores its value (the values themselves are deleted after, by
/// `SCAN`). KEYS: epoch, cleared.
pub(crate) const CLEAR_SCRIPT: &str = r#"
local epoch = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], epoch)
return epoch
"#;

// On a cluster, where a script reaches one slot only, the tier's keys are laid out and kept
// consistent otherwise (see [`Names::key`] for the layout):
//
// * [`TAKE_LEASE_CLUSTER`] is [`TAKE_LEASE`] with the cache's epoch and last clear read
//   before (one `MGET`: they share a slot) and passed in. Read before, the epoch can only be
//   older than the script's, so a computation only ever counts as started earlier than it
//   did: it may lose to an invalidation it could have survived, never the other way.
// * A stored value starts with that epoch ([`EPOCH_LEN`] bytes, big-endian): an invalidation
//   of one of its tags, or a clear, at a later epoch makes it stale, and a read that finds it
//   so treats it as a miss. A tag's invalidation moves the epoch on, records it as the tag's
//   ([`SET_MAX`]), then deletes the values its set lists (each in its own slot) and the set.
// * [`PUBLISH_VALUE_CLUSTER`] writes the value and ends the lease (one slot), after the
//   process has added the value to its tags' sets and checked their epochs and the last
//   clear's: a value known stale is announced as not stored, as on one Redis; one made stale
//   between that check and the write is caught by the read's check.
// * A clear moves the epoch on and records it, then deletes the values on every master.

/// The length of the epoch a value stored on a cluster starts with.
pub(crate) const EPOCH_LEN: usize = 8;

/// What the lease script is told of the value a read refused (stale, too old for a refresh,
/// badly signed), so that a different value written since is read, not computed again: its
/// first bytes, which hold when it was written and its MAC (after a cluster's epoch), so two
/// writes of a key differ in them. Empty when the read found no value.
pub(crate) fn seen(found: Option<&[u8]>) -> &[u8] {
    const START: usize = EPOCH_LEN + 2 + MAC_LEN + 8;
    found.map_or(&[], |b| &b[..b.len().min(START)])
}

/// [`TAKE_LEASE`] for a cluster (the value is in the lease's slot). KEYS: lease, value. ARGV:
/// random part, lease ms, the cache's epoch, its last clear's epoch, the start of the value the
/// read refused ([`seen`]; empty: it found none). Returns as [`TAKE_LEASE`].
pub(crate) const TAKE_LEASE_CLUSTER: &str = r#"
local now = redis.call('GETRANGE', KEYS[2], 0, math.max(#ARGV[5], 1) - 1)
if now ~= '' and now ~= ARGV[5] then return {2} end
local mine = ARGV[1] .. ':' .. ARGV[3]
if redis.call('SET', KEYS[1], mine, 'NX', 'PX', ARGV[2]) then return {1, mine} end
local held = redis.call('GET', KEYS[1])
local snap = tonumber(string.match(held, ':(%d+)$'))
if string.sub(held, -1) == '!' or (snap and snap < tonumber(ARGV[4])) then
  redis.call('SET', KEYS[1], mine, 'PX', ARGV[2])
  return {1, mine}
end
return {0, redis.call('PTTL', KEYS[1]), held}
"#;

/// [`PUBLISH_VALUE`] for a cluster: the checks of tags and clears are the process's (see
/// above). KEYS: lease, value. ARGV: token, blob, idle ms, the key's channel (sharded, in the
/// lease's slot), `Done` head, `NoCache` head, `1` to store (`0`: stale, or a tag set refused the value), the lease's epoch as
/// stored before the blob, the cache's channel (not sharded: every process of every node
/// hears it, as invalidations), the `Refreshed` message (empty: not a refresh). Returns 1
/// (written), 0 (not written) or the refusal's error text.
pub(crate) const PUBLISH_VALUE_CLUSTER: &str = r#"
local held = redis.call('GET', KEYS[1])
local function unstored(r)
  if held == ARGV[1] or held == ARGV[1] .. '!' then redis.call('DEL', KEYS[1]) end
  redis.call('SPUBLISH', ARGV[4], ARGV[6] .. ARGV[2])
  return r
end
if held ~= ARGV[1] or ARGV[7] ~= '1' then return unstored(0) end
local r = redis.pcall('SET', KEYS[2], ARGV[8] .. ARGV[2], 'PX', ARGV[3])
if type(r) == 'table' and r.err then return unstored(r.err) end
redis.call('DEL', KEYS[1])
redis.call('SPUBLISH', ARGV[4], ARGV[5] .. ARGV[2])
if ARGV[10] ~= '' then redis.call('PUBLISH', ARGV[9], ARGV[10]) end
return 1
"#;

/// Sets a counter to `n` unless it holds more already. KEYS: counter. ARGV: n.
pub(crate) const SET_MAX: &str = r#"
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
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
        let n = Names::new("x:t:a", false);
        assert_eq!(n.key(Kind::TagSet, b"b"), b"coopcache:x%3At%3Aa:t:b");
        assert_eq!(n.pattern(Kind::Value), b"coopcache:x%3At%3Aa:v:*");
        assert_eq!(n.channel(), b"coopcache:x%3At%3Aa");
        let c = Names::new("c", true);
        let (v, l) = (c.key(Kind::Value, b"}{k"), c.key(Kind::Lease, b"}{k"));
        assert_eq!(&v[..14], b"coopcache:c:v:");
        assert_eq!(v[14..32], l[14..32], "one hash tag, one slot");
        assert!(v.ends_with(b"}{k") && v[14] == b'{' && v[31] == b'}');
        let w = c.key_channel(b"}{k");
        assert_eq!(w[..15], *b"coopcache:c:w:{");
        assert_eq!(w[14..], v[14..32], "a key's channel is in its value's slot");
        assert_eq!(c.key(Kind::Epoch, b""), b"coopcache:c:e:{coopcache:c}");
        assert_eq!(c.key(Kind::Cleared, b""), b"coopcache:c:c:{coopcache:c}");
        assert_eq!(c.key(Kind::TagSet, b"t"), b"coopcache:c:t:t");
        assert_eq!(c.pattern(Kind::Value), b"coopcache:c:v:*");
    }

    #[test]
    fn messages_round_trip() {
        let all = [
            Message::Done { key: b"k".to_vec(), token: b"t:1".to_vec(), blob: vec![1, 2] },
            Message::NoCache { key: vec![0; 200], token: vec![], blob: vec![] },
            Message::Failed {
                key: b"k".to_vec(),
                token: b"t".to_vec(),
                type_name: "ValueError".into(),
                message: "bad".into(),
            },
            Message::Released { key: b"k".to_vec(), token: b"t".to_vec() },
            Message::Invalidate { key: b"k".to_vec() },
            Message::InvalidateTag { tag: "user:1".into() },
            Message::Clear,
            Message::Refreshed { key: b"k".to_vec(), written: 1_700_000_000_123 },
        ];
        for signer in [Signer::new("c", None), Signer::new("c", Some(b"secret"))] {
            for m in all.clone() {
                assert_eq!(signer.read(&signer.message(&m)), Ok(m));
            }
            let mut done = signer.done_head(b"k", b"t", &[9]);
            done.push(9);
            let want = Message::Done { key: b"k".to_vec(), token: b"t".to_vec(), blob: vec![9] };
            assert_eq!(signer.read(&done), Ok(want));
            let mut nocache = signer.nocache_head(b"k", b"t", &[]);
            nocache.extend_from_slice(&[]);
            let want = Message::NoCache { key: b"k".to_vec(), token: b"t".to_vec(), blob: vec![] };
            assert_eq!(signer.read(&nocache), Ok(want));
        }
    }

    #[test]
    fn messages_are_signed_for_their_cache() {
        let (c, other) = (Signer::new("c", Some(b"secret")), Signer::new("d", Some(b"secret")));
        let plain = Signer::new("c", None);
        let clear = c.message(&Message::Clear);
        assert_eq!(other.read(&clear), Err("a message with a bad signature"));
        assert_eq!(Signer::new("c", Some(b"other")).read(&clear), Err("a message with a bad signature"));
        assert_eq!(
            c.read(&plain.message(&Message::Clear)),
            Err("a message not signed, and this cache has a secret")
        );
        assert!(plain.read(&clear).is_err());
        let mut tampered = c.message(&Message::Invalidate { key: b"k".to_vec() });
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(c.read(&tampered), Err("a message with a bad signature"));
        // A value's MAC does not sign a message.
        let sealed = c.seal(b"", &Blob { tags: vec![], payload: vec![] }, 0);
        let mut forged = vec![b'S'];
        forged.extend_from_slice(&sealed[2..34]);
        forged.push(b'C');
        assert!(c.read(&forged).is_err());
    }

    #[test]
    fn blobs_are_signed_for_their_cache_and_key() {
        let b = Blob { tags: vec!["t".into()], payload: b"payload".to_vec() };
        let c = Signer::new("public", Some(b"secret"));
        let sealed = c.seal(b"k1", &b, 1_700_000_000_123);
        assert_eq!(c.open(b"k1", &sealed), Ok((b.clone(), 1_700_000_000_123)), "when it was written");
        assert_eq!(c.open(b"k2", &sealed), Err("bad signature"));
        assert_eq!(Signer::new("admin", Some(b"secret")).open(b"k1", &sealed), Err("bad signature"));
        assert_eq!(Signer::new("public", Some(b"other")).open(b"k1", &sealed), Err("bad signature"));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(c.open(b"k1", &tampered), Err("bad signature"));
        let plain = Signer::new("public", None);
        assert!(c.open(b"k1", &plain.seal(b"k1", &b, 0)).is_err());
        assert_eq!(plain.open(b"k1", &plain.seal(b"k1", &b, 0)), Ok((b, 0)));
    }
}
