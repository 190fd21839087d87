//! Protocol 2.0 transactions with explicit deadlines and retries, on top of `dynamixel2::Bus`.
//!
//! `dynamixel2`'s convenience calls derive each read timeout as the reply's wire time plus a flat
//! 34 ms (the official SDK's margin). Here every wait is the reply's wire time at the configured
//! baud plus `DriverConfig::reply_timeout_s`, and every retry count comes from the configuration,
//! so the worst case of each call is known. Only `write_instruction` and
//! `read_status_response_deadline` of the bus are used; neither allocates.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dynamixel2::instructions::{SyncWriteData, instruction_id, packet_id};
use dynamixel2::{Bus, ReadError, WriteError};

use crate::error::{CorruptReply, DriverError, ServoRef};
use crate::faults::StatusError;

/// Bytes of an instruction packet around its parameters: header 4, ID 1, length 2, instruction 1, CRC 2.
pub const INSTRUCTION_OVERHEAD_BYTES: usize = 10;
/// Bytes of a status packet around its parameters: as an instruction plus the error byte.
pub const STATUS_OVERHEAD_BYTES: usize = 11;
/// Most IDs one sync read may address (the arm has 7 masters).
pub const MAX_SYNC_IDS: usize = 16;
/// Largest reply a unicast read may ask for: the whole control table used here.
pub const MAX_READ_BYTES: usize = 160;
/// Size of the bus buffers: a sync write of 12 bytes to 16 servos with worst-case byte stuffing fits.
const BUS_BUFFER_BYTES: usize = 512;

/// The parameters of one status reply, copied out of the bus buffer (no allocation).
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub alert: bool,
    len: usize,
    data: [u8; MAX_READ_BYTES],
}

