//! The server thread: reads the pty, parses instruction packets, lets the arm execute them and
//! writes the replies back, with optional bus timing and injected faults.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::arm::{Arm, Reply};
use crate::protocol::{PREFIX_BYTES, Packet, Parser};
use crate::pty::Pty;

/// How long the server waits for bytes before checking for a stop request; also how long a
/// partial packet may sit before it is abandoned.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Bits on the wire per byte (start, 8 data, stop).
const BITS_PER_BYTE: u64 = 10;
/// Below this much time left, spin instead of sleeping (sleep overshoots by ~100 us).
const SPIN_MARGIN: Duration = Duration::from_micros(300);

/// State shared between the [`crate::VirtualArm`] handle and the server thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub arm: Mutex<Arm>,
    pub stop: AtomicBool,
    pub packets_received: AtomicU64,
    drop_rate_bits: AtomicU64,
    corruption_rate_bits: AtomicU64,
}

impl Shared {
    pub fn new(arm: Arm) -> Shared {
        Shared {
            arm: Mutex::new(arm),
            stop: AtomicBool::new(false),
            packets_received: AtomicU64::new(0),
            drop_rate_bits: AtomicU64::new(0f64.to_bits()),
            corruption_rate_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// The arm, even if a panic elsewhere poisoned the lock (its state is still consistent:
    /// every mutation completes before the guard is released).
    pub fn arm(&self) -> MutexGuard<'_, Arm> {
        self.arm.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_drop_rate(&self, rate: f64) {
        self.drop_rate_bits
            .store(rate.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    pub fn set_corruption_rate(&self, rate: f64) {
        self.corruption_rate_bits
            .store(rate.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    fn drop_rate(&self) -> f64 {
        f64::from_bits(self.drop_rate_bits.load(Ordering::Relaxed))
    }

    fn corruption_rate(&self) -> f64 {
        f64::from_bits(self.corruption_rate_bits.load(Ordering::Relaxed))
    }
}

/// Requests from the handle to the server thread.
#[derive(Debug)]
pub(crate) enum Control {
    /// Close the pty; acknowledge once it is closed.
    Vanish(Sender<()>),
}

/// Everything the server thread owns.
pub(crate) struct Server {
    pub pty: Pty,
    pub shared: Arc<Shared>,
    pub control: Receiver<Control>,
    pub byte_timing: bool,
    pub rng: StdRng,
}

impl Server {
    pub fn new(
        pty: Pty,
        shared: Arc<Shared>,
        control: Receiver<Control>,
        byte_timing: bool,
        seed: u64,
    ) -> Server {
        Server {
            pty,
            shared,
            control,
            byte_timing,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Serves until asked to stop or to vanish.
    pub fn run(mut self) {
        let mut parser = Parser::new();
        let mut buffer = [0u8; 4096];
        while !self.shared.stop.load(Ordering::Relaxed) {
            if let Ok(Control::Vanish(ack)) = self.control.try_recv() {
                drop(self.pty); // closes master and slave: the client's descriptor hangs up
                let _ = ack.send(());
                return;
            }
            match self.pty.wait_readable(POLL_INTERVAL) {
                Ok(true) => match self.pty.read(&mut buffer) {
                    Ok(n) => parser.push(&buffer[..n]),
                    Err(error) => {
                        tracing::warn!("virtual arm: reading the pty failed: {error}");
                        std::thread::sleep(POLL_INTERVAL);
                    }
                },
                Ok(false) => parser.abandon_partial(),
                Err(error) => {
                    tracing::warn!("virtual arm: polling the pty failed: {error}");
                    std::thread::sleep(POLL_INTERVAL);
                }
            }
            while let Some(packet) = parser.next_packet() {
                self.serve(&packet);
            }
        }
    }

    fn serve(&mut self, packet: &Packet) {
        let received_at = Instant::now();
        self.shared.packets_received.fetch_add(1, Ordering::Relaxed);
        let line_bps = self.pty.line_bps();
        let (replies, servo_bps) = {
            let mut arm = self.shared.arm();
            (arm.handle(packet, received_at, line_bps), arm.servo_bps())
        };
        let bps = line_bps.filter(|&bps| bps > 0).unwrap_or(servo_bps);
        // The instruction occupied the bus for its own length before any servo could answer.
        let mut bus_free_at = received_at + wire_time(packet.wire_bytes, bps);
        for reply in replies {
            bus_free_at += Duration::from_micros(u64::from(reply.return_delay_us))
                + wire_time(reply.bytes.len(), bps);
            if self.byte_timing {
                wait_until(bus_free_at);
            }
            if let Some(bytes) = self.inject_faults(reply)
                && let Err(error) = self.pty.write_all(&bytes)
            {
                tracing::warn!("virtual arm: writing a reply failed: {error}");
            }
        }
    }

    /// Drops or corrupts a reply at the configured rates.
    fn inject_faults(&mut self, reply: Reply) -> Option<Vec<u8>> {
        if self.rng.random::<f64>() < self.shared.drop_rate() {
            return None;
        }
        let mut bytes = reply.bytes;
        if self.rng.random::<f64>() < self.shared.corruption_rate() && bytes.len() > PREFIX_BYTES {
            // Flip bits after the length field: the frame stays intact, the CRC fails.
            let index = self.rng.random_range(PREFIX_BYTES..bytes.len());
            let mask = self.rng.random_range(1..=255u8);
            bytes[index] ^= mask;
        }
        Some(bytes)
    }
}

fn wire_time(bytes: usize, bps: u32) -> Duration {
    Duration::from_nanos(bytes as u64 * BITS_PER_BYTE * 1_000_000_000 / u64::from(bps.max(1)))
}

/// Waits until `deadline`: sleeps while far from it, spins for the last few hundred microseconds.
fn wait_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        let Some(left) = deadline.checked_duration_since(now) else {
            return;
        };
        if left > SPIN_MARGIN {
            std::thread::sleep(left - SPIN_MARGIN);
        } else {
            std::hint::spin_loop();
        }
    }
}
