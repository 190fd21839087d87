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
        STUFFED_STATUS,
        UNSTUFFED_WRITE,
    ] {
        let bytes = hex(vector);
        let (body, crc) = bytes.split_at(bytes.len() - 2);
        let computed = dynamixel2::checksum::calculate_checksum(0, body);
        assert_eq!(computed.to_le_bytes(), [crc[0], crc[1]], "{vector}");
    }
}

/// A joint-state reply (current 0, velocity -2, position 2045, 2 more bytes) as a servo sends it:
/// `FE FF FF FF FD` gets a stuffed `FD`.
const STUFFED_STATUS: &str =
    "FF FF FD 00 02 11 00 55 00 00 00 FE FF FF FF FD FD 07 00 00 00 00 5A 3F";

/// dynamixel2 0.9.1 leaves the stuffed `FD` of `FF FF FF FD` in the parameters (13 bytes for 12).
/// The driver removes it (`unstuff_missed` in `driver/link.rs`). If this test fails after a
/// dynamixel2 upgrade, the upstream unstuffer is fixed: the workaround then never fires (it
/// only touches replies longer than expected) and can be deleted.
#[test]
fn dynamixel2_leaves_the_stuffing_after_three_ff_in_place() {
    let bytes = hex(STUFFED_STATUS);
    let block = hex("00 00 FE FF FF FF FD 07 00 00 00 00");
    assert_eq!(widowx_sim::protocol::encode_status(2, 0, &block), bytes);

    let (near, far) = SerialPort::pair().unwrap();
    let mut bus = Bus::with_buffers(near, vec![0; 256], vec![0; 256]).unwrap();
    far.write_all(&bytes).unwrap();
    let status = bus
        .read_status_response_deadline(Instant::now() + Duration::from_secs(1))
        .unwrap();
    assert_eq!(status.packet_id(), 2);
    assert_eq!(
        status.parameters(),
        hex("00 00 FE FF FF FF FD FD 07 00 00 00 00"),
        "dynamixel2's unstuffing changed"
    );
}

/// WRITE of 0xFDFFFFFF to address 20 of ID 1, as dynamixel2 sends it: no stuffing.
const UNSTUFFED_WRITE: &str = "FF FF FD 00 01 09 00 03 14 00 FF FF FF FD A1 09";

/// The same flaw on the way out: a written value with `FF FF FF FD` in its bytes goes out
/// unstuffed, and a servo would take the `FF FF FD` for a packet header. No register value the
/// arm uses has those bytes; `Link::write` refuses one that does.
#[test]
fn dynamixel2_does_not_stuff_ff_ff_fd_after_a_third_ff() {
    let bytes = capture(|bus| {
        let _ = bus.write_u32(1, 20, 0xFDFF_FFFF);
    });
    assert_eq!(bytes, hex(UNSTUFFED_WRITE));
}
