//! [`Model`]: a network's named weights and its forward pass.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::Error;
use crate::init::{BnWeightInit, InitConfig, normal, rng_for, uniform};

/// The shape of the data a model is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSpec {
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Number of classes.
    pub classes: usize,
}

/// What a named tensor of a model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A conv or linear weight: prunable unless it is in the output layer.
    Weight {
        /// Inputs per output unit (for initialization).
        fan_in: usize,
    },
    /// A conv or linear bias.
    Bias {
        /// Fan-in of the layer.
        fan_in: usize,
    },
    /// A BatchNorm scale.
    BnWeight,
    /// A BatchNorm shift.
    BnBias,
    /// A BatchNorm running statistic: state, not trained.
    Buffer,
}

/// Records the tensors a network builder creates.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub kinds: Vec<(String, ParamKind)>,
    pub output: Vec<String>,
    /// The key every dropout layer of the model draws its masks from.
    pub dropout_key: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Each linear layer's sparsity pattern slot, by weight name.
    pub patterns: BTreeMap<String, PatternSlot>,
}

/// Where [`Model::use_sparse_kernels`] puts a linear layer's sparsity pattern.
pub(crate) type PatternSlot = Arc<RwLock<Option<Arc<lt_kernels::Pattern>>>>;

impl Registry {
    pub fn linear(&mut self, vb: &VarBuilder, fan_in: usize, bias: bool) {
        self.kinds.push((format!("{}.weight", vb.prefix()), ParamKind::Weight { fan_in }));
        if bias {
            self.kinds.push((format!("{}.bias", vb.prefix()), ParamKind::Bias { fan_in }));
        }
    }

    pub fn batch_norm(&mut self, vb: &VarBuilder) {
        let p = vb.prefix();
        self.kinds.push((format!("{p}.weight"), ParamKind::BnWeight));
        self.kinds.push((format!("{p}.bias"), ParamKind::BnBias));
        self.kinds.push((format!("{p}.running_mean"), ParamKind::Buffer));
        self.kinds.push((format!("{p}.running_var"), ParamKind::Buffer));
    }

    /// Builds a linear layer (with bias) under `vb` and records its tensors.
    pub fn build_linear(&mut self, vb: VarBuilder, fan_in: usize, out: usize) -> Result<Linear, Error> {
        self.linear(&vb, fan_in, true);
        let pattern = PatternSlot::default();
        self.patterns.insert(format!("{}.weight", vb.prefix()), pattern.clone());
        let layer = candle_nn::linear(fan_in, out, vb)?;
        Ok(Linear { weight: layer.weight().clone(), bias: layer.bias().cloned(), pattern })
    }

    /// Builds the output layer `fc` (linear, with bias) and records it as the output layer.
    pub fn build_output(&mut self, vb: &VarBuilder, fan_in: usize, classes: usize) -> Result<Linear, Error> {
        let vb = vb.pp("fc");
        self.output.push(format!("{}.weight", vb.prefix()));
        self.output.push(format!("{}.bias", vb.prefix()));
        self.build_linear(vb, fan_in, classes)
    }
}

/// A fully connected layer with PyTorch's `weight` (out, in) and `bias`, computed by
/// `lt_kernels::linear` (no transposed copy of the weight gradient, the bias fused).
/// With a sparsity pattern set (see [`Model::use_sparse_kernels`]), the products skip pruned
/// weights (`lt_kernels::sparse_linear`).
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    pattern: PatternSlot,
}

impl Linear {
    /// The layer followed by ReLU, in one op each way.
    pub(crate) fn forward_relu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(x, true)
    }

    fn apply(&self, x: &Tensor, relu: bool) -> candle_core::Result<Tensor> {
        let pattern =
            self.pattern.read().map_err(|_| candle_core::Error::Msg("sparsity pattern lock poisoned".into()))?;
        match pattern.as_ref() {
            Some(p) => lt_kernels::sparse_linear(x, &self.weight, self.bias.as_ref(), relu, p),
            None => lt_kernels::linear(x, &self.weight, self.bias.as_ref(), relu),
        }
    }
}

impl candle_core::Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(x, false)
    }
}

/// A network's forward pass over the variables of its [`Model`].
pub(crate) trait Net: Send + Sync {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor>;
}

/// A network: its name, named weights and buffers, and forward pass.
pub struct Model {
    name: String,
    input: InputSpec,
    varmap: VarMap,
    net: Box<dyn Net>,
    kinds: Vec<(String, ParamKind)>,
    output: Vec<String>,
    dropout_key: std::sync::Arc<std::sync::atomic::AtomicU64>,
    patterns: BTreeMap<String, PatternSlot>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("name", &self.name).field("input", &self.input).finish_non_exhaustive()
    }
}

