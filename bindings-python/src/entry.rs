//! The call entry of `@coopcache.cached` functions: the type Python sees as
//! `coopcache._native.CachedFunction` is a subclass of the pyclass [`CachedFunction`], made
//! with `PyType_FromSpecWithBases`, that CPython calls by vectorcall (PEP 590).
//!
//! Why: pyo3 gives a pyclass's `__call__` only `tp_call` (pyo3 issue #4252), so CPython packed
//! every call's arguments into a tuple and went through pyo3's generic trampoline: about 430
//! instructions per hit more than `functools.lru_cache` (callgrind), most of them the tuple.
//! This entry answers a hit itself: it writes the key of positional arguments straight from
//! the caller's array; for keyword arguments or `key=` it makes the tuple and the dict the
//! pyclass's path makes (and calls `key=` once, as that path does).
//!
//! The rest goes on through pyo3's trampolines, where pyo3 keeps its count of the attached
//! thread (its `Python::attach` and the drop of a `Py` rely on it): the first call, which looks
//! the cache up, goes to the pyclass's `tp_call` ([`fallback`]); a miss, or a hit that took the
//! key's refresh, hands the lookup's result to a closure ([`settle`]).
//!
//! Soundness: CPython calls the entry holding the GIL and takes back a new reference, or NULL
//! with an exception set. A panic never unwinds into CPython: it becomes pyo3's
//! `PanicException`. The hit path makes no pyo3 call that needs pyo3's count (it writes the
//! key from borrowed arguments and increments the stored value's reference count); an error
//! raised here (a key it cannot write, `key=` raising) may leave pyo3 a reference to release at
//! its next call, as pyo3 does with any `Py` dropped outside its trampolines. The
//! vectorcall flag and the `__vectorcalloffset__` member of `PyType_FromSpec` are in the
//! limited API since 3.12, with the values and meaning they have had since 3.8 and 3.9: the
//! abi3-py39 build uses them on every version it runs on (its tests run on 3.9 to 3.13).

use std::any::Any;
use std::ffi::{CStr, CString, c_int, c_uint, c_ulong, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::{null, null_mut};
use std::sync::{Mutex, OnceLock};

use coopcache::{Key, KeyWriter, RefreshHit};
use pyo3::PyTypeInfo;
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyTuple};

use crate::flight::{CachedFunction, hit};
use crate::{CoreCache, PyValue};

/// `Py_TPFLAGS_HAVE_VECTORCALL` (`object.h`).
const HAVE_VECTORCALL: c_ulong = 1 << 11;
/// `PY_VECTORCALL_ARGUMENTS_OFFSET`: a flag in `nargsf`, not part of the count.
const ARGUMENTS_OFFSET: usize = 1 << (usize::BITS - 1);

const NAME: &CStr = c"coopcache._native.CachedFunction";
const DOC: &CStr = c"A sync function decorated with @coopcache.cached(name).";

/// The base's `tp_new` and `tp_call` (pyo3's), and where an instance holds its entry pointer
/// (after the base's layout). Set before the type is made.
struct Layout {
    base_new: ffi::newfunc,
    base_call: ffi::ternaryfunc,
    offset: usize,
}

static LAYOUT: OnceLock<Layout> = OnceLock::new();

/// Makes the type and adds it to the module as `CachedFunction`.
pub(crate) fn add(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = py.get_type::<CachedFunction>();
    let base_size: usize = base.getattr("__basicsize__")?.extract()?;
    // SAFETY: the base is a heap type (pyo3 makes pyclasses with `PyType_FromSpec`), whose
    // slots `PyType_GetSlot` reads on 3.9 too; a slot holds the function of its kind.
    let (new, call) = unsafe {
        let ty = base.as_type_ptr();
        (ffi::PyType_GetSlot(ty, ffi::Py_tp_new), ffi::PyType_GetSlot(ty, ffi::Py_tp_call))
    };
    if new.is_null() || call.is_null() {
        return Err(PyRuntimeError::new_err(
            "coopcache: the CachedFunction base type has no tp_new or tp_call",
        ));
    }
    // SAFETY: the `Py_tp_new` slot holds a `newfunc`, the `Py_tp_call` one a `ternaryfunc`.
    let (base_new, base_call) = unsafe {
        (
            std::mem::transmute::<*mut c_void, ffi::newfunc>(new),
            std::mem::transmute::<*mut c_void, ffi::ternaryfunc>(call),
        )
    };
    let offset = base_size.next_multiple_of(align_of::<ffi::vectorcallfunc>());
    let layout = LAYOUT.get_or_init(|| Layout { base_new, base_call, offset });
    let mut members = [
        ffi::PyMemberDef {
            name: c"__vectorcalloffset__".as_ptr(),
            type_code: ffi::Py_T_PYSSIZET,
            offset: layout.offset as ffi::Py_ssize_t,
            flags: ffi::Py_READONLY,
            doc: null(),
        },
        ffi::PyMemberDef::default(),
    ];
    let new_fn: ffi::newfunc = new_with_entry;
    let mut slots = [
        ffi::PyType_Slot { slot: ffi::Py_tp_new, pfunc: new_fn as *mut c_void },
        ffi::PyType_Slot { slot: ffi::Py_tp_members, pfunc: members.as_mut_ptr().cast() },
        ffi::PyType_Slot { slot: ffi::Py_tp_doc, pfunc: DOC.as_ptr() as *mut c_void },
        ffi::PyType_Slot { slot: 0, pfunc: null_mut() },
    ];
    let mut spec = ffi::PyType_Spec {
        // Static: 3.9 keeps this pointer as the type's `tp_name`.
        name: NAME.as_ptr(),
        basicsize: c_int::try_from(layout.offset + size_of::<ffi::vectorcallfunc>())?,
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT | HAVE_VECTORCALL) as c_uint,
        slots: slots.as_mut_ptr(),
    };
    let bases = PyTuple::new(py, [base])?;
    // SAFETY: the spec, its slots and members live through the call (CPython copies the
    // members and the doc, and reads the slots only here); the GIL is held.
    let ty = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpecWithBases(&mut spec, bases.as_ptr()))?
    };
    m.add("CachedFunction", ty)
}

