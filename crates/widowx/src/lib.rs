//! # widowx
//!
//! The WidowX 250 6DOF arm as software sees it: the servo map and register settings
//! ([`firmware`]), the X-series control table as typed data ([`control_table`]), joint order and
//! limits ([`joints`]), unit conversions ([`units`]), kinematics ([`kinematics`], [`pose`]), and the
//! Dynamixel Protocol 2.0 driver over a serial port ([`driver`]).
//!
//! Not for: learning, cameras, or the realtime loop (those live in `mqe`, `camera` and
//! `bridge-run`); the virtual arm lives in `widowx-sim`, which depends on this crate and never the
//! other way round.
//!
//! Design: `docs/widowx.md` (servos, control table, protocol, kinematics, Bridge conventions) and `docs/architecture.md`.
//!
//! ```
//! use widowx::firmware::FirmwareConfig;
//! use widowx::joints::Joint;
//! let config = FirmwareConfig::wx250s();
//! assert_eq!(config.master(Joint::Elbow).map(|s| s.id), Some(4));
//! ```

pub mod control_table;
pub mod driver;
pub mod firmware;
pub mod joints;
pub mod kinematics;
pub mod pose;
pub mod units;
