//! mrn_pairwise / mrn_matched against an f64 plain-loop reference, finite differences, the candle
//! composition, and quasimetric properties (proptest).

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{assert_central_differences, grad_vec, max_abs_diff, weighted_sum};
use mqe::ops::{mrn_distance_broadcast, mrn_matched, mrn_pairwise};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// d(x, y) as written in docs/mqe.md section 3, in f64.
fn reference_distance(x: &[f64], y: &[f64], components: usize) -> f64 {
    let dim = x.len();
    let chunk = dim / components;
    let mut total = 0.0;
    for c in 0..components {
        let diff: Vec<f64> = (0..chunk)
            .map(|k| x[c * chunk + k] - y[c * chunk + k])
            .collect();
        let (first, second) = diff.split_at(chunk / 2);
        let asym = first
            .iter()
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max)
            .max(0.0);
        let sym = (second.iter().map(|v| v * v).sum::<f64>() + 1e-12).sqrt();
        total += asym + sym;
    }
    total / components as f64 / (dim as f64).sqrt()
}

fn random_vec(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| f64::from(a)).collect()
}

/// sum_{e,i,j} r[e,i,j] * d(x[e,i], y[e,j]) in f64.
fn reference_pairwise_loss(
    x: &[f64],
    y: &[f64],
    r: &[f64],
    (e, b, m, d): (usize, usize, usize, usize),
    comps: usize,
) -> f64 {
    let mut total = 0.0;
    for ens in 0..e {
        for i in 0..b {
            for j in 0..m {
                let xr = &x[(ens * b + i) * d..(ens * b + i + 1) * d];
                let yr = &y[(ens * m + j) * d..(ens * m + j + 1) * d];
                total += r[(ens * b + i) * m + j] * reference_distance(xr, yr, comps);
            }
        }
    }
    total
}

#[test]
fn pairwise_forward_matches_reference_and_broadcast_composition() {
    let mut rng = StdRng::seed_from_u64(21);
    for &(e, b, m, d, comps) in &[
        (2usize, 5usize, 7usize, 512usize, 8usize),
        (1, 1, 3, 16, 2),
        (2, 4, 1, 12, 3),
    ] {
        let xv = random_vec(&mut rng, e * b * d);
        let yv = random_vec(&mut rng, e * m * d);
        let x = Tensor::from_vec(xv.clone(), (e, b, d), &Device::Cpu).unwrap();
        let y = Tensor::from_vec(yv.clone(), (e, m, d), &Device::Cpu).unwrap();
        let got = mrn_pairwise(&x, &y, comps).unwrap();
        assert_eq!(got.dims(), &[e, b, m]);
        let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        let naive =
            mrn_distance_broadcast(&x.unsqueeze(2).unwrap(), &y.unsqueeze(1).unwrap(), comps)
                .unwrap();
        let naive: Vec<f32> = naive.flatten_all().unwrap().to_vec1().unwrap();
        let (x64, y64) = (to_f64(&xv), to_f64(&yv));
        for ens in 0..e {
            for i in 0..b {
                for j in 0..m {
                    let want = reference_distance(
                        &x64[(ens * b + i) * d..][..d],
                        &y64[(ens * m + j) * d..][..d],
                        comps,
                    );
                    let k = (ens * b + i) * m + j;
                    assert!(
                        (f64::from(got[k]) - want).abs() < 1e-5,
                        "({ens},{i},{j}): {} vs {want}",
                        got[k]
                    );
                    assert!((f64::from(naive[k]) - want).abs() < 1e-5);
                }
            }
        }
    }
}

/// Analytic gradients of sum(r * d) against central differences of the f64 reference, for
/// every coordinate of x and y.
#[test]
fn pairwise_gradients_match_central_differences() {
    let mut rng = StdRng::seed_from_u64(22);
    let (e, b, m, d, comps) = (2usize, 3usize, 4usize, 16usize, 2usize);
    let xv = random_vec(&mut rng, e * b * d);
    let yv = random_vec(&mut rng, e * m * d);
    let rv = random_vec(&mut rng, e * b * m);
    let x = Var::from_vec(xv.clone(), (e, b, d), &Device::Cpu).unwrap();
    let y = Var::from_vec(yv.clone(), (e, m, d), &Device::Cpu).unwrap();
    let r = Tensor::from_vec(rv.clone(), (e, b, m), &Device::Cpu).unwrap();
    let grads = weighted_sum(&mrn_pairwise(&x, &y, comps).unwrap(), &r)
        .backward()
        .unwrap();
    let (dx, dy) = (grad_vec(&grads, &x), grad_vec(&grads, &y));
    let (x64, y64, r64) = (to_f64(&xv), to_f64(&yv), to_f64(&rv));
    let sizes = (e, b, m, d);
    check_gradient("dx", &dx, &x64, |x| {
        reference_pairwise_loss(x, &y64, &r64, sizes, comps)
    });
    check_gradient("dy", &dy, &y64, |y| {
        reference_pairwise_loss(&x64, y, &r64, sizes, comps)
    });
}

