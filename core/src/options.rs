//! Options as Python and Node pass them (`configure`'s settings, a call's options, a cache's
//! name), checked here once for both languages.
//!
//! A binding turns its language's values into a [`Arg`] tree (each value with its language's
//! type name, for messages) and names its [`Style`]; what comes back is either the validated
//! options or an [`OptionError`] whose message names the argument as that language spells it,
//! shows the value with its type (`"10" (str)`, never a string shown as a number) and says what
//! is accepted. An unknown option is an error listing the known ones. The binding only raises
//! the error as its language's exception ([`OptionError::kind`] says which class, `code` is the
//! Node error's stable `code`).

use std::fmt::{self, Write};
use std::time::Duration;

use crate::config::{ConfigError, MemoryLimit, Settings, WhenFull};

/// A value as a binding read it from its language.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Python's `None`, JS's `null`.
    None,
    /// A boolean.
    Bool(bool),
    /// A whole number (Python's `int`; a JS number with no fraction).
    Int(i128),
    /// Any other number (Python's `float`, also an `int` too large for [`Value::Int`]).
    Float(f64),
    /// A string.
    Str(String),
    /// Python's `bytes`, a JS `Uint8Array`.
    Bytes(Vec<u8>),
    /// A sequence (Python's list, tuple or other iterable; a JS array).
    List(Vec<Arg>),
    /// Named options (Python's keyword arguments, a JS object's own properties).
    Map(Vec<(String, Arg)>),
    /// Something callable.
    Func,
    /// Anything else: shown by its type name alone.
    Other,
}

/// A value with its language's type name (`str`, `string`, `NoneType`, `null`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    /// The value.
    pub value: Value,
    /// Its type, as the language calls it.
    pub type_name: String,
}

impl Arg {
    /// A value of the language's type `type_name`.
    pub fn new(value: Value, type_name: impl Into<String>) -> Arg {
        Arg { value, type_name: type_name.into() }
    }

    /// The value and its type as a message shows them: `"10" (str)`, `1.5 (float)`, `a function`.
    fn shown(&self, style: Style) -> String {
        let t = &self.type_name;
        match &self.value {
            Value::None => format!("{} ({t})", style.none()),
            Value::Bool(b) => format!("{} ({t})", style.boolean(*b)),
            Value::Int(n) => format!("{n} ({t})"),
            Value::Float(f) => format!("{} ({t})", style.float(*f)),
            Value::Str(s) => format!("{s:?} ({t})"),
            Value::Bytes(b) => format!("{} bytes ({t})", b.len()),
            Value::List(items) => {
                let items: Vec<String> = items.iter().map(|a| a.shown(style)).collect();
                format!("[{}] ({t})", items.join(", "))
            }
            Value::Map(_) | Value::Func | Value::Other => format!("a value of type {t}"),
        }
    }

    fn number(&self) -> Option<f64> {
        match self.value {
            Value::Int(n) => Some(n as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }
}

/// How a language spells option names and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `cache_duration`, `None`, `True`, seconds everywhere.
    Python,
    /// `cacheDuration`, `null`, `true`, a call's `timeoutMs` in milliseconds.
    Node,
}

impl Style {
    /// An option's name (given in snake case) as this language spells it.
    pub fn name(self, snake: &str) -> String {
        match self {
            Style::Python => snake.to_owned(),
            Style::Node => {
                let mut out = String::with_capacity(snake.len());
                let mut upper = false;
                for c in snake.chars() {
                    match c {
                        '_' => upper = true,
                        c if upper => {
                            out.push(c.to_ascii_uppercase());
                            upper = false;
                        }
                        c => out.push(c),
                    }
                }
                out
            }
        }
    }

    fn none(self) -> &'static str {
        match self {
            Style::Python => "None",
            Style::Node => "null",
        }
    }

