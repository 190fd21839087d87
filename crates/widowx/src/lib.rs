//! # widowx
//!
//! The WidowX 250 6DOF arm as software sees it, with no I/O: the servo map and register
//! settings ([`firmware`]), the X-series control table as typed data ([`control_table`]), joint
//! order and limits ([`joints`], reconciled with the servos' limits in
//! [`firmware::FirmwareConfig::joint_limits`]), unit conversions ([`units`]), and kinematics
//! ([`kinematics`], [`pose`]), and the BridgeData V2 conventions built on them ([`bridge`]:
//! actions, states, start pose, workspace box, gripper fraction).
//!
//! Not for: talking to servos (crate `widowx-driver`, over a serial port), learning, cameras, or
//! the realtime loop (`mqe`, `camera`, `bridge-run`). A pure crate: the datasets, the simulator,
//! the driver and the runtime all build on it, and it depends on none of them.
//!
//! Design: `docs/widowx.md` (servos, control table, protocol, kinematics, Bridge conventions) and `docs/architecture.md`.
//!
//! ```
//! use widowx::firmware::FirmwareConfig;
//! use widowx::joints::Joint;
//! let config = FirmwareConfig::wx250s();
//! assert_eq!(config.master(Joint::Elbow).map(|s| s.id), Some(4));
//! ```

pub mod bridge;
pub mod control_table;
pub mod firmware;
pub mod joints;
pub mod kinematics;
pub mod pose;
pub mod units;
