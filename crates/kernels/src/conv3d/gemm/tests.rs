//! The kernel's loops simulated on the CPU from a planned [`Geometry`], in f32.
//!
//! Each function below mirrors a function of `kernels/conv3d_sm80.cu` / `conv3d_common.cuh`
//! (same name, same index arithmetic, same loop order), so a wrong decomposition — an output
//! tile mapped to the wrong rows, a K index to the wrong (channel, tap), a padding rule, a
//! ring slot reused too early — shows up as a mismatch against the reference convolution or
//! as a failed invariant. (The kernel source itself runs under the CPU emulator in
//! `conv3d/emulated.rs`.)

use candle_core::{DType, Device, Tensor};

use super::*;
use crate::conv3d::test_shapes::{turbo_layers, Layer, Rng};
use crate::conv3d::{conv3d_with, Activation, Conv3dKernel, Conv3dOptions, Fused, InputNorm};

/// `TileOrigin`: the CTA's output box and first output channel.
#[derive(Debug, Clone, Copy)]
struct Origin {
    b: usize,
    t0: usize,
    h0: usize,
    w0: usize,
    n0: usize,
}

/// The first output position and channel of CTA `block`, as `conv3d_sm80.cu`'s `tile_origin`.
fn tile_origin(g: &Geometry, block: usize) -> Origin {
    let n0 = (block % g.n_tiles()) * g.tile_n.width();
    let mut m = block / g.n_tiles();
    let w0 = (m % g.tiles.w) * g.boxed.w;
    m /= g.tiles.w;
    let h0 = (m % g.tiles.h) * g.boxed.h;
    m /= g.tiles.h;
    let t0 = (m % g.tiles.t) * g.boxed.t;
    let b = m / g.tiles.t;
    Origin { b, t0, h0, w0, n0 }
}

/// `box_pos`: row `m` of the box as (t, h, w), w fastest.
fn box_pos(g: &Geometry, m: usize) -> Dims3 {
    Dims3::new(
        m / (g.boxed.w * g.boxed.h),
        (m / g.boxed.w) % g.boxed.h,
        m % g.boxed.w,
    )
}

/// `cadence_conv3d_norm_stats` over its whole grid: the per-position scale of the input norm.
fn norm_stats(g: &Geometry, x: &[f32], kind: NormKind) -> Vec<f32> {
    let p_len = g.input_positions();
    let prm = g.norm_stats_params((g.c_in * p_len, p_len), 0, kind);
    let mut inv = vec![f32::NAN; g.batch * p_len];
    let (gx, gy, _) = g.stats_grid();
    for b in 0..gy as usize {
        for bx in 0..gx as usize {
            for tid in 0..THREADS as usize {
                let p0 = (bx * THREADS as usize + tid) * 8;
                if p0 >= p_len {
                    continue;
                }
                let mut sum = [0f32; 8];
                for c in 0..g.c_in {
                    for (j, s) in sum.iter_mut().enumerate() {
                        let v = if p0 + j < p_len {
                            x[(b * g.c_in + c) * p_len + p0 + j]
                        } else {
                            0.0
                        };
                        *s += v * v;
                    }
                }
                let inv_c = 1.0 / g.c_in as f32;
                for (j, s) in sum.iter().enumerate().take(8.min(p_len - p0)) {
                    inv[b * p_len + p0 + j] = if prm.l2 == 1 {
                        prm.scale / s.sqrt().max(prm.eps)
                    } else {
                        1.0 / (s * inv_c + prm.eps).sqrt()
                    };
                }
            }
        }
    }
    assert!(
        inv.iter().all(|v| !v.is_nan()),
        "a position without statistics"
    );
    inv
}

/// The fused activation, as the kernel applies it.
fn activate(y: f32, act: Activation) -> f32 {
    match act {
        Activation::None => y,
        Activation::Relu => y.max(0.0),
        Activation::Silu => y / (1.0 + (-y).exp()),
    }
}

/// The input norm as the transposition applies it: per-position scales, gamma, activation.
struct SimNorm {
    inv: Vec<f32>,
    gamma: Option<Vec<f32>>,
    act: Activation,
}

