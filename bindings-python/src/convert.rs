//! Python keys → canonical keys, and the native deep-size estimate of values.

use coopcache::{Key, KeyWriter};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple};

/// Deepest nesting of tuples/lists accepted in a key (a self-containing list stops here).
const MAX_KEY_DEPTH: usize = 64;

/// The message of a key of an unsupported type.
pub(crate) fn unsupported_key(obj: &Bound<'_, PyAny>, context: &dyn Fn() -> String) -> PyErr {
    let context = context();
    let ty = obj.get_type().fully_qualified_name().map(|n| n.to_string()).unwrap_or_else(|_| "?".to_owned());
    PyTypeError::new_err(format!(
        "coopcache keys must be str, bytes, int, float, bool, None, or tuples/lists of these; \
         got {ty}{context}. Build the key yourself: pass key=... to the decorator \
         (for example @coopcache.cached(\"name\", key=lambda obj: obj.id)), or give the call \
         form a supported key"
    ))
}

/// Writes one Python value into the key.
pub(crate) fn write_key(
    w: &mut KeyWriter,
    obj: &Bound<'_, PyAny>,
    depth: usize,
    context: &dyn Fn() -> String,
) -> PyResult<()> {
    if let Ok(i) = obj.cast::<PyInt>() {
        // bool is an int subclass: True is 1, as Python's == says.
        match small_int(i) {
            Some(v) => {
                w.int(v);
            }
            None => write_big_int(w, i)?,
        }
    } else if let Ok(s) = obj.cast::<PyString>() {
        w.str(&s.to_cow()?);
    } else if let Ok(f) = obj.cast::<PyFloat>() {
        w.float(f.value());
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        if depth >= MAX_KEY_DEPTH {
            return Err(PyValueError::new_err("coopcache key is nested too deeply (or contains itself)"));
        }
        w.list(t.len());
        for item in t.iter() {
            write_key(w, &item, depth + 1, context)?;
        }
    } else if obj.is_none() {
        w.none();
    } else if let Ok(b) = obj.cast::<PyBytes>() {
        w.bytes(b.as_bytes());
    } else if let Ok(l) = obj.cast::<PyList>() {
        if depth >= MAX_KEY_DEPTH {
            return Err(PyValueError::new_err("coopcache key is nested too deeply (or contains itself)"));
        }
        let items: Vec<Bound<'_, PyAny>> = l.iter().collect();
        w.list(items.len());
        for item in &items {
            write_key(w, item, depth + 1, context)?;
        }
    } else {
        return Err(unsupported_key(obj, context));
    }
    Ok(())
}

/// An int in the i64 range, or None. One C call: an int object cannot fail the conversion,
/// only overflow it (`extract::<i64>` would also ask for an error on every -1).
#[inline]
fn small_int(i: &Bound<'_, PyInt>) -> Option<i64> {
    let mut overflow = 0;
    // SAFETY: `i` is a live int object (an exact int or a subclass, read without `__index__`)
    // and `overflow` a valid out-pointer; the GIL is held.
    let v = unsafe { pyo3::ffi::PyLong_AsLongLongAndOverflow(i.as_ptr(), &mut overflow) };
    (overflow == 0).then_some(v)
}

/// An int outside the i64 range: sign and big-endian magnitude.
fn write_big_int(w: &mut KeyWriter, i: &Bound<'_, PyInt>) -> PyResult<()> {
    let negative = i.lt(0)?;
    let magnitude = i.call_method0("__abs__")?;
    let bits: usize = magnitude.call_method0("bit_length")?.extract()?;
    let bytes = magnitude.call_method1("to_bytes", (bits.div_ceil(8), "big"))?;
    let bytes = bytes.cast::<PyBytes>()?;
    w.big_int(negative, bytes.as_bytes());
    Ok(())
}

/// The canonical key of a Python value.
pub(crate) fn to_key(obj: &Bound<'_, PyAny>) -> PyResult<Key> {
    let mut w = KeyWriter::new();
    write_key(&mut w, obj, 0, &String::new)?;
    Ok(w.finish())
}

/// How many objects the estimate visits at most; the rest count as pointers.
const WEIGH_BUDGET: usize = 10_000;
/// How deep the estimate walks containers.
const WEIGH_DEPTH: usize = 32;

/// A deep-size estimate of a value in bytes, close to what CPython allocates for the common
/// types (str, bytes, int, float, list, tuple, dict, set); other objects count a flat 64 bytes.
pub(crate) fn estimate(obj: &Bound<'_, PyAny>) -> u64 {
    let mut budget = WEIGH_BUDGET;
    weigh(obj, 0, &mut budget)
}

fn weigh(obj: &Bound<'_, PyAny>, depth: usize, budget: &mut usize) -> u64 {
    if *budget == 0 {
        return 8;
    }
    *budget -= 1;
    if obj.is_none() {
        return 0;
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return 33 + b.as_bytes().len() as u64;
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return 49 + s.len().unwrap_or(0) as u64;
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        return match i.extract::<i64>() {
            Ok(_) => 28,
            Err(_) => 28 + i.call_method0("bit_length").and_then(|b| b.extract::<u64>()).unwrap_or(64) / 8,
        };
    }
    if obj.cast::<PyFloat>().is_ok() {
        return 24;
    }
    let deeper = depth + 1 < WEIGH_DEPTH;
    if let Ok(t) = obj.cast::<PyTuple>() {
        let mut n = 40 + 8 * t.len() as u64;
        if deeper {
            for item in t.iter() {
                n += weigh(&item, depth + 1, budget);
            }
        }
        return n;
    }
    if let Ok(l) = obj.cast::<PyList>() {
        let mut n = 56 + 8 * l.len() as u64;
        if deeper {
            for item in l.iter() {
                n += weigh(&item, depth + 1, budget);
            }
        }
        return n;
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut n = 64 + 48 * d.len() as u64;
        if deeper {
            for (k, v) in d.iter() {
                n += weigh(&k, depth + 1, budget) + weigh(&v, depth + 1, budget);
            }
        }
        return n;
    }
    if let Ok(s) = obj.cast::<PySet>() {
        let mut n = 216 + 32 * s.len() as u64;
        if deeper {
            for item in s.iter() {
                n += weigh(&item, depth + 1, budget);
            }
        }
        return n;
    }
    if let Ok(s) = obj.cast::<PyFrozenSet>() {
        let mut n = 216 + 32 * s.len() as u64;
        if deeper {
            for item in s.iter() {
                n += weigh(&item, depth + 1, budget);
            }
        }
        return n;
    }
    64
}
