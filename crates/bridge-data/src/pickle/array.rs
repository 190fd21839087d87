//! NumPy arrays and dtypes as found in pickles, and their conversion to Rust numbers.

use super::Value;

/// The kind letter of a NumPy dtype (`dtype.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DTypeKind {
    Bool,
    Int,
    UInt,
    Float,
    Complex,
    /// `S`: fixed-size bytes.
    Bytes,
    /// `U`: fixed-size UCS-4 text.
    Unicode,
    /// `O`: Python objects (the array's elements are pickled values).
    Object,
    /// `V` and anything else this reader does not interpret.
    Other(char),
}

/// A NumPy dtype: kind, item size in bytes and byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DType {
    pub kind: DTypeKind,
    pub item_size: usize,
    /// True for `>` (big-endian) data; `<`, `|` and `=` are read as little-endian.
    pub big_endian: bool,
}

impl DType {
    /// Little-endian float64 (`<f8`), what Bridge stores states and actions as.
    pub const F64: DType = DType {
        kind: DTypeKind::Float,
        item_size: 8,
        big_endian: false,
    };

    /// Parses NumPy's short type string as pickled in `numpy.dtype(...)`: `"f8"`, `"u1"`, `"O8"`,
    /// `"U10"`, `"b1"` (an optional leading byte order character is honoured).
    pub fn from_typestr(typestr: &str) -> Option<DType> {
        let (big_endian, rest) = match typestr.as_bytes().first()? {
            b'>' => (true, &typestr[1..]),
            b'<' | b'|' | b'=' => (false, &typestr[1..]),
            _ => (false, typestr),
        };
        let mut chars = rest.chars();
        let kind = match chars.next()? {
            'b' => DTypeKind::Bool,
            'i' => DTypeKind::Int,
            'u' => DTypeKind::UInt,
            'f' => DTypeKind::Float,
            'c' => DTypeKind::Complex,
            'S' => DTypeKind::Bytes,
            'U' => DTypeKind::Unicode,
            'O' => DTypeKind::Object,
            other => DTypeKind::Other(other),
        };
        let digits = chars.as_str();
        let count: usize = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        // Unicode sizes count characters (4 bytes each); object arrays hold pointers.
        let item_size = match kind {
            DTypeKind::Unicode => count.checked_mul(4)?,
            DTypeKind::Object => 8,
            _ => count,
        };
        Some(DType {
            kind,
            item_size,
            big_endian,
        })
    }

    /// NumPy's short type string without byte order, e.g. `"f8"` (what `numpy.dtype` is called with).
    pub fn typestr(&self) -> String {
        let (letter, count) = match self.kind {
            DTypeKind::Bool => ('b', self.item_size),
            DTypeKind::Int => ('i', self.item_size),
            DTypeKind::UInt => ('u', self.item_size),
            DTypeKind::Float => ('f', self.item_size),
            DTypeKind::Complex => ('c', self.item_size),
            DTypeKind::Bytes => ('S', self.item_size),
            DTypeKind::Unicode => ('U', self.item_size / 4),
            DTypeKind::Object => ('O', 8),
            DTypeKind::Other(c) => (c, self.item_size),
        };
        format!("{letter}{count}")
    }

    /// The byte order character NumPy pickles in the dtype state.
    pub fn byte_order_char(&self) -> char {
        match self.kind {
            DTypeKind::Object | DTypeKind::Other(_) => '|',
            _ if self.item_size <= 1 && self.kind != DTypeKind::Unicode => '|',
            _ if self.big_endian => '>',
            _ => '<',
        }
    }
}

/// An array's elements: raw bytes for numeric dtypes, pickled values for object arrays.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    Raw(Vec<u8>),
    Objects(Vec<Value>),
}

/// A NumPy `ndarray` as pickled: dtype, shape, memory order and data.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// True when `data` is in Fortran (column-major) order.
    pub fortran_order: bool,
    pub data: ArrayData,
}

/// Why an array could not be converted to the numbers asked for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArrayError {
    #[error("dtype {dtype} is not numeric (expected bool, int, uint or float)")]
    NotNumeric { dtype: String },
    #[error("dtype {dtype} is not supported (expected item size 1, 2, 4 or 8)")]
    UnsupportedItemSize { dtype: String },
    #[error(
        "array of shape {shape:?} and dtype {dtype} needs {expected} data bytes, found {found}"
    )]
    SizeMismatch {
        shape: Vec<usize>,
        dtype: String,
        expected: usize,
        found: usize,
    },
    #[error("array holds Python objects, not numbers")]
    ObjectArray,
    #[error("array has shape {found:?}, expected {expected}")]
    WrongShape { found: Vec<usize>, expected: String },
}

impl NdArray {
    /// A C-ordered little-endian float64 array (shape product must equal `values.len()`).
    pub fn from_f64(shape: Vec<usize>, values: &[f64]) -> NdArray {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        NdArray {
            dtype: DType::F64,
            shape,
            fortran_order: false,
            data: ArrayData::Raw(data),
        }
    }

    /// Number of elements (product of the shape; 1 for a 0-d array). Saturates instead of
    /// overflowing on a corrupt shape, which then fails the data size check.
    pub fn element_count(&self) -> usize {
        self.shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }

