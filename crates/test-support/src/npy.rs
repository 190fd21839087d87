//! NumPy `.npy` files written byte by byte, so reader tests do not depend on our own writer.

/// One `.npy` file (format 1.0): the header by hand, padded so that magic (6) + version (2) +
/// length (2) + header + `\n` is a multiple of 64, then `data` (little-endian values of
/// `descr`, e.g. `<f4`).
pub fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    let header_len = u16::try_from(header.len()).expect("a short header");
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Little-endian bytes of `values` (`<f4` data).
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_align_to_64_bytes() {
        let file = npy("<f4", &[2, 3], &f32_bytes(&[0.0; 6]));
        let header_len = u16::from_le_bytes([file[8], file[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(file.len(), 10 + header_len + 24);
        assert!(
            std::str::from_utf8(&file[10..10 + header_len])
                .unwrap()
                .contains("(2, 3)")
        );
    }
}
