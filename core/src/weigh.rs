//! How many bytes a key or value takes, counting what it owns on the heap.
//!
//! The cache's memory limit is a number of bytes, so the default weight of an entry has to be
//! its bytes too. `size_of` alone would charge a `String` or a `Vec<u8>` 24 bytes whatever it
//! holds, and a "50 MiB" cache of such values could hold gigabytes. [`Weigh`] adds the heap
//! memory a value owns to its inline size.
//!
//! The numbers are estimates of allocated bytes (capacity, not length, because spare capacity
//! is memory too). They leave out the allocator's own bookkeeping and rounding, and for the
//! hash and B-tree collections they follow std's current layout, which is not a stable API. A
//! type that needs an exact or different figure can set a weigher on the cache's builder.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The bytes a value takes: its inline size plus the heap memory it owns.
///
/// The default weigher of a [`Cache`](crate::Cache) charges an entry `key.weight() +
/// value.weight()`, so the memory limit counts bytes. It is implemented for the primitive
/// types, strings, `Vec`, slices, arrays, `Box`, `Arc`, `Rc`, `Option`, `Cow`, tuples of up
/// to 6 elements, `Duration` and the std collections.
///
/// To weigh your own type, add up the heap bytes of its fields. Fields that own no heap
/// memory (integers, `bool`, ...) add nothing:
///
/// ```
/// use coopcache::Weigh;
///
/// struct User {
///     id: u64,
///     name: String,
///     emails: Vec<String>,
/// }
///
/// impl Weigh for User {
///     fn heap_bytes(&self) -> usize {
///         self.name.heap_bytes() + self.emails.heap_bytes()
///     }
/// }
///
/// let user = User { id: 7, name: "Ada".to_string(), emails: vec!["ada@example.com".to_string()] };
/// // The `Vec`'s buffer (one `String`) plus the bytes of both strings.
/// let heap = size_of::<String>() + user.name.capacity() + user.emails[0].capacity();
/// assert_eq!(user.heap_bytes(), heap);
/// assert_eq!(user.weight(), size_of::<User>() + heap);
///
/// // A type that never owns heap memory can say so, and a `Vec` of it is weighed without
/// // visiting its elements.
/// #[derive(Clone, Copy)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// impl Weigh for Point {
///     const INLINE: bool = true;
///
///     fn heap_bytes(&self) -> usize {
///         0
///     }
/// }
///
/// let points = vec![Point { x: 0.0, y: 1.0 }; 1000];
/// assert_eq!(points.heap_bytes(), points.capacity() * size_of::<Point>());
/// ```
#[diagnostic::on_unimplemented(
    message = "the cache cannot weigh `{Self}`: it does not implement `Weigh`",
    label = "`{Self}` does not implement `coopcache::Weigh`",
    note = "implement `coopcache::Weigh` for `{Self}` (return the heap bytes it owns), \
            or give the builder a weigher: `.weigher(|k, v| ...)`"
)]
pub trait Weigh {
    /// True if values of this type never own heap memory (numbers, `bool`, `char`, `()`,
    /// references, and tuples, arrays or `Option`s of such types), so that `heap_bytes` is
    /// always 0.
    ///
    /// Containers use it to skip visiting their elements: a 1 GiB `Vec<u8>` is weighed in
    /// O(1). Setting it on a type that does own heap memory makes containers of it
    /// under-count.
    const INLINE: bool = false;

    /// Bytes this value owns on the heap, not counting `size_of_val(self)`.
    ///
    /// A collection counts its allocated capacity (spare capacity is memory too) plus the
    /// heap bytes of its elements.
    fn heap_bytes(&self) -> usize;

    /// The whole weight: `size_of_val(self) + self.heap_bytes()`.
    ///
    /// This is what the cache charges for a key or value. Implementations do not override it.
    fn weight(&self) -> usize {
        size_of_val(self) + self.heap_bytes()
    }
}