impl Reply {
    pub fn data(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// How one attempt failed.
enum Failure {
    /// Worth another attempt: nothing, or a corrupt reply, came back.
    Retry(Retryable),
    /// Not worth another attempt.
    Fatal(DriverError),
}

enum Retryable {
    Timeout,
    Corrupt(CorruptReply),
    /// The servo says our instruction arrived corrupted.
    ServoCrc,
}

/// Timing and retry settings of a [`Link`], taken from the driver configuration.
#[derive(Debug, Clone, Copy)]
pub struct LinkTiming {
    pub reply_timeout: Duration,
    pub retries: u32,
    pub retry_settle: Duration,
}

/// A serial bus with timing discipline.
pub struct Link {
    bus: Bus<Vec<u8>, Vec<u8>>,
    port: PathBuf,
    baud_rate_bps: u32,
    pub timing: LinkTiming,
}

impl Link {
    pub fn open(port: &Path, baud_rate_bps: u32, timing: LinkTiming) -> Result<Link, DriverError> {
        let bus = Bus::open_with_buffers(
            port,
            baud_rate_bps,
            vec![0; BUS_BUFFER_BYTES],
            vec![0; BUS_BUFFER_BYTES],
        )
        .map_err(|source| DriverError::Open {
            port: port.to_path_buf(),
            source,
        })?;
        Ok(Link {
            bus,
            port: port.to_path_buf(),
            baud_rate_bps,
            timing,
        })
    }

    pub fn port(&self) -> &Path {
        &self.port
    }

    pub fn set_baud_rate(&mut self, baud_rate_bps: u32) -> Result<(), DriverError> {
        self.bus
            .set_baud_rate(baud_rate_bps)
            .map_err(|source| self.io(source))?;
        self.baud_rate_bps = baud_rate_bps;
        Ok(())
    }

    /// Time `bytes` take on the wire: 10 bits each (start, 8 data, stop).
    pub fn wire_time(&self, bytes: usize) -> Duration {
        wire_time(bytes, self.baud_rate_bps)
    }

    /// PING: the model number and firmware version.
    pub fn ping(&mut self, servo: ServoRef, retries: u32) -> Result<(u16, u8, bool), DriverError> {
        let reply = self.unicast(servo, instruction_id::PING, &[], 3, retries)?;
        let d = reply.data();
        Ok((u16::from_le_bytes([d[0], d[1]]), d[2], reply.alert))
    }

    /// READ `count` bytes from `address`.
    pub fn read(
        &mut self,
        servo: ServoRef,
        address: u16,
        count: u16,
    ) -> Result<Reply, DriverError> {
        if usize::from(count) > MAX_READ_BYTES {
            return Err(DriverError::Unsupported(format!(
                "read of {count} bytes: at most {MAX_READ_BYTES}"
            )));
        }
        let [a0, a1] = address.to_le_bytes();
        let [c0, c1] = count.to_le_bytes();
        self.unicast(
            servo,
            instruction_id::READ,
            &[a0, a1, c0, c1],
            usize::from(count),
            self.timing.retries,
        )
    }

    /// WRITE `data` at `address`; the alert bit of the reply is returned.
    pub fn write(
        &mut self,
        servo: ServoRef,
        address: u16,
        data: &[u8],
    ) -> Result<bool, DriverError> {
        let mut params = [0u8; 2 + 4];
        if data.len() > 4 {
            return Err(DriverError::Unsupported(format!(
                "write of {} bytes: at most 4",
                data.len()
            )));
        }
        params[..2].copy_from_slice(&address.to_le_bytes());
        params[2..2 + data.len()].copy_from_slice(data);
        if params.windows(4).any(|w| w == [0xFF, 0xFF, 0xFF, 0xFD]) {
            // dynamixel2 would send these bytes unstuffed (see `unstuff_missed`), and the
            // servo would read a packet header in the middle of the value.
            return Err(DriverError::Unsupported(format!(
                "write of bytes {data:02X?} at address {address}: dynamixel2 cannot send FF FF FF FD"
            )));
        }
        let reply = self.unicast(
            servo,
            instruction_id::WRITE,
            &params[..2 + data.len()],
            0,
            self.timing.retries,
        )?;
        Ok(reply.alert)
    }

    /// REBOOT: the servo replies, then restarts.
    pub fn reboot(&mut self, servo: ServoRef) -> Result<(), DriverError> {
        self.unicast(servo, instruction_id::REBOOT, &[], 0, self.timing.retries)
            .map(|_| ())
    }

    /// One instruction to one servo and its one reply, retried on timeouts and corrupt replies.
    fn unicast(
        &mut self,
        servo: ServoRef,
        instruction: u8,
        params: &[u8],
        expected_params: usize,
        retries: u32,
    ) -> Result<Reply, DriverError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let failure = match self.attempt_unicast(servo.id, instruction, params, expected_params)
            {
                Ok(reply) => return Ok(reply),
                Err(Failure::Fatal(error)) => {
                    return Err(self.name_fatal(error, servo, instruction));
                }
                Err(Failure::Retry(failure)) => failure,
            };
            if attempts > retries {
                return Err(self.exhausted(
                    servo,
                    instruction_name(instruction),
                    attempts,
                    failure,
                ));
            }
            self.settle();
        }
    }

    fn attempt_unicast(
        &mut self,
        id: u8,
        instruction: u8,
        params: &[u8],
        expected_params: usize,
    ) -> Result<Reply, Failure> {
        self.bus
            .write_instruction(id, instruction, params.len(), |buffer| {
                buffer.copy_from_slice(params)
            })
            .map_err(|e| Failure::Fatal(self.write_error(e)))?;
        let wait = self.wire_time(INSTRUCTION_OVERHEAD_BYTES + params.len())
            + self.wire_time(STATUS_OVERHEAD_BYTES + expected_params)
            + self.timing.reply_timeout;
        let status = self
            .bus
            .read_status_response_deadline(Instant::now() + wait);
        let status = status.map_err(|e| read_failure(e, &self.port))?;
        if status.packet_id() != id {
            return Err(Failure::Retry(Retryable::Corrupt(CorruptReply::WrongId {
                id: status.packet_id(),
            })));
        }
        let mut repaired = [0; MAX_READ_BYTES];
        let data = unstuff_missed(status.parameters(), expected_params, &mut repaired);
        if data.len() != expected_params {
            return Err(Failure::Retry(Retryable::Corrupt(
                CorruptReply::WrongLength {
                    id,
                    bytes: data.len(),
                    expected: expected_params,
                },
            )));
        }
        let mut reply = Reply {
            alert: status.alert(),
            len: data.len(),
            data: [0; MAX_READ_BYTES],
        };
        reply.data[..data.len()].copy_from_slice(data);
        Ok(reply)
    }

