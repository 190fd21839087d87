//! The calls the reader interprets: NumPy arrays, dtypes and scalars, `_codecs.encode`,
//! `bytearray`/`bytes`, `set`/`frozenset` and `collections.OrderedDict`.

use super::PickleErrorKind;
use crate::pickle::{ArrayData, DType, DTypeKind, NdArray, Value};

/// The calls this reader understands; `Ok(None)` leaves the call as an [`Value::Object`].
pub(super) fn interpret_known_call(
    module: &str,
    name: &str,
    args: &Value,
    state: Option<&Value>,
    list_items: &[Value],
    dict_items: &[(Value, Value)],
) -> Result<Option<Value>, PickleErrorKind> {
    let is_numpy_core = module.starts_with("numpy.core.") || module.starts_with("numpy._core.");
    let value = match (module, name) {
        (_, "_reconstruct") if is_numpy_core => Value::Array(array_from_state(state)?),
        ("numpy", "dtype") => Value::DType(dtype_from_call(args, state)?),
        (_, "scalar") if is_numpy_core => Value::Array(scalar_from_args(args)?),
        (_, "_frombuffer") if is_numpy_core => Value::Array(array_from_buffer(args)?),
        ("_codecs", "encode") => Value::Bytes(codecs_encode(args)?),
        ("builtins" | "__builtin__", "bytearray" | "bytes") => Value::Bytes(bytes_call(args)?),
        ("builtins" | "__builtin__", "set" | "frozenset") => {
            let mut items = match sequence_arg(args, 0) {
                Some(seq) => seq.to_vec(),
                None => Vec::new(),
            };
            items.extend_from_slice(list_items);
            Value::Set(items)
        }
        ("collections", "OrderedDict") => Value::Dict(ordered_dict(args, dict_items)),
        _ => return Ok(None),
    };
    Ok(Some(value))
}

fn wrong(context: &'static str, expected: &'static str, found: Option<&Value>) -> PickleErrorKind {
    PickleErrorKind::WrongType {
        context,
        expected,
        found: found.map_or("nothing", Value::type_name).to_string(),
    }
}

fn arg(args: &Value, index: usize) -> Option<&Value> {
    args.as_sequence().and_then(|items| items.get(index))
}

fn sequence_arg(args: &Value, index: usize) -> Option<&[Value]> {
    arg(args, index).and_then(|v| match v {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => Some(items.as_slice()),
        _ => None,
    })
}

fn shape_of(value: Option<&Value>, context: &'static str) -> Result<Vec<usize>, PickleErrorKind> {
    let items = value
        .and_then(Value::as_sequence)
        .ok_or_else(|| wrong(context, "tuple of ints", value))?;
    items
        .iter()
        .map(|dim| {
            dim.as_i64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| wrong(context, "non-negative int", Some(dim)))
        })
        .collect()
}

fn expect_dtype(value: Option<&Value>, context: &'static str) -> Result<DType, PickleErrorKind> {
    match value {
        Some(Value::DType(dtype)) => Ok(dtype.clone()),
        other => Err(wrong(context, "numpy.dtype", other)),
    }
}

/// `ndarray.__setstate__`: `(version, shape, dtype, is_fortran, data)` or the version-less
/// 4-tuple of old NumPy; `data` is bytes, a Python 2 `str`, or a list for object arrays.
fn array_from_state(state: Option<&Value>) -> Result<NdArray, PickleErrorKind> {
    let items = state
        .and_then(Value::as_sequence)
        .ok_or_else(|| wrong("ndarray state", "tuple", state))?;
    let fields = match items.len() {
        5 => &items[1..],
        4 => items,
        n => {
            return Err(PickleErrorKind::NumPy(format!(
                "ndarray state has {n} fields, expected 4 or 5"
            )));
        }
    };
    let shape = shape_of(Some(&fields[0]), "ndarray state shape")?;
    let dtype = expect_dtype(Some(&fields[1]), "ndarray state dtype")?;
    let fortran_order = match &fields[2] {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        other => return Err(wrong("ndarray state is_fortran", "bool", Some(other))),
    };
    let data = match (&fields[3], dtype.kind) {
        (Value::List(items), DTypeKind::Object) => ArrayData::Objects(items.clone()),
        (Value::Bytes(bytes), _) => ArrayData::Raw(bytes.clone()),
        (Value::Str(text), _) => ArrayData::Raw(latin1_bytes(text)?),
        (other, _) => return Err(wrong("ndarray state data", "bytes", Some(other))),
    };
    Ok(NdArray {
        dtype,
        shape,
        fortran_order,
        data,
    })
}

