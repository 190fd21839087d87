//! The networks of docs/mqe.md section 3: Dense, ensemble MLP, actor, IMPALA encoder.
//!
//! Every `forward` takes `frozen`: when true the parameters enter the graph detached, so a loss
//! computed through them sends no gradient to them (the actor's view of the critic).

use candle_core::{D, DType, Tensor};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::fused::{bias_add, bias_gelu, layer_norm_affine};
use crate::params::ParamBuilder;

/// LayerNorm epsilon (Flax default used by the reference code).
pub const LAYER_NORM_EPS: f64 = 1e-6;
/// Scale of the actor mean head's initial weights.
pub const ACTOR_HEAD_INIT_SCALE: f64 = 0.01;

fn param(t: &Tensor, frozen: bool) -> Tensor {
    if frozen { t.detach() } else { t.clone() }
}

/// Fully connected layer; weight stored `[in, out]` so `y = x W + b`.
pub struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    /// Glorot-uniform weight (times `scale`), zero bias.
    pub fn new(pb: &mut ParamBuilder, d_in: usize, d_out: usize, scale: f64) -> Result<Self> {
        Ok(Self {
            weight: pb.glorot("weight", &[d_in, d_out], d_in, d_out, scale)?,
            bias: pb.constant("bias", &[d_out], 0.0)?,
        })
    }

    /// `x [.., in] -> [.., out]`.
    pub fn forward(&self, x: &Tensor, frozen: bool) -> Result<Tensor> {
        let y = x.broadcast_matmul(&param(&self.weight, frozen))?;
        Ok(bias_add(&y, &param(&self.bias, frozen))?)
    }

    /// `gelu(x W + b)` with the bias and activation fused.
    pub fn forward_gelu(&self, x: &Tensor, frozen: bool) -> Result<Tensor> {
        let y = x.broadcast_matmul(&param(&self.weight, frozen))?;
        Ok(bias_gelu(&y, &param(&self.bias, frozen))?)
    }
}

struct EnsembleLayer {
    weight: Tensor, // [E, in, out]
    bias: Tensor,   // [E, out]
}

impl EnsembleLayer {
    fn new(pb: &mut ParamBuilder, e: usize, d_in: usize, d_out: usize) -> Result<Self> {
        Ok(Self {
            weight: pb.glorot("weight", &[e, d_in, d_out], d_in, d_out, 1.0)?,
            bias: pb.constant("bias", &[e, d_out], 0.0)?,
        })
    }

    /// `x [E, B, in]` or shared `x [B, in]` -> `x W` `[E, B, out]` as one batched matmul.
    fn matmul(&self, x: &Tensor, frozen: bool) -> Result<Tensor> {
        let (e, _, d_out) = self.weight.dims3()?;
        let w = param(&self.weight, frozen);
        let y = if x.rank() == 2 {
            let (b, d_in) = x.dims2()?;
            // Shared input: one [B, in] x [in, E*out] matmul instead of E copies of x.
            let w_flat = w.transpose(0, 1)?.reshape((d_in, e * d_out))?;
            x.matmul(&w_flat)?
                .reshape((b, e, d_out))?
                .transpose(0, 1)?
                .contiguous()?
        } else {
            x.matmul(&w)?
        };
        Ok(y)
    }

    fn forward(&self, x: &Tensor, frozen: bool) -> Result<Tensor> {
        Ok(bias_add(
            &self.matmul(x, frozen)?,
            &param(&self.bias, frozen),
        )?)
    }

    fn forward_gelu(&self, x: &Tensor, frozen: bool) -> Result<Tensor> {
        Ok(bias_gelu(
            &self.matmul(x, frozen)?,
            &param(&self.bias, frozen),
        )?)
    }
}

struct EnsembleNorm {
    scale: Tensor, // [E, H]
    bias: Tensor,  // [E, H]
}

impl EnsembleNorm {
    fn new(pb: &mut ParamBuilder, e: usize, h: usize) -> Result<Self> {
        Ok(Self {
            scale: pb.constant("scale", &[e, h], 1.0)?,
            bias: pb.constant("bias", &[e, h], 0.0)?,
        })
    }

    fn forward(&self, x: &Tensor, frozen: bool) -> Result<Tensor> {
        let s = param(&self.scale, frozen);
        let b = param(&self.bias, frozen);
        Ok(layer_norm_affine(x, &s, &b, LAYER_NORM_EPS)?)
    }
}

