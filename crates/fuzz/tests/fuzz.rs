//! The bounded fuzz run: every target for its case count (`CADENCE_FUZZ_CASES` overrides),
//! printing the inputs tried per target. See the crate docs for what a case must satisfy.

use cadence_fuzz::alloc::{measure, CountingAlloc};
use cadence_fuzz::harness;
use cadence_fuzz::targets::{self, named};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn fuzz(name: &str) {
    let target = named(name);
    let cases = harness::cases(&target);
    // Every seed must be accepted, or the mutations start from nothing the parser reads.
    for i in 0..target.seeds.len() {
        let seed = harness::input(&target, i, &[]);
        if let Err(e) = (target.parse)(&seed) {
            panic!("{name}: seed {i} is refused: {e}");
        }
    }
    let stats = harness::run(target).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "fuzz {name}: {} inputs tried ({cases} cases), {} accepted, none panicked, hung or \
         over its memory bound; peak {:.1} MiB, slowest {:?}",
        stats.inputs,
        stats.accepted,
        stats.max_peak as f64 / (1 << 20) as f64,
        stats.slowest
    );
    assert!(
        stats.inputs >= u64::from(cases),
        "{name}: ran {} of {cases}",
        stats.inputs
    );
}

#[test]
fn the_allocator_measures_this_thread() {
    let (v, peak) = measure(|| vec![1u8; 3 << 20]);
    assert!(peak >= 3 << 20, "peak {peak}");
    drop(v);
    let (_, peak) = measure(|| ());
    assert_eq!(peak, 0);
}

#[test]
fn every_target_is_run_here() {
    let here = include_str!("fuzz.rs");
    for t in targets::all() {
        assert!(
            here.contains(&format!("fuzz(\"{}\")", t.name)),
            "target {} has no test",
            t.name
        );
    }
}

#[test]
fn safetensors() {
    fuzz("safetensors");
}

#[test]
fn safetensors_index() {
    fuzz("safetensors_index");
}

#[test]
fn pickle() {
    fuzz("pickle");
}

#[test]
fn torch_zip() {
    fuzz("torch_zip");
}

#[test]
fn torch_zip_pickle() {
    fuzz("torch_zip_pickle");
}

#[test]
fn dit_config() {
    fuzz("dit_config");
}

#[test]
fn text_config() {
    fuzz("text_config");
}

#[test]
fn turbo_config() {
    fuzz("turbo_config");
}

#[test]
fn oobleck_config() {
    fuzz("oobleck_config");
}

#[test]
fn wan_config() {
    fuzz("wan_config");
}

#[test]
fn weights_toml() {
    fuzz("weights_toml");
}

#[test]
fn image() {
    fuzz("image");
}

#[test]
fn wav() {
    fuzz("wav");
}

#[test]
fn flac_mp3_m4a() {
    fuzz("flac_mp3_m4a");
}
