//! Dynamixel Protocol 2.0 codec: CRC-16, byte stuffing, an incremental instruction-packet parser
//! and packet encoders. Pure functions and plain data; the server and the tests share them.
//!
//! Wire format (ROBOTIS e-manual, Protocol 2.0):
//! `FF FF FD 00 | ID | LEN_L LEN_H | INST | params... | CRC_L CRC_H`, where `LEN` counts INST,
//! the (stuffed) params and the two CRC bytes, and the CRC-16 (polynomial 0x8005, initial value
//! 0, not reflected, no final xor) runs over everything before it as transmitted. Inside
//! INST+params, every `FF FF FD` is followed by an extra `FD` so that no header can appear there.

/// The four bytes every packet starts with (three header bytes and the reserved 0x00).
pub const HEADER: [u8; 4] = [0xFF, 0xFF, 0xFD, 0x00];
/// Packet ID addressing every servo.
pub const BROADCAST_ID: u8 = 0xFE;
/// Bytes before INST: header (4), ID (1), LEN (2).
pub const PREFIX_BYTES: usize = 7;
/// Largest LEN the parser accepts; longer claims are treated as a corrupt header.
pub const MAX_LENGTH_FIELD: usize = 1024;

/// Instruction codes.
pub mod instruction {
    pub const PING: u8 = 0x01;
    pub const READ: u8 = 0x02;
    pub const WRITE: u8 = 0x03;
    pub const REG_WRITE: u8 = 0x04;
    pub const ACTION: u8 = 0x05;
    pub const FACTORY_RESET: u8 = 0x06;
    pub const REBOOT: u8 = 0x08;
    pub const CLEAR: u8 = 0x10;
    pub const STATUS: u8 = 0x55;
    pub const SYNC_READ: u8 = 0x82;
    pub const SYNC_WRITE: u8 = 0x83;
    pub const FAST_SYNC_READ: u8 = 0x8A;
    pub const BULK_READ: u8 = 0x92;
    pub const BULK_WRITE: u8 = 0x93;
}

/// Error numbers of a status packet's error byte (bits 0..6), and the alert bit (bit 7).
pub mod error {
    pub const RESULT_FAIL: u8 = 1;
    pub const INSTRUCTION: u8 = 2;
    pub const CRC: u8 = 3;
    pub const DATA_RANGE: u8 = 4;
    pub const DATA_LENGTH: u8 = 5;
    pub const DATA_LIMIT: u8 = 6;
    pub const ACCESS: u8 = 7;
    /// Set when the servo's Hardware_Error_Status is non-zero.
    pub const ALERT: u8 = 0x80;
}

const fn crc_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x8005
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC_TABLE: [u16; 256] = crc_table();

/// Continues a CRC-16 (polynomial 0x8005, not reflected) over `data`; start with `crc = 0`.
pub fn crc16(crc: u16, data: &[u8]) -> u16 {
    data.iter().fold(crc, |crc, &byte| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// Inserts an `FD` after every `FF FF FD` in `body` (INST + params as the sender built them).
pub fn stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 3);
    for &byte in body {
        out.push(byte);
        if out.ends_with(&[0xFF, 0xFF, 0xFD]) {
            out.push(0xFD);
        }
    }
    out
}

/// Removes the `FD` that follows every `FF FF FD` in a received body: the inverse of [`stuff`].
pub fn unstuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut skip_next_fd = false;
    for &byte in body {
        if skip_next_fd && byte == 0xFD {
            skip_next_fd = false;
            continue;
        }
        out.push(byte);
        skip_next_fd = out.ends_with(&[0xFF, 0xFF, 0xFD]);
    }
    out
}

