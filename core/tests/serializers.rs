//! What the core decides about a binding's serializer: which one a shared cache has (fixed once
//! made; `pickle` on Redis only with a secret), and, with JSON, that the computing process
//! returns the value decoded from the bytes it writes, the one every other process reads.
#![cfg(feature = "redis")]

use coopcache::options::{self, Arg, Style, Value};
use coopcache::{CallOptions, Caller, Key, LeadStep, Outcome, Registry, Settings, Step};

fn configure(r: &Registry<String>, name: &str, style: Style, given: &[(&str, &str)]) -> Result<(), String> {
    let given: Vec<(String, Arg)> =
        given.iter().map(|(k, v)| (k.to_string(), Arg::new(Value::Str(v.to_string()), "str"))).collect();
    let o = options::configure(Settings::default(), &given, style).map_err(|e| e.message)?;
    r.configure_from(name, o).map(drop).map_err(|e| e.to_string())
}

/// Drives one call of `key` to its end as a binding does, computing `computed`, "encoding" a
/// value as `<value>` and "decoding" bytes as `decoded <bytes>`; the result and the steps the
/// binding was asked for.
fn call(r: &Registry<String>, name: &str, key: &str, computed: Outcome<String>) -> (String, Vec<String>) {
    let cache = r.get(name).unwrap();
    let mut call = cache.call(Key::from(key), &CallOptions::new(), Caller::Blocking);
    let mut asked = Vec::new();
    let mut computed = Some(computed);
    loop {
        match call.step() {
            Step::Done(result) => return (result.unwrap(), asked),
            Step::Wait(ready) => ready.wait(),
            Step::Lead(mut lead) => loop {
                match lead.step() {
                    LeadStep::Wait(ready) | LeadStep::Confirm(ready) => ready.wait(),
                    LeadStep::Compute => {
                        asked.push("compute".to_owned());
                        lead.computed(computed.take().expect("computed once"));
                    }
                    LeadStep::Encode(v) => {
                        asked.push(format!("encode {v}"));
                        lead.encoded(Ok(format!("<{v}>").into_bytes()));
                    }
                    LeadStep::Decode(bytes) => {
                        let bytes = String::from_utf8(bytes).unwrap();
                        asked.push(format!("decode {bytes}"));
                        lead.decoded(Ok((format!("decoded {bytes}"), 0)));
                    }
                    LeadStep::Done => break,
                    _ => unreachable!("no other step"),
                }
            },
        }
    }
}

fn store(v: &str) -> Outcome<String> {
    Outcome::Store { value: v.to_owned(), weight: 0 }
}

#[test]
fn with_json_the_computing_process_returns_and_keeps_what_the_others_read() {
    let r = Registry::new();
    configure(&r, "json1", Style::Node, &[("shared", "process"), ("serializer", "json")]).unwrap();
    let (v, asked) = call(&r, "json1", "k", store("computed"));
    assert_eq!(asked, ["compute", "encode computed", "decode <computed>"], "encoded once, decoded once");
    assert_eq!(v, "decoded <computed>");
    assert_eq!(r.get("json1").unwrap().get(&Key::from("k")).as_deref(), Some("decoded <computed>"));
    // A value not stored is the decoded one too.
    let (v, _) = call(&r, "json1", "n", Outcome::NoCache("once".to_owned()));
    assert_eq!(v, "decoded <once>");
    // Another cache of the name (another worker) reads the bytes written: the same value.
    let other = Registry::new();
    configure(&other, "json1", Style::Node, &[("shared", "process"), ("serializer", "json")]).unwrap();
    assert_eq!(
        call(&other, "json1", "k", store("unused")),
        ("decoded <computed>".to_owned(), vec!["decode <computed>".to_owned()])
    );
}

#[test]
fn a_serializer_that_keeps_types_returns_the_value_itself() {
    let r = Registry::new();
    configure(&r, "v81", Style::Node, &[("shared", "process")]).unwrap();
    assert_eq!(r.get("v81").unwrap().shared().unwrap().serializer(), Some("v8"), "Node's default");
    let (v, asked) = call(&r, "v81", "k", store("computed"));
    assert_eq!(asked, ["compute", "encode computed"]);
    assert_eq!(v, "computed");
}

#[test]
fn the_serializer_of_a_shared_cache_cannot_change() {
    let r = Registry::new();
    configure(&r, "fixed", Style::Node, &[("shared", "process"), ("serializer", "json")]).unwrap();
    let e = configure(&r, "fixed", Style::Node, &[("serializer", "v8")]).unwrap_err();
    assert_eq!(e, "invalid serializer: \"v8\" (expected the one the shared cache was first configured with)");
    configure(&r, "fixed", Style::Node, &[("serializer", "json")]).expect("the same one again");
    // A cache without a shared tier has no serializer to keep.
    configure(&r, "local", Style::Node, &[("serializer", "json")]).unwrap();
    configure(&r, "local", Style::Node, &[("serializer", "v8")]).unwrap();
}

#[test]
fn pickle_on_redis_needs_a_secret_and_nothing_is_made_without_one() {
    let r = Registry::new();
    let url = ("redis_url", "redis://127.0.0.1:1");
    for given in [vec![url], vec![url, ("serializer", "pickle")]] {
        let e = configure(&r, "pk", Style::Python, &given).unwrap_err();
        assert!(e.starts_with("invalid secret: none (expected a secret with serializer \"pickle\""), "{e}");
        assert!(r.get("pk").is_err(), "no cache made");
    }
}
