//! Pickle protocol 3 writer for plain values and NumPy arrays (NumPy's own `_reconstruct` form).

use super::{ArrayData, DType, NdArray, Value};

/// Why a value could not be pickled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("cannot pickle a {0} value (only plain values and numeric arrays are written)")]
    Unsupported(&'static str),
    #[error("{0} bytes is too long for a protocol-3 pickle (at most 4 GiB per value)")]
    TooLong(usize),
    #[error("array of shape {shape:?} and dtype {dtype} needs {expected} data bytes, has {found}")]
    ArraySize {
        shape: Vec<usize>,
        dtype: String,
        expected: usize,
        found: usize,
    },
}

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BINFLOAT: u8 = b'G';
const BINUNICODE: u8 = b'X';
const BINBYTES: u8 = b'B';
const SHORT_BINBYTES: u8 = b'C';
const EMPTY_LIST: u8 = b']';
const EMPTY_DICT: u8 = b'}';
const EMPTY_TUPLE: u8 = b')';
const MARK: u8 = b'(';
const APPENDS: u8 = b'e';
const SETITEMS: u8 = b'u';
const TUPLE: u8 = b't';
const TUPLE1: u8 = 0x85;
const TUPLE3: u8 = 0x87;
const GLOBAL: u8 = b'c';
const REDUCE: u8 = b'R';
const BUILD: u8 = b'b';

/// Pickles `value` at protocol 3. Arrays are written as NumPy 1.x and 2.x both read them.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, WriteError> {
    let mut out = vec![PROTO, 3];
    write_value(&mut out, value)?;
    out.push(STOP);
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), WriteError> {
    match value {
        Value::None => out.push(NONE),
        Value::Bool(b) => out.push(if *b { NEWTRUE } else { NEWFALSE }),
        Value::Int(v) => write_int(out, *v)?,
        Value::Float(v) => {
            out.push(BINFLOAT);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Value::Str(text) => write_str(out, text)?,
        Value::Bytes(bytes) => write_bytes(out, bytes)?,
        Value::List(items) => {
            out.push(EMPTY_LIST);
            write_marked(out, items, APPENDS)?;
        }
        Value::Tuple(items) => write_tuple(out, items)?,
        Value::Dict(items) => {
            out.push(EMPTY_DICT);
            if !items.is_empty() {
                out.push(MARK);
                for (key, item) in items {
                    write_value(out, key)?;
                    write_value(out, item)?;
                }
                out.push(SETITEMS);
            }
        }
        Value::Array(array) => write_array(out, array)?,
        Value::DType(dtype) => write_dtype(out, dtype)?,
        other => return Err(WriteError::Unsupported(other.type_name())),
    }
    Ok(())
}

fn write_int(out: &mut Vec<u8>, v: i64) -> Result<(), WriteError> {
    if let Ok(small) = u8::try_from(v) {
        out.extend_from_slice(&[BININT1, small]);
    } else if let Ok(word) = i32::try_from(v) {
        out.push(BININT);
        out.extend_from_slice(&word.to_le_bytes());
    } else {
        // LONG1 with 8 little-endian two's complement bytes.
        out.extend_from_slice(&[0x8a, 8]);
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

fn write_str(out: &mut Vec<u8>, text: &str) -> Result<(), WriteError> {
    out.push(BINUNICODE);
    out.extend_from_slice(&len_u32(text.len())?.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), WriteError> {
    if let Ok(short) = u8::try_from(bytes.len()) {
        out.extend_from_slice(&[SHORT_BINBYTES, short]);
    } else {
        out.push(BINBYTES);
        out.extend_from_slice(&len_u32(bytes.len())?.to_le_bytes());
    }
    out.extend_from_slice(bytes);
    Ok(())
}

/// Lengths are u32 at protocol 3 (an episode's pickles are far smaller).
fn len_u32(len: usize) -> Result<u32, WriteError> {
    u32::try_from(len).map_err(|_| WriteError::TooLong(len))
}

fn write_marked(out: &mut Vec<u8>, items: &[Value], opcode: u8) -> Result<(), WriteError> {
    if items.is_empty() {
        return Ok(());
    }
    out.push(MARK);
    for item in items {
        write_value(out, item)?;
    }
    out.push(opcode);
    Ok(())
}

fn write_tuple(out: &mut Vec<u8>, items: &[Value]) -> Result<(), WriteError> {
    if items.is_empty() {
        out.push(EMPTY_TUPLE);
        return Ok(());
    }
    write_marked(out, items, TUPLE)
}

fn write_global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(GLOBAL);
    out.extend_from_slice(module.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
}

/// `numpy.dtype('f8', False, True)` then `BUILD (3, '<', None, None, None, -1, -1, 0)`, exactly
/// what `dtype.__reduce__` produces.
fn write_dtype(out: &mut Vec<u8>, dtype: &DType) -> Result<(), WriteError> {
    write_global(out, "numpy", "dtype");
    write_str(out, &dtype.typestr())?;
    out.extend_from_slice(&[NEWFALSE, NEWTRUE, TUPLE3, REDUCE]);
    out.push(MARK);
    write_int(out, 3)?;
    write_str(out, &dtype.byte_order_char().to_string())?;
    out.extend_from_slice(&[NONE, NONE, NONE]);
    write_int(out, -1)?;
    write_int(out, -1)?;
    write_int(out, 0)?;
    out.extend_from_slice(&[TUPLE, BUILD]);
    Ok(())
}

/// `_reconstruct(ndarray, (0,), b'b')` then `BUILD (1, shape, dtype, is_fortran, raw_bytes)`.
fn write_array(out: &mut Vec<u8>, array: &NdArray) -> Result<(), WriteError> {
    let ArrayData::Raw(raw) = &array.data else {
        return Err(WriteError::Unsupported("object ndarray"));
    };
    let expected = array.element_count().saturating_mul(array.dtype.item_size);
    if raw.len() != expected {
        return Err(WriteError::ArraySize {
            shape: array.shape.clone(),
            dtype: array.dtype.typestr(),
            expected,
            found: raw.len(),
        });
    }
    write_global(out, "numpy.core.multiarray", "_reconstruct");
    write_global(out, "numpy", "ndarray");
    write_int(out, 0)?;
    out.push(TUPLE1);
    write_bytes(out, b"b")?;
    out.extend_from_slice(&[TUPLE3, REDUCE]);
    out.push(MARK);
    write_int(out, 1)?;
    let shape: Vec<Value> = array
        .shape
        .iter()
        .map(|&d| Value::Int(i64::try_from(d).unwrap_or(i64::MAX)))
        .collect();
    write_tuple(out, &shape)?;
    write_dtype(out, &array.dtype)?;
    out.push(if array.fortran_order {
        NEWTRUE
    } else {
        NEWFALSE
    });
    write_bytes(out, raw)?;
    out.extend_from_slice(&[TUPLE, BUILD]);
    Ok(())
}