    fn boolean(self, b: bool) -> &'static str {
        match (self, b) {
            (Style::Python, true) => "True",
            (Style::Python, false) => "False",
            (Style::Node, true) => "true",
            (Style::Node, false) => "false",
        }
    }

    fn float(self, f: f64) -> String {
        match (self, f) {
            (Style::Node, f) if f.is_nan() => "NaN".to_owned(),
            (Style::Node, f) if f.is_infinite() => if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned(),
            (Style::Python, f) if f.is_nan() => "nan".to_owned(),
            (Style::Python, f) if f.is_infinite() => if f > 0.0 { "inf" } else { "-inf" }.to_owned(),
            (Style::Node, f) => f.to_string(),
            (Style::Python, f) => format!("{f:?}"),
        }
    }

    /// The serializers of the shared tier this language offers (its default first).
    pub fn serializers(self) -> &'static [&'static str] {
        match self {
            Style::Python => &["pickle", "json"],
            Style::Node => &["v8", "json"],
        }
    }

    /// `configure`'s options in this language (snake case).
    fn configure_options(self) -> &'static [&'static str] {
        // Node's own two come last.
        const ALL: [&str; 13] = [
            "memory_limit",
            "cache_duration",
            "when_full",
            "max_concurrency",
            "refresh_after",
            "serve_stale_on_error",
            "early_refresh",
            "redis_url",
            "serializer",
            "secret",
            "lease_ttl",
            "shared",
            "size_of",
        ];
        match self {
            Style::Python => &ALL[..11],
            Style::Node => &ALL,
        }
    }

    /// A call's options in this language (snake case); Python's `weigher` is its own argument.
    fn call_options(self) -> &'static [&'static str] {
        match self {
            Style::Python => &["timeout", "tags", "refresh_after"],
            Style::Node => &["timeout_ms", "tags", "refresh_after", "size_of"],
        }
    }

    fn quoted_list(self, items: &[&str]) -> String {
        let q: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
        match q.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => q.join(""),
        }
    }
}

/// Which exception a binding raises for an [`OptionError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A value of the wrong type, or an unknown option: Python's `TypeError`, JS's `TypeError`.
    Type,
    /// A value of the right type that is not accepted: Python's `ValueError`, JS's `Error`.
    Value,
}

/// An option, setting or argument that cannot be used; the message says which, what was given
/// and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The exception class to raise.
    pub kind: ErrorKind,
    /// The Node error's stable `code`: `ERR_COOPCACHE_INVALID_CONFIG` (a setting of
    /// `configure`), `ERR_COOPCACHE_INVALID_OPTION` (an option of a call) or
    /// `ERR_COOPCACHE_INVALID_ARGUMENT` (another argument).
    pub code: &'static str,
    /// The message, in the language's spelling.
    pub message: String,
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OptionError {}

/// `configure`'s settings.
pub const INVALID_CONFIG: &str = "ERR_COOPCACHE_INVALID_CONFIG";
/// A call's options.
pub const INVALID_OPTION: &str = "ERR_COOPCACHE_INVALID_OPTION";
/// Any other argument (a cache's name, a function, a tag).
pub const INVALID_ARGUMENT: &str = "ERR_COOPCACHE_INVALID_ARGUMENT";

impl OptionError {
    /// `invalid <name>: <value> (<type>); expected <accepted>`.
    pub fn invalid(
        kind: ErrorKind,
        code: &'static str,
        name: &str,
        arg: &Arg,
        style: Style,
        expected: &str,
    ) -> Self {
        let message = format!("invalid {name}: {}; expected {expected}", arg.shown(style));
        OptionError { kind, code, message }
    }

    /// A setting the core refused once its type was right (a `ValueError`), in the language's
    /// spelling.
    pub fn config(e: &ConfigError, style: Style) -> Self {
        let message = format!("invalid {}: {} (expected {})", style.name(e.setting), e.value, e.expected);
        OptionError { kind: ErrorKind::Value, code: INVALID_CONFIG, message }
    }

    fn unknown(code: &'static str, function: &str, name: &str, known: &[&str], style: Style) -> Self {
        let known: Vec<String> = known.iter().map(|k| style.name(k)).collect();
        let mut message =
            format!("{function}() got an unexpected option '{name}' (options: {})", known.join(", "));
        // `memory_limit` in Node or `memoryLimit` in Python: the other language's spelling.
        let plain = |s: &str| s.replace('_', "").to_ascii_lowercase();
        if let Some(k) = known.iter().find(|k| plain(k) == plain(name)) {
            let _ = write!(message, "; did you mean '{k}'?");
        }
        OptionError { kind: ErrorKind::Type, code, message }
    }
}

