//! # widowx-sim
//!
//! A virtual WidowX 250 6DOF on a pseudo-terminal: nine Dynamixel X-series servos that speak
//! Protocol 2.0 byte for byte, with each servo's full control table (built from
//! [`widowx::control_table`] and [`widowx::firmware`]), time-based and velocity-based motion
//! profiles, shadow servos mechanically coupled to their masters, a PWM gripper, and injectable
//! faults (overload, lost or corrupted replies, the port vanishing). Any Dynamixel client (the
//! `dynamixel2` crate, the ROBOTIS SDK) opens [`VirtualArm::port_path`] as it would the U2D2.
//!
//! For: driver tests, CI, and running the whole stack without hardware.
//! Not for: physics (no gravity, contact or inertia beyond the servo's own profile), nor for
//! timing claims unless [`SimConfig::byte_timing`] is on.
//!
//! Design: `docs/architecture.md` and `docs/widowx.md` (what the virtual servos imitate).
//!
//! ```
//! use widowx::control_table::reg;
//! use widowx::firmware::FirmwareConfig;
//! use widowx_sim::{SimConfig, VirtualArm};
//!
//! let arm = VirtualArm::spawn(SimConfig::new(FirmwareConfig::wx250s()))?;
//! let mut bus = dynamixel2::Bus::open(arm.port_path(), 1_000_000)?;
//! assert_eq!(bus.ping(1)?.data.model, 1020);
//! bus.write_u8(1, reg::TORQUE_ENABLE.address, 1)?;
//! assert_eq!(arm.register(1, &reg::TORQUE_ENABLE), Some(1)); // the test oracle
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules: [`protocol`] (the codec), [`dynamics`] (motion profiles and the shaft/tick mapping).
//!
//! The tabletop (issue 5): [`VirtualArm::spawn_tabletop`] puts the arm on a table with coloured
//! blocks it can grasp, carry and release ([`world`] holds the rules, [`tabletop`] the world
//! thread and the [`SceneHandle`]); [`render`] draws the scene camera's view in software and
//! [`SimCamera`] serves it as a `camera::FrameSource`;
//! [`tasks`] describes start and goal scenes for evaluation.

mod arm;
pub mod dynamics;
pub mod protocol;
mod pty;
pub mod render;
pub mod scene_camera;
mod server;
mod servo;
pub mod tabletop;
pub mod tasks;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use widowx::control_table::Register;
use widowx::firmware::FirmwareConfig;
use widowx::joints::SLEEP_POSE_RAD;

use crate::server::{Control, Server, Shared};

pub use crate::arm::OVERLOAD_BIT;
pub use crate::scene_camera::{SimCamera, SimCameraConfig};
pub use crate::tabletop::{BlockSpec, SceneHandle, TabletopConfig};
pub use crate::world::{BlockState, Scene};

/// Reply timeout for a driver talking to the virtual arm. Its servos are threads sharing the CPU
/// with everything else on the machine (a test suite, a compiler), so a reply can be late by a
/// scheduler slice even though the bus timing itself is exact. Real hardware keeps the driver's
/// tight default.
pub const DRIVER_REPLY_TIMEOUT_S: f64 = 0.25;

/// How long [`VirtualArm::vanish`] waits for the server thread to close the port.
const VANISH_TIMEOUT: Duration = Duration::from_secs(2);

/// What a fresh arm's EEPROM holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialEeprom {
    /// Every register as the firmware configuration says (a set-up arm).
    Configured,
    /// Factory defaults except ID and Baud_Rate (an arm fresh from assembly).
    Factory,
}

/// How the virtual arm starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Servo map: IDs, models, shadows, limits.
    pub firmware: FirmwareConfig,
    /// Initial EEPROM. Shadow homing offsets start at 0 either way, and each shadow's shaft
    /// sits [`dynamics::SHADOW_SHAFT_OFFSET_TICKS`] off its master, so calibration matters.
    pub initial_eeprom: InitialEeprom,
    /// Initial joint angles of the masters in `Joint::ALL` order (arm joints, then gripper), rad.
    pub initial_joints_rad: [f64; 7],
    /// Delay every reply as the real bus would: instruction bytes + reply bytes x 10 bits / baud,
    /// plus Return_Delay_Time.
    pub byte_timing: bool,
    /// Seed for fault injection randomness.
    pub seed: u64,
}