/// Types that never own heap memory.
macro_rules! weigh_inline {
    ($($t:ty),* $(,)?) => {$(
        impl Weigh for $t {
            const INLINE: bool = true;

            fn heap_bytes(&self) -> usize {
                0
            }
        }
    )*};
}

weigh_inline!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);
weigh_inline!(f32, f64, bool, char, (), str, Duration);

/// A borrow owns nothing: the memory belongs to whoever lent it.
impl<T: ?Sized> Weigh for &T {
    const INLINE: bool = true;

    fn heap_bytes(&self) -> usize {
        0
    }
}

/// The heap bytes of the elements, without visiting them when they own no heap memory.
fn elements_heap<'a, T: Weigh + 'a>(items: impl IntoIterator<Item = &'a T>) -> usize {
    if T::INLINE { 0 } else { items.into_iter().map(Weigh::heap_bytes).sum() }
}

impl Weigh for String {
    fn heap_bytes(&self) -> usize {
        self.capacity()
    }
}

impl<T: Weigh> Weigh for Vec<T> {
    fn heap_bytes(&self) -> usize {
        self.capacity() * size_of::<T>() + elements_heap(self)
    }
}

impl<T: Weigh> Weigh for VecDeque<T> {
    fn heap_bytes(&self) -> usize {
        self.capacity() * size_of::<T>() + elements_heap(self)
    }
}

/// The elements' own memory is counted by whatever holds the slice (`Box`, `Arc`, ...).
impl<T: Weigh> Weigh for [T] {
    const INLINE: bool = T::INLINE;

    fn heap_bytes(&self) -> usize {
        elements_heap(self)
    }
}

impl<T: Weigh, const N: usize> Weigh for [T; N] {
    const INLINE: bool = T::INLINE;

    fn heap_bytes(&self) -> usize {
        elements_heap(self)
    }
}

/// The boxed value lives on the heap, with whatever it owns in turn.
impl<T: Weigh + ?Sized> Weigh for Box<T> {
    fn heap_bytes(&self) -> usize {
        (**self).weight()
    }
}

/// Bytes of an `Arc`/`Rc` allocation: two `usize` counters, then the value at its alignment.
///
/// A shared value is charged in full to every holder being weighed, so values that share
/// one allocation are over-counted: the safe side for a memory limit.
fn counted_heap<T: Weigh + ?Sized>(value: &T) -> usize {
    let align = align_of_val(value).max(align_of::<usize>());
    let value_offset = (2 * size_of::<usize>()).next_multiple_of(align);
    (value_offset + size_of_val(value)).next_multiple_of(align) + value.heap_bytes()
}

impl<T: Weigh + ?Sized> Weigh for Arc<T> {
    fn heap_bytes(&self) -> usize {
        counted_heap::<T>(self)
    }
}

impl<T: Weigh + ?Sized> Weigh for Rc<T> {
    fn heap_bytes(&self) -> usize {
        counted_heap::<T>(self)
    }
}

impl<T: Weigh> Weigh for Option<T> {
    const INLINE: bool = T::INLINE;

    fn heap_bytes(&self) -> usize {
        self.as_ref().map_or(0, Weigh::heap_bytes)
    }
}

/// A borrowed `Cow` owns nothing; an owned one owns what its owned value does.
impl<B: ToOwned + ?Sized> Weigh for Cow<'_, B>
where
    B::Owned: Weigh,
{
    fn heap_bytes(&self) -> usize {
        match self {
            Cow::Borrowed(_) => 0,
            Cow::Owned(owned) => owned.heap_bytes(),
        }
    }
}

macro_rules! weigh_tuple {
    ($($t:ident . $i:tt),+) => {
        impl<$($t: Weigh),+> Weigh for ($($t,)+) {
            const INLINE: bool = $($t::INLINE)&&+;

            fn heap_bytes(&self) -> usize {
                0 $(+ self.$i.heap_bytes())+
            }
        }
    };
}