/// The layout, set before the type exists, so before any of its instances (else NULL with a
/// `SystemError`).
fn layout() -> Option<&'static Layout> {
    let layout = LAYOUT.get();
    if layout.is_none() {
        // SAFETY: called holding the GIL (by a slot of the type); the message is a C string.
        unsafe {
            ffi::PyErr_SetString(ffi::PyExc_SystemError, c"coopcache: CachedFunction has no layout".as_ptr())
        };
    }
    layout
}

/// The type's `tp_new`: the base's, then the entry pointer in the new instance.
unsafe extern "C" fn new_with_entry(
    ty: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let Some(layout) = layout() else { return null_mut() };
    // SAFETY: the base's tp_new with this call's arguments; it makes an instance of `ty`
    // (this type: it cannot be subclassed) of `ty`'s size, zeroed past the base's layout.
    let obj = unsafe { (layout.base_new)(ty, args, kwargs) };
    if !obj.is_null() {
        let entry: ffi::vectorcallfunc = vectorcall;
        // SAFETY: `offset` is inside the instance (the type's basicsize covers it) and aligned.
        unsafe { obj.cast::<u8>().add(layout.offset).cast::<ffi::vectorcallfunc>().write(entry) };
    }
    obj
}

/// The entry CPython calls (the instance's vectorcall pointer).
unsafe extern "C" fn vectorcall(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let nargs = nargsf & !ARGUMENTS_OFFSET;
    // SAFETY: `kwnames` is NULL or a tuple of str; the GIL is held.
    let nkw = if kwnames.is_null() { 0 } else { unsafe { ffi::PyTuple_Size(kwnames) as usize } };
    let all = match nargs + nkw {
        0 => &[][..],
        // SAFETY: `args` holds the positional arguments, then one value per keyword name, each
        // borrowed for the call.
        n => unsafe { std::slice::from_raw_parts(args, n) },
    };
    // A panic must not unwind into CPython.
    // SAFETY: CPython calls a vectorcall entry holding the GIL with a live instance of this
    // type and its arguments.
    match catch_unwind(AssertUnwindSafe(|| unsafe { call(callable, all, nargs, kwnames) })) {
        Ok(result) => result,
        Err(payload) => panicked(payload),
    }
}