/// Every coordinate of the gradient `analytic` against central differences (step 1e-6) of the
/// f64 `loss` around `at`, to 1e-4.
fn check_gradient(name: &str, analytic: &[f32], at: &[f64], loss: impl Fn(&[f64]) -> f64) {
    assert_central_differences(name, analytic, at.len(), (1e-6, 1e-4), |k, delta| {
        let mut moved = at.to_vec();
        moved[k] += delta;
        loss(&moved)
    });
}

/// At the real size (D = 512, 8 components) the fused gradients equal candle's autograd through
/// the broadcast composition.
#[test]
fn pairwise_gradients_match_candle_autograd_at_full_size() {
    let mut rng = StdRng::seed_from_u64(23);
    let (e, b, m, d) = (2usize, 6usize, 5usize, 512usize);
    let x = Var::from_vec(random_vec(&mut rng, e * b * d), (e, b, d), &Device::Cpu).unwrap();
    let y = Var::from_vec(random_vec(&mut rng, e * m * d), (e, m, d), &Device::Cpu).unwrap();
    let r = Tensor::from_vec(random_vec(&mut rng, e * b * m), (e, b, m), &Device::Cpu).unwrap();
    let fused = weighted_sum(&mrn_pairwise(&x, &y, 8).unwrap(), &r)
        .backward()
        .unwrap();
    let naive_d =
        mrn_distance_broadcast(&x.unsqueeze(2).unwrap(), &y.unsqueeze(1).unwrap(), 8).unwrap();
    let naive = weighted_sum(&naive_d, &r).backward().unwrap();
    assert!(max_abs_diff(fused.get(&x).unwrap(), naive.get(&x).unwrap()) < 1e-5);
    assert!(max_abs_diff(fused.get(&y).unwrap(), naive.get(&y).unwrap()) < 1e-5);
}

#[test]
fn pairwise_gradient_reaches_only_tracked_inputs_and_handles_strided_views() {
    let mut rng = StdRng::seed_from_u64(24);
    let x = Var::from_vec(random_vec(&mut rng, 3 * 32), (1, 3, 32), &Device::Cpu).unwrap();
    // y stored as [D, M], viewed as [1, M, D]: not contiguous.
    let y = Tensor::from_vec(random_vec(&mut rng, 32 * 4), (32, 4), &Device::Cpu)
        .unwrap()
        .t()
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    assert!(!y.is_contiguous());
    let fused = mrn_pairwise(&x, &y, 4).unwrap();
    let naive =
        mrn_distance_broadcast(&x.unsqueeze(2).unwrap(), &y.unsqueeze(1).unwrap(), 4).unwrap();
    assert!(max_abs_diff(&fused, &naive) < 1e-6);
    let grads = fused.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_some());
    assert!(grads.get(&y).is_none(), "a constant y must get no gradient");
}

#[test]
fn matched_matches_reference_and_gradients() {
    let mut rng = StdRng::seed_from_u64(25);
    let (rows, cols, d, comps) = (3usize, 2usize, 24usize, 3usize);
    let xv = random_vec(&mut rng, rows * cols * d);
    let yv = random_vec(&mut rng, rows * cols * d);
    let rv = random_vec(&mut rng, rows * cols);
    let x = Var::from_vec(xv.clone(), (rows, cols, d), &Device::Cpu).unwrap();
    let y = Var::from_vec(yv.clone(), (rows, cols, d), &Device::Cpu).unwrap();
    let out = mrn_matched(&x, &y, comps).unwrap();
    assert_eq!(out.dims(), &[rows, cols]);
    let got: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
    let (x64, y64, r64) = (to_f64(&xv), to_f64(&yv), to_f64(&rv));
    let loss64 = |x: &[f64], y: &[f64]| -> f64 {
        (0..rows * cols)
            .map(|k| r64[k] * reference_distance(&x[k * d..][..d], &y[k * d..][..d], comps))
            .sum()
    };
    for k in 0..rows * cols {
        let want = reference_distance(&x64[k * d..][..d], &y64[k * d..][..d], comps);
        assert!((f64::from(got[k]) - want).abs() < 1e-6);
    }
    let r = Tensor::from_vec(rv, (rows, cols), &Device::Cpu).unwrap();
    let grads = weighted_sum(&out, &r).backward().unwrap();
    let (dx, dy) = (grad_vec(&grads, &x), grad_vec(&grads, &y));
    check_gradient("dx", &dx, &x64, |x| loss64(x, &y64));
    check_gradient("dy", &dy, &y64, |y| loss64(&x64, y));
}

