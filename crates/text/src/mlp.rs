//! The gated feed-forward block: `down(gelu_tanh(gate(x)) * up(x))`.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module};

use cadence_core::{Result, WeightSource};

/// One layer's MLP.
#[derive(Debug, Clone)]
pub struct GatedMlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl GatedMlp {
    /// Loads `{prefix}{gate,up,down}_proj.weight`.
    pub fn load(
        ckpt: &dyn WeightSource,
        prefix: &str,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let linear = |name: &str| -> Result<Linear> {
            let w = ckpt.load(&format!("{prefix}{name}.weight"), dtype, device)?;
            Ok(Linear::new(w, None))
        };
        Ok(Self {
            gate_proj: linear("gate_proj")?,
            up_proj: linear("up_proj")?,
            down_proj: linear("down_proj")?,
        })
    }

    /// Applies the block to `x` `[.., H]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // candle's `gelu` is the tanh approximation (`gelu_pytorch_tanh`); `gelu_erf` is the
        // exact one.
        let gate = self.gate_proj.forward(x)?.gelu()?;
        let up = self.up_proj.forward(x)?;
        Ok(self.down_proj.forward(&(gate * up)?)?)
    }
}
