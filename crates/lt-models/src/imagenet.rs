//! ImageNet networks as torchvision defines them, with torchvision's `state_dict` names:
//! `imagenet_resnet_{18,34,50}` (ResNet v1.5: the stride sits in the bottleneck's 3x3 conv) and
//! `imagenet_squeezenet_1_1`.
//!
//! Max-pooling with padding or `ceil_mode` is computed by zero-padding, which is exact here
//! because every pooled tensor follows a ReLU (all values >= 0). SqueezeNet's classifier dropout
//! (p = 0.5) draws its masks from the model's dropout key (`dropout.rs`), so runs stay
//! reproducible.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::Error;
use crate::dropout::Dropout;
use crate::model::{InputSpec, Linear, Net, Registry};
use crate::norm::BatchNorm;
use crate::resnet::{Conv2d, bn, conv, conv_padded};

/// Max-pool `k`x`k`, stride `s`, with `pad` zeros before and enough after for `ceil_mode`
/// (inputs must be non-negative, as after a ReLU).
pub(crate) fn max_pool(x: &Tensor, k: usize, s: usize, pad: usize, ceil: bool) -> candle_core::Result<Tensor> {
    let (h, w) = (x.dim(2)?, x.dim(3)?);
    let after = |n: usize| {
        let span = n + 2 * pad - k;
        let outs = if ceil { span.div_ceil(s) + 1 } else { span / s + 1 };
        // ceil_mode never starts a window in the right padding (PyTorch's rule)
        let outs = if ceil && (outs - 1) * s >= n + pad { outs - 1 } else { outs };
        ((outs - 1) * s + k).saturating_sub(n + pad)
    };
    let x = x.pad_with_zeros(2, pad, after(h))?.pad_with_zeros(3, pad, after(w))?;
    match (k, s) {
        _ if k == s => crate::pool::max_pool(&x, k, k),
        // A 3-wide window at stride 2 is the max of two 2-wide, stride-2 pools offset by one
        // (candle has no backward for overlapping windows).
        (3, 2) => {
            let rows = pool3s2(&x, 2)?;
            pool3s2(&rows, 3)
        }
        _ => candle_core::bail!("max-pool {k}x{k} stride {s} is not supported"),
    }
}

/// Max over windows of 3 at stride 2 along `dim` (2 or 3) of a tensor padded to length 2n + 1.
fn pool3s2(x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let n = (x.dim(dim)? - 1) / 2;
    let (kh, kw) = if dim == 2 { (2, 1) } else { (1, 2) };
    let a = crate::pool::max_pool(&x.narrow(dim, 0, 2 * n)?, kh, kw)?;
    let b = crate::pool::max_pool(&x.narrow(dim, 1, 2 * n)?, kh, kw)?;
    a.maximum(&b)
}

struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Option<(Conv2d, BatchNorm)>,
    downsample: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut out = self.bn1.forward(&self.conv1.forward(x)?, train, true)?;
        out = self.bn2.forward_t(&self.conv2.forward(&out)?, train)?;
        if let Some((c, b)) = &self.conv3 {
            out = b.forward_t(&c.forward(&out.relu()?)?, train)?;
        }
        let short = match &self.downsample {
            Some((c, b)) => b.forward_t(&c.forward(x)?, train)?,
            None => x.clone(),
        };
        lt_kernels::add_relu(&out, &short)
    }
}

pub(crate) struct ImageNetResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    blocks: Vec<BasicBlock>,
    fc: Linear,
}