impl Model {
    /// Builds network `name` for `input`, initialized from `seed`.
    pub fn new(name: &str, input: InputSpec, seed: u64, init: InitConfig, device: &Device) -> Result<Self, Error> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let mut reg = Registry::default();
        let shape_err = |message: String| Error::Shape { model: name.into(), message };
        if input.classes == 0 || input.channels == 0 || input.height == 0 || input.width == 0 {
            return Err(shape_err(format!("empty input {input:?}")));
        }
        let net: Box<dyn Net> = if let Some(rest) = name.strip_prefix("mnist_lenet_") {
            let hidden = parse_numbers(rest).ok_or_else(|| Error::UnknownModel { name: name.into() })?;
            Box::new(crate::lenet::LeNet::new(&hidden, input, vb, &mut reg)?)
        } else if let Some(rest) = name.strip_prefix("cifar_resnet_") {
            let nums = parse_numbers(rest)
                .filter(|n| matches!(n.len(), 1 | 2))
                .ok_or_else(|| Error::UnknownModel { name: name.into() })?;
            let (depth, width) = (nums[0], nums.get(1).copied().unwrap_or(16));
            if depth < 8 || (depth - 2) % 6 != 0 || width == 0 {
                return Err(shape_err(format!(
                    "depth must be 6n+2 with n >= 1 and width positive, got depth {depth} width {width}"
                )));
            }
            Box::new(crate::resnet::CifarResNet::new(depth, width, input, vb, &mut reg)?)
        } else if let Some(rest) = name.strip_prefix("cifar_vgg_") {
            let depth = rest.parse().map_err(|_| Error::UnknownModel { name: name.into() })?;
            let plan = crate::vgg::plan(depth).ok_or_else(|| Error::UnknownModel { name: name.into() })?;
            Box::new(crate::vgg::CifarVgg::new(plan, input, vb, &mut reg)?)
        } else if let Some(depth) = name.strip_prefix("imagenet_resnet_") {
            let depth = depth.parse().map_err(|_| Error::UnknownModel { name: name.into() })?;
            Box::new(crate::imagenet::ImageNetResNet::new(depth, input, vb, &mut reg)?)
        } else if name == "imagenet_inception_v3" {
            Box::new(crate::inception::InceptionV3::new(input, vb, &mut reg)?)
        } else if name == "imagenet_squeezenet_1_1" {
            Box::new(crate::imagenet::SqueezeNet::new(input, vb, &mut reg)?)
        } else {
            return Err(Error::UnknownModel { name: name.into() });
        };
        let model = Model {
            name: name.into(),
            input,
            varmap,
            net,
            kinds: reg.kinds,
            output: reg.output,
            dropout_key: reg.dropout_key,
            patterns: reg.patterns,
        };
        model.initialize(seed, init)?;
        Ok(model)
    }

    fn initialize(&self, seed: u64, init: InitConfig) -> Result<(), Error> {
        let vars = self.var_table();
        for (name, kind) in &self.kinds {
            let var = vars.get(name).ok_or_else(|| self.weights_err(name, "not created by the builder"))?;
            let n = var.elem_count();
            let mut rng = rng_for(seed, name);
            let values = match *kind {
                ParamKind::Weight { fan_in } => normal(&mut rng, n, (2.0 / fan_in as f64).sqrt()),
                ParamKind::Bias { fan_in } => {
                    let b = 1.0 / (fan_in as f64).sqrt();
                    uniform(&mut rng, n, -b, b)
                }
                ParamKind::BnWeight => match init.bn_weight {
                    BnWeightInit::Uniform => uniform(&mut rng, n, 0.0, 1.0),
                    BnWeightInit::Ones => vec![1.0; n],
                },
                ParamKind::BnBias => vec![0.0; n],
                ParamKind::Buffer => vec![if name.ends_with("running_var") { 1.0 } else { 0.0 }; n],
            };
            var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
        }
        Ok(())
    }

    fn weights_err(&self, tensor: &str, message: impl Into<String>) -> Error {
        Error::Weights { model: self.name.clone(), tensor: tensor.into(), message: message.into() }
    }

    fn var_table(&self) -> HashMap<String, Var> {
        self.varmap.data().lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// The network's name (`cifar_resnet_20`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The input the model was built for.
    pub fn input(&self) -> InputSpec {
        self.input
    }

    /// Sets the key from which the dropout layers (SqueezeNet's and Inception-v3's classifiers)
    /// draw their masks in the next training passes. The trainer derives it from the data-order
    /// seed and the iteration, so masks are reproducible and a resumed run draws the same ones.
    /// Networks without dropout ignore it.
    pub fn set_dropout_key(&self, key: u64) {
        self.dropout_key.store(key, std::sync::atomic::Ordering::Relaxed);
    }

    /// Logits for a batch `x` of shape (n, c, h, w); `train` selects BatchNorm's batch statistics
    /// (and updates the running ones) and turns dropout on. Without `train` the pass records no
    /// backward graph in this project's kernels: it is for evaluation, not for gradients.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor, Error> {
        let (c, h, w) = (self.input.channels, self.input.height, self.input.width);
        match x.dims() {
            // Evaluation needs no backward graph: without one, each activation is freed as soon
            // as the next layer has read it (a gigabyte at batch 500 for VGG-19).
            [_, xc, xh, xw] if (*xc, *xh, *xw) == (c, h, w) && !train => {
                Ok(lt_kernels::without_gradients(|| self.net.forward_t(x, false))?)
            }
            [_, xc, xh, xw] if (*xc, *xh, *xw) == (c, h, w) => Ok(self.net.forward_t(x, true)?),
            dims => Err(Error::Shape {
                model: self.name.clone(),
                message: format!("input must be (n, {c}, {h}, {w}), got {dims:?}"),
            }),
        }
    }

    /// Lets the linear layers whose pruning mask is sparse enough compute with its pattern instead
    /// of multiplying by zeros: below `lt_kernels::SPARSE_BELOW` density, in layers of at least
    /// `lt_kernels::SPARSE_MIN_WEIGHTS` weights, where `cargo xtask bench sparse` measured the
    /// sparse path faster. Other layers (and every layer without a mask) use the dense kernels.
    /// The gradient of a pruned weight is then 0 instead of its dense value, which the masked
    /// optimizer step discards anyway. Returns the weights that use their pattern.
    pub fn use_sparse_kernels(&self, masks: &BTreeMap<String, Tensor>) -> Result<Vec<String>, Error> {
        let mut sparse = Vec::new();
        for (name, slot) in &self.patterns {
            let pattern = match masks.get(name) {
                Some(mask) if mask.elem_count() >= lt_kernels::SPARSE_MIN_WEIGHTS => {
                    let (o, i) = mask.dims2()?;
                    let values: Vec<f32> = mask.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
                    let p = lt_kernels::Pattern::from_mask(&values, o, i)?;
                    (p.density() < lt_kernels::SPARSE_BELOW).then(|| Arc::new(p))
                }
                _ => None,
            };
            if pattern.is_some() {
                sparse.push(name.clone());
            }
            *slot.write().map_err(|_| self.weights_err(name, "sparsity pattern lock poisoned"))? = pattern;
        }
        Ok(sparse)
    }

    /// Every named tensor (parameters and buffers) with its kind, sorted by name.
    pub fn tensors(&self) -> Vec<(String, ParamKind, Var)> {
        let vars = self.var_table();
        let mut out: Vec<_> =
            self.kinds.iter().filter_map(|(n, k)| vars.get(n).map(|v| (n.clone(), *k, v.clone()))).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The trained parameters (everything but BatchNorm running statistics), sorted by name.
    pub fn parameters(&self) -> Vec<(String, Var)> {
        self.tensors().into_iter().filter(|(_, k, _)| *k != ParamKind::Buffer).map(|(n, _, v)| (n, v)).collect()
    }

    /// The prunable tensors: conv and linear weights outside the output layer, sorted by name.
    /// (Presets that also prune the output layer, like LeNet's, add [`Model::output_layer`].)
    pub fn prunable(&self) -> Vec<String> {
        self.tensors()
            .into_iter()
            .filter(|(n, k, _)| matches!(k, ParamKind::Weight { .. }) && !self.output.contains(n))
            .map(|(n, _, _)| n)
            .collect()
    }

    /// The output layer's tensors (weight and bias).
    pub fn output_layer(&self) -> &[String] {
        &self.output
    }

    /// Number of trained parameters.
    pub fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// A copy of every named tensor.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>, Error> {
        self.tensors().into_iter().map(|(n, _, v)| Ok((n, v.as_tensor().copy()?))).collect()
    }

    /// Replaces every named tensor by `state`'s; every tensor must be there with the right shape.
    pub fn load_state(&self, state: &HashMap<String, Tensor>) -> Result<(), Error> {
        let tensors = self.tensors();
        for (name, _, var) in &tensors {
            let t = state.get(name).ok_or_else(|| self.weights_err(name, "missing"))?;
            if t.dims() != var.dims() {
                return Err(self.weights_err(name, format!("shape {:?}, the model has {:?}", t.dims(), var.dims())));
            }
            if t.dtype() != DType::F32 {
                return Err(self.weights_err(name, format!("dtype {:?}, expected f32", t.dtype())));
            }
        }
        if let Some(extra) = state.keys().find(|k| !tensors.iter().any(|(n, _, _)| n == *k)) {
            return Err(self.weights_err(extra, "not a tensor of this model"));
        }
        for (name, _, var) in &tensors {
            if let Some(t) = state.get(name) {
                var.set(&t.to_device(var.device())?)?;
            }
        }
        Ok(())
    }
}

fn parse_numbers(s: &str) -> Option<Vec<usize>> {
    let v: Option<Vec<usize>> = s.split('_').map(|p| p.parse().ok().filter(|n| *n > 0)).collect();
    v.filter(|v| !v.is_empty())
}