impl SimConfig {
    /// Configured EEPROM, the Interbotix sleep pose with the gripper at 0, no byte timing, seed 0.
    pub fn new(firmware: FirmwareConfig) -> SimConfig {
        let mut initial_joints_rad = [0.0; 7];
        initial_joints_rad[..SLEEP_POSE_RAD.len()].copy_from_slice(&SLEEP_POSE_RAD);
        SimConfig {
            firmware,
            initial_eeprom: InitialEeprom::Configured,
            initial_joints_rad,
            byte_timing: false,
            seed: 0,
        }
    }
}

/// Why the virtual arm could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("virtual arm: cannot create the pseudo-terminal: {0}")]
    Pty(#[source] std::io::Error),
    #[error("virtual arm: cannot start the server thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("virtual arm: invalid configuration: {0}")]
    Config(String),
}

/// A running virtual arm: a pseudo-terminal whose slave path any Dynamixel client can open, and
/// a server thread speaking Protocol 2.0 on it. Servo motion is integrated exactly on each access.
/// Dropping it stops the thread and closes the pty.
#[derive(Debug)]
pub struct VirtualArm {
    shared: Arc<Shared>,
    path: PathBuf,
    control: crossbeam_channel::Sender<Control>,
    thread: Option<JoinHandle<()>>,
    /// The world around the arm, when spawned with [`VirtualArm::spawn_tabletop`].
    tabletop: Option<tabletop::Tabletop>,
}

impl VirtualArm {
    /// Creates the pty and starts serving.
    pub fn spawn(config: SimConfig) -> Result<VirtualArm, SimError> {
        let arm = arm::Arm::new(&config, Instant::now())?;
        let pty = pty::Pty::open(config.firmware.baud_rate_bps).map_err(SimError::Pty)?;
        let path = pty.path().to_path_buf();
        let shared = Arc::new(Shared::new(arm));
        let (control, control_rx) = crossbeam_channel::unbounded();
        let server = Server::new(
            pty,
            Arc::clone(&shared),
            control_rx,
            config.byte_timing,
            config.seed,
        );
        let thread = std::thread::Builder::new()
            .name("widowx-sim".into())
            .spawn(move || server.run())
            .map_err(SimError::Thread)?;
        Ok(VirtualArm {
            shared,
            path,
            control,
            thread: Some(thread),
            tabletop: None,
        })
    }

    /// The pty slave to open, e.g. `/dev/pts/7`.
    pub fn port_path(&self) -> &Path {
        &self.path
    }

    /// Overload on servo `id`: Hardware_Error_Status bit 5 set, torque cut, alert bit 0x80 in
    /// every reply until REBOOT.
    pub fn inject_overload(&self, id: u8) {
        self.shared.arm().inject_overload(id, Instant::now());
    }

    /// Cuts servo `id` off the bus, as a loose daisy-chain cable would (or reconnects it): it
    /// hears no instruction, broadcasts included, and sends no reply.
    pub fn set_disconnected(&self, id: u8, disconnected: bool) {
        self.shared.arm().set_disconnected(id, disconnected);
    }

    /// Fraction of status packets not sent (0..=1).
    pub fn set_reply_drop_rate(&self, rate: f64) {
        self.shared.set_drop_rate(rate);
    }

    /// Fraction of status packets sent with one byte altered so that the CRC fails (0..=1).
    pub fn set_reply_corruption_rate(&self, rate: f64) {
        self.shared.set_corruption_rate(rate);
    }

    /// The port disappears: the pty is closed, so the client's reads and writes fail and the
    /// path can no longer be opened. Returns once it is closed.
    pub fn vanish(&self) {
        let (ack, done) = crossbeam_channel::bounded(1);
        if self.control.send(Control::Vanish(ack)).is_ok() {
            let _ = done.recv_timeout(VANISH_TIMEOUT);
        }
    }

    /// Oracle for tests: `register` of servo `id` read from its memory directly (not over the
    /// bus), as of now; `None` if there is no such servo or its model lacks the register.
    pub fn register(&self, id: u8, register: &Register) -> Option<i64> {
        self.shared.arm().register(id, register, Instant::now())
    }

    /// True (physical) angles of the masters in `Joint::ALL` order, rad.
    pub fn joint_positions_rad(&self) -> [f64; 7] {
        self.shared.arm().joint_positions_rad(Instant::now())
    }

    /// Valid instruction packets seen so far.
    pub fn packets_received(&self) -> u64 {
        self.shared.packets_received.load(Ordering::Relaxed)
    }
}

impl Drop for VirtualArm {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