/// A cache's name: a string.
pub fn cache_name(arg: &Arg, style: Style) -> Result<&str, OptionError> {
    match &arg.value {
        Value::Str(s) => Ok(s),
        _ => Err(OptionError::invalid(
            ErrorKind::Type,
            INVALID_ARGUMENT,
            "name",
            arg,
            style,
            "a cache name (a string)",
        )),
    }
}

/// A tag (`invalidate_tag`'s): a string.
pub fn tag(arg: &Arg, style: Style) -> Result<&str, OptionError> {
    match &arg.value {
        Value::Str(s) => Ok(s),
        _ => Err(OptionError::invalid(
            ErrorKind::Type,
            INVALID_ARGUMENT,
            "tag",
            arg,
            style,
            "a tag (a string)",
        )),
    }
}

/// The options of `configure`, checked; `settings` is the cache's current settings with the
/// given ones applied.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Configure {
    /// The settings to apply.
    pub settings: Settings,
    /// Shared mode on Redis: its URL (checked when the tier is made).
    pub redis_url: Option<String>,
    /// The serializer, one of [`Style::serializers`].
    pub serializer: Option<&'static str>,
    /// Shared mode: the signing secret (not empty).
    pub secret: Option<Vec<u8>>,
    /// Shared mode: the lease TTL (> 0).
    pub lease_ttl: Option<Duration>,
    /// Node's `shared: 'process'`: shared across the process's worker threads, without Redis.
    pub process: bool,
    /// The language the options were given in (its default serializer, its spelling).
    pub style: Style,
}

