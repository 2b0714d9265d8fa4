//! The parity suite on the CPU: every fixture kind through its checker, the checkers on subsets
//! of cases, and the real checkpoint layouts against the fixtures' full-size manifests. One
//! test binary, so the whole stack links once.

mod codec_loaders;
mod codec_subsets;
mod codecs;
mod dit;
mod dit_checkpoint_layout;
mod dit_fp8;
mod fixture_kinds;
mod fp8_bounds;
mod fp8_real_size;
mod media;
mod sampling;
mod text;
mod text_prompt_api;
