//! `cargo xtask fixtures`: regenerates the PyTorch one- and ten-step fixtures that lt-train's
//! `torch_fixtures` test compares against. Exports this project's seed-0 initial weights of each
//! network, then runs `crates/lt-train/tests/fixtures/make_torch_fixtures.py` with the PyTorch of
//! `xtask/torch/setup.sh`. Only the (small) results are committed; CI needs no PyTorch.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use lt_models::{InitConfig, InputSpec, Model};

/// `networks`: the fixtures to remake (`lenet`, `resnet20`, `vgg19`); all when empty.
pub fn run(networks: &[String]) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let init = tempfile::tempdir()?;
    let cifar = InputSpec { channels: 3, height: 32, width: 32, classes: 10 };
    let mnist = InputSpec { channels: 1, height: 28, width: 28, classes: 10 };
    for (name, input) in [("mnist_lenet_300_100", mnist), ("cifar_resnet_20", cifar), ("cifar_vgg_19", cifar)] {
        let model = Model::new(name, input, 0, InitConfig::default(), &Device::Cpu)?;
        let state: HashMap<String, candle_core::Tensor> = model.state()?.into_iter().collect();
        candle_core::safetensors::save(&state, init.path().join(format!("{name}.safetensors")))?;
    }
    let python = crate::bench_train::torch_python(true)?.context("no PyTorch")?;
    let dir = root.join("crates/lt-train/tests/fixtures");
    let status = Command::new(&python)
        .arg(dir.join("make_torch_fixtures.py"))
        .arg(init.path())
        .arg(&dir)
        .args(networks)
        .status()?;
    if !status.success() {
        bail!("make_torch_fixtures.py failed");
    }
    Ok(())
}
