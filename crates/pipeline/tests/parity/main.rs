//! Parity of the pipeline crate against the golden fixtures (`text_sched`): every case of kind
//! `unipc_schedule`, `zero_snr_sigmas` and `sampling_loop` under the fixture root is discovered
//! by scanning and checked tensor by tensor with the tolerances its case.json states.

mod common;
mod sampling;
mod stub;
mod unipc;
mod zero_snr;
