//! The linear op: dense weights as before, FP8 weights within the e4m3 error bounds, exact
//! where the operands are representable, and expert slices consistent with the whole.

use candle_core::{DType, Device, Tensor};

use super::*;
use crate::fp8::accuracy::{gemm_error_bound, gemm_rel_l2_bound};

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

/// Every element within the rigorous bound, and the whole output within the statistical one.
fn check_fp8_gemm(l: usize, n: usize, k: usize, out: DType, scaling: Scaling) -> f64 {
    let x = randn(l, k, 1.0, (l * 31 + k) as u64);
    // Rows of very different magnitude, as modalities and outlier tokens have.
    let row_gain: Vec<f32> = (0..l).map(|i| 10f32.powi((i % 5) as i32 - 2)).collect();
    let x = x
        .broadcast_mul(&Tensor::from_vec(row_gain, (l, 1), &Device::Cpu).unwrap())
        .unwrap();
    let w = randn(n, k, 1.0 / (k as f64).sqrt(), (n * 17 + k) as u64);
    let weight = fp8(&w, Scaling::PerRow);
    let y = linear(&x.to_dtype(out).unwrap(), &weight).unwrap();
    assert_eq!((y.dims2().unwrap(), y.dtype()), ((l, n), out));

    let x_in = x.to_dtype(out).unwrap().to_dtype(DType::F32).unwrap();
    let exact = x_in.matmul(&w.t().unwrap()).unwrap();
    let x_scale = Fp8Matrix::quantize(&x_in, scaling).unwrap().scale().clone();
    let LinearWeight::Fp8 { weight: wq, .. } = &weight else {
        unreachable!()
    };
    let bound = gemm_error_bound(&x_in, &w, &x_scale, wq.scale(), out).unwrap();
    let err = (y.to_dtype(DType::F32).unwrap() - &exact)
        .unwrap()
        .abs()
        .unwrap();
    let excess = (err - &bound)
        .unwrap()
        .max_keepdim(0)
        .unwrap()
        .max_keepdim(1)
        .unwrap();
    let excess = excess.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
    assert!(
        excess <= 0.0,
        "({l}, {n}, {k}) {out:?}: an element exceeds its bound by {excess:e}"
    );

    let rel = rel_l2(&y, &exact);
    let stat = gemm_rel_l2_bound(&x_in, &w).unwrap();
    assert!(
        rel <= stat,
        "({l}, {n}, {k}) {out:?}: rel L2 {rel:.4} > bound {stat:.4}"
    );
    rel
}

#[test]
fn fp8_gemm_stays_within_the_e4m3_bounds() {
    for (l, n, k) in [(1, 8, 16), (37, 24, 100), (64, 96, 340), (20, 48, 1000)] {
        for out in [DType::F32, DType::BF16] {
            let rel = check_fp8_gemm(l, n, k, out, Scaling::PerRow);
            println!("({l}, {n}, {k}) {out:?}: rel L2 {rel:.4}");
        }
    }
}

#[test]
fn per_tensor_activations_stay_within_the_bounds() {
    // The rigorous bound accounts for rows pushed into e4m3's subnormal range.
    let x = randn(6, 64, 1.0, 5)
        .broadcast_mul(
            &Tensor::new(
                &[[1e-4f32], [1.0], [1e-2], [3.0], [1e-3], [0.5]],
                &Device::Cpu,
            )
            .unwrap(),
        )
        .unwrap();
    let w = randn(16, 64, 0.125, 6);
    let per_row = linear(&x, &fp8(&w, Scaling::PerRow)).unwrap();
    let per_tensor = linear(&x, &fp8(&w, Scaling::PerTensor)).unwrap();
    let exact = x.matmul(&w.t().unwrap()).unwrap();
    let wq = Fp8Matrix::quantize_weight(&w).unwrap();
    let xs = Fp8Matrix::quantize(&x, Scaling::PerTensor).unwrap();
    let bound = gemm_error_bound(&x, &w, xs.scale(), wq.scale(), DType::F32).unwrap();
    let err = (&per_tensor - &exact).unwrap().abs().unwrap();
    let worst = (err - bound)
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    assert!(worst.to_scalar::<f32>().unwrap() <= 0.0);
    // The point of per-token scales: the small rows keep their precision.
    let small_row = |t: &Tensor| t.narrow(0, 0, 1).unwrap();
    let (row_err, tensor_err) = (
        rel_l2(&small_row(&per_row), &small_row(&exact)),
        rel_l2(&small_row(&per_tensor), &small_row(&exact)),
    );
    assert!(
        row_err < tensor_err,
        "per-row {row_err} vs per-tensor {tensor_err}"
    );
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
