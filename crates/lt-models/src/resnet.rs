//! The CIFAR ResNet of He et al. (2016) as OpenLTH builds it: a 3x3 conv + BatchNorm stem, three
//! stages of basic blocks (widths W, 2W, 4W; the first block of stages 2 and 3 halves the size),
//! 1x1 strided projection shortcuts, global average pooling and one linear layer.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::Error;
use crate::model::{InputSpec, Linear, Net, Registry};
use crate::norm::BatchNorm;

/// A `k`x`k` convolution with "same" padding (`k / 2`), recorded in `reg`.
pub(crate) fn conv(
    vb: VarBuilder,
    reg: &mut Registry,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    bias: bool,
) -> Result<Conv2d, Error> {
    conv_padded(vb, reg, c_in, c_out, k, stride, k / 2, bias)
}

/// A `k`x`k` convolution with explicit padding, recorded in `reg`.
#[allow(clippy::too_many_arguments, reason = "mirrors torch.nn.Conv2d's arguments")]
pub(crate) fn conv_padded(
    vb: VarBuilder,
    reg: &mut Registry,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: usize,
    bias: bool,
) -> Result<Conv2d, Error> {
    reg.linear(&vb, c_in * k * k, bias);
    // The values are placeholders: the model initializes every tensor by name afterwards.
    let weight = vb.get_with_hints((c_out, c_in, k, k), "weight", candle_nn::Init::Const(0.0))?;
    let bias = if bias { Some(vb.get_with_hints(c_out, "bias", candle_nn::Init::Const(0.0))?) } else { None };
    Ok(Conv2d { weight, bias, stride, padding })
}

/// A convolution layer whose arithmetic is `lt_kernels::conv2d` (fast CPU kernels; candle's own
/// op on other devices).
#[derive(Debug, Clone)]
pub(crate) struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.bias {
            Some(b) => lt_kernels::conv2d_bias(x, &self.weight, b, self.stride, self.padding),
            None => lt_kernels::conv2d(x, &self.weight, self.stride, self.padding),
        }
    }
}

pub(crate) fn bn(vb: VarBuilder, reg: &mut Registry, c: usize) -> Result<BatchNorm, Error> {
    reg.batch_norm(&vb);
    Ok(BatchNorm::new(&vb, c, 1e-5)?)
}

struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<(Conv2d, BatchNorm)>,
}

impl Block {
    fn new(vb: VarBuilder, reg: &mut Registry, f_in: usize, f_out: usize, downsample: bool) -> Result<Self, Error> {
        let stride = if downsample { 2 } else { 1 };
        let shortcut = if downsample || f_in != f_out {
            Some((conv(vb.pp("shortcut.0"), reg, f_in, f_out, 1, 2, false)?, bn(vb.pp("shortcut.1"), reg, f_out)?))
        } else {
            None
        };
        Ok(Block {
            conv1: conv(vb.pp("conv1"), reg, f_in, f_out, 3, stride, false)?,
            bn1: bn(vb.pp("bn1"), reg, f_out)?,
            conv2: conv(vb.pp("conv2"), reg, f_out, f_out, 3, 1, false)?,
            bn2: bn(vb.pp("bn2"), reg, f_out)?,
            shortcut,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let out = self.bn1.forward(&self.conv1.forward(x)?, train, true)?;
        let out = self.bn2.forward_t(&self.conv2.forward(&out)?, train)?;
        let short = match &self.shortcut {
            Some((c, b)) => b.forward_t(&c.forward(x)?, train)?,
            None => x.clone(),
        };
        lt_kernels::add_relu(&out, &short)
    }
}

pub(crate) struct CifarResNet {
    conv: Conv2d,
    bn: BatchNorm,
    blocks: Vec<Block>,
    fc: Linear,
}

impl CifarResNet {
    pub fn new(
        depth: usize,
        width: usize,
        input: InputSpec,
        vb: VarBuilder,
        reg: &mut Registry,
    ) -> Result<Self, Error> {
        let n = (depth - 2) / 6;
        let conv = conv(vb.pp("conv"), reg, input.channels, width, 3, 1, false)?;
        let bn = bn(vb.pp("bn"), reg, width)?;
        let mut blocks = Vec::new();
        let mut current = width;
        for (segment, filters) in [width, 2 * width, 4 * width].into_iter().enumerate() {
            for b in 0..n {
                let index = blocks.len().to_string();
                blocks.push(Block::new(vb.pp("blocks").pp(index), reg, current, filters, segment > 0 && b == 0)?);
                current = filters;
            }
        }
        let fc = reg.build_output(&vb, current, input.classes)?;
        Ok(CifarResNet { conv, bn, blocks, fc })
    }
}

impl Net for CifarResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut out = self.bn.forward(&self.conv.forward(x)?, train, true)?;
        for block in &self.blocks {
            out = block.forward_t(&out, train)?;
        }
        self.fc.forward(&out.mean((2, 3))?)
    }
}
