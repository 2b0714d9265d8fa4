//! Recording of a forward pass's intermediate tensors, for parity checks and debugging.
//!
//! Model code calls [`record`] at each named point of its forward pass; a caller that wants
//! those tensors runs the pass inside [`capture`]. The recorder lives in a thread-local
//! installed by `capture`, so forwards take no trace parameter and, with none installed, a
//! record point costs one thread-local check. Recording keeps references to tensors the
//! forward computes anyway.
//!
//! A capture can also force named tensors ([`capture_forcing`]): at a [`forced`] point the
//! forward continues from the given tensor instead of its own, so a parity check can feed every
//! layer the reference's input (teacher forcing) in one ordinary forward pass.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use candle_core::{Result, Tensor};

/// What [`capture`] collected, by name.
pub type Recorded = BTreeMap<String, Tensor>;

struct Recorder {
    detail_layers: BTreeSet<usize>,
    forced: Recorded,
    tensors: Recorded,
}

thread_local! {
    static ACTIVE: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Runs `f` with a recorder installed on this thread and returns its result with every tensor
/// recorded meanwhile. `detail_layers` are the layers whose costlier per-head details are
/// wanted (see [`wants_detail`]). A capture inside another keeps the outer one's tensors apart
/// and restores it afterwards, also when `f` panics.
pub fn capture<T>(
    detail_layers: impl IntoIterator<Item = usize>,
    f: impl FnOnce() -> T,
) -> (T, Recorded) {
    capture_forcing(detail_layers, Recorded::new(), f)
}

/// [`capture`], with the tensors of `forced` replacing the forward's own at the [`forced`]
/// points of the same names.
pub fn capture_forcing<T>(
    detail_layers: impl IntoIterator<Item = usize>,
    forced: Recorded,
    f: impl FnOnce() -> T,
) -> (T, Recorded) {
    /// Puts back the outer recorder when the capture ends, however it ends.
    struct Restore(Option<Recorder>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            ACTIVE.with(|a| *a.borrow_mut() = outer);
        }
    }
    let recorder = Recorder {
        detail_layers: detail_layers.into_iter().collect(),
        forced,
        tensors: Recorded::new(),
    };
    let restore = Restore(ACTIVE.with(|a| a.borrow_mut().replace(recorder)));
    let out = f();
    let recorded = ACTIVE.with(|a| a.borrow_mut().take()).map(|r| r.tensors);
    drop(restore);
    (out, recorded.unwrap_or_default())
}

/// Whether a capture is running on this thread.
pub fn active() -> bool {
    ACTIVE.with(|a| a.borrow().is_some())
}

/// Whether the running capture wants the per-head details of layer `layer`.
pub fn wants_detail(layer: usize) -> bool {
    ACTIVE.with(|a| {
        a.borrow()
            .as_ref()
            .is_some_and(|r| r.detail_layers.contains(&layer))
    })
}

/// Records `t` under the name `name` builds, when a capture is running; `name` is only called
/// then.
pub fn record(name: impl FnOnce() -> String, t: &Tensor) {
    ACTIVE.with(|a| {
        if let Some(r) = a.borrow_mut().as_mut() {
            r.tensors.insert(name(), t.clone());
        }
    });
}

/// The tensor the forward continues from at the point `name` builds: the running capture's
/// forced tensor of that name, in `t`'s dtype and on its device, else `t` itself. `name` is only
/// called inside a capture.
pub fn forced(name: impl FnOnce() -> String, t: &Tensor) -> Result<Tensor> {
    let replacement = ACTIVE.with(|a| {
        a.borrow()
            .as_ref()
            .filter(|r| !r.forced.is_empty())
            .and_then(|r| r.forced.get(&name()).cloned())
    });
    match replacement {
        Some(r) => r.to_device(t.device())?.to_dtype(t.dtype()),
        None => Ok(t.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn scalar(v: f32) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn records_only_inside_a_capture() {
        record(
            || unreachable!("no capture: the name is not built"),
            &scalar(0.0),
        );
        assert!(!active());
        let ((), got) = capture([2], || {
            assert!(active());
            assert!(wants_detail(2) && !wants_detail(1));
            record(|| "a".into(), &scalar(1.0));
        });
        assert_eq!(got.keys().collect::<Vec<_>>(), ["a"]);
        assert!(!active() && !wants_detail(2));
    }

    #[test]
    fn a_nested_capture_keeps_its_tensors_apart_and_restores_the_outer() {
        let (inner, outer) = capture([], || {
            record(|| "outer.before".into(), &scalar(1.0));
            let ((), inner) = capture([], || record(|| "inner".into(), &scalar(2.0)));
            record(|| "outer.after".into(), &scalar(3.0));
            inner
        });
        assert_eq!(inner.keys().collect::<Vec<_>>(), ["inner"]);
        assert_eq!(
            outer.keys().collect::<Vec<_>>(),
            ["outer.after", "outer.before"]
        );
    }

    #[test]
    fn a_forced_point_continues_from_the_given_tensor_only_inside_its_capture() {
        let x = scalar(1.0);
        let run = || {
            forced(|| "in".into(), &x)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(run(), 1.0);
        let forced_in = Recorded::from([("in".to_string(), scalar(5.0))]);
        let (inside, _) = capture_forcing([], forced_in, run);
        assert_eq!(inside, 5.0);
        let (unnamed, _) = capture([], || forced(|| "other".into(), &x).unwrap());
        assert_eq!(unnamed.to_scalar::<f32>().unwrap(), 1.0);
        assert_eq!(run(), 1.0);
    }

    #[test]
    fn a_panic_inside_a_capture_uninstalls_it() {
        let caught = std::panic::catch_unwind(|| capture([], || panic!("inside")));
        assert!(caught.is_err());
        assert!(!active());
    }
}
