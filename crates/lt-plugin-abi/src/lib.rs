//! `lt-plugin-abi` owns the boundary between `lt` and pruning plugins: the C ABI (version 1) both
//! sides compile against, and the safe Rust API a plugin author writes: implement [`Strategy`],
//! call [`export_strategy!`], build as a `cdylib`. It has no dependencies, so a plugin builds fast
//! and pins nothing of the host.
//!
//! It does not load libraries or check what a plugin returns: that is the host's job
//! (`lt_prune::plugin`), which validates every mask (shapes, 0/1 only, no revived weight, the exact
//! count) whatever the plugin claims.
//!
//! # The ABI, version 1
//! A plugin exports `extern "C" fn lt_prune_plugin_v1() -> *const Descriptor`. The descriptor
//! starts with `abi_version` (1); the host refuses any other value before reading further. The
//! host calls `prune` with a [`Request`]: for every tensor, its name, shape, weights, gradients
//! (when the descriptor asks for them) and current mask, and an output buffer pre-filled with the
//! current mask; how many weights to prune (in all, or per tensor); a seed; the user's parameters
//! as JSON text. `prune` returns 0 on success, or non-zero with a UTF-8 message in the error
//! buffer. It must not unwind: [`export_strategy!`] catches panics and reports them as errors.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// The ABI version this crate speaks.
pub const ABI_VERSION: u32 = 1;

/// The entry symbol's name.
pub const ENTRY_SYMBOL: &str = "lt_prune_plugin_v1";

/// A borrowed UTF-8 string.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawStr {
    /// First byte.
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

impl RawStr {
    /// A view of a static string.
    pub const fn from_static(s: &'static str) -> RawStr {
        RawStr { ptr: s.as_ptr(), len: s.len() }
    }

    /// A view of `s`, valid while `s` is.
    pub fn new(s: &str) -> RawStr {
        RawStr { ptr: s.as_ptr(), len: s.len() }
    }

    /// The string.
    ///
    /// # Safety
    /// `ptr` must point to `len` bytes of UTF-8 that outlive `'a`.
    pub unsafe fn as_str<'a>(self) -> Result<&'a str, std::str::Utf8Error> {
        if self.len == 0 {
            return Ok("");
        }
        // SAFETY: guaranteed by the caller.
        std::str::from_utf8(unsafe { std::slice::from_raw_parts(self.ptr, self.len) })
    }
}

/// One prunable tensor.
#[repr(C)]
#[derive(Debug)]
pub struct RawTensor {
    /// Its name (`layers.0.weight`).
    pub name: RawStr,
    /// Its shape.
    pub shape: *const usize,
    /// Number of dimensions.
    pub rank: usize,
    /// Number of elements.
    pub len: usize,
    /// `len` weights (pruned ones are 0).
    pub weights: *const f32,
    /// `len` gradients, or null when the plugin did not ask for them.
    pub grads: *const f32,
    /// `len` mask values (1 = survives).
    pub mask: *const u8,
    /// `len` bytes the plugin writes the new mask into (pre-filled with `mask`).
    pub out: *mut u8,
}

/// What to prune.
#[repr(C)]
#[derive(Debug)]
pub struct Request {
    /// The tensors.
    pub tensors: *const RawTensor,
    /// How many.
    pub count: usize,
    /// 0: prune `total` weights over all tensors together; 1: prune `per_tensor[i]` of tensor i.
    pub per_tensor_mode: u32,
    /// The number to prune in all (mode 0).
    pub total: usize,
    /// The number to prune per tensor (mode 1), `count` entries; null in mode 0.
    pub per_tensor: *const usize,
    /// A seed for plugins that draw random numbers.
    pub seed: u64,
    /// The user's parameters as a JSON object's text (`{}` when none).
    pub params: RawStr,
}

/// A buffer for an error message.
#[repr(C)]
#[derive(Debug)]
pub struct ErrorBuffer {
    /// Where to write.
    pub ptr: *mut u8,
    /// Capacity in bytes.
    pub cap: usize,
    /// Bytes written.
    pub len: usize,
}

/// The function that prunes.
pub type PruneFn = unsafe extern "C" fn(request: *const Request, error: *mut ErrorBuffer) -> i32;

/// What a plugin is.
#[repr(C)]
#[derive(Debug)]
pub struct Descriptor {
    /// Must be [`ABI_VERSION`]; the host checks it before reading anything else.
    pub abi_version: u32,
    /// Its name (`lamp`): `--strategy plugin:lamp`.
    pub name: RawStr,
    /// One line for `lt plugins list`.
    pub description: RawStr,
    /// Its parameters, as a JSON object of name -> description.
    pub params_schema: RawStr,
    /// 1 if `prune` needs gradients (the host computes them on training batches).
    pub needs_gradients: u32,
    /// The pruning function.
    pub prune: PruneFn,
}

/// How many weights to prune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// In all tensors together.
    Total(usize),
    /// Per tensor, in the order of [`Input::tensors`].
    PerTensor(Vec<usize>),
}

/// One tensor, as a plugin sees it.
#[derive(Debug)]
pub struct Tensor<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its shape.
    pub shape: &'a [usize],
    /// Its weights (pruned ones are 0).
    pub weights: &'a [f32],
    /// Its gradients, when the strategy asked for them.
    pub grads: Option<&'a [f32]>,
    /// Its current mask (1 = survives).
    pub mask: &'a [u8],
}

/// A pruning request, as a plugin sees it.
#[derive(Debug)]
pub struct Input<'a> {
    /// The tensors, in name order.
    pub tensors: Vec<Tensor<'a>>,
    /// How many to prune.
    pub target: Target,
    /// A seed.
    pub seed: u64,
    /// The user's parameters (JSON object text).
    pub params: &'a str,
}

