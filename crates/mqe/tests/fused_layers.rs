//! The fused CPU layer kernels against candle's composed ops (the f64 path), values and
//! gradients, for ensemble-grouped `[G, N, H]` and plain `[N, H]` inputs.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{max_abs_diff, weighted_sum};
use mqe::fused::{bias_add, bias_gelu, layer_norm_affine};

fn rand(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 250.0) - 2.0)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

type Layer = fn(&Tensor, &Tensor, &Tensor) -> candle_core::Result<Tensor>;

/// Runs `layer` on f32 (fused) and f64 (composed) copies; compares outputs and all gradients.
fn check(layer: Layer, x_shape: &[usize], p_shape: &[usize]) {
    let x = rand(x_shape, 1);
    let p1 = (rand(p_shape, 2) * 0.5).unwrap();
    let p2 = rand(p_shape, 3);
    let weight = rand(x_shape, 4);
    let run = |dtype: DType| {
        let vars: Vec<Var> = [&x, &p1, &p2]
            .iter()
            .map(|t| Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap())
            .collect();
        let y = layer(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
        )
        .unwrap();
        let loss = weighted_sum(&y, &weight.to_dtype(dtype).unwrap());
        let grads = loss.backward().unwrap();
        let g: Vec<Tensor> = vars.iter().map(|v| grads.get(v).unwrap().clone()).collect();
        (y, g)
    };
    let (y32, g32) = run(DType::F32);
    let (y64, g64) = run(DType::F64);
    assert!(
        max_abs_diff(&y32, &y64) < 1e-5,
        "value differs by {}",
        max_abs_diff(&y32, &y64)
    );
    for (i, (a, b)) in g32.iter().zip(&g64).enumerate() {
        let d = max_abs_diff(a, b);
        assert!(d < 1e-4, "gradient {i} differs by {d}");
    }
}

fn ln(x: &Tensor, s: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    layer_norm_affine(x, s, b, 1e-6)
}

fn gelu_then_add(x: &Tensor, b1: &Tensor, b2: &Tensor) -> candle_core::Result<Tensor> {
    bias_add(&bias_gelu(x, b1)?, b2)
}

#[test]
fn fused_layer_norm_matches_composed_ops() {
    check(ln, &[2, 7, 16], &[2, 16]);
    check(ln, &[5, 16], &[16]);
}

#[test]
fn fused_bias_gelu_and_bias_add_match_composed_ops() {
    check(gelu_then_add, &[2, 7, 16], &[2, 16]);
    check(gelu_then_add, &[5, 16], &[16]);
}

#[test]
fn mismatched_parameter_shape_is_an_error() {
    let x = rand(&[2, 3, 8], 1);
    assert!(bias_gelu(&x, &rand(&[3, 8], 2)).is_err());
    assert!(bias_add(&x, &rand(&[7], 2)).is_err());
}
