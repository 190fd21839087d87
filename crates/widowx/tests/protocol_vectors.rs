//! The bytes `dynamixel2` puts on the wire, captured on the far end of a pseudo-terminal pair,
//! compared with the ROBOTIS e-manual's Protocol 2.0 examples (docs/widowx.md).

use std::time::{Duration, Instant};

use dynamixel2::Bus;
use serial2::SerialPort;

/// Runs `send` on a bus over one end of a pty pair and returns what arrived at the other end.
fn capture(send: impl FnOnce(&mut Bus<Vec<u8>, Vec<u8>>)) -> Vec<u8> {
    let (near, mut far) = SerialPort::pair().unwrap();
    let mut bus = Bus::with_buffers(near, vec![0; 256], vec![0; 256]).unwrap();
    send(&mut bus);
    far.set_read_timeout(Duration::from_millis(20)).unwrap();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 256];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        match far.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("reading the far end: {e}"),
        }
    }
    bytes
}

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

// Nobody answers on the far end, so every call below ends in a timeout: only the bytes matter.

#[test]
fn ping_id_1() {
    let bytes = capture(|bus| {
        let _ = bus.ping(1);
    });
    assert_eq!(bytes, hex("FF FF FD 00 01 03 00 01 19 4E"));
}

#[test]
fn read_id_1_present_position() {
    let bytes = capture(|bus| {
        let _ = bus.read(1, 132, 4);
    });
    assert_eq!(bytes, hex("FF FF FD 00 01 07 00 02 84 00 04 00 1D 15"));
}

#[test]
fn write_id_1_goal_position_512() {
    let bytes = capture(|bus| {
        let _ = bus.write_u32(1, 116, 512);
    });
    assert_eq!(
        bytes,
        hex("FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89")
    );
}

#[test]
fn reboot_id_1() {
    let bytes = capture(|bus| {
        let _ = bus.reboot(1);
    });
    assert_eq!(bytes, hex("FF FF FD 00 01 03 00 08 2F 4E"));
}

#[test]
fn sync_read_present_position_of_ids_1_and_2() {
    let bytes = capture(|bus| {
        let _ = bus.sync_read_cb(&[1, 2], 132, 4, |_| {});
    });
    assert_eq!(
        bytes,
        hex("FF FF FD 00 FE 09 00 82 84 00 04 00 01 02 CE FA")
    );
}

#[test]
fn checksums_of_the_vectors() {
    // The CRC of every vector over header..last parameter equals its last two bytes (low first).
    for vector in [
        "FF FF FD 00 01 03 00 01 19 4E",
        "FF FF FD 00 01 07 00 02 84 00 04 00 1D 15",
        "FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89",
        "FF FF FD 00 01 03 00 08 2F 4E",
        "FF FF FD 00 FE 09 00 82 84 00 04 00 01 02 CE FA",
    ] {
        let bytes = hex(vector);
        let (body, crc) = bytes.split_at(bytes.len() - 2);
        let computed = dynamixel2::checksum::calculate_checksum(0, body);
        assert_eq!(computed.to_le_bytes(), [crc[0], crc[1]], "{vector}");
    }
}
