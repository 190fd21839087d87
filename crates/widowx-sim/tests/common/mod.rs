//! Shared helpers for the integration tests: a virtual arm and clients on its pty.
#![allow(dead_code)] // each test file uses a different subset

use std::time::{Duration, Instant};

use dynamixel2::Bus;
use widowx::firmware::FirmwareConfig;
use widowx_sim::protocol::{Parser, Status, decode_status, encode_instruction};
use widowx_sim::{SimConfig, VirtualArm};

pub const BPS: u32 = 1_000_000;
pub const MASTERS: [u8; 7] = [1, 2, 4, 6, 7, 8, 9];
pub const ALL_IDS: [u8; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];

pub fn spawn() -> VirtualArm {
    VirtualArm::spawn(SimConfig::new(FirmwareConfig::wx250s())).unwrap()
}

pub fn spawn_with(edit: impl FnOnce(&mut SimConfig)) -> VirtualArm {
    let mut config = SimConfig::new(FirmwareConfig::wx250s());
    edit(&mut config);
    VirtualArm::spawn(config).unwrap()
}

pub fn bus(arm: &VirtualArm) -> Bus<Vec<u8>, Vec<u8>> {
    Bus::open_with_buffers(arm.port_path(), BPS, vec![0; 1024], vec![0; 1024]).unwrap()
}

/// A raw client: writes instruction packets and reads status packets itself.
pub struct RawClient {
    pub port: serial2::SerialPort,
    parser_buffer: Vec<u8>,
}

impl RawClient {
    pub fn open(arm: &VirtualArm) -> RawClient {
        let mut port = serial2::SerialPort::open(arm.port_path(), BPS).unwrap();
        port.set_read_timeout(Duration::from_millis(5)).unwrap();
        RawClient {
            port,
            parser_buffer: Vec::new(),
        }
    }

    pub fn send(&mut self, id: u8, instruction: u8, params: &[u8]) {
        self.port.discard_input_buffer().unwrap();
        self.parser_buffer.clear();
        self.port
            .write_all(&encode_instruction(id, instruction, params))
            .unwrap();
    }

    /// All bytes that arrive within `window`.
    pub fn collect(&mut self, window: Duration) -> Vec<u8> {
        let deadline = Instant::now() + window;
        let mut bytes = std::mem::take(&mut self.parser_buffer);
        let mut chunk = [0u8; 1024];
        while Instant::now() < deadline {
            match self.port.read(&mut chunk) {
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
        bytes
    }

    /// Bytes until `packets` whole packets are in, or the line has been quiet for `quiet`,
    /// or `max` has passed.
    pub fn collect_packets(&mut self, packets: usize, max: Duration, quiet: Duration) -> Vec<u8> {
        let started = Instant::now();
        let mut bytes = std::mem::take(&mut self.parser_buffer);
        let mut last_byte_at = started;
        let mut chunk = [0u8; 1024];
        while started.elapsed() < max
            && last_byte_at.elapsed() < quiet
            && split_packets(&bytes).len() < packets
        {
            match self.port.read(&mut chunk) {
                Ok(n) if n > 0 => {
                    bytes.extend_from_slice(&chunk[..n]);
                    last_byte_at = Instant::now();
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
        bytes
    }

    /// Status packets that arrive within `window`, decoded.
    pub fn statuses(&mut self, window: Duration) -> Vec<Status> {
        split_packets(&self.collect(window))
            .iter()
            .map(|p| decode_status(p).unwrap())
            .collect()
    }
}

/// Splits a byte stream into whole packets using the LEN fields (no CRC check).
pub fn split_packets(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    while bytes.len() >= 7 {
        let total = 7 + usize::from(u16::from_le_bytes([bytes[5], bytes[6]]));
        if bytes.len() < total {
            break;
        }
        packets.push(bytes[..total].to_vec());
        bytes = &bytes[total..];
    }
    packets
}

/// Parses status bytes with the crate's parser (it accepts any instruction, 0x55 included).
pub fn count_valid_packets(bytes: &[u8]) -> usize {
    let mut parser = Parser::new();
    parser.push(bytes);
    std::iter::from_fn(|| parser.next_packet()).count()
}

pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}