/// Builds a complete packet: header, ID, LEN, stuffed INST + params, CRC.
pub fn encode_packet(id: u8, instruction: u8, params: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(params.len() + 1);
    body.push(instruction);
    body.extend_from_slice(params);
    let body = stuff(&body);
    let length = (body.len() + 2) as u16;
    let mut packet = Vec::with_capacity(PREFIX_BYTES + body.len() + 2);
    packet.extend_from_slice(&HEADER);
    packet.push(id);
    packet.extend_from_slice(&length.to_le_bytes());
    packet.extend_from_slice(&body);
    let crc = crc16(0, &packet);
    packet.extend_from_slice(&crc.to_le_bytes());
    packet
}

/// An instruction packet as a client sends it.
pub fn encode_instruction(id: u8, instruction: u8, params: &[u8]) -> Vec<u8> {
    encode_packet(id, instruction, params)
}

/// A status packet: INST 0x55, then the error byte, then `params`.
pub fn encode_status(id: u8, error: u8, params: &[u8]) -> Vec<u8> {
    let mut with_error = Vec::with_capacity(params.len() + 1);
    with_error.push(error);
    with_error.extend_from_slice(params);
    encode_packet(id, instruction::STATUS, &with_error)
}

/// One servo's part of a Fast Sync Read reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastSyncBlock {
    pub error: u8,
    pub id: u8,
    pub data: Vec<u8>,
}

/// The combined Fast Sync Read status packet (instruction 0x8A), as the ROBOTIS SDK's
/// `GroupFastSyncRead` parses it: `FF FF FD 00 FE LEN 55`, then per servo
/// `ERR ID DATA... CRC_L CRC_H`, where each block's CRC is the running CRC over every byte sent
/// so far (so the last one is the ordinary packet CRC). `LEN = 1 + blocks * 4 + data bytes`.
/// `expected_blocks` sets LEN (the first servo announces the whole chain); when fewer blocks
/// are given (a servo in the list did not answer) the packet is cut short, as on a real bus.
/// The data is not byte-stuffed: each servo emits its own block and cannot stuff across them.
pub fn encode_fast_sync_status(
    blocks: &[FastSyncBlock],
    expected_blocks: usize,
    data_len: usize,
) -> Vec<u8> {
    let length = 1 + expected_blocks * (4 + data_len);
    let mut packet = Vec::with_capacity(PREFIX_BYTES + length);
    packet.extend_from_slice(&HEADER);
    packet.push(BROADCAST_ID);
    packet.extend_from_slice(&(length as u16).to_le_bytes());
    packet.push(instruction::STATUS);
    for block in blocks {
        packet.push(block.error);
        packet.push(block.id);
        packet.extend_from_slice(&block.data);
        let crc = crc16(0, &packet);
        packet.extend_from_slice(&crc.to_le_bytes());
    }
    packet
}

/// A received packet with its stuffing removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub id: u8,
    pub instruction: u8,
    pub params: Vec<u8>,
    /// Bytes it occupied on the wire (for bus timing).
    pub wire_bytes: usize,
}

/// Counters of what the parser threw away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParserStats {
    /// Bytes skipped while looking for a header.
    pub garbage_bytes: u64,
    /// Complete packets whose CRC did not match (dropped, as real servos do).
    pub crc_errors: u64,
}