    /// SYNC_READ of `count` bytes at `address` from every ID in `ids` whose `received` flag is
    /// false; `on_reply(index, data, alert)` is called once per servo. Servos whose reply is
    /// lost or corrupt are asked again (only they) up to `retries` times. Allocation-free.
    pub fn sync_read(
        &mut self,
        ids: &[u8],
        address: u16,
        count: u16,
        received: &mut [bool],
        name: impl Fn(u8) -> ServoRef,
        mut on_reply: impl FnMut(usize, &[u8], bool),
    ) -> Result<(), DriverError> {
        if ids.len() > MAX_SYNC_IDS || received.len() != ids.len() {
            return Err(DriverError::Unsupported(format!(
                "sync read of {} IDs: at most {MAX_SYNC_IDS}",
                ids.len()
            )));
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = self.attempt_sync_read(ids, address, count, received, &mut on_reply);
            let first_missing = received.iter().position(|r| !r);
            let failure = match (outcome, first_missing) {
                (Err(Failure::Fatal(error)), _) => {
                    let servo = name(first_missing.map_or(ids[0], |i| ids[i]));
                    return Err(self.name_fatal(error, servo, instruction_id::SYNC_READ));
                }
                (_, None) => return Ok(()),
                (Ok(()), Some(_)) => Retryable::Timeout,
                (Err(Failure::Retry(failure)), Some(_)) => failure,
            };
            if attempts > self.timing.retries {
                let servo = name(ids[first_missing.unwrap_or(0)]);
                return Err(self.exhausted(servo, "SYNC_READ", attempts, failure));
            }
            self.settle();
        }
    }