/// E independent MLPs (Dense -> GELU -> LayerNorm per hidden layer, then Dense), stacked so the
/// whole ensemble runs as batched matmuls.
pub struct EnsembleMlp {
    hidden: Vec<(EnsembleLayer, EnsembleNorm)>,
    output: EnsembleLayer,
}

impl EnsembleMlp {
    /// Creates `ensemble` members mapping `d_in` to `d_out`.
    pub fn new(
        pb: &mut ParamBuilder,
        ensemble: usize,
        d_in: usize,
        hidden: &[usize],
        d_out: usize,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(hidden.len());
        let mut width = d_in;
        for (i, &h) in hidden.iter().enumerate() {
            let dense = EnsembleLayer::new(&mut pb.pp(&format!("hidden{i}")), ensemble, width, h)?;
            let norm = EnsembleNorm::new(&mut pb.pp(&format!("norm{i}")), ensemble, h)?;
            layers.push((dense, norm));
            width = h;
        }
        let output = EnsembleLayer::new(&mut pb.pp("output"), ensemble, width, d_out)?;
        Ok(Self {
            hidden: layers,
            output,
        })
    }

    /// `x [B, in]` (shared by all members) or `[E, B, in]` -> `[E, B, out]`.
    pub fn forward(&self, x: &Tensor, frozen: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for (dense, norm) in &self.hidden {
            h = norm.forward(&dense.forward_gelu(&h, frozen)?, frozen)?;
        }
        self.output.forward(&h, frozen)
    }
}

struct Conv {
    weight: Tensor, // [O, C, 3, 3]
    bias: Tensor,   // [O]
}

impl Conv {
    fn new(pb: &mut ParamBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Self {
            weight: pb.glorot("weight", &[c_out, c_in, 3, 3], c_in * 9, c_out * 9, 1.0)?,
            bias: pb.constant("bias", &[c_out], 0.0)?,
        })
    }

    fn forward(&self, x: &Tensor, frozen: bool) -> Result<Tensor> {
        let w = param(&self.weight, frozen);
        let b = param(&self.bias, frozen);
        Ok(crate::ops::conv2d_same(x, &w, &b)?)
    }
}

struct ResidualBlock {
    conv0: Conv,
    conv1: Conv,
}

struct Stack {
    conv: Conv,
    blocks: Vec<ResidualBlock>,
}

/// IMPALA CNN: stacks of 16, 32, 32 channels, then ReLU, flatten, Dense, GELU.
pub struct ImpalaEncoder {
    stacks: Vec<Stack>,
    dense: Dense,
}

/// Channels of the three IMPALA stacks.
pub const IMPALA_CHANNELS: [usize; 3] = [16, 32, 32];

