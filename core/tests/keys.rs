//! Canonical keys: normalised as Python's `==`, stable bytes for the shared tier.

use coopcache::{Key, KeyValue, KeyWriter, Weigh, function_id};

#[test]
fn equal_numbers_are_one_key() {
    assert_eq!(Key::from(1), Key::from(1.0));
    assert_eq!(Key::from(1), Key::from(true));
    assert_eq!(Key::from(0), Key::from(-0.0));
    assert_eq!(Key::from(-7i32), Key::from(-7.0));
    assert_ne!(Key::from(1), Key::from(1.5));
    assert_ne!(Key::from(1), Key::from("1"));
    assert_eq!(Key::from(f64::NAN), Key::from(-f64::NAN));
}

#[test]
fn big_ints_and_integral_floats_agree() {
    // 2**64 as a float and as an int of any size.
    let mut w = KeyWriter::new();
    w.big_int(false, &[1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(w.finish(), Key::from(18446744073709551616.0));
    // 1e20 == 10**20
    let mut w = KeyWriter::new();
    w.big_int(false, &100000000000000000000u128.to_be_bytes());
    assert_eq!(w.finish(), Key::from(1e20));
    // Leading zeros and small magnitudes fold into the i64 form.
    let mut w = KeyWriter::new();
    w.big_int(true, &[0, 0, 5]);
    assert_eq!(w.finish(), Key::from(-5));
    let mut w = KeyWriter::new();
    w.big_int(true, &(1u64 << 63).to_be_bytes());
    assert_eq!(w.finish(), Key::from(i64::MIN));
    assert_eq!(Key::from(u64::MAX).decode(), KeyValue::BigInt { negative: false, magnitude: vec![0xff; 8] });
}

#[test]
fn the_encoding_is_stable() {
    assert_eq!(Key::from(()).as_bytes(), [0x00]);
    assert_eq!(Key::from(42).as_bytes(), [0x01, 0, 0, 0, 0, 0, 0, 0, 42]);
    assert_eq!(Key::from("hé").as_bytes(), [0x04, 3, b'h', 0xc3, 0xa9]);
    assert_eq!(Key::from(&b"\x00\x01"[..]).as_bytes(), [0x05, 2, 0, 1]);
    assert_eq!(Key::from(1.5).as_bytes(), [0x03, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        Key::from(("user", 42)).as_bytes(),
        [0x06, 2, 0x04, 4, b'u', b's', b'e', b'r', 0x01, 0, 0, 0, 0, 0, 0, 0, 42]
    );
    let long = "x".repeat(200);
    assert_eq!(&Key::from(long.as_str()).as_bytes()[..3], [0x04, 0xc8, 0x01], "LEB128 lengths");
}

#[test]
fn keys_round_trip_through_bytes() {
    let mut w = KeyWriter::new();
    w.list(3).str("a").list(2).none().float(2.5).bytes(b"z");
    let k = w.finish();
    assert_eq!(Key::from_bytes(k.as_bytes()).unwrap(), k);
    assert_eq!(
        k.decode(),
        KeyValue::List(vec![
            KeyValue::Str("a".into()),
            KeyValue::List(vec![KeyValue::None, KeyValue::Float(2.5)]),
            KeyValue::Bytes(b"z".to_vec()),
        ])
    );
    assert_eq!(k.to_string(), "[\"a\", [None, 2.5], b\"z\"]");
    assert!(Key::from_bytes(&[0x06, 2, 0x00]).is_err(), "truncated list");
    assert!(Key::from_bytes(&[0x09]).is_err(), "unknown tag");
    assert!(Key::from_bytes(&[0x00, 0x00]).is_err(), "trailing bytes");
}

#[test]
fn tuples_vectors_and_nested_keys_agree() {
    assert_eq!(Key::from(vec![1, 2]), Key::from((1, 2)));
    let inner = Key::from(("a", 1));
    let mut w = KeyWriter::new();
    w.list(2).key(&inner).int(2);
    assert_eq!(w.finish(), Key::from((("a", 1), 2)));
}

#[test]
fn a_writer_keeps_every_byte_across_its_inline_buffer() {
    // Items that cross the 64 bytes a writer keeps on the stack, and a shared start copied in.
    let mut start = KeyWriter::new();
    start.list(4).str(&"s".repeat(60));
    let mut w = KeyWriter::new();
    w.append(&start).int(-2).bytes(&[7; 30]).append(&start.clone());
    let mut expected = vec![0x06, 4, 0x04, 60];
    expected.extend([b's'; 60]);
    expected.push(0x01);
    expected.extend((-2i64).to_be_bytes());
    expected.extend([0x05, 30]);
    expected.extend([7; 30]);
    expected.extend([0x06, 4, 0x04, 60]);
    expected.extend([b's'; 60]);
    assert_eq!(w.as_bytes(), expected.as_slice());
}

/// The key of a memoized function's call with one int argument (the default key of a Python
/// decorated function: its id, then the arguments' list) is held inline: no heap block per
/// entry, in a `Key` no larger than before.
#[test]
fn a_functions_key_with_one_int_argument_needs_no_allocation() {
    let mut w = KeyWriter::new();
    w.list(2).bytes(&function_id("coopcache_contender.fn_3")).list(1).int(7);
    let key = w.finish();
    assert_eq!(key.as_bytes().len(), 23);
    assert_eq!(key.heap_bytes(), 0, "a 23-byte key is held inline");
    assert_eq!(std::mem::size_of::<Key>(), 24);
    let long = Key::from("a str that is too long to be inline");
    assert!(long.heap_bytes() >= long.as_bytes().len(), "a longer key weighs its heap block");
}

/// A function's id is part of the shared-mode wire format: the first 8 bytes of the SHA-256
/// of its qualified name, the same in every process and every release.
#[test]
fn a_functions_id_is_stable() {
    assert_eq!(function_id("app.users.profile"), [0x25, 0x22, 0x58, 0xd0, 0x90, 0x5c, 0x6b, 0x4c]);
}
