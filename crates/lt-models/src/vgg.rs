//! The CIFAR VGG networks as OpenLTH builds them: 3x3 convolutions (with bias) + BatchNorm + ReLU,
//! 2x2 max-pooling between stages, global average pooling (the "final 2x2 average pool" at 32x32
//! inputs) and one linear layer. Tensors are named like the PyTorch `nn.Sequential` of
//! `xtask/torch/nets.py`: `layers.{i}` for the conv at position i, `layers.{i+1}` for its BatchNorm.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::Error;
use crate::model::{InputSpec, Linear, Net, Registry};
use crate::norm::BatchNorm;
use crate::resnet::{Conv2d, bn, conv};

/// A stage plan: a number is a conv layer's width, 0 is a max-pool.
pub(crate) fn plan(depth: usize) -> Option<&'static [usize]> {
    Some(match depth {
        11 => &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512],
        13 => &[64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512],
        16 => &[64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512],
        19 => &[64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512],
        _ => return None,
    })
}

enum Layer {
    ConvBnRelu(Conv2d, BatchNorm),
    MaxPool,
}

pub(crate) struct CifarVgg {
    layers: Vec<Layer>,
    fc: Linear,
}

impl CifarVgg {
    pub fn new(plan: &[usize], input: InputSpec, vb: VarBuilder, reg: &mut Registry) -> Result<Self, Error> {
        let pools = plan.iter().filter(|&&p| p == 0).count();
        if input.height >> pools == 0 || input.width >> pools == 0 {
            return Err(Error::Shape {
                model: "cifar_vgg".into(),
                message: format!(
                    "{} max-pools need inputs of at least {}x{}, got {}x{}",
                    pools,
                    1 << pools,
                    1 << pools,
                    input.height,
                    input.width
                ),
            });
        }
        let (mut layers, mut position, mut c) = (Vec::new(), 0, input.channels);
        for &spec in plan {
            if spec == 0 {
                layers.push(Layer::MaxPool);
                position += 1;
            } else {
                let conv = conv(vb.pp("layers").pp(position.to_string()), reg, c, spec, 3, 1, true)?;
                let bn = bn(vb.pp("layers").pp((position + 1).to_string()), reg, spec)?;
                layers.push(Layer::ConvBnRelu(conv, bn));
                position += 3;
                c = spec;
            }
        }
        let fc = reg.build_output(&vb, c, input.classes)?;
        Ok(CifarVgg { layers, fc })
    }
}

impl Net for CifarVgg {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for layer in &self.layers {
            x = match layer {
                Layer::ConvBnRelu(conv, bn) => bn.forward(&conv.forward(&x)?, train, true)?,
                Layer::MaxPool => crate::pool::max_pool(&x, 2, 2)?,
            };
        }
        self.fc.forward(&x.mean((2, 3))?)
    }
}
