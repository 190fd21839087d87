//! Costs of the virtual bus: the codec alone, and a full SYNC_READ round trip through the pty
//! with the `dynamixel2` client (no byte timing, so this is the simulator's own overhead).

use criterion::{Criterion, criterion_group, criterion_main};
use widowx::firmware::FirmwareConfig;
use widowx_sim::protocol::{Parser, encode_instruction, encode_status, instruction};
use widowx_sim::{SimConfig, VirtualArm};

const MASTERS: [u8; 7] = [1, 2, 4, 6, 7, 8, 9];

fn codec(c: &mut Criterion) {
    let mut params = vec![126, 0, 12, 0];
    params.extend_from_slice(&MASTERS);
    let packet = encode_instruction(0xFE, instruction::SYNC_READ, &params);
    c.bench_function("parse sync_read instruction", |b| {
        let mut parser = Parser::new();
        b.iter(|| {
            parser.push(&packet);
            parser.next_packet()
        })
    });
    c.bench_function("encode 12-byte status", |b| {
        b.iter(|| encode_status(1, 0, &[0xAB; 12]))
    });
}

fn round_trip(c: &mut Criterion) {
    let arm = VirtualArm::spawn(SimConfig::new(FirmwareConfig::wx250s())).expect("virtual arm");
    let mut bus = dynamixel2::Bus::open(arm.port_path(), 1_000_000).expect("open pty");
    c.bench_function("sync_read 7 x 12 bytes over the pty", |b| {
        b.iter(|| bus.sync_read(&MASTERS, 126, 12).expect("sync read"))
    });
    c.bench_function("ping over the pty", |b| {
        b.iter(|| bus.ping(1).expect("ping"))
    });
}

criterion_group!(benches, codec, round_trip);
criterion_main!(benches);
