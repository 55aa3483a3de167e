//! LeNet: fully connected ReLU layers (`fc_layers.i`) and an output layer (`fc`), as OpenLTH's `mnist_lenet`.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::Error;
use crate::model::{InputSpec, Linear, Net, Registry};

pub(crate) struct LeNet {
    layers: Vec<Linear>,
    fc: Linear,
}

impl LeNet {
    pub fn new(hidden: &[usize], input: InputSpec, vb: VarBuilder, reg: &mut Registry) -> Result<Self, Error> {
        let mut fan_in = input.channels * input.height * input.width;
        let mut layers = Vec::new();
        for (i, &h) in hidden.iter().enumerate() {
            layers.push(reg.build_linear(vb.pp("fc_layers").pp(i.to_string()), fan_in, h)?);
            fan_in = h;
        }
        let fc = reg.build_output(&vb, fan_in, input.classes)?;
        Ok(LeNet { layers, fc })
    }
}

impl Net for LeNet {
    fn forward_t(&self, x: &Tensor, _train: bool) -> candle_core::Result<Tensor> {
        let mut x = x.flatten_from(1)?;
        for layer in &self.layers {
            x = layer.forward_relu(&x)?;
        }
        self.fc.forward(&x)
    }
}