    /// The elements as f64 in C (row-major) order, whatever the numeric dtype, byte order and
    /// memory order. Integers above 2^53 lose precision, as they would in NumPy.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>, ArrayError> {
        let raw = self.checked_raw()?;
        let item = self.dtype.item_size;
        let decode = element_decoder(&self.dtype)?;
        let stored: Vec<f64> = raw
            .chunks_exact(item)
            .map(|chunk| decode(chunk, self.dtype.big_endian))
            .collect();
        Ok(if self.fortran_order && self.shape.len() > 1 {
            fortran_to_c_order(&stored, &self.shape)
        } else {
            stored
        })
    }

    /// The bytes of a `uint8` (or `int8`/`bool`) array in C order, e.g. an HWC image.
    pub fn to_u8_vec(&self) -> Result<Vec<u8>, ArrayError> {
        if self.dtype.item_size != 1 || !self.is_numeric() {
            return Err(ArrayError::NotNumeric {
                dtype: self.dtype.typestr(),
            });
        }
        let raw = self.checked_raw()?;
        if self.fortran_order && self.shape.len() > 1 {
            let order = fortran_permutation(&self.shape);
            Ok(order.into_iter().map(|i| raw[i]).collect())
        } else {
            Ok(raw.to_vec())
        }
    }

    fn is_numeric(&self) -> bool {
        matches!(
            self.dtype.kind,
            DTypeKind::Bool | DTypeKind::Int | DTypeKind::UInt | DTypeKind::Float
        )
    }

    fn checked_raw(&self) -> Result<&[u8], ArrayError> {
        let raw = match &self.data {
            ArrayData::Raw(raw) => raw,
            ArrayData::Objects(_) => return Err(ArrayError::ObjectArray),
        };
        let expected = self.element_count().saturating_mul(self.dtype.item_size);
        if raw.len() != expected {
            return Err(ArrayError::SizeMismatch {
                shape: self.shape.clone(),
                dtype: self.dtype.typestr(),
                expected,
                found: raw.len(),
            });
        }
        Ok(raw)
    }
}

type Decoder = fn(&[u8], bool) -> f64;

fn element_decoder(dtype: &DType) -> Result<Decoder, ArrayError> {
    let unsupported = || ArrayError::UnsupportedItemSize {
        dtype: dtype.typestr(),
    };
    let decoder: Decoder = match (dtype.kind, dtype.item_size) {
        (DTypeKind::Float, 4) => |b, be| f64::from(f32::from_bits(read_u32(b, be))),
        (DTypeKind::Float, 8) => |b, be| f64::from_bits(read_u64(b, be)),
        (DTypeKind::Float, _) => return Err(unsupported()),
        (DTypeKind::Int, 1) => |b, _| f64::from(b[0] as i8),
        (DTypeKind::Int, 2) => |b, be| f64::from(read_u16(b, be) as i16),
        (DTypeKind::Int, 4) => |b, be| f64::from(read_u32(b, be) as i32),
        (DTypeKind::Int, 8) => |b, be| read_u64(b, be) as i64 as f64,
        (DTypeKind::UInt | DTypeKind::Bool, 1) => |b, _| f64::from(b[0]),
        (DTypeKind::UInt, 2) => |b, be| f64::from(read_u16(b, be)),
        (DTypeKind::UInt, 4) => |b, be| f64::from(read_u32(b, be)),
        (DTypeKind::UInt, 8) => |b, be| read_u64(b, be) as f64,
        (DTypeKind::Int | DTypeKind::UInt | DTypeKind::Bool, _) => return Err(unsupported()),
        _ => {
            return Err(ArrayError::NotNumeric {
                dtype: dtype.typestr(),
            });
        }
    };
    Ok(decoder)
}

fn read_u16(bytes: &[u8], big_endian: bool) -> u16 {
    let array = [bytes[0], bytes[1]];
    if big_endian {
        u16::from_be_bytes(array)
    } else {
        u16::from_le_bytes(array)
    }
}

fn read_u32(bytes: &[u8], big_endian: bool) -> u32 {
    let array = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if big_endian {
        u32::from_be_bytes(array)
    } else {
        u32::from_le_bytes(array)
    }
}

fn read_u64(bytes: &[u8], big_endian: bool) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[..8]);
    if big_endian {
        u64::from_be_bytes(array)
    } else {
        u64::from_le_bytes(array)
    }
}

/// For each C-order position, the index of that element in Fortran-ordered storage.
fn fortran_permutation(shape: &[usize]) -> Vec<usize> {
    let count: usize = shape.iter().product();
    let mut fortran_strides = vec![1usize; shape.len()];
    for axis in 1..shape.len() {
        fortran_strides[axis] = fortran_strides[axis - 1] * shape[axis - 1];
    }
    let mut index = vec![0usize; shape.len()];
    let mut order = Vec::with_capacity(count);
    for _ in 0..count {
        order.push(index.iter().zip(&fortran_strides).map(|(i, s)| i * s).sum());
        // Advance the C-order multi-index (last axis fastest).
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    order
}

fn fortran_to_c_order(stored: &[f64], shape: &[usize]) -> Vec<f64> {
    fortran_permutation(shape)
        .into_iter()
        .map(|i| stored[i])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_is_transposed_to_c_order() {
        // [[1, 2, 3], [4, 5, 6]] stored column-major is 1 4 2 5 3 6.
        let array = NdArray {
            fortran_order: true,
            ..NdArray::from_f64(vec![2, 3], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0])
        };
        assert_eq!(
            array.to_f64_vec().unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
    }

    #[test]
    fn typestr_round_trips() {
        for s in ["f8", "f4", "u1", "i8", "b1", "U7", "S3", "O8"] {
            assert_eq!(DType::from_typestr(s).unwrap().typestr(), s);
        }
        assert!(DType::from_typestr(">f4").unwrap().big_endian);
    }

    #[test]
    fn big_endian_int_decodes() {
        let array = NdArray {
            dtype: DType::from_typestr(">i4").unwrap(),
            shape: vec![2],
            fortran_order: false,
            data: ArrayData::Raw(vec![0, 0, 1, 0, 0xff, 0xff, 0xff, 0xfe]),
        };
        assert_eq!(array.to_f64_vec().unwrap(), vec![256.0, -2.0]);
    }
}
