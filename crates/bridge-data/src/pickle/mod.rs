//! Python pickles as the Bridge stack writes them: dicts and lists holding NumPy arrays,
//! protocols 2 to 5, read and written without Python.
//!
//! Why not `serde-pickle`: it decodes plain Python values well but has no model of objects. A
//! NumPy array in a pickle is a call (`REDUCE`) of `numpy.core.multiarray._reconstruct` (or, at
//! protocol 5, `numpy.core.numeric._frombuffer` on a `BYTEARRAY8` buffer) followed by a `BUILD`
//! whose state holds the shape, a pickled `numpy.dtype` and the raw bytes. serde-pickle either
//! rejects those globals or replaces them by `None`, losing the data. So this module carries a
//! small pickle machine ([`from_slice`]) that keeps calls and states as a tree, then interprets the
//! NumPy forms it knows (NumPy 1.x `numpy.core.*` and NumPy 2.x `numpy._core.*` names,
//! `multiarray.scalar`, `_codecs.encode` for protocol-2 bytes, `bytearray`, `set`,
//! `collections.OrderedDict`). Anything else stays an [`Value::Object`] for the caller to judge.
//!
//! Not supported (clear errors): out-of-band buffers (`NEXT_BUFFER`), persistent ids, the
//! protocol-0 `INST`/`OBJ` opcodes, extension registry codes, self-referential containers.
//!
//! The writer ([`to_vec`]) emits protocol 3 with arrays in NumPy's own `_reconstruct` form, so
//! `pickle.load` in Python (NumPy 1.x or 2.x) reads back the same arrays.
//!
//! ```
//! use bridge_data::pickle::{self, NdArray, Value};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let value = Value::Dict(vec![(
//!     Value::Str("state".into()),
//!     Value::Array(NdArray::from_f64(vec![2, 7], &[0.5; 14])),
//! )]);
//! let bytes = pickle::to_vec(&value)?;
//! let back = pickle::from_slice(&bytes)?;
//! let state = back.get("state").and_then(Value::as_array).ok_or("no state")?;
//! assert_eq!(state.shape, vec![2, 7]);
//! assert_eq!(state.to_f64_vec()?, vec![0.5; 14]);
//! # Ok(())
//! # }
//! ```

mod array;
mod read;
mod write;

pub use array::{ArrayData, ArrayError, DType, DTypeKind, NdArray};
pub use read::{PickleError, PickleErrorKind, from_slice};
pub use write::{WriteError, to_vec};

/// A decoded pickle: Python's plain values, NumPy arrays, and any other object as its call.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit `i64`: little-endian two's complement bytes, as in `LONG1`.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    /// `bytes` or `bytearray`.
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// `set` or `frozenset`, in pickle order.
    Set(Vec<Value>),
    /// A `dict` (or `OrderedDict`) in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A NumPy `ndarray` (a NumPy scalar is a 0-d array).
    Array(NdArray),
    /// A pickled `numpy.dtype`.
    DType(DType),
    /// A reference to a module attribute (class or function) that was not called.
    Global {
        module: String,
        name: String,
    },
    /// Any other object: `callable(*args)` then `BUILD(state)`, plus items appended or set on it.
    Object {
        callable: Box<Value>,
        args: Box<Value>,
        state: Option<Box<Value>>,
        list_items: Vec<Value>,
        dict_items: Vec<(Value, Value)>,
    },
}

impl Value {
    /// The value under a string key, when this is a dict holding it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| match k {
                    Value::Str(s) => s == key,
                    // Python 2 pickles hold `str` keys as bytes.
                    Value::Bytes(b) => b == key.as_bytes(),
                    _ => false,
                })
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The array, when this is one.
    pub fn as_array(&self) -> Option<&NdArray> {
        match self {
            Value::Array(array) => Some(array),
            _ => None,
        }
    }

    /// The elements of a list or tuple.
    pub fn as_sequence(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) | Value::Tuple(items) => Some(items),
            _ => None,
        }
    }

    /// The text of a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The value of a Python int (or bool) that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// A short Python-like name of the variant, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::Dict(_) => "dict",
            Value::Array(_) => "ndarray",
            Value::DType(_) => "dtype",
            Value::Global { .. } => "global",
            Value::Object { .. } => "object",
        }
    }
}
