//! The plugin host: finds, loads and calls pruning plugins (`cdylib`s exporting
//! `lt_prune_plugin_v1`, see `lt-plugin-abi`), and validates every mask they return.
//!
//! Loading a plugin runs its code with the user's rights: plugins are trusted native code. What
//! the host guards against is mistakes: a file that is not a library, a missing entry symbol, an
//! ABI version it does not speak, a panic (caught inside the plugin by the export macro, reported
//! here as an error), an error returned by the plugin, and any mask that breaks an invariant
//! (checked by [`validate`]); in each case the error names the plugin and nothing is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lt_plugin_abi::{ABI_VERSION, Descriptor, ENTRY_SYMBOL, ErrorBuffer, RawStr, RawTensor, Request};

use crate::{Error, Expected, Mask, Scope, validate};

/// The environment variable listing plugin folders (separated like `PATH`).
pub const PLUGIN_PATH_VAR: &str = "LT_PLUGIN_PATH";

/// A loaded plugin.
pub struct Plugin {
    // Kept alive as long as `descriptor` is used.
    _library: libloading::Library,
    descriptor: *const Descriptor,
    path: PathBuf,
    name: String,
    description: String,
    params_schema: String,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("name", &self.name).field("path", &self.path).finish()
    }
}

fn err(plugin: &str, message: impl Into<String>) -> Error {
    Error::Plugin { plugin: plugin.into(), message: message.into() }
}

/// The file name of a plugin library called `name` on this platform (`libNAME.so`).
pub fn library_file_name(name: &str) -> String {
    format!("{}{}{}", std::env::consts::DLL_PREFIX, name.replace('-', "_"), std::env::consts::DLL_SUFFIX)
}

/// The folders of `LT_PLUGIN_PATH`.
pub fn search_path() -> Vec<PathBuf> {
    std::env::var_os(PLUGIN_PATH_VAR).map(|v| std::env::split_paths(&v).collect()).unwrap_or_default()
}

