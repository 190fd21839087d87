//! conv2d_same against candle's own conv2d (f64 reference) and central finite differences.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{grad_vec, max_abs_diff, weighted_sum, weighted_sum_f64};
use mqe::ops::conv2d_same;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random(rng: &mut StdRng, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

/// Reference: explicit zero padding, then candle's conv2d in f64.
fn reference_conv(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let (kh, kw) = (w.dim(2).unwrap(), w.dim(3).unwrap());
    let xp = x
        .pad_with_zeros(2, kh / 2, kh / 2)
        .unwrap()
        .pad_with_zeros(3, kw / 2, kw / 2)
        .unwrap();
    let o = w.dim(0).unwrap();
    xp.conv2d(w, 0, 1, 1, 1)
        .unwrap()
        .broadcast_add(&b.reshape((1, o, 1, 1)).unwrap())
        .unwrap()
}

/// (x, w, b) shapes covering square, non-square, odd sides, batch 1 and a 5x3 kernel.
const CASES: &[([usize; 4], [usize; 4])] = &[
    ([2, 3, 8, 8], [4, 3, 3, 3]),
    ([1, 2, 5, 7], [3, 2, 3, 3]),
    ([3, 1, 6, 4], [2, 1, 5, 3]),
    ([1, 4, 1, 3], [2, 4, 3, 3]),
    ([2, 16, 9, 9], [16, 16, 3, 3]),
];

#[test]
fn forward_matches_candle_conv2d() {
    let mut rng = StdRng::seed_from_u64(1);
    for (xd, wd) in CASES {
        let x = random(&mut rng, xd);
        let w = random(&mut rng, wd);
        let b = random(&mut rng, &[wd[0]]);
        let ours = conv2d_same(&x, &w, &b).unwrap();
        assert_eq!(ours.dims(), &[xd[0], wd[0], xd[2], xd[3]]);
        let to64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let want = reference_conv(&to64(&x), &to64(&w), &to64(&b));
        let err = max_abs_diff(&ours, &want);
        assert!(err < 1e-4, "{xd:?} {wd:?}: max error {err}");
    }
}

#[test]
fn gradients_match_f64_candle_reference_for_input_weight_and_bias() {
    let mut rng = StdRng::seed_from_u64(2);
    for (xd, wd) in CASES {
        let x = Var::from_tensor(&random(&mut rng, xd)).unwrap();
        let w = Var::from_tensor(&random(&mut rng, wd)).unwrap();
        let b = Var::from_tensor(&random(&mut rng, &[wd[0]])).unwrap();
        let r = random(&mut rng, &[xd[0], wd[0], xd[2], xd[3]]);
        let loss = weighted_sum(&conv2d_same(&x, &w, &b).unwrap(), &r);
        let grads = loss.backward().unwrap();

        let to64 = |t: &Tensor| Var::from_tensor(&t.to_dtype(DType::F64).unwrap()).unwrap();
        let (x64, w64, b64) = (to64(&x), to64(&w), to64(&b));
        let r64 = r.to_dtype(DType::F64).unwrap();
        let loss64 = weighted_sum(&reference_conv(&x64, &w64, &b64), &r64);
        let grads64 = loss64.backward().unwrap();
        for (name, ours, theirs) in [("x", &x, &x64), ("w", &w, &w64), ("b", &b, &b64)] {
            let g = grads
                .get(ours)
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let want = grads64.get(theirs).unwrap();
            assert_eq!(g.dims(), ours.dims());
            let err = max_abs_diff(g, want);
            assert!(err < 1e-3, "{xd:?} {wd:?} d{name}: max error {err}");
        }
    }
}

/// Central differences on sampled coordinates of every input. The loss is linear in each input,
/// so a large step is exact up to f32 rounding.
#[test]
fn gradients_match_central_differences() {
    let mut rng = StdRng::seed_from_u64(3);
    let (xd, wd) = ([2usize, 3, 5, 6], [4usize, 3, 3, 3]);
    let x = Var::from_tensor(&random(&mut rng, &xd)).unwrap();
    let w = Var::from_tensor(&random(&mut rng, &wd)).unwrap();
    let b = Var::from_tensor(&random(&mut rng, &[wd[0]])).unwrap();
    let r = random(&mut rng, &[xd[0], wd[0], xd[2], xd[3]]);
    let loss_of =
        |x: &Tensor, w: &Tensor, b: &Tensor| weighted_sum_f64(&conv2d_same(x, w, b).unwrap(), &r);
    let grads = weighted_sum(&conv2d_same(&x, &w, &b).unwrap(), &r)
        .backward()
        .unwrap();
    let inputs = [x.as_tensor(), w.as_tensor(), b.as_tensor()];
    for which in 0..3 {
        let analytic = grad_vec(&grads, inputs[which]);
        let base: Vec<f32> = inputs[which].flatten_all().unwrap().to_vec1().unwrap();
        for _ in 0..12 {
            let k = rng.random_range(0..base.len());
            let eps = 0.25f32;
            let shifted = |delta: f32| {
                let mut v = base.clone();
                v[k] += delta;
                let t = Tensor::from_vec(v, inputs[which].dims(), &Device::Cpu).unwrap();
                let mut args = [
                    x.as_tensor().clone(),
                    w.as_tensor().clone(),
                    b.as_tensor().clone(),
                ];
                args[which] = t;
                loss_of(&args[0], &args[1], &args[2])
            };
            let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * f64::from(eps));
            let got = f64::from(analytic[k]);
            assert!(
                (numeric - got).abs() < 1e-3 * (1.0 + numeric.abs()),
                "input {which} coord {k}: numeric {numeric} vs analytic {got}"
            );
        }
    }
}

