//! Step counts written as iterations or epochs: `500it`, `6ep`, `0`.

use serde::{Deserialize, Serialize};

use crate::Error;

/// A number of training steps, in iterations or in epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Steps {
    /// Iterations (batches).
    Iterations(u64),
    /// Whole epochs.
    Epochs(u64),
}

impl Steps {
    /// Parses `500it`, `6ep` or `0`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let t = text.trim();
        let bad = |why: &str| Error::Steps { text: text.into(), why: why.into() };
        let (number, unit) = if let Some(n) = t.strip_suffix("it") {
            (n, "it")
        } else if let Some(n) = t.strip_suffix("ep") {
            (n, "ep")
        } else if t == "0" {
            ("0", "it")
        } else {
            return Err(bad("missing unit `it` or `ep`"));
        };
        let n: u64 = number.parse().map_err(|_| bad("not a whole number"))?;
        Ok(if unit == "it" { Steps::Iterations(n) } else { Steps::Epochs(n) })
    }

    /// The count in iterations, given the iterations per epoch.
    pub fn iterations(self, per_epoch: usize) -> u64 {
        match self {
            Steps::Iterations(n) => n,
            Steps::Epochs(n) => n * per_epoch as u64,
        }
    }
}

impl std::fmt::Display for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Steps::Iterations(n) => write!(f, "{n}it"),
            Steps::Epochs(n) => write!(f, "{n}ep"),
        }
    }
}

impl std::str::FromStr for Steps {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Steps::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_converts() {
        assert_eq!(Steps::parse("500it").unwrap(), Steps::Iterations(500));
        assert_eq!(Steps::parse("6ep").unwrap().iterations(391), 2346);
        assert_eq!(Steps::parse("0").unwrap(), Steps::Iterations(0));
        assert_eq!(Steps::parse("6ep").unwrap().to_string(), "6ep");
        for bad in ["500", "it", "-1it", "1.5ep", "ep3"] {
            assert!(Steps::parse(bad).is_err(), "{bad}");
        }
    }
}