impl Plugin {
    /// Loads the plugin library at `path` and checks its ABI.
    pub fn load(path: &Path) -> Result<Plugin, Error> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(err(&shown, "no such file"));
        }
        // SAFETY: loading a library runs its initializers: plugins are trusted native code, as the
        // plugin guide says. Everything after this point is checked.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| {
            let detail = std::error::Error::source(&e).map_or(String::new(), |s| format!(": {s}"));
            err(&shown, format!("not a loadable library ({e}{detail})"))
        })?;
        // SAFETY: the symbol's type is the ABI's; a library that exports the name with another
        // type is undefined behaviour we cannot detect, and the version check below catches the
        // realistic case (an older or newer plugin).
        let entry: libloading::Symbol<unsafe extern "C" fn() -> *const Descriptor> = unsafe {
            library.get(ENTRY_SYMBOL.as_bytes())
        }
        .map_err(|_| {
            err(&shown, format!("does not export {ENTRY_SYMBOL}: not an lt pruning plugin (ABI version {ABI_VERSION})"))
        })?;
        // SAFETY: as above.
        let descriptor = unsafe { entry() };
        if descriptor.is_null() {
            return Err(err(&shown, format!("{ENTRY_SYMBOL} returned null")));
        }
        // SAFETY: every ABI version starts with `abi_version: u32`; we read nothing else before
        // checking it.
        let version = unsafe { std::ptr::read(descriptor.cast::<u32>()) };
        if version != ABI_VERSION {
            return Err(err(
                &shown,
                format!(
                    "speaks plugin ABI version {version}, this lt speaks version {ABI_VERSION}: rebuild the plugin against this lt's lt-plugin-abi"
                ),
            ));
        }
        // SAFETY: version 1's descriptor; its strings are static in the library.
        let (name, description, params_schema) = unsafe {
            let d = &*descriptor;
            let s = |r: RawStr, what: &str| {
                r.as_str().map(str::to_string).map_err(|e| err(&shown, format!("{what} is not UTF-8: {e}")))
            };
            (s(d.name, "name")?, s(d.description, "description")?, s(d.params_schema, "parameter schema")?)
        };
        Ok(Plugin { _library: library, descriptor, path: path.to_path_buf(), name, description, params_schema })
    }

    /// Finds `spec` (a path; or a name, looked up as `libNAME.so` in `dirs`, then as the name a
    /// library in `dirs` gives itself) and loads it.
    pub fn find(spec: &str, dirs: &[PathBuf]) -> Result<Plugin, Error> {
        let as_path = Path::new(spec);
        if spec.contains(std::path::MAIN_SEPARATOR) || as_path.extension().is_some() {
            return Plugin::load(as_path);
        }
        let file = library_file_name(spec);
        for dir in dirs {
            let candidate = dir.join(&file);
            if candidate.is_file() {
                return Plugin::load(&candidate);
            }
        }
        // Then by the name the plugin gives itself (`lamp` for liblt_plugin_lamp.so).
        if let Some(plugin) = Plugin::list(dirs).into_iter().filter_map(|(_, p)| p.ok()).find(|p| p.name() == spec) {
            return Ok(plugin);
        }
        Err(err(
            spec,
            format!(
                "not found: looked for {file} in {} (set {PLUGIN_PATH_VAR}, or give --strategy plugin:/path/to/{file})",
                if dirs.is_empty() {
                    format!("no folder ({PLUGIN_PATH_VAR} is empty)")
                } else {
                    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                }
            ),
        ))
    }

    /// Every library in `dirs`, loaded (or the error that stopped it), for `lt plugins list`.
    pub fn list(dirs: &[PathBuf]) -> Vec<(PathBuf, Result<Plugin, Error>)> {
        let mut out = Vec::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == std::env::consts::DLL_EXTENSION))
                .collect();
            files.sort();
            out.extend(files.into_iter().map(|p| {
                let r = Plugin::load(&p);
                (p, r)
            }));
        }
        out
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its one-line description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Its parameters (JSON object of name -> description).
    pub fn params_schema(&self) -> &str {
        &self.params_schema
    }

    /// Where it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it needs gradients.
    pub fn needs_gradients(&self) -> bool {
        // SAFETY: checked version-1 descriptor, alive with the library.
        unsafe { (*self.descriptor).needs_gradients != 0 }
    }

    /// Prunes `mask` by `scope` with this plugin and validates the result. `grads` must be given
    /// when [`Plugin::needs_gradients`]; `params` is a JSON object's text.
    pub fn prune(
        &self,
        weights: &BTreeMap<String, Vec<f32>>,
        grads: Option<&BTreeMap<String, Vec<f32>>>,
        mask: &Mask,
        scope: &Scope,
        seed: u64,
        params: &str,
    ) -> Result<Mask, Error> {
        let label = format!("{} ({})", self.name, self.path.display());
        if self.needs_gradients() && grads.is_none() {
            return Err(err(&label, "needs gradients, and none were computed"));
        }
        let expected = scope.expected(mask)?;
        let names: Vec<&str> = mask.names().collect();
        let mut outs: Vec<Vec<u8>> = Vec::with_capacity(names.len());
        for name in &names {
            let (shape, bits) = mask.get(name).unwrap_or_default();
            let n: usize = shape.iter().product();
            let bad = |what: &str| Error::Tensor {
                tensor: name.to_string(),
                message: format!("needs {what} with {n} values"),
            };
            if weights.get(*name).is_none_or(|w| w.len() != n) {
                return Err(bad("weights"));
            }
            if let Some(g) = grads
                && self.needs_gradients()
                && g.get(*name).is_none_or(|g| g.len() != n)
            {
                return Err(bad("gradients"));
            }
            outs.push(bits.to_vec());
        }
        let raw: Vec<RawTensor> = names
            .iter()
            .zip(outs.iter_mut())
            .map(|(name, out)| {
                let (shape, bits) = mask.get(name).unwrap_or_default();
                RawTensor {
                    name: RawStr::new(name),
                    shape: shape.as_ptr(),
                    rank: shape.len(),
                    len: bits.len(),
                    weights: weights[*name].as_ptr(),
                    grads: grads
                        .filter(|_| self.needs_gradients())
                        .and_then(|g| g.get(*name))
                        .map_or(std::ptr::null(), |g| g.as_ptr()),
                    mask: bits.as_ptr(),
                    out: out.as_mut_ptr(),
                }
            })
            .collect();
        let per_tensor: Vec<usize> = match &expected {
            Expected::PerTensor(k) => names.iter().map(|n| k.get(*n).copied().unwrap_or(0)).collect(),
            Expected::Total(_) => Vec::new(),
        };
        let request = Request {
            tensors: raw.as_ptr(),
            count: raw.len(),
            per_tensor_mode: matches!(expected, Expected::PerTensor(_)) as u32,
            total: match expected {
                Expected::Total(k) => k,
                Expected::PerTensor(_) => per_tensor.iter().sum(),
            },
            per_tensor: if per_tensor.is_empty() { std::ptr::null() } else { per_tensor.as_ptr() },
            seed,
            params: RawStr::new(params),
        };
        let mut message = vec![0u8; 4096];
        let mut error = ErrorBuffer { ptr: message.as_mut_ptr(), cap: message.len(), len: 0 };
        // SAFETY: a checked version-1 descriptor; every pointer in `request` covers the lengths the
        // ABI states and lives until the call returns.
        let code = unsafe { ((*self.descriptor).prune)(&request, &mut error) };
        drop(raw);
        if code != 0 {
            let text = String::from_utf8_lossy(&message[..error.len.min(message.len())]).into_owned();
            return Err(err(
                &label,
                format!("failed (code {code}): {}", if text.is_empty() { "no message" } else { &text }),
            ));
        }
        let arrays = names
            .iter()
            .zip(outs)
            .map(|(name, bits)| {
                let (shape, _) = mask.get(name).unwrap_or_default();
                (name.to_string(), (shape.to_vec(), bits))
            })
            .collect();
        let new = Mask { tensors: arrays };
        validate(mask, &new, &expected, &format!("plugin {label}"))?;
        Ok(new)
    }
}
