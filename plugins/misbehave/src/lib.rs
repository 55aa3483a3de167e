//! A test fixture, not an example: a plugin that misbehaves in the way its `mode` parameter asks,
//! so that the host's guards can be tested through the real ABI. `{"mode": "ok"}` prunes the
//! requested number of lowest-index survivors; `panic`, `error`, `garbage` (a mask value of 7),
//! `revive` (brings back a pruned weight), `count` (prunes one weight too many) and `short` (a mask
//! of the wrong length) each break one rule. With feature `wrong-abi` it claims ABI version 0.

use lt_plugin_abi::{Input, Strategy, Target};

/// The fixture.
pub struct Misbehave;

fn mode(params: &str) -> &str {
    ["panic", "error", "garbage", "revive", "count", "short"].into_iter().find(|m| params.contains(m)).unwrap_or("ok")
}

impl Strategy for Misbehave {
    const NAME: &'static str = "misbehave";
    const DESCRIPTION: &'static str = "test fixture: breaks the plugin rules on request";
    const PARAMS: &'static str = r#"{"mode": "ok|panic|error|garbage|revive|count|short"}"#;

    fn prune(input: &Input) -> Result<Vec<Vec<u8>>, String> {
        let mode = mode(input.params);
        match mode {
            "panic" => panic!("asked to panic"),
            "error" => return Err("asked to fail".into()),
            _ => {}
        }
        let mut masks: Vec<Vec<u8>> = input.tensors.iter().map(|t| t.mask.to_vec()).collect();
        let mut todo = match &input.target {
            Target::Total(k) => *k,
            Target::PerTensor(ks) => ks.iter().sum(),
        };
        if mode == "count" {
            todo += 1;
        }
        for m in masks.iter_mut() {
            for b in m.iter_mut().filter(|b| **b == 1) {
                if todo == 0 {
                    break;
                }
                *b = 0;
                todo -= 1;
            }
        }
        match mode {
            "garbage" => masks[0][0] = 7,
            // Needs a current mask with a pruned weight in the first tensor.
            "revive" => {
                if let Some(i) = input.tensors[0].mask.iter().position(|&b| b == 0) {
                    masks[0][i] = 1;
                }
            }
            "short" => {
                masks[0].pop();
            }
            _ => {}
        }
        Ok(masks)
    }
}

#[cfg(not(feature = "wrong-abi"))]
lt_plugin_abi::export_strategy!(Misbehave);

#[cfg(feature = "wrong-abi")]
mod wrong {
    use lt_plugin_abi::{Descriptor, ErrorBuffer, RawStr, Request};

    unsafe extern "C" fn never(_: *const Request, _: *mut ErrorBuffer) -> i32 {
        1
    }

    static DESCRIPTOR: Descriptor = Descriptor {
        abi_version: 0,
        name: RawStr::from_static("misbehave"),
        description: RawStr::from_static("claims ABI version 0"),
        params_schema: RawStr::from_static("{}"),
        needs_gradients: 0,
        prune: never,
    };

    /// An entry point with the right name and the wrong version.
    #[unsafe(no_mangle)]
    pub extern "C" fn lt_prune_plugin_v1() -> *const Descriptor {
        &DESCRIPTOR
    }
}