impl ImageNetResNet {
    pub fn new(depth: usize, input: InputSpec, vb: VarBuilder, reg: &mut Registry) -> Result<Self, Error> {
        let (layers, bottleneck): ([usize; 4], bool) = match depth {
            18 => ([2, 2, 2, 2], false),
            34 => ([3, 4, 6, 3], false),
            50 => ([3, 4, 6, 3], true),
            _ => return Err(Error::UnknownModel { name: format!("imagenet_resnet_{depth}") }),
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let conv1 = conv(vb.pp("conv1"), reg, input.channels, 64, 7, 2, false)?;
        let bn1 = bn(vb.pp("bn1"), reg, 64)?;
        let (mut blocks, mut c_in) = (Vec::new(), 64);
        for (stage, &n) in layers.iter().enumerate() {
            let width = 64 << stage;
            for b in 0..n {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let vb = vb.pp(format!("layer{}", stage + 1)).pp(b.to_string());
                let c_out = width * expansion;
                let downsample = if stride != 1 || c_in != c_out {
                    Some((
                        conv(vb.pp("downsample.0"), reg, c_in, c_out, 1, stride, false)?,
                        bn(vb.pp("downsample.1"), reg, c_out)?,
                    ))
                } else {
                    None
                };
                let block = if bottleneck {
                    BasicBlock {
                        conv1: conv(vb.pp("conv1"), reg, c_in, width, 1, 1, false)?,
                        bn1: bn(vb.pp("bn1"), reg, width)?,
                        conv2: conv(vb.pp("conv2"), reg, width, width, 3, stride, false)?,
                        bn2: bn(vb.pp("bn2"), reg, width)?,
                        conv3: Some((
                            conv(vb.pp("conv3"), reg, width, c_out, 1, 1, false)?,
                            bn(vb.pp("bn3"), reg, c_out)?,
                        )),
                        downsample,
                    }
                } else {
                    BasicBlock {
                        conv1: conv(vb.pp("conv1"), reg, c_in, width, 3, stride, false)?,
                        bn1: bn(vb.pp("bn1"), reg, width)?,
                        conv2: conv(vb.pp("conv2"), reg, width, width, 3, 1, false)?,
                        bn2: bn(vb.pp("bn2"), reg, width)?,
                        conv3: None,
                        downsample,
                    }
                };
                blocks.push(block);
                c_in = c_out;
            }
        }
        let fc = reg.build_output(&vb, c_in, input.classes)?;
        Ok(ImageNetResNet { conv1, bn1, blocks, fc })
    }
}

impl Net for ImageNetResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let x = self.bn1.forward(&self.conv1.forward(x)?, train, true)?;
        let mut x = max_pool(&x, 3, 2, 1, false)?;
        for block in &self.blocks {
            x = block.forward_t(&x, train)?;
        }
        self.fc.forward(&x.mean((2, 3))?)
    }
}

struct Fire {
    squeeze: Conv2d,
    expand1x1: Conv2d,
    expand3x3: Conv2d,
}

enum Feature {
    Conv(Conv2d),
    Pool,
    Fire(Fire),
}

pub(crate) struct SqueezeNet {
    features: Vec<Feature>,
    dropout: Dropout,
    classifier: Conv2d,
}

impl SqueezeNet {
    /// SqueezeNet 1.1.
    pub fn new(input: InputSpec, vb: VarBuilder, reg: &mut Registry) -> Result<Self, Error> {
        let fires: [(usize, usize, usize); 8] = [
            (64, 16, 64),
            (128, 16, 64),
            (128, 32, 128),
            (256, 32, 128),
            (256, 48, 192),
            (384, 48, 192),
            (384, 64, 256),
            (512, 64, 256),
        ];
        let f = vb.pp("features");
        let mut features =
            vec![Feature::Conv(conv_padded(f.pp("0"), reg, input.channels, 64, 3, 2, 0, true)?), Feature::Pool];
        // positions in torchvision's Sequential: 0 conv, 1 relu, 2 pool, 3-4 fire, 5 pool, 6-7 fire, 8 pool, 9-12 fire
        let positions = [3, 4, 6, 7, 9, 10, 11, 12];
        for (i, (&(c_in, s, e), &pos)) in fires.iter().zip(&positions).enumerate() {
            let v = f.pp(pos.to_string());
            let fire = Fire {
                squeeze: conv(v.pp("squeeze"), reg, c_in, s, 1, 1, true)?,
                expand1x1: conv(v.pp("expand1x1"), reg, s, e, 1, 1, true)?,
                expand3x3: conv(v.pp("expand3x3"), reg, s, e, 3, 1, true)?,
            };
            features.push(Feature::Fire(fire));
            if i == 1 || i == 3 {
                features.push(Feature::Pool);
            }
        }
        let c = vb.pp("classifier").pp("1");
        reg.output.push(format!("{}.weight", c.prefix()));
        reg.output.push(format!("{}.bias", c.prefix()));
        let classifier = conv(c, reg, 512, input.classes, 1, 1, true)?;
        let dropout = Dropout::new(0.5, reg.dropout_key.clone(), 0);
        Ok(SqueezeNet { features, dropout, classifier })
    }
}

impl Net for SqueezeNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for f in &self.features {
            x = match f {
                Feature::Conv(c) => c.forward(&x)?.relu()?,
                Feature::Pool => max_pool(&x, 3, 2, 0, true)?,
                Feature::Fire(fire) => {
                    let s = fire.squeeze.forward(&x)?.relu()?;
                    Tensor::cat(&[fire.expand1x1.forward(&s)?.relu()?, fire.expand3x3.forward(&s)?.relu()?], 1)?
                }
            };
        }
        self.classifier.forward(&self.dropout.forward_t(&x, train)?)?.relu()?.mean((2, 3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The composed pool equals candle's direct 3x3/2 pool (forward), on non-negative inputs.
    #[test]
    fn composed_overlapping_pool_equals_the_direct_one() {
        let x = Tensor::rand(0f32, 1.0, (2, 3, 11, 9), &Device::Cpu).unwrap();
        let composed = max_pool(&x, 3, 2, 0, false).unwrap();
        let direct = x.max_pool2d_with_stride(3, 2).unwrap();
        assert_eq!(composed.dims(), direct.dims());
        let diff = (composed - direct).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
    }
}