/// Checks `configure`'s options (None values are omitted options, but for `max_concurrency`
/// and `refresh_after`, where None removes the limit or the refresh) and applies the settings
/// to `base`.
pub fn configure(base: Settings, options: &[(String, Arg)], style: Style) -> Result<Configure, OptionError> {
    let known = style.configure_options();
    let mut c = Configure {
        settings: base,
        redis_url: None,
        serializer: None,
        secret: None,
        lease_ttl: None,
        process: false,
        style,
    };
    let s = &mut c.settings;
    for (given, arg) in options {
        let Some(&key) = known.iter().find(|k| style.name(k) == *given) else {
            return Err(OptionError::unknown(INVALID_CONFIG, "configure", given, known, style));
        };
        if arg.value == Value::None && !matches!(key, "max_concurrency" | "refresh_after" | "early_refresh") {
            continue;
        }
        let invalid =
            |kind, expected: &str| OptionError::invalid(kind, INVALID_CONFIG, given, arg, style, expected);
        let wrong = |expected: &str| invalid(ErrorKind::Type, expected);
        let bad = |expected: &str| invalid(ErrorKind::Value, expected);
        let seconds = |positive: bool| {
            let expected = if positive { "a number of seconds > 0" } else { "a number of seconds >= 0" };
            match (&arg.value, arg.number()) {
                (Value::Bool(_), _) | (_, None) => Err(wrong(expected)),
                (_, Some(n)) if positive && n <= 0.0 => Err(bad(expected)),
                (_, Some(n)) => Duration::try_from_secs_f64(n).map_err(|_| bad(expected)),
            }
        };
        match key {
            "memory_limit" => {
                const EXPECTED: &str =
                    "a whole number of bytes >= 0, or a fraction of the machine's memory in (0, 1]";
                s.memory_limit = match arg.value {
                    Value::Int(n) => MemoryLimit::Bytes(u64::try_from(n).map_err(|_| bad(EXPECTED))?),
                    Value::Float(f) => MemoryLimit::from_number(f, true).map_err(|_| bad(EXPECTED))?,
                    _ => return Err(wrong(EXPECTED)),
                };
            }
            "cache_duration" => s.cache_duration = seconds(false)?,
            "when_full" => {
                let expected = "\"reject\" or \"evict\"";
                s.when_full = match &arg.value {
                    Value::Str(w) => w.parse::<WhenFull>().map_err(|_| bad(expected))?,
                    _ => return Err(wrong(expected)),
                };
            }
            "max_concurrency" => {
                let expected = format!("a whole number >= 1, or {} for no limit", style.none());
                s.max_concurrency = match arg.value {
                    Value::None => None,
                    Value::Int(n) => {
                        Some(usize::try_from(n).ok().filter(|&n| n >= 1).ok_or_else(|| bad(&expected))?)
                    }
                    _ => return Err(wrong(&expected)),
                };
            }
            "refresh_after" => {
                s.refresh_after = match arg.value {
                    Value::None => None,
                    _ => Some(seconds_after(arg).map_err(|kind| invalid(kind, &refresh_expected(style)))?),
                };
            }
            "serve_stale_on_error" => match arg.value {
                Value::Bool(b) => s.serve_stale_on_error = b,
                _ => return Err(wrong(&format!("{} or {}", style.boolean(true), style.boolean(false)))),
            },
            "early_refresh" => {
                let expected =
                    format!("a number > 0 (XFetch's beta, 1.0 is usual), or {} for none", style.none());
                s.early_refresh = match (&arg.value, arg.number()) {
                    (Value::None, _) => None,
                    (Value::Bool(_), _) | (_, None) => return Err(wrong(&expected)),
                    (_, Some(b)) if b.is_finite() && b > 0.0 => Some(b),
                    _ => return Err(bad(&expected)),
                };
            }
            "redis_url" => match &arg.value {
                Value::Str(u) => c.redis_url = Some(u.clone()),
                _ => {
                    return Err(wrong(
                        "a redis://, rediss://, redis+cluster:// or rediss+cluster:// URL (a string)",
                    ));
                }
            },
            "serializer" => {
                let choices = style.serializers();
                let expected = style.quoted_list(choices);
                c.serializer = match &arg.value {
                    Value::Str(w) => Some(*choices.iter().find(|c| *c == w).ok_or_else(|| bad(&expected))?),
                    _ => return Err(wrong(&expected)),
                };
            }
            "secret" => {
                let secret = match &arg.value {
                    Value::Str(t) => t.as_bytes().to_vec(),
                    Value::Bytes(b) => b.clone(),
                    _ => return Err(wrong("a string or bytes, not empty")),
                };
                if secret.is_empty() {
                    return Err(bad("a string or bytes, not empty"));
                }
                c.secret = Some(secret);
            }
            "lease_ttl" => c.lease_ttl = Some(seconds(true)?),
            "shared" => match &arg.value {
                Value::Str(p) if p == "process" => c.process = true,
                _ => return Err(bad("'process': share the cache across this process's worker threads")),
            },
            "size_of" => {
                if arg.value != Value::Func {
                    return Err(wrong("a function (value, key) => bytes"));
                }
            }
            _ => unreachable!("every known option is handled"),
        }
    }
    c.settings.validate().map_err(|e| OptionError::config(&e, style))?;
    if c.process {
        let with = [
            ("redis_url", c.redis_url.is_some()),
            ("secret", c.secret.is_some()),
            ("lease_ttl", c.lease_ttl.is_some()),
        ];
        if let Some((other, _)) = with.iter().find(|(_, given)| *given) {
            let names = ["redis_url", "secret", "lease_ttl"].map(|n| style.name(n));
            let message = format!(
                "invalid shared: 'process' with {} (expected 'process' alone: {} are for sharing through Redis)",
                style.name(other),
                names.join(", ")
            );
            return Err(OptionError { kind: ErrorKind::Value, code: INVALID_CONFIG, message });
        }
    }
    Ok(c)
}

/// What `refresh_after` accepts, in the language's spelling.
fn refresh_expected(style: Style) -> String {
    format!("a number of seconds > 0, or {} to never refresh", style.none())
}

/// A number of seconds > 0 (`refresh_after`, in every language), or the kind of error.
fn seconds_after(arg: &Arg) -> Result<Duration, ErrorKind> {
    match (&arg.value, arg.number()) {
        (Value::Bool(_), _) | (_, None) => Err(ErrorKind::Type),
        (_, Some(n)) if n <= 0.0 => Err(ErrorKind::Value),
        (_, Some(n)) => Duration::try_from_secs_f64(n).map_err(|_| ErrorKind::Value),
    }
}

