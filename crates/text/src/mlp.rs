//! The gated feed-forward block: `down(gelu_tanh(gate(x)) * up(x))`.

use candle_core::Tensor;
use candle_nn::{Linear, Module, VarBuilder};

use cadence_core::Result;

use crate::config::TextEncoderConfig;

/// One layer's MLP.
#[derive(Debug, Clone)]
pub struct GatedMlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl cadence_core::TensorTree for GatedMlp {
    fn for_each_tensor(&self, f: &mut dyn FnMut(&Tensor)) {
        for l in [&self.gate_proj, &self.up_proj, &self.down_proj] {
            f(l.weight());
        }
    }

    fn map_tensors(&self, f: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self> {
        let mut map = |l: &Linear| -> Result<Linear> { Ok(Linear::new(f(l.weight())?, None)) };
        Ok(Self {
            gate_proj: map(&self.gate_proj)?,
            up_proj: map(&self.up_proj)?,
            down_proj: map(&self.down_proj)?,
        })
    }
}

impl GatedMlp {
    /// Loads `{gate,up,down}_proj.weight` under `vb`.
    pub fn load(vb: &VarBuilder, cfg: &TextEncoderConfig) -> Result<Self> {
        let (h, m) = (cfg.hidden_size, cfg.intermediate_size);
        let linear = |name: &str, shape: (usize, usize)| -> Result<Linear> {
            Ok(Linear::new(vb.get(shape, &format!("{name}.weight"))?, None))
        };
        Ok(Self {
            gate_proj: linear("gate_proj", (m, h))?,
            up_proj: linear("up_proj", (m, h))?,
            down_proj: linear("down_proj", (h, m))?,
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
