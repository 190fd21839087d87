//! Bus timing: with `byte_timing`, replies arrive no sooner than a real 1 Mbps bus allows.

mod common;

use std::time::{Duration, Instant};

use common::*;
use widowx_sim::InitialEeprom;

/// Median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

#[test]
fn sync_read_takes_the_bus_time_of_every_byte() {
    let arm = spawn_with(|c| c.byte_timing = true);
    let mut bus = bus(&arm);
    // Instruction 14 + 7 IDs = 21 bytes; 7 replies of 11 + 12 bytes; 10 bits per byte at 1 Mbps.
    let wire = Duration::from_micros((21 + 7 * 23) * 10);
    let slowest_first = Instant::now();
    bus.sync_read(&MASTERS, 126, 12).unwrap();
    let first = slowest_first.elapsed();
    assert!(first >= wire, "{first:?} < {wire:?}");
    let typical = median(15, || {
        bus.sync_read(&MASTERS, 126, 12).unwrap();
    });
    assert!(typical >= wire, "{typical:?} < {wire:?}");
    assert!(
        typical < wire + Duration::from_millis(20),
        "{typical:?}: far slower than the bus"
    );
}

#[test]
fn return_delay_time_delays_each_reply() {
    // Factory EEPROM: Return_Delay_Time 250 x 2 us = 0.5 ms per reply.
    let arm = spawn_with(|c| {
        c.byte_timing = true;
        c.initial_eeprom = InitialEeprom::Factory;
    });
    let mut bus = bus(&arm);
    let wire = Duration::from_micros((10 + 14) * 10 + 500);
    let typical = median(11, || {
        bus.ping(1).unwrap();
    });
    assert!(typical >= wire, "{typical:?} < {wire:?}");
    assert!(
        typical < wire + Duration::from_millis(20),
        "{typical:?}: far slower than the bus"
    );
}
