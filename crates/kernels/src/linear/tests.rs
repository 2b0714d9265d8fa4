//! The linear op: dense weights as before, FP8 weights exact where the operands are
//! representable, and expert slices consistent with the whole. The e4m3 error bounds of FP8
//! GEMMs are tested with the bounds, in the parity crate (`tests/parity/fp8_bounds.rs`).

use candle_core::{DType, Device, Tensor};

use super::*;

fn randn(rows: usize, cols: usize, std: f64, seed: u64) -> Tensor {
    // A fixed LCG and Box-Muller, so the tests are deterministic.
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| {
            let (u1, u2) = (next(), next());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * std) as f32
        })
        .collect();
    Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap()
}

fn fp8(w: &Tensor, activations: Scaling) -> LinearWeight {
    LinearWeight::Fp8 {
        weight: Fp8Matrix::quantize_weight(w).unwrap(),
        activations,
    }
}

fn rel_l2(got: &Tensor, want: &Tensor) -> f64 {
    cadence_core::compare::diff(got, want).unwrap().rel_l2
}

#[test]
fn dense_weights_multiply_in_the_weight_dtype() {
    let x = randn(5, 24, 1.0, 1);
    let w = randn(7, 24, 0.2, 2).to_dtype(DType::BF16).unwrap();
    let y = linear(&x, &LinearWeight::Dense(w.clone())).unwrap();
    assert_eq!(y.dtype(), DType::BF16);
    let want = x
        .to_dtype(DType::BF16)
        .unwrap()
        .matmul(&w.t().unwrap())
        .unwrap();
    assert_eq!(rel_l2(&y, &want), 0.0);
    assert!(linear(&randn(5, 23, 1.0, 3), &LinearWeight::Dense(w)).is_err());
}

#[test]
fn representable_operands_multiply_exactly() {
    // Rows whose values are e4m3 numbers times a power of two, with the row maximum at
    // 448·2^j: the scale is 2^j exactly, quantisation is exact, and only the f32 sum remains.
    let codes: Vec<f32> = (0u8..=0x7e)
        .map(|c| float8::F8E4M3::from_bits(c).to_f32())
        .collect();
    let pick = |i: usize, j: usize, len: usize| -> Vec<f32> {
        (0..len)
            .map(|c| {
                let v = if c == 0 {
                    448.0
                } else {
                    codes[(i * 7 + c * 13 + j) % codes.len()]
                };
                if (i + c).is_multiple_of(3) {
                    -v
                } else {
                    v
                }
            })
            .collect()
    };
    let (l, n, k) = (9, 16, 48);
    let rows = |count: usize, salt: usize, pow: i32| -> Tensor {
        let values: Vec<f32> = (0..count)
            .flat_map(|i| {
                let g = 2f32.powi(pow - (i % 4) as i32);
                pick(i, salt, k).into_iter().map(move |v| v * g)
            })
            .collect();
        Tensor::from_vec(values, (count, k), &Device::Cpu).unwrap()
    };
    let (x, w) = (rows(l, 1, -3), rows(n, 2, -8));
    let y = linear(&x, &fp8(&w, Scaling::PerRow)).unwrap();
    let exact = x
        .to_dtype(DType::F64)
        .unwrap()
        .matmul(&w.to_dtype(DType::F64).unwrap().t().unwrap())
        .unwrap();
    // f32 accumulation of exact products: |error| <= k·2^-24·Σ|x||w|.
    let sum_abs = x
        .abs()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .matmul(&w.abs().unwrap().to_dtype(DType::F64).unwrap().t().unwrap())
        .unwrap();
    let err = (y.to_dtype(DType::F64).unwrap() - exact)
        .unwrap()
        .abs()
        .unwrap();
    let slack = (sum_abs * (k as f64 * 2f64.powi(-24) + 2f64.powi(-22))).unwrap();
    let worst = (err - slack)
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    assert!(
        worst.to_scalar::<f64>().unwrap() <= 0.0,
        "quantisation of representable values must be exact"
    );
}

#[test]
fn expert_slices_match_the_whole_weight() {
    let x = randn(11, 40, 1.0, 9);
    let w = randn(3 * 24, 40, 0.15, 10);
    let whole = fp8(&w, Scaling::PerRow);
    let all = linear(&x, &whole).unwrap();
    for e in 0..3 {
        let part = linear(&x, &whole.narrow_rows(e * 24, 24).unwrap()).unwrap();
        assert_eq!(
            rel_l2(&part, &all.narrow(1, e * 24, 24).unwrap()),
            0.0,
            "expert {e}"
        );
    }
    assert_eq!(whole.out_features().unwrap(), 72);
    assert_eq!(whole.in_features().unwrap(), 40);
    assert_eq!(whole.bytes(), 72 * (48 + 4));
}