    fn attempt_sync_read(
        &mut self,
        ids: &[u8],
        address: u16,
        count: u16,
        received: &mut [bool],
        on_reply: &mut impl FnMut(usize, &[u8], bool),
    ) -> Result<(), Failure> {
        let mut pending = [0u8; MAX_SYNC_IDS];
        let mut n_pending = 0;
        for (&id, _) in ids.iter().zip(received.iter()).filter(|(_, r)| !**r) {
            pending[n_pending] = id;
            n_pending += 1;
        }
        let pending = &pending[..n_pending];
        let [a0, a1] = address.to_le_bytes();
        let [c0, c1] = count.to_le_bytes();
        self.bus
            .write_instruction(
                packet_id::BROADCAST,
                instruction_id::SYNC_READ,
                4 + pending.len(),
                |buffer| {
                    buffer[..4].copy_from_slice(&[a0, a1, c0, c1]);
                    buffer[4..].copy_from_slice(pending);
                },
            )
            .map_err(|e| Failure::Fatal(self.write_error(e)))?;
        let reply_wait =
            self.wire_time(STATUS_OVERHEAD_BYTES + usize::from(count)) + self.timing.reply_timeout;
        let mut deadline = Instant::now()
            + self.wire_time(INSTRUCTION_OVERHEAD_BYTES + 4 + pending.len())
            + reply_wait;
        let mut last_problem = None;
        // Replies of this attempt, whole or corrupt. Once every servo asked has answered, the
        // ones whose reply was corrupt will send nothing more: retry now instead of waiting out
        // the reply timeout (20 ms on a real bus, a missed control tick).
        let mut answers = 0;
        while received.iter().any(|r| !r) && answers < pending.len() {
            match self.bus.read_status_response_deadline(deadline) {
                Ok(status) => {
                    let index = ids.iter().position(|&id| id == status.packet_id());
                    let mut repaired = [0; MAX_READ_BYTES];
                    let data =
                        unstuff_missed(status.parameters(), usize::from(count), &mut repaired);
                    match index {
                        Some(i) if !received[i] && data.len() == usize::from(count) => {
                            on_reply(i, data, status.alert());
                            received[i] = true;
                            answers += 1;
                            deadline = Instant::now() + reply_wait;
                        }
                        // A late reply to an earlier attempt from a servo already heard this
                        // time: stale, not corrupt. Skip it and keep waiting for the others.
                        Some(i) if received[i] => {}
                        // Recorded, not formatted: this path runs inside the control loop.
                        Some(_) => {
                            answers += 1;
                            last_problem = Some(Retryable::Corrupt(CorruptReply::WrongLength {
                                id: status.packet_id(),
                                bytes: data.len(),
                                expected: usize::from(count),
                            }))
                        }
                        // Not an answer: none of the servos asked sent it.
                        None => {
                            last_problem = Some(Retryable::Corrupt(CorruptReply::WrongId {
                                id: status.packet_id(),
                            }))
                        }
                    }
                }
                Err(e) => match read_failure(e, &self.port) {
                    // Nothing more is coming in time; the servos still missing are retried.
                    Failure::Retry(Retryable::Timeout) => return Ok(()),
                    Failure::Retry(other) => {
                        answers += 1;
                        last_problem = Some(other);
                    }
                    fatal @ Failure::Fatal(_) => return Err(fatal),
                },
            }
        }
        last_problem.map_or(Ok(()), |p| Err(Failure::Retry(p)))
    }

    /// SYNC_WRITE of `count` bytes at `address`; servos do not reply.
    pub fn sync_write<const COUNT: usize>(
        &mut self,
        address: u16,
        data: &[SyncWriteData<[u8; COUNT]>],
    ) -> Result<(), DriverError> {
        self.bus
            .sync_write(address, COUNT as u16, data)
            .map_err(|e| self.write_error(e))
    }

    fn settle(&mut self) {
        // Let replies still in flight land, so the next instruction's input flush discards them.
        std::thread::sleep(self.timing.retry_settle);
    }

    fn io(&self, source: std::io::Error) -> DriverError {
        DriverError::Io {
            port: self.port.clone(),
            source,
        }
    }

    fn write_error(&self, error: WriteError) -> DriverError {
        match error {
            WriteError::DiscardBuffer(source) | WriteError::Write(source) => self.io(source),
            WriteError::BufferTooSmall(e) => DriverError::Unsupported(format!(
                "instruction of {} bytes does not fit the bus buffer",
                e.required_size
            )),
        }
    }

    /// Fills in the servo and instruction of errors found before the servo was known.
    fn name_fatal(&self, error: DriverError, servo: ServoRef, instruction: u8) -> DriverError {
        match error {
            DriverError::Motor { error, .. } => DriverError::Motor {
                servo,
                what: instruction_name(instruction).to_string(),
                error,
            },
            other => other,
        }
    }

    fn exhausted(
        &self,
        servo: ServoRef,
        instruction: &'static str,
        attempts: u32,
        failure: Retryable,
    ) -> DriverError {
        let timeout_s = self.timing.reply_timeout.as_secs_f64();
        // A port that vanished mid-transaction looks like silence: say so if its path is gone.
        if !self.port.exists() {
            return self.io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the port no longer exists",
            ));
        }
        match failure {
            Retryable::Timeout => DriverError::Timeout {
                servo,
                instruction,
                timeout_s,
                attempts,
            },
            Retryable::Corrupt(detail) => DriverError::Corrupt {
                servo,
                instruction,
                attempts,
                detail,
            },
            Retryable::ServoCrc => DriverError::Motor {
                servo,
                what: instruction.to_string(),
                error: StatusError::CrcError,
            },
        }
    }
}