weigh_tuple!(A.0);
weigh_tuple!(A.0, B.1);
weigh_tuple!(A.0, B.1, C.2);
weigh_tuple!(A.0, B.1, C.2, D.3);
weigh_tuple!(A.0, B.1, C.2, D.3, E.4);
weigh_tuple!(A.0, B.1, C.2, D.3, E.4, F.5);

/// Bytes of the one allocation behind a std `HashMap`/`HashSet` holding `T` slots.
///
/// std's map is a SwissTable: a power-of-two number of buckets, each a `T` slot plus one
/// control byte, and 16 more control bytes (one SIMD group) at the end. `capacity()` is 7/8
/// of the buckets (one less than the buckets below 8), which this inverts. It matches std
/// today; if std changes, it stays an estimate of at least `capacity * (size_of::<T>() + 1)`.
fn hash_table_bytes<T>(capacity: usize) -> usize {
    const GROUP: usize = 16;
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 { capacity + 1 } else { capacity / 7 * 8 };
    (buckets * size_of::<T>()).next_multiple_of(GROUP.max(align_of::<T>())) + buckets + GROUP
}

impl<K: Weigh, V: Weigh, S> Weigh for HashMap<K, V, S> {
    fn heap_bytes(&self) -> usize {
        let elements = if K::INLINE && V::INLINE {
            0
        } else {
            self.iter().map(|(k, v)| k.heap_bytes() + v.heap_bytes()).sum()
        };
        hash_table_bytes::<(K, V)>(self.capacity()) + elements
    }
}

impl<T: Weigh, S> Weigh for HashSet<T, S> {
    fn heap_bytes(&self) -> usize {
        hash_table_bytes::<T>(self.capacity()) + elements_heap(self)
    }
}

/// Estimated bytes of the nodes of a std `BTreeMap` with `len` entries.
///
/// Each node holds up to 11 keys and 11 values next to a parent pointer and two `u16`s.
/// Nodes are from half to fully used: measured, about 6 entries a node after inserts in key
/// order and 7 after inserts in random order, so this charges one node for every 6 entries.
/// The child pointers of the few internal nodes (about one node in 7) are left out.
fn btree_bytes<K, V>(len: usize) -> usize {
    len.div_ceil(6) * size_of::<(Option<NonNull<()>>, u16, u16, [K; 11], [V; 11])>()
}

impl<K: Weigh, V: Weigh> Weigh for BTreeMap<K, V> {
    fn heap_bytes(&self) -> usize {
        let elements = if K::INLINE && V::INLINE {
            0
        } else {
            self.iter().map(|(k, v)| k.heap_bytes() + v.heap_bytes()).sum()
        };
        btree_bytes::<K, V>(self.len()) + elements
    }
}

/// A `BTreeSet<T>` is a `BTreeMap<T, ()>`.
impl<T: Weigh> Weigh for BTreeSet<T> {
    fn heap_bytes(&self) -> usize {
        btree_bytes::<T, ()>(self.len()) + elements_heap(self)
    }
}

