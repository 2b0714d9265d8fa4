//! The e4m3 conversion checked against a brute-force definition, and the quantiser's scales,
//! padding and error.

use candle_core::{DType, Device, Tensor};
use float8::F8E4M3;

use super::*;

/// The value of e4m3 code `c` (sign bit clear) by the format's definition: exponent bias 7,
/// 3 mantissa bits, subnormals at exponent field 0; 0x7f is NaN.
fn decode(c: u8) -> f64 {
    let (e, m) = ((c >> 3) as i32, (c & 7) as f64);
    if e == 0 {
        m * 2f64.powi(-9)
    } else {
        (1.0 + m / 8.0) * 2f64.powi(e - 7)
    }
}

/// The e4m3 value `x` must round to: the nearest finite value, ties to the even code,
/// anything beyond 448 saturating to ±448 (`__NV_SATFINITE`), NaN to NaN.
fn nearest_even(x: f32) -> f32 {
    if x.is_nan() {
        return f32::NAN;
    }
    let a = (x as f64).abs();
    let mag = if a >= 448.0 {
        448.0
    } else {
        let codes: Vec<u8> = (0u8..=0x7e).collect();
        let hi = codes.iter().position(|&c| decode(c) >= a).unwrap_or(0x7e);
        if decode(codes[hi]) == a || hi == 0 {
            decode(codes[hi])
        } else {
            let (lo_v, hi_v) = (decode(codes[hi - 1]), decode(codes[hi]));
            let (dl, dh) = (a - lo_v, hi_v - a);
            if dl < dh || (dl == dh && codes[hi - 1].is_multiple_of(2)) {
                lo_v
            } else {
                hi_v
            }
        }
    };
    (mag as f32).copysign(x)
}

fn convert(values: &[f32]) -> Vec<F8E4M3> {
    Tensor::new(values, &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F8E4M3)
        .unwrap()
        .to_vec1::<F8E4M3>()
        .unwrap()
}

#[test]
fn decoding_matches_the_format_definition() {
    for c in 0u8..=0xff {
        let got = F8E4M3::from_bits(c).to_f32();
        if c & 0x7f == 0x7f {
            assert!(got.is_nan(), "code {c:#x} is NaN");
            continue;
        }
        let want = decode(c & 0x7f) * if c & 0x80 != 0 { -1.0 } else { 1.0 };
        assert_eq!(got as f64, want, "code {c:#x}");
    }
    assert_eq!(decode(0x7e), 448.0);
    assert_eq!(decode(1), 2f64.powi(-9));
}