#[test]
fn f64_inputs_fall_back_to_the_composition() {
    let mut rng = StdRng::seed_from_u64(26);
    let x = Tensor::from_vec(random_vec(&mut rng, 2 * 3 * 16), (2, 3, 16), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(random_vec(&mut rng, 2 * 4 * 16), (2, 4, 16), &Device::Cpu).unwrap();
    let fast = mrn_pairwise(&x, &y, 2).unwrap();
    let slow = mrn_pairwise(
        &x.to_dtype(DType::F64).unwrap(),
        &y.to_dtype(DType::F64).unwrap(),
        2,
    )
    .unwrap();
    assert_eq!(slow.dtype(), DType::F64);
    assert!(max_abs_diff(&fast, &slow.to_dtype(DType::F32).unwrap()) < 1e-6);
    let fast_m = mrn_matched(&x, &x.affine(0.5, 0.1).unwrap(), 2).unwrap();
    let slow_m = mrn_matched(
        &x.to_dtype(DType::F64).unwrap(),
        &x.affine(0.5, 0.1).unwrap().to_dtype(DType::F64).unwrap(),
        2,
    )
    .unwrap();
    assert!(max_abs_diff(&fast_m, &slow_m.to_dtype(DType::F32).unwrap()) < 1e-6);
}

#[test]
fn bad_latent_sizes_are_reported() {
    let x = Tensor::zeros((1, 2, 10), DType::F32, &Device::Cpu).unwrap();
    let err = mrn_pairwise(&x, &x, 4).unwrap_err().to_string();
    assert!(err.contains("latent size 10"), "{err}");
    let y = Tensor::zeros((1, 2, 12), DType::F32, &Device::Cpu).unwrap();
    assert!(mrn_pairwise(&x, &y, 5).is_err());
    assert!(mrn_matched(&x, &y, 5).is_err());
}

const D: usize = 64;
const COMPONENTS: usize = 4;

/// d over one (x, y) pair through the fused matched op.
fn distance(x: &[f32], y: &[f32]) -> f32 {
    let x = Tensor::from_slice(x, D, &Device::Cpu).unwrap();
    let y = Tensor::from_slice(y, D, &Device::Cpu).unwrap();
    mrn_matched(&x, &y, COMPONENTS)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn latent() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-3.0f32..3.0, D)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mrn_is_non_negative_and_zero_on_the_diagonal(x in latent(), y in latent()) {
        prop_assert!(distance(&x, &y) >= 0.0);
        prop_assert!(distance(&x, &x) <= 1e-5);
    }

    #[test]
    fn mrn_obeys_the_triangle_inequality(x in latent(), y in latent(), z in latent()) {
        let (xz, xy, yz) = (distance(&x, &z), distance(&x, &y), distance(&y, &z));
        prop_assert!(xz <= xy + yz + 1e-5, "d(x,z) {} > d(x,y) {} + d(y,z) {}", xz, xy, yz);
    }

    #[test]
    fn pairwise_diagonal_equals_matched(x in prop::collection::vec(-3.0f32..3.0, 3 * D), y in prop::collection::vec(-3.0f32..3.0, 3 * D)) {
        let xt = Tensor::from_vec(x, (1, 3, D), &Device::Cpu).unwrap();
        let yt = Tensor::from_vec(y, (1, 3, D), &Device::Cpu).unwrap();
        let all: Vec<Vec<f32>> = mrn_pairwise(&xt, &yt, COMPONENTS).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        let matched: Vec<f32> = mrn_matched(&xt, &yt, COMPONENTS).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        for i in 0..3 {
            prop_assert!((all[i][i] - matched[i]).abs() < 1e-6);
        }
    }
}
