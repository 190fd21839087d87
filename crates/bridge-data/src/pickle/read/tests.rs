//! Tests of the pickle reader.
//!
//! Pickles below were produced by CPython 3.11 `pickle.dumps` (NumPy 2.4) and pasted here.

use super::*;

#[test]
fn protocol_0_text_opcodes() {
    let bytes = b"(dp0\nVa\np1\n(lp2\nI1\naF2.5\naVx\xe9\np3\naI01\naNaI-7\naL1099511627776L\nasVb\np4\nc_codecs\nencode\np5\n(V\\u0000\x01\np6\nVlatin1\np7\ntp8\nRp9\ns.";
    let value = from_slice(bytes).unwrap();
    let expected_list = Value::List(vec![
        Value::Int(1),
        Value::Float(2.5),
        Value::Str("x\u{e9}".into()),
        Value::Bool(true),
        Value::None,
        Value::Int(-7),
        Value::Int(1 << 40),
    ]);
    assert_eq!(value.get("a"), Some(&expected_list));
    assert_eq!(value.get("b"), Some(&Value::Bytes(vec![0, 1])));
}

#[test]
fn ordered_dict_and_set() {
    let bytes = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00kq\x02K\x01X\x01\x00\x00\x00jq\x03c__builtin__\nset\nq\x04]q\x05(K\x01K\x02e\x85q\x06Rq\x07u.";
    let value = from_slice(bytes).unwrap();
    assert_eq!(value.get("k"), Some(&Value::Int(1)));
    assert_eq!(
        value.get("j"),
        Some(&Value::Set(vec![Value::Int(1), Value::Int(2)]))
    );
}

#[test]
fn big_endian_array_at_protocol_2() {
    let bytes = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02c_codecs\nencode\nq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\t(K\x01K\x02K\x02\x86q\ncnumpy\ndtype\nq\x0bX\x02\x00\x00\x00i4q\x0c\x89\x88\x87q\rRq\x0e(K\x03X\x01\x00\x00\x00>q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10b\x89h\x03X\x10\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04q\x11h\x05\x86q\x12Rq\x13tq\x14b.";
    let array = from_slice(bytes).unwrap();
    let array = array.as_array().unwrap();
    assert!(array.dtype.big_endian);
    assert_eq!(array.shape, vec![2, 2]);
    assert_eq!(array.to_f64_vec().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn out_of_band_buffers_are_a_clear_error() {
    let bytes = b"\x80\x05\x95k\x00\x00\x00\x00\x00\x00\x00\x8c\x13numpy._core.numeric\x94\x8c\x0b_frombuffer\x94\x93\x94(\x97\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02f8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bK\x03\x85\x94\x8c\x01C\x94t\x94R\x94.";
    let error = from_slice(bytes).unwrap_err();
    assert_eq!(error.kind, PickleErrorKind::OutOfBandBuffer);
    assert_eq!(error.offset, 50);
    assert!(error.to_string().contains("out-of-band"), "{error}");
}

#[test]
fn self_referential_list_is_an_error_not_a_hang() {
    // l = []; l.append(l); pickle.dumps(l, 2)
    let bytes = b"\x80\x02]q\x00h\x00a.";
    let error = from_slice(bytes).unwrap_err();
    assert_eq!(error.kind, PickleErrorKind::TooDeep(MAX_DEPTH));
}

#[test]
fn trailing_bytes_are_reported() {
    let error = from_slice(b"\x80\x02N.xx").unwrap_err();
    assert_eq!(error.kind, PickleErrorKind::TrailingData(2));
    assert_eq!(error.offset, 4);
}