#[test]
fn candle_rounds_to_nearest_even_and_saturates() {
    // Every finite value, every midpoint (a tie), the f32 neighbours of every midpoint, and the
    // saturation and underflow edges, both signs.
    let mut inputs = Vec::new();
    for c in 0u8..=0x7e {
        let v = decode(c);
        inputs.push(v as f32);
        if c < 0x7e {
            let mid = ((v + decode(c + 1)) / 2.0) as f32;
            inputs.extend([
                mid,
                f32::from_bits(mid.to_bits() - 1),
                f32::from_bits(mid.to_bits() + 1),
            ]);
        }
    }
    inputs.extend([
        448.0001,
        463.9,
        464.0,
        464.1,
        479.0,
        480.0,
        1e6,
        f32::MAX,
        f32::INFINITY,
        2f32.powi(-10),
        1e-30,
        f32::MIN_POSITIVE,
        0.0,
    ]);
    // Pseudo-random magnitudes spread over 2^-14 .. 2^10 (a fixed LCG: deterministic).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200_000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        inputs.push(2f64.powf(-14.0 + 24.0 * u) as f32);
    }
    let negatives: Vec<f32> = inputs.iter().map(|v| -v).collect();
    inputs.extend(negatives);

    let got = convert(&inputs);
    let mut mismatches = Vec::new();
    for (x, q) in inputs.iter().zip(&got) {
        let want = nearest_even(*x);
        let q = q.to_f32();
        if q != want || q.is_sign_negative() != want.is_sign_negative() {
            mismatches.push(format!("{x:e} -> {q} (want {want})"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} conversions differ, e.g. {:?}",
        mismatches.len(),
        inputs.len(),
        &mismatches[..mismatches.len().min(8)]
    );
    assert!(convert(&[f32::NAN])[0].to_f32().is_nan());
}

fn matrix(rows: &[Vec<f32>]) -> Tensor {
    Tensor::new(rows.to_vec(), &Device::Cpu).unwrap()
}

#[test]
fn rows_are_scaled_to_448_and_zero_rows_stay_zero() {
    let x = matrix(&[
        vec![1.0, -3.5, 0.25, 1e-3, 7.0],
        vec![0.0; 5],
        vec![-2e4, 3.0, 1e-2, 5e3, 0.0],
        vec![1e-20, 0.0, -3e-20, 0.0, 0.0],
    ]);
    let m = Fp8Matrix::quantize(&x, Scaling::PerRow).unwrap();
    assert_eq!((m.rows(), m.cols(), m.padded_cols()), (4, 5, 16));
    let scale = m.scale().to_vec1::<f32>().unwrap();
    assert_eq!(scale, vec![7.0 / 448.0, 1.0, 2e4 / 448.0, 3e-20 / 448.0]);
    let data = m
        .data()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(data[0][4], 448.0);
    assert_eq!(data[2][0], -448.0);
    assert_eq!(data[3][2], -448.0);
    assert!(data[1].iter().all(|v| *v == 0.0), "the zero row");
    assert!(
        data.iter().all(|r| r[5..].iter().all(|v| *v == 0.0)),
        "the padding is zero"
    );
}

#[test]
fn per_tensor_scaling_shares_the_largest_scale() {
    let x = matrix(&[vec![1.0, -2.0, 0.5], vec![300.0, 1.0, -0.01]]);
    let m = Fp8Matrix::quantize(&x, Scaling::PerTensor).unwrap();
    assert_eq!(m.scale().to_vec1::<f32>().unwrap(), vec![300.0 / 448.0; 2]);
}

#[test]
fn bf16_input_and_many_chunks_quantise_like_f32() {
    // More elements than one conversion chunk, so rows are quantised in several pieces.
    let (rows, cols) = (1100, 16_390);
    let x = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    let m = Fp8Matrix::quantize(&x, Scaling::PerRow).unwrap();
    let f = Fp8Matrix::quantize(&x.to_dtype(DType::F32).unwrap(), Scaling::PerRow).unwrap();
    let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<F8E4M3>().unwrap();
    assert!(bits(m.data())
        .iter()
        .zip(bits(f.data()))
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(
        m.scale().to_vec1::<f32>().unwrap(),
        f.scale().to_vec1::<f32>().unwrap()
    );
    assert_eq!(m.padded_cols(), 16_400);
}

#[test]
fn stored_parts_round_trip() {
    let x = matrix(&[vec![0.3, -1.0, 2.0], vec![5.0, 0.0, -0.125]]);
    let m = Fp8Matrix::quantize_weight(&x).unwrap();
    let stored = m.unpadded_data().unwrap();
    assert_eq!(stored.dims(), &[2, 3]);
    let back = Fp8Matrix::from_parts(stored, m.scale().unsqueeze(1).unwrap(), 3).unwrap();
    assert_eq!(back.data().dims(), &[2, 16]);
    assert_eq!(
        back.dequantize().unwrap().to_vec2::<f32>().unwrap(),
        m.dequantize().unwrap().to_vec2::<f32>().unwrap()
    );
    assert!(
        Fp8Matrix::from_parts(x.clone(), m.scale().clone(), 3).is_err(),
        "f32 data"
    );
    let rows = m.narrow_rows(1, 1).unwrap();
    assert_eq!(
        rows.dequantize().unwrap().to_vec2::<f32>().unwrap()[0][0],
        5.0
    );
}

#[test]
fn non_finite_weights_are_rejected() {
    let x = matrix(&[vec![1.0, f32::INFINITY], vec![1.0, 2.0]]);
    let err = Fp8Matrix::quantize_weight(&x).unwrap_err().to_string();
    assert!(err.contains("non-finite"), "{err}");
    let nan = matrix(&[vec![1.0, 2.0], vec![f32::NAN, 2.0]]);
    assert!(Fp8Matrix::quantize_weight(&nan).is_err());
    let empty = Fp8Matrix::quantize(
        &Tensor::zeros((0, 5), DType::F32, &Device::Cpu).unwrap(),
        Scaling::PerRow,
    )
    .unwrap();
    assert_eq!((empty.rows(), empty.data().dims()), (0, &[0usize, 16][..]));
    assert_eq!(scale_key("a.weight"), "a.weight_scale");
}
