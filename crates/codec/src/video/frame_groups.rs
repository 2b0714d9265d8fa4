//! Running channel-mixing, position-wise steps (norms, activations) a few frames at a time.
//!
//! A norm computed in f32 on a bf16 activation needs two or three f32 temporaries of the
//! activation's size; on the largest Turbo-VAED activation at 1080p (2.4·10⁹ values) that is
//! tens of GB. [`map_frames`] applies such a step to groups of frames and writes each group into
//! a preallocated output, so the temporaries scale with one group.

use candle_core::{Result, Tensor};

/// Input bytes of one group of frames.
pub const GROUP_BYTES: usize = 64 << 20;

/// `f` applied to `[B, C, T, H, W]` along time in groups of frames (`f` must act on each
/// position independently and keep `T`).
pub fn map_frames(x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    map_frames_grouped(x, GROUP_BYTES, f)
}

fn map_frames_grouped(
    x: &Tensor,
    group_bytes: usize,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (b, c, t, h, w) = x.dims5()?;
    let frame_bytes = b * c * h * w * x.dtype().size_in_bytes();
    let group = (group_bytes / frame_bytes.max(1)).max(1);
    if group >= t {
        return f(x);
    }
    let mut out: Option<Tensor> = None;
    for start in (0..t).step_by(group) {
        let n = group.min(t - start);
        let y = f(&x.narrow(2, start, n)?)?.contiguous()?;
        let dst = match &out {
            Some(o) => o,
            None => {
                let mut dims = y.dims().to_vec();
                dims[2] = t;
                out.insert(Tensor::zeros(dims, y.dtype(), y.device())?)
            }
        };
        dst.slice_set(&y, 2, start)?;
    }
    match out {
        Some(o) => Ok(o),
        None => f(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn groups_give_the_same_result() {
        let x = Tensor::randn(0f32, 1f32, (1, 3, 7, 2, 2), &Device::Cpu).unwrap();
        let f = |x: &Tensor| x.sqr()?.sum_keepdim(1)?.to_dtype(DType::F64);
        let whole = map_frames_grouped(&x, usize::MAX, f).unwrap();
        let grouped = map_frames_grouped(&x, 2 * 3 * 2 * 2 * 4, f).unwrap();
        assert_eq!(grouped.dims(), [1, 1, 7, 2, 2]);
        let d = (whole - grouped).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(d.to_scalar::<f64>().unwrap(), 0.0);
    }
}
