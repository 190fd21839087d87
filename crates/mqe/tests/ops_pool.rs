//! max_pool_3x3_s2_same against a plain-loop TensorFlow "SAME" reference and finite differences.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{assert_central_differences, grad_of, weighted_sum, weighted_sum_f64};
use mqe::ops::max_pool_3x3_s2_same;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Distinct values 0.01 apart in random order: no ties, and a 1e-3 nudge never changes an argmax.
fn distinct(rng: &mut StdRng, dims: &[usize]) -> Vec<f32> {
    let n: usize = dims.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.01 - 1.0).collect();
    v.shuffle(rng);
    v
}

/// Plain loops over an explicitly -inf-padded plane, with TF's SAME rule written out.
/// Returns the pooled values and, per output, the flat input index of its maximum.
fn reference(x: &[f32], dims: [usize; 4]) -> (Vec<f32>, Vec<usize>, [usize; 4]) {
    let [n, c, h, w] = dims;
    let geometry = |len: usize| {
        let out = len.div_ceil(2);
        let pad_total = ((out - 1) * 2 + 3).saturating_sub(len);
        (out, pad_total / 2)
    };
    let ((oh, pt), (ow, pl)) = (geometry(h), geometry(w));
    let (mut vals, mut args) = (Vec::new(), Vec::new());
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut best, mut arg) = (f32::NEG_INFINITY, usize::MAX);
                for dy in 0..3 {
                    for dx in 0..3 {
                        let (y, xx) = (
                            (oy * 2 + dy) as isize - pt as isize,
                            (ox * 2 + dx) as isize - pl as isize,
                        );
                        if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                            continue; // padding: -inf never wins
                        }
                        let idx = plane * h * w + y as usize * w + xx as usize;
                        if x[idx] > best {
                            (best, arg) = (x[idx], idx);
                        }
                    }
                }
                vals.push(best);
                args.push(arg);
            }
        }
    }
    (vals, args, [n, c, oh, ow])
}

const SHAPES: &[[usize; 4]] = &[
    [2, 3, 8, 8],
    [1, 1, 7, 5],
    [1, 2, 1, 1],
    [3, 2, 6, 9],
    [1, 1, 2, 3],
    [2, 4, 64, 64],
];

/// Calls `body` with the random source, the dims and distinct data of every shape in SHAPES, in
/// order, all drawn from one source seeded with `seed`.
fn for_each_shape(seed: u64, mut body: impl FnMut(&mut StdRng, [usize; 4], Vec<f32>)) {
    let mut rng = StdRng::seed_from_u64(seed);
    for &dims in SHAPES {
        let data = distinct(&mut rng, &dims);
        body(&mut rng, dims, data);
    }
}

#[test]
fn forward_matches_plain_loop_reference() {
    for_each_shape(11, |_, dims, data| {
        let x = Tensor::from_vec(data.clone(), &dims, &Device::Cpu).unwrap();
        let y = max_pool_3x3_s2_same(&x).unwrap();
        let (want, _, out_dims) = reference(&data, dims);
        assert_eq!(y.dims(), &out_dims);
        let got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, want, "{dims:?}");
    });
}

#[test]
fn output_sizes_are_ceil_of_half() {
    let x = Tensor::zeros((1, 1, 64, 33), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(max_pool_3x3_s2_same(&x).unwrap().dims(), &[1, 1, 32, 17]);
}

#[test]
fn backward_sends_gradient_to_argmax() {
    for_each_shape(12, |rng, dims, data| {
        let x = Var::from_vec(data.clone(), &dims, &Device::Cpu).unwrap();
        let (_, args, out_dims) = reference(&data, dims);
        let r: Vec<f32> = (0..args.len())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let r_t = Tensor::from_vec(r.clone(), &out_dims, &Device::Cpu).unwrap();
        let grad = grad_of(&weighted_sum(&max_pool_3x3_s2_same(&x).unwrap(), &r_t), &x);
        let mut want = vec![0f32; data.len()];
        for (arg, g) in args.iter().zip(&r) {
            want[*arg] += g;
        }
        for (k, (g, w)) in grad.iter().zip(&want).enumerate() {
            assert!((g - w).abs() < 1e-5, "{dims:?} coord {k}: {g} vs {w}");
        }
    });
}

#[test]
fn backward_matches_central_differences() {
    let mut rng = StdRng::seed_from_u64(13);
    let dims = [2usize, 2, 7, 6];
    let data = distinct(&mut rng, &dims);
    let x = Var::from_vec(data.clone(), &dims, &Device::Cpu).unwrap();
    let r = {
        let y = max_pool_3x3_s2_same(&x).unwrap();
        let n = y.elem_count();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_vec(v, y.dims(), &Device::Cpu).unwrap()
    };
    let loss = |t: &Tensor| weighted_sum_f64(&max_pool_3x3_s2_same(t).unwrap(), &r);
    let grad = grad_of(&weighted_sum(&max_pool_3x3_s2_same(&x).unwrap(), &r), &x);
    // The step is the f32 value 1e-3, applied to the f32 data.
    let eps = f64::from(1e-3f32);
    assert_central_differences("coord", &grad, data.len(), (eps, 1e-2), |k, delta| {
        let mut v = data.clone();
        v[k] += delta as f32;
        loss(&Tensor::from_vec(v, &dims, &Device::Cpu).unwrap())
    });
}

#[test]
fn non_contiguous_and_f64_fallback_agree_with_fast_path() {
    let mut rng = StdRng::seed_from_u64(14);
    let data = distinct(&mut rng, &[2, 3, 9, 6]);
    let stored = Tensor::from_vec(data, (2, 3, 9, 6), &Device::Cpu).unwrap();
    let x = stored.transpose(2, 3).unwrap(); // [2, 3, 6, 9], not contiguous
    let fast = max_pool_3x3_s2_same(&x).unwrap();
    let dense = max_pool_3x3_s2_same(&x.contiguous().unwrap()).unwrap();
    let slow = max_pool_3x3_s2_same(&x.to_dtype(DType::F64).unwrap()).unwrap();
    assert_eq!(fast.dims(), &[2, 3, 3, 5]);
    let fast_v: Vec<f32> = fast.flatten_all().unwrap().to_vec1().unwrap();
    let dense_v: Vec<f32> = dense.flatten_all().unwrap().to_vec1().unwrap();
    let slow_v: Vec<f64> = slow.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(fast_v, dense_v);
    for (a, b) in fast_v.iter().zip(&slow_v) {
        assert!((f64::from(*a) - b).abs() < 1e-6);
    }
}

#[test]
fn wrong_rank_is_reported() {
    let x = Tensor::zeros((3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let err = max_pool_3x3_s2_same(&x).unwrap_err().to_string();
    assert!(err.contains("[N,C,H,W]"), "{err}");
}