/// Sorts a bus read error into retry-worthy or fatal.
fn read_failure(error: ReadError, port: &Path) -> Failure {
    match error {
        ReadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Failure::Retry(Retryable::Timeout)
        }
        ReadError::Io(source) => Failure::Fatal(DriverError::Io {
            port: port.to_path_buf(),
            source,
        }),
        ReadError::InvalidMessage(e) => {
            Failure::Retry(Retryable::Corrupt(CorruptReply::Invalid(e)))
        }
        // Only a corrupted length field makes a reply longer than the buffer.
        ReadError::BufferFull(e) => Failure::Retry(Retryable::Corrupt(CorruptReply::TooLong {
            bytes: e.required_size,
        })),
        ReadError::MotorError(e) => match StatusError::from_error_byte(e.raw) {
            Some(StatusError::CrcError) => Failure::Retry(Retryable::ServoCrc),
            // The servo is filled in by the caller, which knows whom it asked.
            Some(error) => Failure::Fatal(DriverError::Motor {
                servo: ServoRef { id: 0, joint: None },
                what: String::new(),
                error,
            }),
            None => Failure::Retry(Retryable::Corrupt(CorruptReply::EmptyError)),
        },
    }
}

/// The parameters of a status packet with the byte stuffing that `dynamixel2` 0.9.1 leaves in
/// place removed.
///
/// A servo sends an extra `FD` after every `FF FF FD` in its reply. dynamixel2's unstuffer looks
/// for `FF FF FD FD` with a state machine that, on a mismatching byte, restarts without checking
/// whether that byte begins the pattern; so after three or more `FF` in a row it misses the
/// stuffing, and the reply comes back one byte long. Joint states hit this: a small negative
/// velocity (`FE FF FF FF`) followed by a position whose low byte is `FD` (1 position in 256), and
/// every retry of a resting arm gets the same bytes.
///
/// Exactly the stuffings after `FF FF FF FD` are missed (after `FF FF FD` preceded by anything
/// else the state machine is in step), so those are removed here: only from a reply longer than
/// `expected`, so that a fixed dynamixel2 leaves every reply untouched. Copies into `buffer`
/// when something is removed; otherwise returns `params` itself.
fn unstuff_missed<'a>(
    params: &'a [u8],
    expected: usize,
    buffer: &'a mut [u8; MAX_READ_BYTES],
) -> &'a [u8] {
    if params.len() <= expected {
        return params;
    }
    let mut len = 0;
    for (i, &byte) in params.iter().enumerate() {
        let missed_stuffing =
            i >= 4 && byte == 0xFD && params[i - 4..i] == [0xFF, 0xFF, 0xFF, 0xFD];
        if missed_stuffing {
            continue;
        }
        if len == buffer.len() {
            return params;
        }
        buffer[len] = byte;
        len += 1;
    }
    &buffer[..len]
}

/// Time `bytes` take on the wire at `baud_rate_bps`: 10 bits each (start, 8 data, stop).
pub fn wire_time(bytes: usize, baud_rate_bps: u32) -> Duration {
    Duration::from_nanos(
        (bytes as u64 * 10 * 1_000_000_000).div_ceil(u64::from(baud_rate_bps.max(1))),
    )
}

