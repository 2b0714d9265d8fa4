//! Error metrics between a computed tensor and a reference, as the fixtures define them.
//!
//! `rel_l2 = ||got - want||_2 / ||want||_2` over the whole tensor and `max_abs = max |got - want|`,
//! both accumulated in f64 so the metric itself adds no error at the 1e-6 level.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};

/// How far a tensor is from its reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diff {
    /// `||got - want|| / ||want||` (0 when both are zero, infinite when only `want` is).
    pub rel_l2: f64,
    /// `max |got - want|`.
    pub max_abs: f64,
    /// `max |want|`, to read `max_abs` against.
    pub ref_max_abs: f64,
    /// Elements that are NaN or infinite in `got` but not in `want`.
    pub non_finite: usize,
}

impl Diff {
    /// `max_abs / ref_max_abs` (0 when both are zero).
    pub fn max_rel(&self) -> f64 {
        if self.ref_max_abs == 0.0 {
            if self.max_abs == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            self.max_abs / self.ref_max_abs
        }
    }
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rel_l2 {:.3e}, max_abs {:.3e} (ref max {:.3e})",
            self.rel_l2, self.max_abs, self.ref_max_abs
        )?;
        if self.non_finite > 0 {
            write!(f, ", {} non-finite", self.non_finite)?;
        }
        Ok(())
    }
}

/// Compares `got` with `want`; shapes must be equal (dtypes may differ).
pub fn diff(got: &Tensor, want: &Tensor) -> Result<Diff> {
    if got.dims() != want.dims() {
        return Err(Error::InvalidInput(format!(
            "shape {:?} differs from the reference shape {:?}",
            got.dims(),
            want.dims()
        )));
    }
    let g = got.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let w = want.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    Ok(diff_slices(&g, &w))
}

/// [`diff`] on plain slices of equal length.
pub fn diff_slices(got: &[f64], want: &[f64]) -> Diff {
    let (mut num, mut den, mut max_abs, mut ref_max_abs, mut non_finite) =
        (0.0, 0.0, 0.0f64, 0.0f64, 0);
    for (&g, &w) in got.iter().zip(want) {
        if !g.is_finite() && w.is_finite() {
            non_finite += 1;
            continue;
        }
        let d = g - w;
        num += d * d;
        den += w * w;
        max_abs = max_abs.max(d.abs());
        ref_max_abs = ref_max_abs.max(w.abs());
    }
    let rel_l2 = if den == 0.0 {
        if num == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (num / den).sqrt()
    };
    Diff {
        rel_l2: if non_finite > 0 {
            f64::INFINITY
        } else {
            rel_l2
        },
        max_abs: if non_finite > 0 {
            f64::INFINITY
        } else {
            max_abs
        },
        ref_max_abs,
        non_finite,
    }
}

/// Whether two tensors hold exactly the same values (after converting both to f64).
pub fn exactly_equal(got: &Tensor, want: &Tensor) -> Result<bool> {
    Ok(got.dims() == want.dims() && diff(got, want)?.max_abs == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_their_definitions() {
        let d = diff_slices(&[1.0, 2.0, 2.0], &[1.0, 2.0, 4.0]);
        assert!((d.rel_l2 - 2.0 / 21f64.sqrt()).abs() < 1e-15);
        assert_eq!(d.max_abs, 2.0);
        assert_eq!(d.ref_max_abs, 4.0);
        assert_eq!(d.max_rel(), 0.5);
    }

    #[test]
    fn nan_in_output_is_never_close() {
        let d = diff_slices(&[f64::NAN, 1.0], &[0.0, 1.0]);
        assert_eq!(d.non_finite, 1);
        assert!(d.rel_l2.is_infinite());
    }

    #[test]
    fn zero_reference() {
        assert_eq!(diff_slices(&[0.0], &[0.0]).rel_l2, 0.0);
        assert!(diff_slices(&[1e-9], &[0.0]).rel_l2.is_infinite());
    }
}