/// A call: a hit is answered here; the first call and the calls the lookup does not answer go
/// on in pyo3's trampolines (see the module docs).
///
/// # Safety
/// The GIL is held; `callable` is an instance of this type; `all` are its live arguments
/// (`nargs` positional ones, then the values of `kwnames`).
#[inline(always)]
unsafe fn call(
    callable: *mut ffi::PyObject,
    all: &[*mut ffi::PyObject],
    nargs: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the token does not outlive this call, made holding the GIL.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: an instance of this type is one of the pyclass, a frozen one (shared access
    // needs no borrow flag).
    let slf = unsafe { Borrowed::from_ptr(py, callable).cast_unchecked::<CachedFunction>() };
    let f = slf.get();
    let (positional, values) = all.split_at(nargs);
    let Some(cache) = f.cache.get() else {
        // SAFETY: as this function's.
        return unsafe { fallback(py, callable, positional, values, kwnames) };
    };
    let mut w = KeyWriter::new();
    // The arguments as a tuple and a dict, made for keyword arguments or `key=` only.
    let mut made = None;
    let written = if kwnames.is_null() && f.key_fn.is_none() {
        // SAFETY: each pointer is a live argument borrowed for the call.
        let arg = |i: usize| -> PyResult<_> { Ok(unsafe { Borrowed::from_ptr(py, positional[i]) }) };
        f.write_positional(&mut w, nargs, false, arg)
    } else {
        // SAFETY: `kwnames` is NULL or the names of `values`, each borrowed for the call.
        unsafe { arguments(py, positional, values, kwnames) }.and_then(|(args, kwargs)| {
            f.write_call_key(&mut w, &args, kwargs.as_ref())?;
            made = Some((args, kwargs));
            Ok(())
        })
    };
    if let Err(e) = written {
        return raise(py, e);
    }
    match hit(py, cache, &w, &f.opts) {
        Some((v, None)) => v.into_ptr(),
        found => settle(py, slf, cache, found, w, made, positional),
    }
}

/// The first call, which looks the cache up by name: the pyclass's `__call__` (pyo3's
/// trampoline, where a failed lookup raises its error), with the arguments as a tuple and a
/// dict, as CPython's `tp_call` path makes them.
///
/// # Safety
/// As [`arguments`]'s; `callable` is an instance of this type.
#[cold]
unsafe fn fallback(
    py: Python<'_>,
    callable: *mut ffi::PyObject,
    positional: &[*mut ffi::PyObject],
    values: &[*mut ffi::PyObject],
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let Some(layout) = layout() else { return null_mut() };
    // SAFETY: as this function's.
    match unsafe { arguments(py, positional, values, kwnames) } {
        // SAFETY: the base's `tp_call` with an instance, a tuple and NULL or a dict.
        Ok((args, kwargs)) => unsafe {
            (layout.base_call)(callable, args.as_ptr(), kwargs.as_ref().map_or(null_mut(), |k| k.as_ptr()))
        },
        Err(e) => raise(py, e),
    }
}

/// The arguments as a tuple, and the keyword arguments as a dict if there are any.
///
/// # Safety
/// The pointers are live objects borrowed for the call; `kwnames` is NULL or a tuple of the
/// names of `values`.
unsafe fn arguments<'py>(
    py: Python<'py>,
    positional: &[*mut ffi::PyObject],
    values: &[*mut ffi::PyObject],
    kwnames: *mut ffi::PyObject,
) -> PyResult<(Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>)> {
    // SAFETY: as the caller promises.
    let arg = |p: &*mut ffi::PyObject| unsafe { Borrowed::from_ptr(py, *p) };
    let args = PyTuple::new(py, positional.iter().map(arg))?;
    // SAFETY: as the caller promises.
    let Some(names) = (unsafe { Borrowed::from_ptr_or_opt(py, kwnames) }) else { return Ok((args, None)) };
    let kwargs = PyDict::new(py);
    for (name, v) in names.try_iter()?.zip(values) {
        kwargs.set_item(name?, arg(v))?;
    }
    Ok((args, Some(kwargs)))
}

/// A call that its hit lookup (`found`) did not answer: a miss, or a hit that took the key's
/// refresh. It goes on in a closure called through pyo3's trampoline, which the lookup's
/// result is handed to, with the arguments (`made` for keyword arguments or `key=`).
#[cold]
fn settle(
    py: Python<'_>,
    slf: Borrowed<'_, '_, CachedFunction>,
    cache: &CoreCache,
    found: Option<RefreshHit<Py<PyAny>, Key, PyValue>>,
    w: KeyWriter,
    made: Option<(Bound<'_, PyTuple>, Option<Bound<'_, PyDict>>)>,
    positional: &[*mut ffi::PyObject],
) -> *mut ffi::PyObject {
    // SAFETY: each pointer is a live argument borrowed for the call.
    let made = made.map_or_else(|| unsafe { arguments(py, positional, &[], null_mut()) }, Ok);
    let state = made.map(|(args, kwargs)| {
        (slf.to_owned().unbind(), cache.clone(), found, w, args.unbind(), kwargs.map(Bound::unbind))
    });
    let run = state.and_then(|state| {
        let state = Mutex::new(Some(state));
        PyCFunction::new_closure(py, None, None, move |a, _| -> PyResult<Py<PyAny>> {
            let py = a.py();
            let Some((slf, cache, found, w, args, kwargs)) = state.lock().ok().and_then(|mut s| s.take())
            else {
                return Err(PyRuntimeError::new_err("coopcache: a call goes on once"));
            };
            slf.get().settle(py, &cache, found, w, args.bind(py), kwargs.as_ref().map(|k| k.bind(py)))
        })
    });
    match run.and_then(|run| run.call0()) {
        Ok(v) => v.into_ptr(),
        Err(e) => raise(py, e),
    }
}

/// Raises `e`: NULL with the exception set.
#[cold]
fn raise(py: Python<'_>, e: PyErr) -> *mut ffi::PyObject {
    e.restore(py);
    null_mut()
}

/// A panic becomes pyo3's `PanicException`.
#[cold]
fn panicked(payload: Box<dyn Any + Send>) -> *mut ffi::PyObject {
    let msg = match payload.downcast_ref::<String>() {
        Some(s) => s.as_str(),
        None => payload.downcast_ref::<&str>().copied().unwrap_or("a panic in a coopcache call"),
    };
    let msg = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: the GIL is held (a vectorcall entry); the message is a C string.
    unsafe {
        let py = Python::assume_attached();
        ffi::PyErr_SetString(PanicException::type_object_raw(py).cast(), msg.as_ptr());
    }
    null_mut()
}
