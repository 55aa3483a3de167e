//! Inception-v3 as torchvision defines it (`imagenet_inception_v3`, `aux_logits=False`,
//! `transform_input=False`), with torchvision's tensor names (`Mixed_6b.branch7x7_2.conv.weight`).
//! Every convolution is a `BasicConv2d`: conv without bias, BatchNorm (eps 0.001), ReLU.
//! The classifier's dropout (p = 0.5, before `fc`) draws its masks from the model's dropout key.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::Error;
use crate::dropout::Dropout;
use crate::imagenet::max_pool;
use crate::model::{InputSpec, Linear, Net, Registry};
use crate::norm::BatchNorm;

/// `BasicConv2d`: a (kh x kw) conv with padding (ph, pw) and a stride, BatchNorm, ReLU.
struct BasicConv {
    weight: Tensor,
    pad: (usize, usize),
    stride: usize,
    bn: BatchNorm,
}

impl BasicConv {
    #[allow(clippy::too_many_arguments, reason = "mirrors torchvision's BasicConv2d arguments")]
    fn new(
        vb: VarBuilder,
        reg: &mut Registry,
        c_in: usize,
        c_out: usize,
        k: (usize, usize),
        pad: (usize, usize),
        stride: usize,
    ) -> Result<Self, Error> {
        let cv = vb.pp("conv");
        reg.linear(&cv, c_in * k.0 * k.1, false);
        let weight = cv.get((c_out, c_in, k.0, k.1), "weight")?;
        let bv = vb.pp("bn");
        reg.batch_norm(&bv);
        Ok(BasicConv { weight, pad, stride, bn: BatchNorm::new(&bv, c_out, 1e-3)? })
    }

    fn sq(
        vb: VarBuilder,
        reg: &mut Registry,
        c_in: usize,
        c_out: usize,
        k: usize,
        pad: usize,
        stride: usize,
    ) -> Result<Self, Error> {
        Self::new(vb, reg, c_in, c_out, (k, k), (pad, pad), stride)
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let x = if self.pad == (0, 0) {
            x.clone()
        } else {
            x.pad_with_zeros(2, self.pad.0, self.pad.0)?.pad_with_zeros(3, self.pad.1, self.pad.1)?
        };
        self.bn.forward(&x.conv2d(&self.weight, 0, self.stride, 1, 1)?, train, true)
    }
}

/// `F.avg_pool2d(x, 3, stride=1, padding=1)` (zeros counted), as a sum of shifted views, which is differentiable.
fn avg_pool_3s1p1(x: &Tensor) -> candle_core::Result<Tensor> {
    let (h, w) = (x.dim(2)?, x.dim(3)?);
    let p = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
    let mut sum: Option<Tensor> = None;
    for dy in 0..3 {
        for dx in 0..3 {
            let v = p.narrow(2, dy, h)?.narrow(3, dx, w)?;
            sum = Some(match sum {
                Some(s) => (s + v)?,
                None => v,
            });
        }
    }
    sum.map_or_else(|| candle_core::bail!("empty pool"), |s| s / 9.0)
}

/// One Inception module: branches of BasicConv chains, an optional pooled branch, concatenated.
struct Module_ {
    /// Each branch: a chain, then optionally a split into two convs whose outputs are concatenated.
    branches: Vec<(Vec<BasicConv>, Vec<BasicConv>)>,
    /// The pooling branch: average (with a 1x1 conv) or max (stride 2, no conv).
    pool: Option<BasicConv>,
    max_pool: bool,
}

impl Module_ {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut outs = Vec::new();
        for (chain, split) in &self.branches {
            let mut y = x.clone();
            for c in chain {
                y = c.forward_t(&y, train)?;
            }
            if split.is_empty() {
                outs.push(y);
            } else {
                for c in split {
                    outs.push(c.forward_t(&y, train)?);
                }
            }
        }
        if self.max_pool {
            outs.push(max_pool(x, 3, 2, 0, false)?);
        } else if let Some(c) = &self.pool {
            outs.push(c.forward_t(&avg_pool_3s1p1(x)?, train)?);
        }
        Tensor::cat(&outs, 1)
    }
}