/// `numpy.dtype(typestr, align, copy)` with `BUILD (version, byteorder, ..., elsize, ...)`.
fn dtype_from_call(args: &Value, state: Option<&Value>) -> Result<DType, PickleErrorKind> {
    let typestr = match arg(args, 0) {
        Some(Value::Str(s)) => s.clone(),
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        other => return Err(wrong("numpy.dtype argument", "str", other)),
    };
    let mut dtype = DType::from_typestr(&typestr)
        .ok_or_else(|| PickleErrorKind::NumPy(format!("unknown dtype {typestr:?}")))?;
    if let Some(fields) = state.and_then(Value::as_sequence) {
        if let Some(order) = fields.get(1) {
            let order = match order {
                Value::Str(s) => s.as_bytes().first().copied(),
                Value::Bytes(b) => b.first().copied(),
                _ => None,
            };
            dtype.big_endian = order == Some(b'>');
        }
        // Flexible dtypes (S, U, V) record their item size in the state; -1 otherwise.
        let flexible_size = fields.get(5).and_then(Value::as_i64);
        if let Some(size) = flexible_size.and_then(|s| usize::try_from(s).ok()) {
            dtype.item_size = if size > 0 { size } else { dtype.item_size };
        }
        if fields
            .get(3)
            .is_some_and(|names| !matches!(names, Value::None))
        {
            return Err(PickleErrorKind::NumPy(
                "structured dtypes (with field names) are not supported".into(),
            ));
        }
    }
    Ok(dtype)
}

/// `multiarray.scalar(dtype, bytes)` (or `(dtype, object)` for object scalars): a 0-d array.
fn scalar_from_args(args: &Value) -> Result<NdArray, PickleErrorKind> {
    let dtype = expect_dtype(arg(args, 0), "numpy scalar dtype")?;
    let data = match (arg(args, 1), dtype.kind) {
        (Some(Value::Bytes(bytes)), kind) if kind != DTypeKind::Object => {
            ArrayData::Raw(bytes.clone())
        }
        (Some(Value::Str(text)), kind) if kind != DTypeKind::Object => {
            ArrayData::Raw(latin1_bytes(text)?)
        }
        (Some(object), DTypeKind::Object) => ArrayData::Objects(vec![object.clone()]),
        (other, _) => return Err(wrong("numpy scalar data", "bytes", other)),
    };
    Ok(NdArray {
        dtype,
        shape: Vec::new(),
        fortran_order: false,
        data,
    })
}

/// Protocol 5: `numeric._frombuffer(buffer, dtype, shape, order)`.
fn array_from_buffer(args: &Value) -> Result<NdArray, PickleErrorKind> {
    let data = match arg(args, 0) {
        Some(Value::Bytes(bytes)) => bytes.clone(),
        other => return Err(wrong("_frombuffer buffer", "in-band bytes buffer", other)),
    };
    let dtype = expect_dtype(arg(args, 1), "_frombuffer dtype")?;
    let shape = shape_of(arg(args, 2), "_frombuffer shape")?;
    let fortran_order = matches!(arg(args, 3), Some(Value::Str(order)) if order == "F");
    Ok(NdArray {
        dtype,
        shape,
        fortran_order,
        data: ArrayData::Raw(data),
    })
}

/// Protocol 2 pickles Python 3 bytes as `_codecs.encode(text, 'latin1')`.
fn codecs_encode(args: &Value) -> Result<Vec<u8>, PickleErrorKind> {
    let text = match arg(args, 0) {
        Some(Value::Str(text)) => text,
        other => return Err(wrong("_codecs.encode argument", "str", other)),
    };
    match arg(args, 1).and_then(Value::as_str) {
        Some("latin1" | "latin-1" | "iso-8859-1") => latin1_bytes(text),
        Some("utf-8" | "utf8") | None => Ok(text.as_bytes().to_vec()),
        Some(other) => Err(PickleErrorKind::NumPy(format!(
            "_codecs.encode with encoding {other:?} is not supported"
        ))),
    }
}

fn bytes_call(args: &Value) -> Result<Vec<u8>, PickleErrorKind> {
    match arg(args, 0) {
        None => Ok(Vec::new()),
        Some(Value::Bytes(bytes)) => Ok(bytes.clone()),
        Some(Value::Str(_)) => codecs_encode(args),
        other => Err(wrong("bytearray argument", "bytes", other)),
    }
}

fn ordered_dict(args: &Value, dict_items: &[(Value, Value)]) -> Vec<(Value, Value)> {
    let mut pairs: Vec<(Value, Value)> = sequence_arg(args, 0)
        .unwrap_or(&[])
        .iter()
        .filter_map(|pair| match pair.as_sequence() {
            Some([key, value]) => Some((key.clone(), value.clone())),
            _ => None,
        })
        .collect();
    pairs.extend_from_slice(dict_items);
    pairs
}

fn latin1_bytes(text: &str) -> Result<Vec<u8>, PickleErrorKind> {
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c)).map_err(|_| {
                PickleErrorKind::NumPy(format!("character {c:?} is not latin-1 (expected bytes)"))
            })
        })
        .collect()
}