/// A pruning strategy. The host validates what it returns: one mask per tensor of the tensor's
/// length, 0/1 only, never 1 where the current mask is 0, and exactly the target's number pruned.
pub trait Strategy {
    /// Its name (`--strategy plugin:NAME`).
    const NAME: &'static str;
    /// One line for `lt plugins list`.
    const DESCRIPTION: &'static str;
    /// Its parameters as a JSON object of name -> description (`{}` for none).
    const PARAMS: &'static str = "{}";
    /// Whether it needs gradients of the training loss.
    const NEEDS_GRADIENTS: bool = false;
    /// The new masks, one per tensor of `input.tensors`, in order.
    fn prune(input: &Input) -> Result<Vec<Vec<u8>>, String>;
}

fn write_error(error: *mut ErrorBuffer, message: &str) {
    if error.is_null() {
        return;
    }
    // SAFETY: the host passes a valid buffer of `cap` bytes.
    unsafe {
        let e = &mut *error;
        let n = message.len().min(e.cap);
        std::ptr::copy_nonoverlapping(message.as_ptr(), e.ptr, n);
        e.len = n;
    }
}

/// The C-ABI body of [`export_strategy!`]: converts the request, calls `S::prune` with panics
/// caught, copies the masks out.
///
/// # Safety
/// `request` and `error` must be as the ABI describes.
pub unsafe fn call<S: Strategy>(request: *const Request, error: *mut ErrorBuffer) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes a valid request whose buffers live for the call.
        let req = unsafe { &*request };
        let raw: &[RawTensor] =
            if req.count == 0 { &[] } else { unsafe { std::slice::from_raw_parts(req.tensors, req.count) } };
        let mut tensors = Vec::with_capacity(raw.len());
        for t in raw {
            // SAFETY: as above, every pointer covers `len` (or `rank`) elements.
            unsafe {
                tensors.push(Tensor {
                    name: t.name.as_str().map_err(|e| format!("tensor name is not UTF-8: {e}"))?,
                    shape: std::slice::from_raw_parts(t.shape, t.rank),
                    weights: std::slice::from_raw_parts(t.weights, t.len),
                    grads: (!t.grads.is_null()).then(|| std::slice::from_raw_parts(t.grads, t.len)),
                    mask: std::slice::from_raw_parts(t.mask, t.len),
                });
            }
        }
        let target = if req.per_tensor_mode == 1 {
            // SAFETY: `count` entries in mode 1.
            Target::PerTensor(unsafe { std::slice::from_raw_parts(req.per_tensor, req.count) }.to_vec())
        } else {
            Target::Total(req.total)
        };
        // SAFETY: as above.
        let params = unsafe { req.params.as_str() }.map_err(|e| format!("parameters are not UTF-8: {e}"))?;
        let input = Input { tensors, target, seed: req.seed, params };
        let masks = S::prune(&input)?;
        if masks.len() != raw.len() {
            return Err(format!("returned {} masks for {} tensors", masks.len(), raw.len()));
        }
        for (t, m) in raw.iter().zip(&masks) {
            if m.len() != t.len {
                return Err(format!("returned a mask of {} values for a tensor of {}", m.len(), t.len));
            }
            // SAFETY: `out` holds `len` bytes.
            unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), t.out, t.len) };
        }
        Ok(())
    }));
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => {
            write_error(error, &message);
            1
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown payload".into());
            write_error(error, &format!("panicked: {what}"));
            2
        }
    }
}

/// Exports a [`Strategy`] as this library's plugin entry point.
///
/// ```
/// use lt_plugin_abi::{Input, Strategy, Target};
///
/// /// Prunes the first surviving weights of each tensor (an illustration, not a good strategy).
/// struct First;
///
/// impl Strategy for First {
///     const NAME: &'static str = "first";
///     const DESCRIPTION: &'static str = "prunes the lowest-index survivors";
///     fn prune(input: &Input) -> Result<Vec<Vec<u8>>, String> {
///         let Target::PerTensor(counts) = &input.target else { return Err("layer-wise only".into()) };
///         let mut masks: Vec<Vec<u8>> = input.tensors.iter().map(|t| t.mask.to_vec()).collect();
///         for (mask, &k) in masks.iter_mut().zip(counts) {
///             mask.iter_mut().filter(|b| **b == 1).take(k).for_each(|b| *b = 0);
///         }
///         Ok(masks)
///     }
/// }
///
/// lt_plugin_abi::export_strategy!(First);
/// ```
#[macro_export]
macro_rules! export_strategy {
    ($strategy:ty) => {
        unsafe extern "C" fn __lt_prune(request: *const $crate::Request, error: *mut $crate::ErrorBuffer) -> i32 {
            // SAFETY: the host calls this through the ABI with a valid request.
            unsafe { $crate::call::<$strategy>(request, error) }
        }

        static __LT_DESCRIPTOR: $crate::Descriptor = $crate::Descriptor {
            abi_version: $crate::ABI_VERSION,
            name: $crate::RawStr::from_static(<$strategy as $crate::Strategy>::NAME),
            description: $crate::RawStr::from_static(<$strategy as $crate::Strategy>::DESCRIPTION),
            params_schema: $crate::RawStr::from_static(<$strategy as $crate::Strategy>::PARAMS),
            needs_gradients: <$strategy as $crate::Strategy>::NEEDS_GRADIENTS as u32,
            prune: __lt_prune,
        };

        /// The plugin's entry point (ABI version 1).
        #[unsafe(no_mangle)]
        pub extern "C" fn lt_prune_plugin_v1() -> *const $crate::Descriptor {
            &__LT_DESCRIPTOR
        }
    };
}

// SAFETY: a descriptor holds pointers to static, immutable strings and a function pointer.
unsafe impl Sync for Descriptor {}