/// Incremental packet parser: feed it bytes as they arrive with [`Parser::push`], then take
/// complete, CRC-checked packets with [`Parser::next_packet`]. Garbage before a header, corrupt
/// headers and packets with a bad CRC are skipped and counted; parsing resynchronises on the
/// next header.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    stats: ParserStats,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    pub fn stats(&self) -> ParserStats {
        self.stats
    }

    /// Bytes waiting for the rest of a packet.
    pub fn pending_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// The line went quiet with a partial packet buffered: give up on it (real servos time out
    /// an incomplete packet) by skipping its first byte and resynchronising.
    pub fn abandon_partial(&mut self) {
        if !self.buffer.is_empty() {
            self.discard(1);
        }
    }

    /// The next complete valid packet, if the buffer holds one.
    pub fn next_packet(&mut self) -> Option<Packet> {
        loop {
            let start = find_header(&self.buffer);
            self.discard(start);
            if self.buffer.len() < PREFIX_BYTES {
                return None;
            }
            let id = self.buffer[4];
            let length = usize::from(u16::from_le_bytes([self.buffer[5], self.buffer[6]]));
            if id == 0xFF || id == 0xFD || !(3..=MAX_LENGTH_FIELD).contains(&length) {
                self.discard(1);
                continue;
            }
            let total = PREFIX_BYTES + length;
            if self.buffer.len() < total {
                return None;
            }
            let received_crc = u16::from_le_bytes([self.buffer[total - 2], self.buffer[total - 1]]);
            if crc16(0, &self.buffer[..total - 2]) != received_crc {
                self.stats.crc_errors += 1;
                self.discard(1);
                continue;
            }
            let body = unstuff(&self.buffer[PREFIX_BYTES..total - 2]);
            self.buffer.drain(..total);
            return Some(Packet {
                id,
                instruction: body[0],
                params: body[1..].to_vec(),
                wire_bytes: total,
            });
        }
    }

    fn discard(&mut self, count: usize) {
        let count = count.min(self.buffer.len());
        self.stats.garbage_bytes += count as u64;
        self.buffer.drain(..count);
    }
}

/// Index of the first header (`FF FF FD 00`) in `bytes`, or of a trailing prefix of one that may
/// still complete; `bytes.len()` when neither is there. `FF FF FD FD` (stuffing) is not a header.
fn find_header(bytes: &[u8]) -> usize {
    (0..bytes.len())
        .find(|&i| {
            let rest = &bytes[i..];
            let n = rest.len().min(HEADER.len());
            rest[..n] == HEADER[..n]
        })
        .unwrap_or(bytes.len())
}

/// A decoded status packet (for clients and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: u8,
    pub error: u8,
    pub params: Vec<u8>,
}

/// Why bytes are not a status packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("status packet too short: {0} bytes")]
    TooShort(usize),
    #[error("status packet does not start with FF FF FD 00")]
    BadHeader,
    #[error("status packet LEN {claimed} does not match its {actual} bytes")]
    BadLength { claimed: usize, actual: usize },
    #[error("status packet CRC {received:#06x}, computed {computed:#06x}")]
    BadCrc { received: u16, computed: u16 },
    #[error("instruction {0:#04x} is not STATUS (0x55)")]
    NotStatus(u8),
}

/// Decodes one complete status packet (exactly the bytes of one packet).
pub fn decode_status(bytes: &[u8]) -> Result<Status, DecodeError> {
    if bytes.len() < PREFIX_BYTES + 4 {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes[..4] != HEADER {
        return Err(DecodeError::BadHeader);
    }
    let claimed = usize::from(u16::from_le_bytes([bytes[5], bytes[6]]));
    if PREFIX_BYTES + claimed != bytes.len() {
        return Err(DecodeError::BadLength {
            claimed,
            actual: bytes.len(),
        });
    }
    let end = bytes.len() - 2;
    let received = u16::from_le_bytes([bytes[end], bytes[end + 1]]);
    let computed = crc16(0, &bytes[..end]);
    if received != computed {
        return Err(DecodeError::BadCrc { received, computed });
    }
    let body = unstuff(&bytes[PREFIX_BYTES..end]);
    if body[0] != instruction::STATUS {
        return Err(DecodeError::NotStatus(body[0]));
    }
    Ok(Status {
        id: bytes[4],
        error: body[1],
        params: body[2..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_ping_vector() {
        let packet = [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x03, 0x00, 0x01];
        assert_eq!(crc16(0, &packet), 0x4E19);
    }

    #[test]
    fn find_header_keeps_a_trailing_partial_header() {
        assert_eq!(find_header(&[1, 2, 0xFF, 0xFF]), 2);
        assert_eq!(find_header(&[0xFF, 0xFF, 0xFD, 0xFD, 7]), 5);
        assert_eq!(find_header(&[0xFF, 0xFF, 0xFD, 0x00]), 0);
    }
}
