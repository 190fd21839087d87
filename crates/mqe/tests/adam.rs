//! Adam against a hand computation, and exact save/restore of its state.

use candle_core::{Device, Tensor, Var};
use mqe::{Adam, AdamParams};

fn setup() -> (Var, Tensor, Adam) {
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::new(&[0.5f32, -1.0, 2.0], &dev).unwrap()).unwrap();
    let c = Tensor::new(&[1.0f32, -3.0, 0.25], &dev).unwrap();
    let params = AdamParams {
        lr: 0.1,
        ..AdamParams::default()
    };
    let adam = Adam::new(vec![("w".into(), w.clone())], params).unwrap();
    (w, c, adam)
}

/// loss = sum(c * w^2): gradient 2 c w, which changes between steps.
fn step(w: &Var, c: &Tensor, adam: &mut Adam) {
    let loss = (w.as_tensor().sqr().unwrap() * c)
        .unwrap()
        .sum_all()
        .unwrap();
    adam.step(&loss.backward().unwrap()).unwrap();
}

#[test]
fn two_steps_match_a_hand_computation() {
    let (w, c, mut adam) = setup();
    step(&w, &c, &mut adam);
    step(&w, &c, &mut adam);
    let (lr, b1, b2, eps) = (0.1f64, 0.9f64, 0.999f64, 1e-8f64);
    let cs = [1.0f64, -3.0, 0.25];
    let mut expected = vec![];
    for (mut p, ci) in [0.5f64, -1.0, 2.0].into_iter().zip(cs) {
        let (mut m, mut v) = (0.0, 0.0);
        for t in 1..=2 {
            let g = 2.0 * ci * p;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let m_hat = m / (1.0 - b1.powi(t));
            let v_hat = v / (1.0 - b2.powi(t));
            p -= lr * m_hat / (v_hat.sqrt() + eps);
        }
        expected.push(p);
    }
    let got = w.as_tensor().to_vec1::<f32>().unwrap();
    for (g, e) in got.iter().zip(&expected) {
        assert!((*g as f64 - e).abs() < 1e-6, "{got:?} vs {expected:?}");
    }
    assert_eq!(adam.step_count(), 2);
    // The first step moves every parameter by lr against its gradient's sign.
    assert!((expected[0] - 0.5).abs() > 0.15);
}

#[test]
fn restored_state_reproduces_the_next_step_exactly() {
    let (w, c, mut adam) = setup();
    step(&w, &c, &mut adam);
    step(&w, &c, &mut adam);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.safetensors");
    adam.save(&path).unwrap();

    let w2 = Var::from_tensor(&w.as_tensor().copy().unwrap()).unwrap();
    let mut adam2 = Adam::new(vec![("w".into(), w2.clone())], adam.params()).unwrap();
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    adam2.restore(&tensors, &path).unwrap();
    assert_eq!(adam2.step_count(), 2);

    step(&w, &c, &mut adam);
    step(&w2, &c, &mut adam2);
    assert_eq!(
        w.as_tensor().to_vec1::<f32>().unwrap(),
        w2.as_tensor().to_vec1::<f32>().unwrap()
    );

    // A fresh optimiser (zero moments) would have taken a different step.
    let w3 = Var::from_tensor(&Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap()).unwrap();
    let mut fresh = Adam::new(vec![("w".into(), w3.clone())], adam.params()).unwrap();
    step(&w3, &c, &mut fresh);
    step(&w3, &c, &mut fresh);
    step(&w3, &c, &mut fresh);
    assert_eq!(
        w3.as_tensor().to_vec1::<f32>().unwrap(),
        w.as_tensor().to_vec1::<f32>().unwrap()
    );
}

#[test]
fn restore_names_a_missing_moment() {
    let (w, _, mut adam) = setup();
    let mut tensors = adam.state_tensors().unwrap();
    tensors.remove("v.w");
    let err = adam
        .restore(&tensors, std::path::Path::new("opt.safetensors"))
        .unwrap_err();
    assert!(err.to_string().contains("v.w"), "{err}");
    drop(w);
}