pub(crate) struct InceptionV3 {
    stem: Vec<(BasicConv, bool)>,
    mixed: Vec<Module_>,
    dropout: Dropout,
    fc: Linear,
}

impl InceptionV3 {
    pub fn new(input: InputSpec, vb: VarBuilder, reg: &mut Registry) -> Result<Self, Error> {
        if input.height < 75 || input.width < 75 {
            return Err(Error::Shape {
                model: "imagenet_inception_v3".into(),
                message: format!("inputs must be at least 75x75, got {}x{}", input.height, input.width),
            });
        }
        let r = reg;
        // (conv, max-pool after it)
        let stem = vec![
            (BasicConv::sq(vb.pp("Conv2d_1a_3x3"), r, input.channels, 32, 3, 0, 2)?, false),
            (BasicConv::sq(vb.pp("Conv2d_2a_3x3"), r, 32, 32, 3, 0, 1)?, false),
            (BasicConv::sq(vb.pp("Conv2d_2b_3x3"), r, 32, 64, 3, 1, 1)?, true),
            (BasicConv::sq(vb.pp("Conv2d_3b_1x1"), r, 64, 80, 1, 0, 1)?, false),
            (BasicConv::sq(vb.pp("Conv2d_4a_3x3"), r, 80, 192, 3, 0, 1)?, true),
        ];
        let mut mixed = Vec::new();
        for (name, c_in, pool) in [("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)] {
            mixed.push(inception_a(vb.pp(name), r, c_in, pool)?);
        }
        mixed.push(inception_b(vb.pp("Mixed_6a"), r, 288)?);
        for (name, c7) in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)] {
            mixed.push(inception_c(vb.pp(name), r, 768, c7)?);
        }
        mixed.push(inception_d(vb.pp("Mixed_7a"), r, 768)?);
        mixed.push(inception_e(vb.pp("Mixed_7b"), r, 1280)?);
        mixed.push(inception_e(vb.pp("Mixed_7c"), r, 2048)?);
        let fc = r.build_output(&vb, 2048, input.classes)?;
        let dropout = Dropout::new(0.5, r.dropout_key.clone(), 0);
        Ok(InceptionV3 { stem, mixed, dropout, fc })
    }
}

impl Net for InceptionV3 {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for (conv, pool) in &self.stem {
            x = conv.forward_t(&x, train)?;
            if *pool {
                x = max_pool(&x, 3, 2, 0, false)?;
            }
        }
        for m in &self.mixed {
            x = m.forward_t(&x, train)?;
        }
        self.fc.forward(&self.dropout.forward_t(&x.mean((2, 3))?, train)?)
    }
}

type R<'a> = &'a mut Registry;

fn inception_a(vb: VarBuilder, r: R, c: usize, pool: usize) -> Result<Module_, Error> {
    Ok(Module_ {
        branches: vec![
            (vec![BasicConv::sq(vb.pp("branch1x1"), r, c, 64, 1, 0, 1)?], vec![]),
            (
                vec![
                    BasicConv::sq(vb.pp("branch5x5_1"), r, c, 48, 1, 0, 1)?,
                    BasicConv::sq(vb.pp("branch5x5_2"), r, 48, 64, 5, 2, 1)?,
                ],
                vec![],
            ),
            (
                vec![
                    BasicConv::sq(vb.pp("branch3x3dbl_1"), r, c, 64, 1, 0, 1)?,
                    BasicConv::sq(vb.pp("branch3x3dbl_2"), r, 64, 96, 3, 1, 1)?,
                    BasicConv::sq(vb.pp("branch3x3dbl_3"), r, 96, 96, 3, 1, 1)?,
                ],
                vec![],
            ),
        ],
        pool: Some(BasicConv::sq(vb.pp("branch_pool"), r, c, pool, 1, 0, 1)?),
        max_pool: false,
    })
}

fn inception_b(vb: VarBuilder, r: R, c: usize) -> Result<Module_, Error> {
    Ok(Module_ {
        branches: vec![
            (vec![BasicConv::sq(vb.pp("branch3x3"), r, c, 384, 3, 0, 2)?], vec![]),
            (
                vec![
                    BasicConv::sq(vb.pp("branch3x3dbl_1"), r, c, 64, 1, 0, 1)?,
                    BasicConv::sq(vb.pp("branch3x3dbl_2"), r, 64, 96, 3, 1, 1)?,
                    BasicConv::sq(vb.pp("branch3x3dbl_3"), r, 96, 96, 3, 0, 2)?,
                ],
                vec![],
            ),
        ],
        pool: None,
        max_pool: true,
    })
}

