//! [`Fp8Matrix`]: a row-scaled e4m3 matrix, as weights and activations enter an FP8 GEMM.

use candle_core::{bail, DType, Result, Tensor, D};

use super::{Scaling, COLUMN_ALIGN, E4M3_MAX};

/// Elements converted per step while quantising. The conversion goes through f32 copies of
/// the rows; doing it a slice of rows at a time bounds them however large the matrix is (a
/// whole 1080p activation of 65,606 tokens × 13,652 columns would be 3.6 GB in f32, the
/// largest weight 1.3 GB).
pub const CHUNK_ELEMENTS: usize = 4 << 20;

/// The most temporary memory one quantisation holds beside its input and output: an f32 copy
/// of a slice, its quotient by the scales, and their e4m3 conversion (9 bytes per element).
pub const QUANTISE_TEMPORARY_BYTES: usize = 9 * CHUNK_ELEMENTS;

/// A matrix stored as e4m3 values and one f32 scale per row: `value[r, c] ≈ data[r, c] · scale[r]`.
///
/// `data` is `(rows, padded_cols)` with `padded_cols` the logical column count rounded up to
/// [`COLUMN_ALIGN`]; the padding columns are zero. `scale` is `(rows,)` f32 (with
/// [`Scaling::PerTensor`] all entries are equal).
#[derive(Debug, Clone)]
pub struct Fp8Matrix {
    data: Tensor,
    scale: Tensor,
    cols: usize,
}
cadence_core::tensor_tree!(Fp8Matrix { data, scale });

impl Fp8Matrix {
    /// Quantises a `(rows, cols)` float matrix (any float dtype, any device).
    ///
    /// Each row's scale is `absmax / 448`, so its largest element maps onto ±448 exactly and
    /// the others keep e4m3's relative precision (3 mantissa bits) down to `absmax · 2⁻¹⁵`,
    /// below which they become e4m3 subnormals. A row of zeros gets scale 1 (its data is zero,
    /// so the scale is never used; 1 keeps it finite). The conversion divides in f32 and
    /// rounds once, to nearest even, saturating at ±448.
    ///
    /// Non-finite input is not checked here (activations are quantised on every call and a
    /// check would synchronise the device); [`Self::quantize_weight`] checks.
    pub fn quantize(x: &Tensor, scaling: Scaling) -> Result<Self> {
        let (rows, cols) = x.dims2()?;
        let padded = cols.next_multiple_of(COLUMN_ALIGN);
        let chunk_rows = (CHUNK_ELEMENTS / padded.max(1)).max(1);
        let chunks: Vec<(usize, usize)> = (0..rows)
            .step_by(chunk_rows)
            .map(|start| (start, chunk_rows.min(rows - start)))
            .collect();

        // |x| and its row maxima are exact in x's own dtype; only the (rows,) result is f32.
        let mut maxima = Vec::with_capacity(chunks.len());
        for &(start, len) in &chunks {
            maxima.push(x.narrow(0, start, len)?.abs()?.max_keepdim(D::Minus1)?);
        }
        let absmax = if maxima.is_empty() {
            Tensor::zeros(0, DType::F32, x.device())?
        } else {
            Tensor::cat(&maxima, 0)?
                .to_dtype(DType::F32)?
                .reshape(rows)?
        };
        let absmax = match scaling {
            Scaling::PerRow => absmax,
            Scaling::PerTensor if rows > 0 => absmax.max_keepdim(0)?.broadcast_as(rows)?,
            Scaling::PerTensor => absmax,
        };
        let scale = scale_from_absmax(&absmax)?;

        // Written slice by slice into one buffer, so no second copy of the e4m3 data exists.
        let data = Tensor::zeros((rows, padded), DType::F8E4M3, x.device())?;
        for &(start, len) in &chunks {
            let s = scale.narrow(0, start, len)?.unsqueeze(1)?;
            let q = x
                .narrow(0, start, len)?
                .to_dtype(DType::F32)?
                .broadcast_div(&s)?;
            let q = if padded > cols {
                q.pad_with_zeros(1, 0, padded - cols)?
            } else {
                q
            };
            data.slice_set(&q.to_dtype(DType::F8E4M3)?, 0, start)?;
        }
        Ok(Self {
            data,
            scale: scale.contiguous()?,
            cols,
        })
    }