impl ImpalaEncoder {
    /// Encoder of `channels`-channel images of side `size_px`.
    pub fn new(
        pb: &mut ParamBuilder,
        channels: usize,
        size_px: usize,
        blocks_per_stack: usize,
        out_dim: usize,
    ) -> Result<Self> {
        let mut stacks = Vec::new();
        let mut c_in = channels;
        let mut side = size_px;
        for (s, &c) in IMPALA_CHANNELS.iter().enumerate() {
            let mut spb = pb.pp(&format!("stack{s}"));
            let conv = Conv::new(&mut spb.pp("conv"), c_in, c)?;
            let blocks = (0..blocks_per_stack)
                .map(|b| {
                    let mut bpb = spb.pp(&format!("block{b}"));
                    Ok(ResidualBlock {
                        conv0: Conv::new(&mut bpb.pp("conv0"), c, c)?,
                        conv1: Conv::new(&mut bpb.pp("conv1"), c, c)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            stacks.push(Stack { conv, blocks });
            c_in = c;
            side = side.div_ceil(2);
        }
        let flat = side * side * c_in;
        let dense = Dense::new(&mut pb.pp("dense"), flat, out_dim, 1.0)?;
        Ok(Self { stacks, dense })
    }

    /// `x f32 [B, C, H, W]` in [0, 1] -> `[B, out]`.
    pub fn forward(&self, x: &Tensor, frozen: bool) -> Result<Tensor> {
        self.dense
            .forward_gelu(&self.flat_features(x, frozen)?, frozen)
    }

    /// The stacks' output after the final ReLU, flattened: `[B, H' * W' * C']`, what the
    /// output Dense reads.
    pub fn flat_features(&self, x: &Tensor, frozen: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for stack in &self.stacks {
            h = stack.conv.forward(&h, frozen)?;
            h = crate::ops::max_pool_3x3_s2_same(&h)?;
            for block in &stack.blocks {
                let r = block.conv0.forward(&h.relu()?, frozen)?;
                let r = block.conv1.forward(&r.relu()?, frozen)?;
                h = (h + r)?;
            }
        }
        Ok(h.relu()?.flatten_from(1)?)
    }
}

/// u8 images `[B, H, W, C]` -> f32 `[B, C, H, W]` in [0, 1].
pub fn images_to_nchw(images: &Tensor) -> Result<Tensor> {
    let x = (images.to_dtype(DType::F32)? / 255.0)?;
    Ok(x.permute((0, 3, 1, 2))?.contiguous()?)
}

/// Observation encoder: identity for states, IMPALA for pixels.
pub enum Encoder {
    /// State vectors pass through (cast to f32).
    Identity,
    /// IMPALA CNN on u8 HWC images.
    Impala(ImpalaEncoder),
}

impl Encoder {
    /// Builds the encoder of `cfg` for images with `channels` channels (2x for the actor).
    pub fn new(pb: &mut ParamBuilder, cfg: &ModelConfig, channel_factor: usize) -> Result<Self> {
        match cfg.obs {
            crate::config::ObsKind::State { .. } => Ok(Encoder::Identity),
            crate::config::ObsKind::Pixels { size_px, channels } => {
                Ok(Encoder::Impala(ImpalaEncoder::new(
                    pb,
                    channels * channel_factor,
                    size_px,
                    cfg.encoder.blocks_per_stack(),
                    cfg.encoder_dim,
                )?))
            }
        }
    }

    /// For pixels, the share of the units after the final ReLU that are positive for at least
    /// one image of `obs` (u8 `[B, H, W, C]`): 0 means the encoder has died (its output is the
    /// same for every image and no gradient reaches its convolutions). None for states.
    pub fn live_fraction(&self, obs: &Tensor) -> Result<Option<f32>> {
        let Encoder::Impala(enc) = self else {
            return Ok(None);
        };
        let features = enc.flat_features(&images_to_nchw(obs)?, true)?;
        let alive = features.max(0)?.gt(0f32)?.to_dtype(DType::F32)?;
        Ok(Some(alive.mean_all()?.to_scalar::<f32>()?))
    }

    /// Observation batch -> features `[B, F]`.
    pub fn forward(&self, obs: &Tensor, frozen: bool) -> Result<Tensor> {
        match self {
            Encoder::Identity => Ok(obs.to_dtype(DType::F32)?),
            Encoder::Impala(enc) => enc.forward(&images_to_nchw(obs)?, frozen),
        }
    }
}

/// Deterministic actor: encoder, Dense/GELU hidden layers, mean head (std fixed at 1).
pub struct Actor {
    encoder: Encoder,
    hidden: Vec<Dense>,
    mean: Dense,
}

impl Actor {
    /// Actor of `cfg`; its input is concat(s, g) (states) or the channel-stacked image pair.
    pub fn new(pb: &mut ParamBuilder, cfg: &ModelConfig) -> Result<Self> {
        let encoder = Encoder::new(&mut pb.pp("encoder"), cfg, 2)?;
        let mut width = match cfg.obs {
            crate::config::ObsKind::State { dim } => 2 * dim,
            crate::config::ObsKind::Pixels { .. } => cfg.encoder_dim,
        };
        let mut hidden = Vec::new();
        for (i, &h) in cfg.actor_hidden.iter().enumerate() {
            hidden.push(Dense::new(
                &mut pb.pp(&format!("hidden{i}")),
                width,
                h,
                1.0,
            )?);
            width = h;
        }
        let mean = Dense::new(
            &mut pb.pp("mean"),
            width,
            cfg.action_dim,
            ACTOR_HEAD_INIT_SCALE,
        )?;
        Ok(Self {
            encoder,
            hidden,
            mean,
        })
    }

    /// Unclipped action mean `[B, A]`.
    pub fn forward(&self, obs: &Tensor, goal: &Tensor) -> Result<Tensor> {
        let x = match &self.encoder {
            Encoder::Identity => Tensor::cat(
                &[&obs.to_dtype(DType::F32)?, &goal.to_dtype(DType::F32)?],
                D::Minus1,
            )?,
            Encoder::Impala(_) => self
                .encoder
                .forward(&Tensor::cat(&[obs, goal], D::Minus1)?, false)?,
        };
        let mut h = x;
        for dense in &self.hidden {
            h = dense.forward_gelu(&h, false)?;
        }
        self.mean.forward(&h, false)
    }
}
