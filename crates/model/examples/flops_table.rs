//! Prints the DiT's operation counts per forward pass at the published resolutions, and the
//! compute floor of each pipeline on a GPU of a given dense bf16 rate.
//!
//! `cargo run --release -p cadence-model --example flops_table -- [TFLOP/s] [text tokens]`

use cadence_model::flops::forward_flops;
use cadence_model::packing::local_attention_mask;
use cadence_model::packing::TokenLayout;
use cadence_model::DitConfig;

fn main() {
    let mut args = std::env::args().skip(1);
    let rate: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(800.0);
    let text: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let seconds = 5;
    let audio = 25 * seconds + 1;
    let frames = (audio - 1) / 4 + 1;
    let layout = |w: usize, h: usize| TokenLayout {
        latent_channels: 48,
        frames,
        rows: h / 32,
        cols: w / 32,
        patch: 2,
        audio,
        text,
    };
    println!("{seconds} s clip: {audio} audio latents, {frames} latent frames, {text} text tokens; floor at {rate} TFLOP/s dense bf16\n");
    println!("| size | model | tokens | GEMM TFLOP | attention TFLOP | total TFLOP / forward | floor ms / forward |");
    println!("|---|---|---|---|---|---|---|");
    let mut per_forward = Vec::new();
    for (name, w, h, config) in [
        ("256p (448x256)", 448, 256, DitConfig::base()),
        ("540p (896x512)", 896, 512, DitConfig::base()),
        ("1080p (1920x1088)", 1920, 1088, DitConfig::base()),
        ("1080p (1920x1088)", 1920, 1088, DitConfig::sr_1080p()),
    ] {
        let l = layout(w, h);
        let mask = local_attention_mask(&l, 11);
        let f = forward_flops(&config, &l, Some(&mask));
        let model = if config.local_attn_layers.is_empty() {
            "global"
        } else {
            "SR-1080p local"
        };
        let t = f.total() as f64 / 1e12;
        println!(
            "| {name} | {model} | {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            l.len(),
            f.gemm as f64 / 1e12,
            f.attention as f64 / 1e12,
            t,
            t / rate * 1e3
        );
        per_forward.push(t);
    }
    let floor = |tflop: f64| tflop / rate;
    println!("\n| pipeline | DiT forwards | DiT floor (s) |");
    println!("|---|---|---|");
    println!(
        "| 256p distilled (8 steps) | 8 x 256p | {:.2} |",
        floor(8.0 * per_forward[0])
    );
    println!(
        "| 256p base (32 steps, CFG) | 64 x 256p | {:.2} |",
        floor(64.0 * per_forward[0])
    );
    println!(
        "| 540p = 256p distilled + SR 5 steps | 8 x 256p + 5 x 540p | {:.2} |",
        floor(8.0 * per_forward[0] + 5.0 * per_forward[1])
    );
    println!(
        "| 1080p = 256p distilled + SR 5 steps (local attn) | 8 x 256p + 5 x 1080p-local | {:.2} |",
        floor(8.0 * per_forward[0] + 5.0 * per_forward[3])
    );
    println!(
        "| 1080p = 256p base + SR 5 steps (local attn) | 64 x 256p + 5 x 1080p-local | {:.2} |",
        floor(64.0 * per_forward[0] + 5.0 * per_forward[3])
    );
}