    /// Quantises a weight `(out, in)` per output channel, failing on a non-finite value (a
    /// corrupt checkpoint would otherwise turn into NaN velocities many layers later).
    pub fn quantize_weight(w: &Tensor) -> Result<Self> {
        let m = Self::quantize(w, Scaling::PerRow)?;
        // A sum propagates both NaN and infinity (a maximum may skip NaN).
        let total = m
            .scale
            .sum_all()?
            .to_device(&candle_core::Device::Cpu)?
            .to_scalar::<f32>()?;
        if !total.is_finite() {
            bail!("the weight holds a non-finite value; FP8 quantisation needs finite weights")
        }
        Ok(m)
    }

    /// A matrix from stored parts: `data` `(rows, cols)` in e4m3 (unpadded, as an FP8
    /// safetensors file holds it, or already padded) and `scale` `(rows,)` or `(rows, 1)` f32.
    pub fn from_parts(data: Tensor, scale: Tensor, cols: usize) -> Result<Self> {
        let (rows, stored_cols) = data.dims2()?;
        if data.dtype() != DType::F8E4M3 {
            bail!("FP8 data must be F8_E4M3, got {:?}", data.dtype())
        }
        let padded = cols.next_multiple_of(COLUMN_ALIGN);
        if stored_cols != cols && stored_cols != padded {
            bail!("FP8 data has {stored_cols} columns, expected {cols} (or {padded} padded)")
        }
        if scale.elem_count() != rows {
            bail!(
                "FP8 scale has shape {:?}, expected ({rows},) for {rows} rows",
                scale.dims()
            )
        }
        let scale = scale
            .to_dtype(DType::F32)?
            .reshape(rows)?
            .to_device(data.device())?;
        let data = if stored_cols < padded {
            // Padding copies through f32: e4m3 -> f32 -> e4m3 is exact for every e4m3 value.
            data.to_dtype(DType::F32)?
                .pad_with_zeros(1, 0, padded - stored_cols)?
                .to_dtype(DType::F8E4M3)?
        } else {
            data.contiguous()?
        };
        Ok(Self { data, scale, cols })
    }

    /// `(rows, padded_cols)` e4m3 values; the padding columns are zero.
    pub fn data(&self) -> &Tensor {
        &self.data
    }

    /// `(rows, cols)` e4m3 values without the padding (what an FP8 file stores).
    pub fn unpadded_data(&self) -> Result<Tensor> {
        if self.padded_cols() == self.cols {
            Ok(self.data.clone())
        } else {
            self.data.narrow(1, 0, self.cols)?.contiguous()
        }
    }

    /// `(rows,)` f32 dequantisation scales.
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }

    /// Rows of the matrix, one scale each.
    pub fn rows(&self) -> usize {
        self.scale.dim(0).unwrap_or(0)
    }

    /// Logical columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Columns of [`Self::data`], a multiple of [`COLUMN_ALIGN`].
    pub fn padded_cols(&self) -> usize {
        self.cols.next_multiple_of(COLUMN_ALIGN)
    }

    /// Rows `start..start + len` (a view: no copy).
    pub fn narrow_rows(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self {
            data: self.data.narrow(0, start, len)?,
            scale: self.scale.narrow(0, start, len)?,
            cols: self.cols,
        })
    }

    /// The e4m3 values as f32, unscaled and unpadded: `(rows, cols)`. Exact (every e4m3 value
    /// is an f32).
    pub fn unscaled_f32(&self) -> Result<Tensor> {
        self.data.narrow(1, 0, self.cols)?.to_dtype(DType::F32)
    }

    /// The matrix the FP8 values stand for, `data · scale`, as `(rows, cols)` f32.
    pub fn dequantize(&self) -> Result<Tensor> {
        self.unscaled_f32()?
            .broadcast_mul(&self.scale.unsqueeze(1)?)
    }

    /// Bytes held on the device (data, padding included, and scales).
    pub fn bytes(&self) -> usize {
        self.rows() * (self.padded_cols() + 4)
    }
}

/// `absmax / 448` (an f32 division, not a multiplication by a rounded reciprocal), with 1
/// where `absmax` is zero.
fn scale_from_absmax(absmax: &Tensor) -> Result<Tensor> {
    let max = Tensor::new(E4M3_MAX, absmax.device())?;
    let scaled = absmax.broadcast_div(&max)?;
    let zero = absmax.eq(0.0)?;
    zero.where_cond(&scaled.ones_like()?, &scaled)
}