/// The options of one call, checked.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CallArgs {
    /// This caller's timeout (None: none).
    pub timeout: Option<Duration>,
    /// The tags the value is stored with.
    pub tags: Vec<String>,
    /// The value this call stores falls due for refresh after this long instead of the
    /// cache's `refresh_after` (seconds in every language).
    pub refresh_after: Option<Duration>,
}

/// Checks a call's options: a timeout (Python's `timeout` in seconds, Node's `timeoutMs` in
/// milliseconds; None or an infinite one is no timeout), tags (a list of strings) and
/// `refresh_after` (seconds > 0; None: the cache's).
pub fn call(options: &[(String, Arg)], style: Style) -> Result<CallArgs, OptionError> {
    let known = style.call_options();
    let mut out = CallArgs::default();
    for (given, arg) in options {
        let Some(&key) = known.iter().find(|k| style.name(k) == *given) else {
            return Err(OptionError::unknown(INVALID_OPTION, "cached", given, known, style));
        };
        if arg.value == Value::None {
            continue;
        }
        let invalid =
            |kind, expected: &str| OptionError::invalid(kind, INVALID_OPTION, given, arg, style, expected);
        match key {
            "timeout" | "timeout_ms" => {
                let (unit, per_sec) =
                    if key == "timeout" { ("seconds", 1.0) } else { ("milliseconds", 1000.0) };
                let expected = format!("a number of {unit} >= 0, or {} for none", style.none());
                let n = match (&arg.value, arg.number()) {
                    (Value::Bool(_), _) | (_, None) => return Err(invalid(ErrorKind::Type, &expected)),
                    (_, Some(n)) => n,
                };
                out.timeout = match Duration::try_from_secs_f64(n / per_sec) {
                    Ok(d) => Some(d),
                    Err(_) if n == f64::INFINITY => None,
                    Err(_) => return Err(invalid(ErrorKind::Value, &expected)),
                };
            }
            "tags" => {
                let expected = "a list of strings";
                let Value::List(items) = &arg.value else {
                    let hint = if matches!(arg.value, Value::Str(_)) {
                        " (wrap a single tag in a list)"
                    } else {
                        ""
                    };
                    return Err(invalid(ErrorKind::Type, &format!("{expected}{hint}")));
                };
                for item in items {
                    match &item.value {
                        Value::Str(t) => out.tags.push(t.clone()),
                        _ => {
                            let expected = format!("{expected}; one is {}", item.shown(style));
                            return Err(invalid(ErrorKind::Type, &expected));
                        }
                    }
                }
            }
            "refresh_after" => {
                let expected = format!("a number of seconds > 0, or {} for the cache's", style.none());
                out.refresh_after = Some(seconds_after(arg).map_err(|kind| invalid(kind, &expected))?);
            }
            "size_of" => {
                if arg.value != Value::Func {
                    return Err(invalid(ErrorKind::Type, "a function (value, key) => bytes"));
                }
            }
            _ => unreachable!("every known option is handled"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(v: Value, t: &str) -> Arg {
        Arg::new(v, t)
    }

    fn opts(items: &[(&str, Arg)]) -> Vec<(String, Arg)> {
        items.iter().map(|(k, a)| (k.to_string(), a.clone())).collect()
    }

    fn conf_err(items: &[(&str, Arg)], style: Style) -> OptionError {
        configure(Settings::default(), &opts(items), style).unwrap_err()
    }

    fn str_(s: &str, t: &str) -> Arg {
        py(Value::Str(s.into()), t)
    }

    #[test]
    fn a_string_is_shown_as_a_string_with_its_type() {
        let e = conf_err(&[("cache_duration", str_("10", "str"))], Style::Python);
        assert_eq!(e.kind, ErrorKind::Type);
        assert_eq!(e.message, "invalid cache_duration: \"10\" (str); expected a number of seconds >= 0");
        let e = conf_err(&[("cacheDuration", str_("10", "string"))], Style::Node);
        assert_eq!(e.message, "invalid cacheDuration: \"10\" (string); expected a number of seconds >= 0");
        assert_eq!(e.code, INVALID_CONFIG);
    }

    #[test]
    fn bad_values_are_value_errors_naming_the_setting() {
        let e = conf_err(&[("memory_limit", py(Value::Float(1.5), "float"))], Style::Python);
        assert_eq!((e.kind, e.code), (ErrorKind::Value, INVALID_CONFIG));
        assert_eq!(
            e.message,
            "invalid memory_limit: 1.5 (float); expected a whole number of bytes >= 0, or a fraction of the \
             machine's memory in (0, 1]"
        );
        let e = conf_err(&[("memoryLimit", py(Value::Int(-1), "number"))], Style::Node);
        assert!(e.message.starts_with("invalid memoryLimit: -1 (number); expected a whole number"));
        let e = conf_err(&[("cacheDuration", py(Value::Float(f64::INFINITY), "number"))], Style::Node);
        assert_eq!(e.message, "invalid cacheDuration: Infinity (number); expected a number of seconds >= 0");
        let e = conf_err(&[("cache_duration", py(Value::Float(f64::NAN), "float"))], Style::Python);
        assert_eq!(e.message, "invalid cache_duration: nan (float); expected a number of seconds >= 0");
        let e = conf_err(&[("when_full", str_("drop", "str"))], Style::Python);
        assert_eq!(e.message, "invalid when_full: \"drop\" (str); expected \"reject\" or \"evict\"");
        let e = conf_err(&[("max_concurrency", py(Value::Int(0), "int"))], Style::Python);
        assert_eq!(
            e.message,
            "invalid max_concurrency: 0 (int); expected a whole number >= 1, or None for no limit"
        );
        let e = conf_err(&[("maxConcurrency", py(Value::Float(1.5), "number"))], Style::Node);
        assert_eq!(e.kind, ErrorKind::Type);
        assert_eq!(
            e.message,
            "invalid maxConcurrency: 1.5 (number); expected a whole number >= 1, or null for no limit"
        );
        let e = conf_err(&[("serializer", str_("xml", "str"))], Style::Python);
        assert_eq!(e.message, "invalid serializer: \"xml\" (str); expected \"pickle\" or \"json\"");
        let e = conf_err(&[("serializer", str_("pickle", "string"))], Style::Node);
        assert_eq!(e.message, "invalid serializer: \"pickle\" (string); expected \"v8\" or \"json\"");
        let e = conf_err(&[("secret", str_("", "str"))], Style::Python);
        assert_eq!(e.message, "invalid secret: \"\" (str); expected a string or bytes, not empty");
        let e = conf_err(&[("lease_ttl", py(Value::Int(0), "int"))], Style::Python);
        assert_eq!(e.message, "invalid lease_ttl: 0 (int); expected a number of seconds > 0");
    }

    #[test]
    fn wrong_types_are_type_errors() {
        let e = conf_err(&[("memory_limit", py(Value::Bool(true), "bool"))], Style::Python);
        assert_eq!(e.kind, ErrorKind::Type);
        assert!(e.message.starts_with("invalid memory_limit: True (bool); expected"), "{}", e.message);
        let e = conf_err(&[("redisUrl", py(Value::Int(42), "number"))], Style::Node);
        assert_eq!(
            e.message,
            "invalid redisUrl: 42 (number); expected a redis://, rediss://, redis+cluster:// or rediss+cluster:// URL (a string)"
        );
        let e = conf_err(&[("secret", py(Value::Other, "object"))], Style::Node);
        assert_eq!(
            e.message,
            "invalid secret: a value of type object; expected a string or bytes, not empty"
        );
        let e = conf_err(&[("sizeOf", py(Value::Int(1), "number"))], Style::Node);
        assert_eq!(e.message, "invalid sizeOf: 1 (number); expected a function (value, key) => bytes");
        let e = conf_err(&[("shared", py(Value::Bool(true), "boolean"))], Style::Node);
        assert!(e.message.starts_with("invalid shared: true (boolean); expected 'process'"), "{}", e.message);
    }

    #[test]
    fn unknown_options_list_the_known_ones() {
        let e = conf_err(&[("memory_limt", py(Value::Int(5), "int"))], Style::Python);
        assert_eq!(e.kind, ErrorKind::Type);
        assert_eq!(
            e.message,
            "configure() got an unexpected option 'memory_limt' (options: memory_limit, cache_duration, \
             when_full, max_concurrency, refresh_after, serve_stale_on_error, early_refresh, redis_url, \
             serializer, secret, lease_ttl)"
        );
        let e = conf_err(&[("memory_limit", py(Value::Int(10), "number"))], Style::Node);
        assert_eq!(
            e.message,
            "configure() got an unexpected option 'memory_limit' (options: memoryLimit, cacheDuration, \
             whenFull, maxConcurrency, refreshAfter, serveStaleOnError, earlyRefresh, redisUrl, serializer, \
             secret, leaseTtl, shared, sizeOf); did you mean 'memoryLimit'?"
        );
        assert_eq!(e.code, INVALID_CONFIG);
        let e = call(&opts(&[("timeout", py(Value::Int(1), "number"))]), Style::Node).unwrap_err();
        assert_eq!((e.kind, e.code), (ErrorKind::Type, INVALID_OPTION));
        assert_eq!(
            e.message,
            "cached() got an unexpected option 'timeout' (options: timeoutMs, tags, refreshAfter, sizeOf)"
        );
    }

    #[test]
    fn settings_apply_over_the_base_and_none_is_omitted() {
        let base = Settings::default().max_concurrency(Some(3));
        let c = configure(
            base.clone(),
            &opts(&[
                ("cache_duration", py(Value::Float(1.5), "float")),
                ("memory_limit", py(Value::Float(0.5), "float")),
                ("when_full", py(Value::None, "NoneType")),
                ("secret", py(Value::Bytes(b"k".to_vec()), "bytes")),
            ]),
            Style::Python,
        )
        .unwrap();
        assert_eq!(c.settings.cache_duration, Duration::from_millis(1500));
        assert_eq!(c.settings.memory_limit, MemoryLimit::Fraction(0.5));
        assert_eq!(c.settings.max_concurrency, Some(3));
        assert_eq!(c.secret.as_deref(), Some(&b"k"[..]));
        let c = configure(base, &opts(&[("maxConcurrency", py(Value::None, "null"))]), Style::Node).unwrap();
        assert_eq!(c.settings.max_concurrency, None);
    }

    #[test]
    fn refresh_options_are_checked_in_each_language_s_spelling() {
        let c = configure(
            Settings::default(),
            &opts(&[
                ("refreshAfter", py(Value::Float(1.5), "number")),
                ("serveStaleOnError", py(Value::Bool(false), "boolean")),
            ]),
            Style::Node,
        )
        .unwrap();
        assert_eq!(c.settings.refresh_after, Some(Duration::from_millis(1500)));
        assert!(!c.settings.serve_stale_on_error);
        let c =
            configure(c.settings, &opts(&[("refresh_after", py(Value::None, "NoneType"))]), Style::Python);
        assert_eq!(c.unwrap().settings.refresh_after, None, "None: never refresh");
        let e = conf_err(&[("refresh_after", py(Value::Int(0), "int"))], Style::Python);
        assert_eq!((e.kind, e.code), (ErrorKind::Value, INVALID_CONFIG));
        assert_eq!(
            e.message,
            "invalid refresh_after: 0 (int); expected a number of seconds > 0, or None to never refresh"
        );
        let e = conf_err(&[("refreshAfter", str_("60", "string"))], Style::Node);
        assert_eq!(e.kind, ErrorKind::Type);
        assert_eq!(
            e.message,
            "invalid refreshAfter: \"60\" (string); expected a number of seconds > 0, or null to never refresh"
        );
        let c = configure(
            Settings::default(),
            &opts(&[("earlyRefresh", py(Value::Int(1), "number"))]),
            Style::Node,
        );
        assert_eq!(c.unwrap().settings.early_refresh, Some(1.0));
        let e = conf_err(&[("early_refresh", py(Value::Float(0.0), "float"))], Style::Python);
        assert_eq!((e.kind, e.code), (ErrorKind::Value, INVALID_CONFIG));
        assert_eq!(
            e.message,
            "invalid early_refresh: 0.0 (float); expected a number > 0 (XFetch's beta, 1.0 is usual), or None \
             for none"
        );
        let e = conf_err(&[("serve_stale_on_error", py(Value::Int(1), "int"))], Style::Python);
        assert_eq!(e.kind, ErrorKind::Type);
        assert_eq!(e.message, "invalid serve_stale_on_error: 1 (int); expected True or False");
        let c = call(&opts(&[("refreshAfter", py(Value::Int(30), "number"))]), Style::Node).unwrap();
        assert_eq!(c.refresh_after, Some(Duration::from_secs(30)));
        let e =
            call(&opts(&[("refresh_after", py(Value::Float(-1.0), "float"))]), Style::Python).unwrap_err();
        assert_eq!((e.kind, e.code), (ErrorKind::Value, INVALID_OPTION));
        assert_eq!(
            e.message,
            "invalid refresh_after: -1.0 (float); expected a number of seconds > 0, or None for the cache's"
        );
    }

    #[test]
    fn process_sharing_goes_alone() {
        let e =
            conf_err(&[("shared", str_("process", "string")), ("secret", str_("s", "string"))], Style::Node);
        assert_eq!(
            e.message,
            "invalid shared: 'process' with secret (expected 'process' alone: redisUrl, secret, leaseTtl are for \
             sharing through Redis)"
        );
    }

    #[test]
    fn call_options_in_each_language_s_units() {
        let c = call(&opts(&[("timeoutMs", py(Value::Int(1500), "number"))]), Style::Node).unwrap();
        assert_eq!(c.timeout, Some(Duration::from_millis(1500)));
        let c = call(&opts(&[("timeout", py(Value::Float(1.5), "float"))]), Style::Python).unwrap();
        assert_eq!(c.timeout, Some(Duration::from_millis(1500)));
        let c = call(&opts(&[("timeout", py(Value::Float(f64::INFINITY), "float"))]), Style::Python).unwrap();
        assert_eq!(c.timeout, None);
        let e = call(&opts(&[("timeout", str_("1", "str"))]), Style::Python).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Type);
        assert_eq!(
            e.message,
            "invalid timeout: \"1\" (str); expected a number of seconds >= 0, or None for none"
        );
        let e = call(&opts(&[("timeoutMs", str_("1000", "string"))]), Style::Node).unwrap_err();
        assert_eq!(
            e.message,
            "invalid timeoutMs: \"1000\" (string); expected a number of milliseconds >= 0, or null for none"
        );
        let e = call(&opts(&[("timeout", py(Value::Int(-1), "int"))]), Style::Python).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Value);
    }

    #[test]
    fn tags_are_a_list_of_strings() {
        let tags = py(Value::List(vec![str_("a", "str"), str_("b", "str")]), "list");
        assert_eq!(call(&opts(&[("tags", tags)]), Style::Python).unwrap().tags, ["a", "b"]);
        let e = call(&opts(&[("tags", str_("user:1", "str"))]), Style::Python).unwrap_err();
        assert_eq!(
            e.message,
            "invalid tags: \"user:1\" (str); expected a list of strings (wrap a single tag in a list)"
        );
        let e =
            call(&opts(&[("tags", py(Value::List(vec![py(Value::Int(1), "int")]), "list"))]), Style::Python)
                .unwrap_err();
        assert_eq!(e.message, "invalid tags: [1 (int)] (list); expected a list of strings; one is 1 (int)");
        assert_eq!(e.kind, ErrorKind::Type);
    }

    #[test]
    fn names_are_strings_and_core_errors_are_spelled_per_language() {
        let e = cache_name(&py(Value::Int(123), "int"), Style::Python).unwrap_err();
        assert_eq!((e.kind, e.code), (ErrorKind::Type, INVALID_ARGUMENT));
        assert_eq!(e.message, "invalid name: 123 (int); expected a cache name (a string)");
        assert_eq!(cache_name(&str_("users", "str"), Style::Python).unwrap(), "users");
        let e = tag(&py(Value::Int(1), "number"), Style::Node).unwrap_err();
        assert_eq!((e.kind, e.code), (ErrorKind::Type, INVALID_ARGUMENT));
        assert_eq!(e.message, "invalid tag: 1 (number); expected a tag (a string)");
        assert_eq!(tag(&str_("user:1", "string"), Style::Node).unwrap(), "user:1");
        let core = ConfigError { setting: "lease_ttl", value: "5ms".into(), expected: "at least 10 ms" };
        assert_eq!(
            OptionError::config(&core, Style::Node).message,
            "invalid leaseTtl: 5ms (expected at least 10 ms)"
        );
    }
}