#[test]
fn non_contiguous_input_and_constant_input_without_gradient() {
    let mut rng = StdRng::seed_from_u64(4);
    // x stored as [N, C, W, H], transposed to [N, C, H, W]: not contiguous.
    let x = random(&mut rng, &[2, 3, 7, 5]).transpose(2, 3).unwrap();
    assert!(!x.is_contiguous());
    let w = Var::from_tensor(&random(&mut rng, &[4, 3, 3, 3])).unwrap();
    let b = Var::from_tensor(&random(&mut rng, &[4])).unwrap();
    let ours = conv2d_same(&x, &w, &b).unwrap();
    let want = reference_conv(&x.contiguous().unwrap(), &w, &b);
    assert!(max_abs_diff(&ours, &want) < 1e-4);
    // x is a constant: the backward pass skips dx but still fills weight and bias gradients.
    let grads = ours.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    let db: Vec<f32> = grads.get(&b).unwrap().to_vec1().unwrap();
    for v in db {
        assert!((v - (2 * 5 * 7) as f32).abs() < 1e-3, "dbias {v}");
    }
    assert_eq!(grads.get(&w).unwrap().dims(), &[4, 3, 3, 3]);
}

#[test]
fn bad_shapes_are_reported() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 3, 4, 4), DType::F32, &dev).unwrap();
    let even = Tensor::zeros((2, 3, 2, 2), DType::F32, &dev).unwrap();
    let bias = Tensor::zeros(2, DType::F32, &dev).unwrap();
    let err = conv2d_same(&x, &even, &bias).unwrap_err().to_string();
    assert!(err.contains("odd"), "{err}");
    let wrong_c = Tensor::zeros((2, 4, 3, 3), DType::F32, &dev).unwrap();
    let err = conv2d_same(&x, &wrong_c, &bias).unwrap_err().to_string();
    assert!(err.contains("input channels"), "{err}");
}

#[test]
fn f64_falls_back_to_candle_with_same_result() {
    let mut rng = StdRng::seed_from_u64(5);
    let x = random(&mut rng, &[1, 2, 5, 4]);
    let w = random(&mut rng, &[3, 2, 3, 3]);
    let b = random(&mut rng, &[3]);
    let to64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
    let slow = conv2d_same(&to64(&x), &to64(&w), &to64(&b)).unwrap();
    assert_eq!(slow.dtype(), DType::F64);
    let fast = conv2d_same(&x, &w, &b).unwrap();
    assert!(max_abs_diff(&slow, &fast) < 1e-4);
}