/// JSON values nest as deep as the data does, so they are weighed with a stack of their own,
/// never by recursion (a value nested 100,000 deep weighs like any other).
#[cfg(feature = "json")]
impl Weigh for serde_json::Value {
    fn heap_bytes(&self) -> usize {
        use serde_json::Value;
        let mut total = 0;
        let mut todo = vec![self];
        while let Some(v) = todo.pop() {
            match v {
                Value::String(s) => total += s.capacity(),
                Value::Array(a) => {
                    total += a.capacity() * size_of::<Value>();
                    todo.extend(a);
                }
                Value::Object(m) => {
                    total += btree_bytes::<String, Value>(m.len());
                    for (k, v) in m {
                        total += k.capacity();
                        todo.push(v);
                    }
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_own_no_heap() {
        assert_eq!(7u64.heap_bytes(), 0);
        assert_eq!(7u64.weight(), 8);
        assert_eq!('x'.weight(), 4);
        assert_eq!(().weight(), 0);
        assert_eq!(Duration::from_secs(1).weight(), size_of::<Duration>());
        // A borrow is weighed as a pointer that owns nothing (called on `&&String`: on a
        // `&String`, method lookup would pick `String`'s impl).
        let s = String::with_capacity(100);
        assert_eq!(Weigh::heap_bytes(&&s), 0);
        assert_eq!(Weigh::weight(&&s), size_of::<&String>());
        const { assert!(u8::INLINE && <(u32, Option<f64>, [char; 3])>::INLINE) };
        const { assert!(!String::INLINE && !<(u32, String)>::INLINE && !Vec::<u8>::INLINE) };
    }

    #[test]
    fn strings_count_capacity() {
        let s = String::with_capacity(100);
        assert_eq!(s.heap_bytes(), 100);
        assert_eq!(s.weight(), size_of::<String>() + 100);
        assert_eq!("hello".weight(), 5);
    }

    #[test]
    fn vec_u8_counts_capacity() {
        let mut v = Vec::<u8>::with_capacity(1000);
        v.extend_from_slice(b"abc");
        assert_eq!(v.heap_bytes(), 1000);
        assert_eq!(v.weight(), size_of::<Vec<u8>>() + 1000);
        let v = vec![0u32; 10];
        assert_eq!(v.heap_bytes(), 40);
    }

    #[test]
    fn huge_vec_u8_is_weighed_without_walking() {
        // 256 MiB, zeroed lazily by the allocator; weighing must not touch the elements.
        let v = vec![0u8; 256 << 20];
        assert_eq!(v.heap_bytes(), 256 << 20);
        assert_eq!(v.weight(), (256 << 20) + size_of::<Vec<u8>>());
    }

    #[test]
    fn vec_of_strings_counts_inner_strings() {
        let mut v = Vec::with_capacity(4);
        v.push(String::with_capacity(10));
        v.push(String::with_capacity(20));
        assert_eq!(v.heap_bytes(), 4 * size_of::<String>() + 30);
    }

    #[test]
    fn nested_vecs() {
        let v: Vec<Vec<u8>> = vec![Vec::with_capacity(5), Vec::with_capacity(7)];
        assert_eq!(v.heap_bytes(), v.capacity() * size_of::<Vec<u8>>() + 12);
    }

    #[test]
    fn boxes() {
        let b: Box<[u8]> = vec![1u8; 33].into_boxed_slice();
        assert_eq!(b.heap_bytes(), 33);
        assert_eq!(b.weight(), 2 * size_of::<usize>() + 33);
        let b: Box<str> = "hello".into();
        assert_eq!(b.heap_bytes(), 5);
        let b = Box::new(String::with_capacity(10));
        assert_eq!(b.heap_bytes(), size_of::<String>() + 10);
        let b: Box<[String]> = vec![String::with_capacity(3)].into_boxed_slice();
        assert_eq!(b.heap_bytes(), size_of::<String>() + 3);
    }

    #[test]
    fn arc_and_rc_count_the_counters() {
        let usize2 = 2 * size_of::<usize>();
        let a: Arc<str> = Arc::from("hello");
        assert_eq!(a.heap_bytes(), (usize2 + 5).next_multiple_of(align_of::<usize>()));
        let r: Rc<[u8]> = Rc::from(&[1u8, 2, 3][..]);
        assert_eq!(r.heap_bytes(), (usize2 + 3).next_multiple_of(align_of::<usize>()));
        let a = Arc::new(String::with_capacity(10));
        assert_eq!(a.heap_bytes(), usize2 + size_of::<String>() + 10);
        // The value is placed at its own alignment after the counters.
        let a = Arc::new(1u128);
        let align = align_of::<u128>().max(align_of::<usize>());
        assert_eq!(a.heap_bytes(), usize2.next_multiple_of(align) + 16);
    }

    #[test]
    fn options_tuples_and_cows() {
        assert_eq!(Some(String::with_capacity(8)).heap_bytes(), 8);
        assert_eq!(None::<String>.heap_bytes(), 0);
        let t = (1u8, String::with_capacity(4), vec![0u16; 3], Some(Box::new(9u64)));
        assert_eq!(t.heap_bytes(), 4 + 6 + 8);
        assert_eq!(t.weight(), size_of_val(&t) + 18);
        assert_eq!((1u8, 2u8, 3u8, 4u8, 5u8, String::with_capacity(2)).heap_bytes(), 2);
        assert_eq!([String::with_capacity(3), String::with_capacity(4)].heap_bytes(), 7);
        assert_eq!(Cow::Borrowed("abc").heap_bytes(), 0);
        assert_eq!(Cow::<str>::Owned(String::with_capacity(6)).heap_bytes(), 6);
    }

    #[test]
    fn hash_map_counts_table_and_keys() {
        let mut m = HashMap::new();
        for i in 0..100u64 {
            m.insert(format!("key-{i}"), i);
        }
        let keys: usize = m.keys().map(String::capacity).sum();
        let slot = size_of::<(String, u64)>();
        let heap = m.heap_bytes();
        assert_eq!(heap, hash_table_bytes::<(String, u64)>(m.capacity()) + keys);
        // At least one slot and one control byte per unit of capacity, at most twice that.
        assert!(heap >= m.capacity() * (slot + 1) + keys);
        assert!(heap <= 2 * m.capacity() * (slot + 1) + keys);
        assert_eq!(HashMap::<String, u64>::new().heap_bytes(), 0);
    }

    #[test]
    fn hash_table_matches_std_layout() {
        // Measured with a counting allocator on std 1.95 (x86_64).
        assert_eq!(hash_table_bytes::<(u64, u64)>(3), 84);
        assert_eq!(hash_table_bytes::<(u64, u64)>(7), 152);
        assert_eq!(hash_table_bytes::<(u64, u64)>(14), 288);
        assert_eq!(hash_table_bytes::<(u64, u64)>(1792), 34832);
        assert_eq!(hash_table_bytes::<u8>(14), 48);
    }

    #[test]
    fn other_collections() {
        let d: VecDeque<String> = VecDeque::from(vec![String::with_capacity(5)]);
        assert_eq!(d.heap_bytes(), d.capacity() * size_of::<String>() + 5);
        let s: HashSet<u32> = (0..10).collect();
        assert_eq!(s.heap_bytes(), hash_table_bytes::<u32>(s.capacity()));
        let b: BTreeMap<u64, String> = (0..13).map(|i| (i, String::with_capacity(2))).collect();
        assert_eq!(b.heap_bytes(), btree_bytes::<u64, String>(13) + 26);
        assert_eq!(BTreeMap::<u64, u64>::new().heap_bytes(), 0);
        // One node of 11 keys and values plus a parent pointer and two u16s.
        assert_eq!(btree_bytes::<u64, u64>(1), 192);
        let s: BTreeSet<u64> = (0..12).collect();
        assert_eq!(s.heap_bytes(), 2 * size_of::<(usize, u16, u16, [u64; 11])>());
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_values_weigh_without_recursion() {
        let mut deep = serde_json::Value::Null;
        for _ in 0..100_000 {
            deep = serde_json::Value::Array(vec![deep]);
        }
        assert!(deep.heap_bytes() >= 100_000 * size_of::<serde_json::Value>());
        let v = serde_json::json!({"name": "Ada", "tags": ["a", "b"]});
        assert!(v.heap_bytes() >= "name".len() + "Ada".len() + 2 * size_of::<serde_json::Value>());
        // Dropping it recursively would overflow the test thread's stack; leak it instead.
        std::mem::forget(deep);
    }
}
