//! FP8 quantisation and GEMMs of `cadence_kernels` within the bounds derived from e4m3's
//! 3-bit mantissa (`cadence_parity::fp8_bounds`): every element within the rigorous bound, the
//! whole output within the statistical one.

use cadence_core::compare::diff;
use cadence_kernels::fp8::{Fp8Matrix, Scaling};
use cadence_kernels::{linear, LinearWeight};
use cadence_parity::fp8_bounds::{
    gemm_error_bound, gemm_rel_l2_bound, SUBNORMAL_ERROR, UNIT_ROUNDOFF,
};
use candle_core::{DType, Device, Tensor};

/// A deterministic `(rows, cols)` matrix of normal values with standard deviation `std`.
pub(crate) fn randn(rows: usize, cols: usize, std: f64, seed: u64) -> Tensor {
    let v = cadence_core::random::standard_normal(seed, 0, rows * cols);
    (Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap() * std).unwrap()
}

pub(crate) fn rel(got: &Tensor, want: &Tensor) -> f64 {
    diff(got, want).unwrap().rel_l2
}

fn fp8(w: &Tensor, activations: Scaling) -> LinearWeight {
    LinearWeight::Fp8 {
        weight: Fp8Matrix::quantize_weight(w).unwrap(),
        activations,
    }
}

/// Every dequantised element is within `u'|x| + η s` of the original.
fn assert_dequantisation_error(x: &Tensor, m: &Fp8Matrix) {
    let x = x.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
    let back = m.dequantize().unwrap().to_vec2::<f32>().unwrap();
    let scale = m.scale().to_vec1::<f32>().unwrap();
    let u = UNIT_ROUNDOFF + 2f64.powi(-23);
    for (r, (xr, br)) in x.iter().zip(&back).enumerate() {
        for (c, (v, b)) in xr.iter().zip(br).enumerate() {
            let bound = u * v.abs() as f64 + SUBNORMAL_ERROR * scale[r] as f64;
            let err = (*v as f64 - *b as f64).abs();
            assert!(
                err <= bound,
                "[{r}, {c}]: {v} -> {b}, error {err:e} > {bound:e}"
            );
        }
    }
}

#[test]
fn dequantisation_stays_within_one_e4m3_rounding() {
    // Rows spanning zero, subnormal-range and large magnitudes, per row and per tensor.
    let x = Tensor::new(
        &[
            [1.0f32, -3.5, 0.25, 1e-3, 7.0],
            [0.0; 5],
            [-2e4, 3.0, 1e-2, 5e3, 0.0],
            [1e-20, 0.0, -3e-20, 0.0, 0.0],
        ],
        &Device::Cpu,
    )
    .unwrap();
    let x = Tensor::cat(&[x, (randn(6, 5, 1.0, 3) * 40.0).unwrap()], 0).unwrap();
    for scaling in [Scaling::PerRow, Scaling::PerTensor] {
        assert_dequantisation_error(&x, &Fp8Matrix::quantize(&x, scaling).unwrap());
    }
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

    let rel = rel(&y, &exact);
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
        rel(&small_row(&per_row), &small_row(&exact)),
        rel(&small_row(&per_tensor), &small_row(&exact)),
    );
    assert!(
        row_err < tensor_err,
        "per-row {row_err} vs per-tensor {tensor_err}"
    );
}
