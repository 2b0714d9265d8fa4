//! The op boundary: every operation a custom GPU kernel may replace (attention, norms,
//! activations, conv3d). Each op has a CPU reference built from candle ops and dispatches on the
//! device of its inputs, so model code never changes when a kernel is added.