fn inception_c(vb: VarBuilder, r: R, c: usize, c7: usize) -> Result<Module_, Error> {
    let (row, col) = (((1, 7), (0, 3)), ((7, 1), (3, 0)));
    let bc = |r: R, name: &str, i, o, (k, p): ((usize, usize), (usize, usize))| {
        BasicConv::new(vb.pp(name), r, i, o, k, p, 1)
    };
    Ok(Module_ {
        branches: vec![
            (vec![BasicConv::sq(vb.pp("branch1x1"), r, c, 192, 1, 0, 1)?], vec![]),
            (
                vec![
                    BasicConv::sq(vb.pp("branch7x7_1"), r, c, c7, 1, 0, 1)?,
                    bc(r, "branch7x7_2", c7, c7, row)?,
                    bc(r, "branch7x7_3", c7, 192, col)?,
                ],
                vec![],
            ),
            (
                vec![
                    BasicConv::sq(vb.pp("branch7x7dbl_1"), r, c, c7, 1, 0, 1)?,
                    bc(r, "branch7x7dbl_2", c7, c7, col)?,
                    bc(r, "branch7x7dbl_3", c7, c7, row)?,
                    bc(r, "branch7x7dbl_4", c7, c7, col)?,
                    bc(r, "branch7x7dbl_5", c7, 192, row)?,
                ],
                vec![],
            ),
        ],
        pool: Some(BasicConv::sq(vb.pp("branch_pool"), r, c, 192, 1, 0, 1)?),
        max_pool: false,
    })
}

fn inception_d(vb: VarBuilder, r: R, c: usize) -> Result<Module_, Error> {
    Ok(Module_ {
        branches: vec![
            (
                vec![
                    BasicConv::sq(vb.pp("branch3x3_1"), r, c, 192, 1, 0, 1)?,
                    BasicConv::sq(vb.pp("branch3x3_2"), r, 192, 320, 3, 0, 2)?,
                ],
                vec![],
            ),
            (
                vec![
                    BasicConv::sq(vb.pp("branch7x7x3_1"), r, c, 192, 1, 0, 1)?,
                    BasicConv::new(vb.pp("branch7x7x3_2"), r, 192, 192, (1, 7), (0, 3), 1)?,
                    BasicConv::new(vb.pp("branch7x7x3_3"), r, 192, 192, (7, 1), (3, 0), 1)?,
                    BasicConv::sq(vb.pp("branch7x7x3_4"), r, 192, 192, 3, 0, 2)?,
                ],
                vec![],
            ),
        ],
        pool: None,
        max_pool: true,
    })
}

fn inception_e(vb: VarBuilder, r: R, c: usize) -> Result<Module_, Error> {
    let split = |r: R, a: &str, b: &str| -> Result<Vec<BasicConv>, Error> {
        Ok(vec![
            BasicConv::new(vb.pp(a), r, 384, 384, (1, 3), (0, 1), 1)?,
            BasicConv::new(vb.pp(b), r, 384, 384, (3, 1), (1, 0), 1)?,
        ])
    };
    Ok(Module_ {
        branches: vec![
            (vec![BasicConv::sq(vb.pp("branch1x1"), r, c, 320, 1, 0, 1)?], vec![]),
            (vec![BasicConv::sq(vb.pp("branch3x3_1"), r, c, 384, 1, 0, 1)?], split(r, "branch3x3_2a", "branch3x3_2b")?),
            (
                vec![
                    BasicConv::sq(vb.pp("branch3x3dbl_1"), r, c, 448, 1, 0, 1)?,
                    BasicConv::sq(vb.pp("branch3x3dbl_2"), r, 448, 384, 3, 1, 1)?,
                ],
                split(r, "branch3x3dbl_3a", "branch3x3dbl_3b")?,
            ),
        ],
        pool: Some(BasicConv::sq(vb.pp("branch_pool"), r, c, 192, 1, 0, 1)?),
        max_pool: false,
    })
}
