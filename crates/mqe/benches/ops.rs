//! Forward + backward timings of the fast ops against candle's built-in equivalents.
//!
//! Run: `cargo bench -p mqe --bench ops` (candle's own conv2d backward takes about a second per
//! call at the larger shapes; set `MQE_BENCH_SKIP_CANDLE=1` to time only the fast ops).

use std::hint::black_box;
use std::time::Duration;

use candle_core::{Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use mqe::ops::{conv2d_same, max_pool_3x3_s2_same, mrn_distance_broadcast, mrn_pairwise};

const BATCH: usize = 64;

/// (in channels, out channels, side) of the convolutions in an impala-small encoder at 64x64.
const IMPALA_CONVS: &[(usize, usize, usize)] = &[
    (3, 16, 64),
    (16, 16, 32),
    (16, 32, 32),
    (32, 32, 16),
    (32, 32, 8),
];

fn skip_candle() -> bool {
    std::env::var_os("MQE_BENCH_SKIP_CANDLE").is_some()
}

fn var(dims: &[usize], std: f64) -> Var {
    Var::from_tensor(&Tensor::randn(0f32, std as f32, dims, &Device::Cpu).expect("randn"))
        .expect("var")
}

/// One forward and backward pass: sum of the output, gradients to every Var.
fn fwd_bwd(out: candle_core::Result<Tensor>) {
    let grads = out
        .and_then(|y| y.sum_all())
        .and_then(|l| l.backward())
        .expect("fwd+bwd");
    black_box(grads);
}

fn bench_conv(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d_fwd_bwd_b64");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for &(cin, cout, side) in IMPALA_CONVS {
        let x = var(&[BATCH, cin, side, side], 1.0);
        let w = var(&[cout, cin, 3, 3], 0.1);
        let b = var(&[cout], 0.1);
        let label = format!("{cin}to{cout}_{side}x{side}");
        group.bench_function(format!("ours/{label}"), |bench| {
            bench.iter(|| fwd_bwd(conv2d_same(&x, &w, &b)))
        });
        if !skip_candle() {
            group.bench_function(format!("candle/{label}"), |bench| {
                bench.iter(|| {
                    let y = x
                        .conv2d(&w, 1, 1, 1, 1)
                        .and_then(|y| y.broadcast_add(&b.reshape((1, cout, 1, 1))?));
                    fwd_bwd(y)
                })
            });
        }
    }
    group.finish();
}

fn bench_pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("maxpool_fwd_bwd_b64");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    for &(ch, side) in &[(16usize, 64usize), (32, 32), (32, 16)] {
        let x = var(&[BATCH, ch, side, side], 1.0);
        group.bench_function(format!("ours/{ch}ch_{side}x{side}"), |bench| {
            bench.iter(|| fwd_bwd(max_pool_3x3_s2_same(&x)))
        });
    }
    group.finish();
}

fn bench_mrn(c: &mut Criterion) {
    let mut group = c.benchmark_group("mrn_pairwise_e2_b256_d512");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let x = var(&[2, 256, 512], 1.0);
    let y = var(&[2, 256, 512], 1.0);
    group.bench_function("ours/fwd", |bench| {
        bench.iter(|| black_box(mrn_pairwise(&x, &y, 8).expect("fwd")))
    });
    group.bench_function("ours/fwd_bwd", |bench| {
        bench.iter(|| fwd_bwd(mrn_pairwise(&x, &y, 8)))
    });
    if !skip_candle() {
        group.bench_function("broadcast/fwd_bwd", |bench| {
            bench.iter(|| {
                fwd_bwd(mrn_distance_broadcast(
                    &x.unsqueeze(2).expect("x"),
                    &y.unsqueeze(1).expect("y"),
                    8,
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_conv, bench_pool, bench_mrn);
criterion_main!(benches);