pub fn instruction_name(instruction: u8) -> &'static str {
    match instruction {
        instruction_id::PING => "PING",
        instruction_id::READ => "READ",
        instruction_id::WRITE => "WRITE",
        instruction_id::REBOOT => "REBOOT",
        instruction_id::SYNC_READ => "SYNC_READ",
        instruction_id::SYNC_WRITE => "SYNC_WRITE",
        _ => "instruction",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_time_is_ten_bits_per_byte() {
        assert_eq!(wire_time(100, 1_000_000), Duration::from_millis(1));
        assert_eq!(wire_time(23, 1_000_000), Duration::from_micros(230));
        assert_eq!(wire_time(1, 57_600), Duration::from_nanos(173_612));
    }

    /// A joint-state block (Present_Current 0, Present_Velocity -2, Present_Position 2045, 2
    /// bytes of Velocity_Trajectory): `FE FF FF FF FD` holds `FF FF FD` after a third `FF`.
    const BLOCK: [u8; 12] = [0, 0, 0xFE, 0xFF, 0xFF, 0xFF, 0xFD, 0x07, 0, 0, 0, 0];

    /// A link over one end of a pty pair whose far end answers every instruction with `reply`.
    fn link_answering(reply: Vec<u8>) -> Link {
        let (near, far) = serial2::SerialPort::pair().unwrap();
        std::thread::spawn(move || {
            let mut instruction = [0u8; 64];
            // Ends when the link (the near end) is dropped: end of file or an I/O error.
            loop {
                match far.read(&mut instruction) {
                    Ok(0) => return,
                    Ok(_) => {
                        std::thread::sleep(Duration::from_millis(1));
                        if far.write_all(&reply).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
            }
        });
        let bus =
            Bus::with_buffers(near, vec![0; BUS_BUFFER_BYTES], vec![0; BUS_BUFFER_BYTES]).unwrap();
        Link {
            bus,
            port: PathBuf::from("(pty pair)"),
            baud_rate_bps: 1_000_000,
            timing: LinkTiming {
                reply_timeout: Duration::from_millis(200),
                retries: 0,
                retry_settle: Duration::from_millis(1),
            },
        }
    }

    #[test]
    fn a_stuffing_after_three_ff_is_removed_from_sync_and_unicast_reads() {
        let packet = widowx_sim::protocol::encode_status(2, 0, &BLOCK);
        assert_eq!(packet.len(), 11 + BLOCK.len() + 1, "one stuffed byte");
        let mut link = link_answering(packet);
        let mut received = [false];
        let mut got = Vec::new();
        link.sync_read(
            &[2],
            126,
            BLOCK.len() as u16,
            &mut received,
            |id| ServoRef { id, joint: None },
            |_, data, _| got = data.to_vec(),
        )
        .unwrap();
        assert_eq!(got, BLOCK);
        let servo = ServoRef { id: 2, joint: None };
        let reply = link.read(servo, 126, BLOCK.len() as u16).unwrap();
        assert_eq!(reply.data(), BLOCK);
    }

    #[test]
    fn a_write_that_dynamixel2_would_send_unstuffed_is_refused() {
        let mut link = link_answering(widowx_sim::protocol::encode_status(1, 0, &[]));
        let servo = ServoRef { id: 1, joint: None };
        let refused = link.write(servo, 20, &0xFDFF_FFFFu32.to_le_bytes());
        assert!(
            matches!(&refused, Err(DriverError::Unsupported(why)) if why.contains("FF FF FF FD")),
            "{refused:?}"
        );
        // The same register with any other value goes out and is answered.
        link.write(servo, 20, &(-3i32).to_le_bytes()).unwrap();
    }

    #[test]
    fn only_stuffings_that_dynamixel2_misses_are_removed() {
        let mut buffer = [0; MAX_READ_BYTES];
        // dynamixel2's output for data FF FF FF FD 01: the stuffed FD left in.
        let missed = [0xFF, 0xFF, 0xFF, 0xFD, 0xFD, 0x01];
        assert_eq!(
            unstuff_missed(&missed, 5, &mut buffer),
            [0xFF, 0xFF, 0xFF, 0xFD, 0x01]
        );
        // Data 00 FF FF FD FD, correctly unstuffed: the second FD is data and stays, even in
        // a reply that is too long for another reason.
        let data = [0x00, 0xFF, 0xFF, 0xFD, 0xFD, 0x02];
        assert_eq!(unstuff_missed(&data, 5, &mut buffer), data);
        // A reply of the expected length is never touched.
        assert_eq!(unstuff_missed(&missed, 6, &mut buffer), missed);
    }
}
