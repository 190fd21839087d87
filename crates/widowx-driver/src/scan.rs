//! Finding servos: PING every configured servo ([`crate::Arm::ping_all`]'s report) or every ID
//! at several baud rates ([`scan`]), whatever the servos' configuration.

use std::path::Path;
use std::time::Duration;

use widowx::control_table::Model;

use crate::error::{DriverError, ServoProblem, ServoRef};
use crate::link::{Link, LinkTiming};

/// A servo that answered PING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundServo {
    pub servo: ServoRef,
    pub model_number: u16,
    pub firmware_version: u8,
    /// The alert bit of its reply: it has a hardware error.
    pub alert: bool,
}

/// The result of pinging every configured servo.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PingReport {
    pub found: Vec<FoundServo>,
    pub problems: Vec<ServoProblem>,
}

impl PingReport {
    /// `Ok` when every configured servo answered with the configured model.
    pub fn into_result(self) -> Result<PingReport, DriverError> {
        if self.problems.is_empty() {
            Ok(self)
        } else {
            Err(DriverError::Servos {
                problems: self.problems,
            })
        }
    }
}

/// A servo found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanHit {
    pub baud_rate_bps: u32,
    pub id: u8,
    pub model_number: u16,
    pub firmware_version: u8,
}

impl ScanHit {
    pub fn model(&self) -> Option<Model> {
        Model::from_model_number(self.model_number)
    }
}

/// Pings every ID in `ids` at each baud rate (one attempt each, waiting `timeout_s` beyond the
/// wire time): finds servos whatever their ID and baud rate.
pub fn scan(
    port: &Path,
    baud_rates_bps: &[u32],
    ids: std::ops::RangeInclusive<u8>,
    timeout_s: f64,
) -> Result<Vec<ScanHit>, DriverError> {
    if !(timeout_s.is_finite() && timeout_s > 0.0) {
        return Err(DriverError::Config {
            field: "timeout_s",
            message: "must be positive".into(),
        });
    }
    let timing = LinkTiming {
        reply_timeout: Duration::from_secs_f64(timeout_s),
        retries: 0,
        retry_settle: Duration::ZERO,
    };
    let Some(&first) = baud_rates_bps.first() else {
        return Ok(Vec::new());
    };
    let mut link = Link::open(port, first, timing)?;
    let mut hits = Vec::new();
    for &baud_rate_bps in baud_rates_bps {
        link.set_baud_rate(baud_rate_bps)?;
        for id in ids.clone() {
            match link.ping(ServoRef { id, joint: None }, 0) {
                Ok((model_number, firmware_version, _)) => hits.push(ScanHit {
                    baud_rate_bps,
                    id,
                    model_number,
                    firmware_version,
                }),
                Err(
                    DriverError::Timeout { .. }
                    | DriverError::Corrupt { .. }
                    | DriverError::Motor { .. },
                ) => {}
                Err(other) => return Err(other),
            }
        }
    }
    Ok(hits)
}
