//! The datasets of an experiment, opened once and shared by its jobs.

use std::sync::Arc;

use lt_data::{Dataset, Locations};
use lt_models::InputSpec;

use crate::Error;

/// The training and test splits of one dataset, and the input they give a network.
#[derive(Debug, Clone)]
pub struct Data {
    /// The training split (truncated when asked).
    pub train: Arc<Dataset>,
    /// The evaluation split.
    pub test: Arc<Dataset>,
    /// Channels, size and classes.
    pub input: InputSpec,
}

impl Data {
    /// Opens `name`'s training split (its first `train_examples` examples if given) and its
    /// evaluation split.
    pub fn open(name: &str, train_examples: Option<usize>, loc: &Locations) -> Result<Data, Error> {
        Self::open_sized(name, train_examples, None, loc)
    }

    /// The datasets of `train`: its dataset, training examples and image size.
    pub fn for_train(train: &crate::TrainSpec, loc: &Locations) -> Result<Data, Error> {
        Self::open_sized(&train.dataset, train.train_examples, train.image_size, loc)
    }

    /// [`Data::open`], with both splits cropped to `image_size` pixels when given (ImageNet-style
    /// datasets; see [`Dataset::with_image_size`]).
    pub fn open_sized(
        name: &str,
        train_examples: Option<usize>,
        image_size: Option<u32>,
        loc: &Locations,
    ) -> Result<Data, Error> {
        let mut train = Dataset::open(name, "train", loc)?;
        if let Some(n) = train_examples {
            train = train.truncate(n)?;
        }
        let manifest = train.manifest().clone();
        let mut test = Dataset::open(name, manifest.eval_split(), loc)?;
        if let Some(size) = image_size {
            train = train.with_image_size(size)?;
            test = test.with_image_size(size)?;
        }
        let [channels, height, width] = train.input_shape(&train.train_transform()?);
        let input = InputSpec { channels, height, width, classes: manifest.num_classes() as usize };
        Ok(Data { train: Arc::new(train), test: Arc::new(test), input })
    }

    /// Iterations in one epoch of batch `batch_size`.
    pub fn iterations_per_epoch(&self, batch_size: usize) -> Result<usize, Error> {
        Ok(lt_data::DataOrder::new(0, self.train.len(), batch_size)?.iterations_per_epoch())
    }
}
