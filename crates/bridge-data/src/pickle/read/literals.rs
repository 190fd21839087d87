//! Decoders of opcode arguments: little-endian longs and the protocol-0 text forms.

use crate::pickle::Value;

pub(super) fn long_from_le(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut full = if negative { [0xffu8; 8] } else { [0u8; 8] };
        full[..bytes.len()].copy_from_slice(bytes);
        return Value::Int(i64::from_le_bytes(full));
    }
    Value::BigInt(bytes.to_vec())
}

pub(super) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Decodes `raw-unicode-escape` (protocol 0 `UNICODE`): bytes are latin-1, `\uXXXX` and
/// `\UXXXXXXXX` escapes are code points.
pub(super) fn raw_unicode_escape(line: &[u8]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let width = match (line[i], line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        let escaped = (width > 0)
            .then(|| line.get(i + 2..i + 2 + width))
            .flatten()
            .and_then(|hex| u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())
            .and_then(char::from_u32);
        match escaped {
            Some(c) => {
                out.push(c);
                i += 2 + width;
            }
            None => {
                out.push(char::from(line[i]));
                i += 1;
            }
        }
    }
    out
}

/// Decodes a protocol-0 `STRING` argument: a Python `repr` of a str, quoted, with escapes.
pub(super) fn python_string_literal(line: &[u8]) -> Option<Vec<u8>> {
    let quote = *line.first()?;
    if !(quote == b'\'' || quote == b'"') || line.len() < 2 || line[line.len() - 1] != quote {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'\\' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let escape = *body.get(i + 1)?;
        i += 2;
        match escape {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'0'..=b'7' => {
                // Octal escape of up to three digits.
                let mut value = u32::from(escape - b'0');
                let mut digits = 1;
                while digits < 3 && i < body.len() && (b'0'..=b'7').contains(&body[i]) {
                    value = value * 8 + u32::from(body[i] - b'0');
                    i += 1;
                    digits += 1;
                }
                out.push(u8::try_from(value).ok()?);
            }
            b'x' => {
                let hex = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
    }
    Some(out)
}