/// `cadence_conv3d_channels_last` over its whole grid, for a contiguous NCTHW `x`; checks
/// that every element of the copy is written exactly once.
fn channels_last(g: &Geometry, x: &[f32], norm: Option<&SimNorm>) -> Vec<f32> {
    let p_len = g.input_positions();
    let mut out = vec![f32::NAN; g.channels_last_len()];
    let mut writes = vec![0u8; out.len()];
    let (gx, gy, gz) = g.transpose_grid();
    for b in 0..gz as usize {
        for chunk in 0..gy as usize {
            for bx in 0..gx as usize {
                let p0 = bx * TRANSPOSE_POSITIONS;
                let mut tile = [[f32::NAN; TRANSPOSE_POSITIONS]; CHUNK];
                for tid in 0..THREADS as usize {
                    let (cl, pl) = (tid / 8, (tid % 8) * 8);
                    let c = chunk * CHUNK + cl;
                    for j in 0..8 {
                        let inside = c < g.c_in && p0 + pl + j < p_len;
                        let mut v = if inside {
                            x[(b * g.c_in + c) * p_len + p0 + pl + j]
                        } else {
                            0.0
                        };
                        if let (Some(n), true) = (norm, inside) {
                            let gm = n.gamma.as_ref().map_or(1.0, |gm| gm[c]);
                            v = activate(v * n.inv[b * p_len + p0 + pl + j] * gm, n.act);
                        }
                        tile[cl][pl + j] = v;
                    }
                }
                for tid in 0..THREADS as usize {
                    let (pos, c0) = (tid / 4, (tid % 4) * 8);
                    if p0 + pos < p_len {
                        for j in 0..8 {
                            let at = (b * p_len + p0 + pos) * g.c_pad + chunk * CHUNK + c0 + j;
                            out[at] = tile[c0 + j][pos];
                            writes[at] += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(
        writes.iter().all(|&w| w == 1),
        "channels-last copy not written exactly once"
    );
    out
}

type Rows = Vec<[f32; CHUNK]>;

/// The buffers a CTA reads.
struct Inputs<'a> {
    xt: &'a [f32],
    wg: &'a [f32],
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
}

/// `load_input_box`: the input box of `chunk`, 32 channels per position (4 pieces of 8).
fn load_input_box(g: &Geometry, xt: &[f32], o: Origin, chunk: usize) -> Rows {
    let plane = g.halo.h * g.halo.w;
    let total = g.halo.t * plane * 4;
    let (s, p) = (g.stride, g.padding);
    let t_base = (o.t0 * s.t) as isize - p.t as isize;
    let h_base = (o.h0 * s.h) as isize - p.h as isize;
    let w_base = (o.w0 * s.w) as isize - p.w as isize;
    let (t, h, w) = (g.input.t as isize, g.input.h as isize, g.input.w as isize);
    let mut rows = vec![[f32::NAN; CHUNK]; g.halo_positions()];
    for i in 0..total {
        let (pos, piece) = (i >> 2, i & 3);
        let ht = pos / plane;
        let in_plane = pos - ht * plane;
        let (hh, hw) = (in_plane / g.halo.w, in_plane % g.halo.w);
        let mut ti = t_base + ht as isize;
        let hi = h_base + hh as isize;
        let wi = w_base + hw as isize;
        let mut valid = hi >= 0 && hi < h && wi >= 0 && wi < w;
        if g.replicate_time {
            ti = ti.clamp(0, t - 1);
        } else {
            valid = valid && ti >= 0 && ti < t;
        }
        let at = if valid {
            (((o.b as isize * t + ti) * h + hi) * w + wi) as usize
        } else {
            0
        };
        let src = at * g.c_pad + chunk * CHUNK + piece * 8;
        assert!(
            src.is_multiple_of(8) && src + 8 <= xt.len(),
            "input piece out of bounds"
        );
        for j in 0..8 {
            rows[pos][piece * 8 + j] = if valid { xt[src + j] } else { 0.0 };
        }
    }
    rows
}

/// `load_weight_tile`: rows of output channels `n0..n0 + BN`, zero past `c_out`.
fn load_weight_tile(g: &Geometry, wg: &[f32], n0: usize, chunk: usize, tap: usize) -> Rows {
    let base = (chunk * g.taps() + tap) * g.c_out * CHUNK;
    let mut rows = vec![[f32::NAN; CHUNK]; g.tile_n.width()];
    for i in 0..g.tile_n.width() * 4 {
        let (row, piece) = (i >> 2, i & 3);
        let co = n0 + row;
        let valid = co < g.c_out;
        let src = base + (if valid { co } else { 0 }) * CHUNK + piece * 8;
        assert!(src + 8 <= wg.len(), "weight piece out of bounds");
        for j in 0..8 {
            rows[row][piece * 8 + j] = if valid { wg[src + j] } else { 0.0 };
        }
    }
    rows
}

/// The cp.async rings of one CTA with the bookkeeping that proves the schedule safe: what
/// each slot/stage holds, the commit group of each load, and the step index of the loop.
struct Rings {
    slots: Vec<Option<(usize, usize, Rows)>>, // (chunk, group, data)
    stages: Vec<Option<(usize, usize, Rows)>>, // (step, group, data)
    committed: usize,
}

/// `Loader::issue_next`, issued in loop iteration `iteration` (0 for the prologue, which
/// runs before any barrier): loads are only allowed into slots whose previous contents no
/// step from `iteration` on will read.
#[allow(clippy::too_many_arguments)]
fn issue_next(
    g: &Geometry,
    inp: &Inputs,
    o: Origin,
    loader: &mut (usize, usize, usize),
    rings: &mut Rings,
    iteration: usize,
    prologue: bool,
    load_data: bool,
) {
    let (step, chunk, tap) = *loader;
    if step >= g.steps() {
        return;
    }
    let group = rings.committed;
    let taps = g.taps();
    if tap == 0 {
        let slot = chunk % g.a_buffers;
        if let Some((old, _, _)) = &rings.slots[slot] {
            let last_read = (old + 1) * taps - 1;
            assert!(
                !prologue && last_read < iteration,
                "input box of chunk {chunk} overwrites chunk {old} (read until step \
                 {last_read}) in iteration {iteration}: {g:?}"
            );
        }
        let data = if load_data {
            load_input_box(g, inp.xt, o, chunk)
        } else {
            Vec::new()
        };
        rings.slots[slot] = Some((chunk, group, data));
    }
    let stage = step % B_STAGES;
    if let Some((old, _, _)) = &rings.stages[stage] {
        assert!(
            !prologue && *old < iteration,
            "weight tile of step {step} overwrites step {old} in iteration {iteration}"
        );
    }
    let data = if load_data {
        load_weight_tile(g, inp.wg, o.n0, chunk, tap)
    } else {
        Vec::new()
    };
    rings.stages[stage] = Some((step, group, data));
    *loader = if tap + 1 == taps {
        (step + 1, chunk + 1, 0)
    } else {
        (step + 1, chunk, tap + 1)
    };
}

/// `conv3d_mma` for one CTA: the schedule with its checks, the MMA loop (`compute`), and the
/// epilogue, which writes into `out` and counts writes per element in `writes`.
fn run_cta(
    g: &Geometry,
    inp: &Inputs,
    block: usize,
    out: &mut [f32],
    writes: &mut [u8],
    compute: bool,
) {
    let o = tile_origin(g, block);
    let bn = g.tile_n.width();
    let mut rings = Rings {
        slots: vec![None; g.a_buffers],
        stages: vec![None; B_STAGES],
        committed: 0,
    };
    let mut loader = (0, 0, 0);
    for _ in 0..B_STAGES - 1 {
        issue_next(g, inp, o, &mut loader, &mut rings, 0, true, compute);
        rings.committed += 1;
    }

    // Rows that reach the output: only they are worth computing in the simulation.
    let out_dims = g.output;
    let live: Vec<usize> = (0..BLOCK_M)
        .filter(|&m| {
            let q = box_pos(g, m);
            o.t0 + q.t < out_dims.t && o.h0 + q.h < out_dims.h && o.w0 + q.w < out_dims.w
        })
        .collect();
    let a_row: Vec<usize> = (0..BLOCK_M)
        .map(|m| {
            let q = box_pos(g, m);
            ((q.t * g.stride.t) * g.halo.h + q.h * g.stride.h) * g.halo.w + q.w * g.stride.w
        })
        .collect();
    let mut acc = vec![0f32; BLOCK_M * bn];
    // The kernel keeps the ring slot as a wrapping counter; the chunk is kept here to check it.
    let (mut chunk, mut slot_index, mut dt, mut dh, mut dw) = (0, 0, 0, 0, 0);
    for s in 0..g.steps() {
        // cp.async.wait_group(B_STAGES - 2): groups older than the newest B_STAGES - 2 have
        // landed. Step s's weight tile and its chunk's input box must be among them.
        let landed = rings.committed - (B_STAGES - 2);
        issue_next(g, inp, o, &mut loader, &mut rings, s, false, compute);
        rings.committed += 1;

        assert_eq!(slot_index, chunk % g.a_buffers);
        let (slot_chunk, slot_group, slot) =
            rings.slots[slot_index].as_ref().expect("input box loaded");
        let (stage_step, stage_group, stage) = rings.stages[s % B_STAGES]
            .as_ref()
            .expect("weight tile loaded");
        assert_eq!(*slot_chunk, chunk, "slot holds another chunk at step {s}");
        assert_eq!(*stage_step, s, "stage holds another step at step {s}");
        assert!(
            *slot_group < landed && *stage_group < landed,
            "step {s} reads data that has not landed"
        );
        if compute {
            let tap_offset = (dt * g.halo.h + dh) * g.halo.w + dw;
            for &m in &live {
                let row = &slot[a_row[m] + tap_offset];
                for (n, wrow) in stage.iter().enumerate() {
                    acc[m * bn + n] += row.iter().zip(wrow).map(|(a, b)| a * b).sum::<f32>();
                }
            }
        }
        dw += 1;
        if dw == g.kernel.w {
            dw = 0;
            dh += 1;
            if dh == g.kernel.h {
                dh = 0;
                dt += 1;
                if dt == g.kernel.t {
                    dt = 0;
                    chunk += 1;
                    slot_index = (slot_index + 1) % g.a_buffers;
                }
            }
        }
    }

    // Epilogue: runs of 8 positions along w of one channel.
    let runs = BLOCK_M / 8;
    let vector = g.vector_store(inp.residual.map(|_| 0));
    for i in 0..bn * runs {
        let (n, m0) = (i / runs, (i % runs) * 8);
        let co = o.n0 + n;
        let q = box_pos(g, m0);
        let (t, h, w) = (o.t0 + q.t, o.h0 + q.h, o.w0 + q.w);
        if co >= g.c_out || t >= out_dims.t || h >= out_dims.h || w >= out_dims.w {
            continue;
        }
        let at =
            ((o.b * g.c_out + co) * out_dims.t + t) * out_dims.h * out_dims.w + h * out_dims.w + w;
        let len = if vector {
            assert!(
                at.is_multiple_of(8) && w + 8 <= out_dims.w,
                "misaligned vector store"
            );
            8
        } else {
            8.min(out_dims.w - w)
        };
        for j in 0..len {
            let mut y = acc[(m0 + j) * bn + n] + inp.bias.map_or(0.0, |b| b[co]);
            if let Some(r) = inp.residual {
                y += r[at + j];
            }
            out[at + j] = y;
            writes[at + j] += 1;
        }
    }
}

/// Every CTA of the launch; asserts each output element is written exactly once.
fn simulate(g: &Geometry, inp: &Inputs, compute: bool) -> Vec<f32> {
    let len: usize = g.output_dims().iter().product();
    let mut out = vec![f32::NAN; len];
    let mut writes = vec![0u8; len];
    for block in 0..g.ctas() {
        run_cta(g, inp, block, &mut out, &mut writes, compute);
    }
    if let Some(i) = writes.iter().position(|&w| w != 1) {
        panic!("output element {i} written {} times: {g:?}", writes[i]);
    }
    out
}

/// One random problem around a real layer: odd sizes, strides 1 or 2, zero or `k/2` padding,
/// zero or replicate time padding.
struct Case {
    layer: Layer,
    x_dims: [usize; 5],
    cfg: Conv3dConfig,
    residual: bool,
    /// The input norm (gamma drawn at random when `with_gamma`).
    norm: Option<(NormKind, bool, Activation)>,
}

const ACTS: [Activation; 3] = [Activation::None, Activation::Relu, Activation::Silu];

fn random_case(rng: &mut Rng, layer: &Layer, max_positions: usize) -> Case {
    let k = layer.kernel;
    loop {
        let pad = |rng: &mut Rng, k: usize| if rng.coin() { k / 2 } else { 0 };
        let padding = Dims3::new(pad(rng, k.t), pad(rng, k.h), pad(rng, k.w));
        let s_sp = rng.pick(&[1, 1, 2]);
        let stride = Dims3::new(rng.pick(&[1, 1, 2]), s_sp, s_sp);
        let dims = [
            rng.range(1, 2),
            layer.c_in,
            rng.range(1, 6),
            rng.range(1, 11),
            rng.pick(&[1, 3, 7, 8, 13, 16, 19, 24]),
        ];
        let fits = dims[2] + 2 * padding.t >= k.t
            && dims[3] + 2 * padding.h >= k.h
            && dims[4] + 2 * padding.w >= k.w;
        if !fits {
            continue;
        }
        let cfg = Conv3dConfig {
            stride,
            padding,
            replicate_time: rng.coin(),
        };
        let out = |n: usize, p: usize, k: usize, s: usize| (n + 2 * p - k) / s + 1;
        let positions = dims[0]
            * out(dims[2], padding.t, k.t, stride.t)
            * out(dims[3], padding.h, k.h, stride.h)
            * out(dims[4], padding.w, k.w, stride.w);
        let planned = Geometry::plan(dims, [layer.c_out, layer.c_in, k.t, k.h, k.w], cfg);
        if positions <= max_positions && planned.is_ok() {
            let norm = match rng.range(0, 3) {
                0 => None,
                1 => Some((NormKind::Rms { eps: 1e-8 }, false, rng.pick(&ACTS))),
                2 => Some((NormKind::Rms { eps: 1e-6 }, false, Activation::None)),
                _ => Some((NormKind::L2 { eps: 1e-12 }, true, Activation::Silu)),
            };
            return Case {
                layer: layer.clone(),
                x_dims: dims,
                cfg,
                residual: rng.coin(),
                norm,
            };
        }
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Simulates `case` and compares with the reference convolution (f32 on the CPU).
fn check_against_reference(case: &Case, seed: u64) {
    let dev = Device::Cpu;
    let mut rng = Rng::new(seed);
    let l = &case.layer;
    let x = rng.normal(&case.x_dims, &dev);
    let fan_in = (l.c_in * l.kernel.t * l.kernel.h * l.kernel.w) as f64;
    let w_dims = [l.c_out, l.c_in, l.kernel.t, l.kernel.h, l.kernel.w];
    let w = (rng.normal(&w_dims, &dev) / fan_in.sqrt()).unwrap();
    let bias = rng.normal(&[l.c_out], &dev);
    let g = Geometry::plan(
        case.x_dims,
        [l.c_out, l.c_in, l.kernel.t, l.kernel.h, l.kernel.w],
        case.cfg,
    )
    .unwrap();
    let residual = case.residual.then(|| rng.normal(&g.output_dims(), &dev));
    let norm = case.norm.map(|(kind, with_gamma, act)| InputNorm {
        kind,
        gamma: with_gamma.then(|| rng.normal(&[l.c_in], &dev)),
        act,
    });
    let want = conv3d_with(
        &Conv3dOptions {
            kernel: Some(Conv3dKernel::Reference),
        },
        &x,
        &w,
        Some(&bias),
        case.cfg,
        Fused {
            input_norm: norm.as_ref(),
            residual: residual.as_ref(),
        },
    )
    .unwrap();
    assert_eq!(want.dims(), g.output_dims());

    let xv = values(&x);
    let sim_norm = norm.as_ref().map(|n| SimNorm {
        inv: norm_stats(&g, &xv, n.kind),
        gamma: n.gamma.as_ref().map(values),
        act: n.act,
    });
    let xt = channels_last(&g, &xv, sim_norm.as_ref());
    let wg = values(&gemm_weights(&w, g.c_pad).unwrap());
    let (bias_v, res_v) = (values(&bias), residual.as_ref().map(values));
    let inp = Inputs {
        xt: &xt,
        wg: &wg,
        bias: Some(&bias_v),
        residual: res_v.as_deref(),
    };
    let got = simulate(&g, &inp, true);
    let want = values(&want);
    let (mut num, mut den, mut max) = (0f64, 0f64, 0f32);
    for (a, b) in got.iter().zip(&want) {
        let d = a - b;
        num += f64::from(d * d);
        den += f64::from(b * b);
        max = max.max(d.abs());
    }
    let rel = (num / den.max(1e-30)).sqrt();
    println!(
        "simulated {} {:?} {:?} norm {:?} box {:?} tile {} ring {}: rel_l2 {rel:.1e} max_abs \
         {max:.1e}",
        l.name,
        case.x_dims,
        case.cfg,
        case.norm,
        g.boxed,
        g.tile_n.width(),
        g.a_buffers
    );
    assert!(
        rel < 1e-5 && max < 1e-4,
        "{} {:?}: rel_l2 {rel} max {max}",
        l.name,
        case.cfg
    );
}

#[test]
fn the_decomposition_computes_the_reference_convolution_on_real_layers() {
    let layers = turbo_layers();
    let mut rng = Rng::new(11);
    // Every distinct (c_out, c_in, kernel) of the real decoder, once each, with random sizes.
    let mut seen = Vec::new();
    for layer in &layers {
        let key = (layer.c_out, layer.c_in, layer.kernel);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        // Bound the work of the 512-channel layers (the simulation is scalar).
        let max_positions = (6_000_000 / (layer.c_in * layer.c_out / 64).max(1)).clamp(8, 400);
        let case = random_case(&mut rng, layer, max_positions);
        check_against_reference(&case, seen.len() as u64);
    }
    assert!(
        seen.len() >= 10,
        "expected the decoder's ~15 distinct convs"
    );
}

#[test]
fn the_decomposition_handles_padding_and_stride_edge_cases() {
    let layer = |c_out, c_in, k: Dims3| Layer {
        name: format!("synthetic {c_out}x{c_in} {k:?}"),
        c_out,
        c_in,
        kernel: k,
    };
    let cube = Dims3::all(3);
    let cases = [
        // Replicate time padding on a single frame: every tap reads frame 0.
        (
            layer(24, 12, cube),
            [1, 12, 1, 5, 9],
            Conv3dConfig::replicate_time(Dims3::all(1)),
        ),
        // A box wider than the output (w = 3) and several batch items.
        (
            layer(8, 40, cube),
            [3, 40, 2, 4, 3],
            Conv3dConfig::padded(Dims3::all(1)),
        ),
        // Spatial stride 2 under a 3x3x3 kernel, no padding, odd sizes.
        (
            layer(70, 33, cube),
            [1, 33, 7, 9, 11],
            Conv3dConfig {
                stride: Dims3::new(1, 2, 2),
                ..Conv3dConfig::default()
            },
        ),
        // Wan's spatial downsampler: (1,3,3), stride 2 in space.
        (
            layer(20, 20, Dims3::new(1, 3, 3)),
            [1, 20, 2, 9, 17],
            Conv3dConfig {
                stride: Dims3::new(1, 2, 2),
                ..Conv3dConfig::default()
            },
        ),
        // Temporal stride-2 (3,1,1) conv (Wan's downsampler) on 16-wide rows: vector stores.
        (
            layer(16, 16, Dims3::new(3, 1, 1)),
            [1, 16, 5, 3, 16],
            Conv3dConfig {
                stride: Dims3::new(2, 1, 1),
                ..Conv3dConfig::default()
            },
        ),
        // 1x1x1 with 5 chunks: the input-box ring (4 slots) wraps.
        (
            layer(12, 160, Dims3::all(1)),
            [1, 160, 2, 3, 16],
            Conv3dConfig::default(),
        ),
        // Padding larger than half the kernel.
        (
            layer(9, 5, Dims3::new(1, 3, 3)),
            [1, 5, 2, 2, 2],
            Conv3dConfig::padded(Dims3::new(0, 2, 2)),
        ),
    ];
    for (i, (l, dims, cfg)) in cases.into_iter().enumerate() {
        for residual in [false, true] {
            let case = Case {
                layer: l.clone(),
                x_dims: dims,
                cfg,
                residual,
                // Turbo's norm -> SiLU with a residual, Wan's L2 norm with gamma without.
                norm: Some(if residual {
                    (NormKind::Rms { eps: 1e-8 }, false, Activation::Silu)
                } else {
                    (NormKind::L2 { eps: 1e-12 }, true, Activation::Silu)
                }),
            };
            check_against_reference(&case, 100 + i as u64);
            check_against_reference(&Case { norm: None, ..case }, 200 + i as u64);
        }
    }
}

#[test]
fn every_output_element_is_written_exactly_once() {
    let layers = turbo_layers();
    let mut rng = Rng::new(5);
    let empty = Inputs {
        xt: &[],
        wg: &[],
        bias: None,
        residual: None,
    };
    for _ in 0..300 {
        let mut layer = rng.pick(&layers.iter().collect::<Vec<_>>()).clone();
        layer.c_out = rng.range(1, 300);
        layer.c_in = rng.range(1, 100);
        let case = random_case(&mut rng, &layer, usize::MAX);
        let g = Geometry::plan(
            case.x_dims,
            [
                layer.c_out,
                layer.c_in,
                layer.kernel.t,
                layer.kernel.h,
                layer.kernel.w,
            ],
            case.cfg,
        )
        .unwrap();
        simulate(&g, &empty, false);
    }
}

#[test]
fn the_schedule_never_overwrites_data_in_use() {
    // Schedules only (no data): every kernel extent up to 3x3x3 and 1 to 7 chunks.
    let empty = Inputs {
        xt: &[],
        wg: &[],
        bias: None,
        residual: None,
    };
    for (kt, kh, kw) in [
        (1, 1, 1),
        (2, 1, 1),
        (3, 1, 1),
        (1, 3, 3),
        (3, 3, 3),
        (2, 2, 2),
    ] {
        for c_in in [1, 32, 33, 64, 96, 160, 224] {
            let g = Geometry::plan(
                [1, c_in, 3, 4, 8],
                [16, c_in, kt, kh, kw],
                Conv3dConfig::padded(Dims3::new(kt / 2, kh / 2, kw / 2)),
            )
            .unwrap();
            simulate(&g, &empty, false);
        }
    }
}

#[test]
fn ring_depth_is_the_smallest_safe_depth() {
    for taps in 1..=64 {
        let d = ring_depth(taps);
        assert!(
            d >= 2 && (d - 1) * taps >= B_STAGES - 1,
            "taps {taps}: depth {d}"
        );
        assert!(
            d == 2 || (d - 2) * taps < B_STAGES - 1,
            "taps {taps}: depth {d} not minimal"
        );
    }
    assert_eq!(ring_depth(27), 2);
    assert_eq!(ring_depth(1), 4);
}

/// The Turbo-VAED activations of a 1080p window (9 latent frames of 68 x 120, then x2 in
/// time and space per upsampler): every real layer plans at every one of these sizes, and the
/// box choice wastes little.
#[test]
fn every_real_layer_plans_at_1080p() {
    let sizes = [(9, 68, 120), (18, 136, 240), (36, 272, 480), (36, 544, 960)];
    for layer in turbo_layers() {
        for (t, h, w) in sizes {
            let k = layer.kernel;
            let cfg = Conv3dConfig::replicate_time(Dims3::new(k.t / 2, k.h / 2, k.w / 2));
            let g = Geometry::plan(
                [1, layer.c_in, t, h, w],
                [layer.c_out, layer.c_in, k.t, k.h, k.w],
                cfg,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", layer.name));
            assert_eq!(g.output, Dims3::new(t, h, w));
            let computed = (g.boxes() * BLOCK_M) as f64;
            let useful = (t * h * w) as f64;
            assert!(
                computed / useful < 1.13,
                "{} at {t}x{h}x{w}: box {:?} computes {:.3}x the outputs",
                layer.name,
                g.boxed,
                computed / useful
            );
            assert!(g.tile_n.smem_bytes() <= MAX_SMEM_BYTES);
        }
    }
}

#[test]
fn tile_width_pads_the_output_channels_least() {
    assert_eq!(TileN::for_channels(512), TileN::N128);
    assert_eq!(TileN::for_channels(64), TileN::N64);
    assert_eq!(TileN::for_channels(12), TileN::N32);
    assert_eq!(TileN::for_channels(48), TileN::N64);
    assert_eq!(TileN::for_channels(96), TileN::N32);
    assert_eq!(TileN::for_channels(200), TileN::N128);
    assert_eq!(TileN::for_channels(1024), TileN::N128);
}

#[test]
fn shapes_the_kernel_cannot_hold_are_refused_with_a_reason() {
    let err = Geometry::plan(
        [1, 8, 20, 40, 40],
        [8, 8, 3, 3, 3],
        Conv3dConfig {
            stride: Dims3::all(2),
            ..Conv3dConfig::default()
        },
    )
    .unwrap_err();
    assert!(err.contains("input box"), "{err}");
}

#[test]
fn params_bytes_follow_the_c_layout() {
    let g = Geometry::plan(
        [1, 48, 3, 8, 8],
        [512, 48, 3, 3, 3],
        Conv3dConfig::replicate_time(Dims3::all(1)),
    )
    .unwrap();
    let mut p = g.params(true);
    p.x = 0x1111;
    p.out = 0x5555;
    let b = p.to_bytes();
    assert_eq!(b.len(), std::mem::size_of::<Params>());
    assert_eq!(&b[0..8], &0x1111u64.to_le_bytes());
    assert_eq!(&b[32..40], &0x5555u64.to_le_bytes());
    let at = |o: usize| i32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    assert_eq!(at(std::mem::offset_of!(Params, c_pad)), 64);
    assert_eq!(at(std::mem::offset_of!(Params, c_out)), 512);
    assert_eq!(at(std::mem::offset_of!(Params, replicate_t)), 1);
    assert_eq!(at(std::mem::offset_of!(Params, vector_store)), 1);
    assert_eq!(at(std::mem::offset_of!(Params, n_tiles)), 4);
    let t = g.transpose_params((48 * 192, 192), 0, 2);
    let tb = t.to_bytes();
    assert_eq!(tb.len(), std::mem::size_of::<ChannelsLastParams>());
    assert_eq!(t.vector_loads, 1);
    let at_t = |o: usize| i32::from_le_bytes(tb[o..o + 4].try_into().unwrap());
    assert_eq!(at_t(std::mem::offset_of!(ChannelsLastParams, act)), 2);
    assert_eq!(at_t(std::mem::offset_of!(ChannelsLastParams, c_pad)), 64);
    assert_eq!(g.transpose_params((48 * 192, 192), 4, 0).vector_loads, 0);
    let n = g.norm_stats_params((48 * 192, 192), 0, NormKind::L2 { eps: 1e-12 });
    let nb = n.to_bytes();
    assert_eq!(nb.len(), std::mem::size_of::<NormStatsParams>());
    let at_f = |o: usize| f32::from_le_bytes(nb[o..o + 4].try_into().unwrap());
    assert_eq!(
        at_f(std::mem::offset_of!(NormStatsParams, scale)),
        48f32.sqrt()
    );
    assert_eq!(at_f(std::mem::offset_of!(NormStatsParams, eps)), 1e-12);
}

#[test]
fn weights_are_reordered_chunk_tap_channel() {
    let dev = Device::Cpu;
    let w = Tensor::arange(0f32, (3 * 40 * 3) as f32, &dev)
        .unwrap()
        .reshape((3, 40, 3, 1, 1))
        .unwrap();
    let g = gemm_weights(&w, 64).unwrap();
    assert_eq!(g.dims(), [2, 3, 3, 32]);
    assert_eq!(g.dtype(), DType::F32);
    let v = values(&g);
    // [chunk][tap][co][c]: weight[co, chunk*32 + c, tap] or 0 past c_in = 40.
    for chunk in 0..2 {
        for tap in 0..3 {
            for co in 0..3 {
                for c in 0..32 {
                    let ci = chunk * 32 + c;
                    let want = if ci < 40 {
                        ((co * 40 + ci) * 3 + tap) as f32
                    } else {
                        0.0
                    };
                    assert_eq!(v[((chunk * 3 + tap) * 3 + co) * 32 + c], want);
                }
            }
        }
    }
}
