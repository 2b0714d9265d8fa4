//! The real kernel source, run on the CPU.
//!
//! `kernels/emulate/conv3d_emulator.cpp` compiles `kernels/conv3d_layout.cu` and
//! `kernels/conv3d_sm80.cu` as host C++ against
//! `kernels/emulate/cuda_emulation.h` (threads as fibers; ldmatrix, mma.sync and cp.async
//! emulated from their PTX definitions; shared memory poisoned; every access checked). These
//! tests build it with the host C++ compiler (`$CXX`, else `c++`), then run the transposition
//! and the convolution exactly as `cuda.rs` launches them — same [`Geometry`], same
//! parameter structs, same weight reordering, same grids — on bf16 problems around the real
//! Turbo-VAED layers, and compare with the reference convolution computed in f32 from the same
//! bf16 inputs. Every problem runs with cp.async copies completing early or late and with the
//! threads scheduled forwards or backwards (see the emulator's header), so a missing wait or
//! barrier changes the result.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use half::bf16;

use super::gemm::{gemm_weights, Geometry};
use super::test_shapes::{turbo_layers, Rng};
use super::{
    conv3d_with, normalize_input, Activation, Conv3dConfig, Conv3dKernel, Conv3dOptions, Dims3,
    Fused, InputNorm, NormKind,
};

/// The emulator binary, compiled once per source version into the system's temp folder.
fn emulator() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let kernels = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernels");
        let sources = [
            "conv3d_layout.cu",
            "conv3d_sm80.cu",
            "conv3d_common.cuh",
            "emulate/cuda_emulation.h",
            "emulate/conv3d_emulator.cpp",
        ];
        // FNV-1a over the sources: a changed kernel gets a fresh binary.
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for s in sources {
            let text = std::fs::read(kernels.join(s)).unwrap();
            for b in text {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        let bin = std::env::temp_dir().join(format!("cadence-conv3d-emulator-{hash:016x}"));
        if !bin.exists() {
            let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
            let tmp = bin.with_extension(format!("tmp{}", std::process::id()));
            let out = Command::new(&cxx)
                .args(["-std=c++17", "-O2", "-Wall", "-Wno-unknown-pragmas", "-I"])
                .arg(&kernels)
                .arg("-o")
                .arg(&tmp)
                .arg(kernels.join("emulate/conv3d_emulator.cpp"))
                .output()
                .unwrap_or_else(|e| panic!("cannot run the C++ compiler {cxx:?}: {e}"));
            assert!(
                out.status.success(),
                "compiling the emulator failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::rename(&tmp, &bin).unwrap();
        }
        bin
    })
}

/// When cp.async copies land, in which order threads run, and whether warps advance in
/// lockstep or one runs ahead to its next barrier (the emulator's flags).
#[derive(Debug, Clone, Copy)]
struct Policy {
    lazy_copies: bool,
    reverse_order: bool,
    warp_greedy: bool,
}

impl Policy {
    fn flags(self) -> u32 {
        u32::from(self.lazy_copies)
            | (u32::from(self.reverse_order) << 1)
            | (u32::from(self.warp_greedy) << 2)
    }
}

/// Every combination of the three.
const POLICIES: [Policy; 8] = {
    let mut p = [Policy {
        lazy_copies: false,
        reverse_order: false,
        warp_greedy: false,
    }; 8];
    let mut i = 0;
    while i < 8 {
        p[i] = Policy {
            lazy_copies: i & 1 != 0,
            reverse_order: i & 2 != 0,
            warp_greedy: i & 4 != 0,
        };
        i += 1;
    }
    p
};

fn bits(t: &Tensor) -> Vec<u16> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<bf16>()
        .unwrap()
        .into_iter()
        .map(bf16::to_bits)
        .collect()
}

fn push_u16s(req: &mut Vec<u8>, v: &[u16]) {
    req.extend_from_slice(&(v.len() as u64).to_le_bytes());
    for x in v {
        req.extend_from_slice(&x.to_le_bytes());
    }
}

/// One problem: a bf16 input view (`storage` narrowed along time at `t_offset`, so its batch
/// and channel strides differ from a dense tensor's when `t_offset` or the storage's extra
/// frames are non-zero), weights, bias and an optional residual view (`storage` narrowed
/// along the batch at `b_offset`).
struct Problem {
    name: String,
    x_storage: Tensor,
    x: Tensor,
    t_offset: usize,
    weight: Tensor,
    bias: Tensor,
    residual_storage: Option<Tensor>,
    residual: Option<Tensor>,
    b_offset: usize,
    norm: Option<InputNorm>,
    cfg: Conv3dConfig,
}

impl Problem {
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: String,
        dims: [usize; 5],
        extra_frames: usize,
        c_out: usize,
        k: Dims3,
        cfg: Conv3dConfig,
        residual: bool,
        seed: u64,
    ) -> Self {
        let dev = Device::Cpu;
        let mut rng = Rng::new(seed);
        let [b, c, t, h, w] = dims;
        let bf = |t: Tensor| t.to_dtype(DType::BF16).unwrap();
        let x_storage = bf(rng.normal(&[b, c, t + extra_frames, h, w], &dev));
        let t_offset = extra_frames / 2;
        let x = x_storage.narrow(2, t_offset, t).unwrap();
        let fan_in = (c * k.t * k.h * k.w) as f64;
        let weight = bf((rng.normal(&[c_out, c, k.t, k.h, k.w], &dev) / fan_in.sqrt()).unwrap());
        let bias = bf(rng.normal(&[c_out], &dev));
        let g = Geometry::plan(dims, [c_out, c, k.t, k.h, k.w], cfg).unwrap();
        let out = g.output_dims();
        let (residual_storage, residual, b_offset) = if residual {
            let mut big = out;
            big[0] += 1;
            let s = bf(rng.normal(&big, &dev));
            let r = s.narrow(0, 1, out[0]).unwrap();
            (Some(s), Some(r), 1)
        } else {
            (None, None, 0)
        };
        Self {
            name,
            x_storage,
            x,
            t_offset,
            weight,
            bias,
            residual_storage,
            residual,
            b_offset,
            norm: None,
            cfg,
        }
    }

    /// The same problem with an input norm (gamma drawn from `seed` when `with_gamma`).
    fn with_norm(mut self, kind: NormKind, with_gamma: bool, act: Activation, seed: u64) -> Self {
        let c = self.x.dim(1).unwrap();
        let gamma = with_gamma.then(|| Rng::new(seed).normal(&[c], &Device::Cpu));
        self.name = format!("{} + {kind:?} {act:?}", self.name);
        self.norm = Some(InputNorm { kind, gamma, act });
        self
    }

    /// The emulator's request, built as `cuda.rs` builds its launch.
    fn request(&self, policy: Policy) -> (Geometry, Vec<u8>) {
        let x_dims: [usize; 5] = self.x.dims().try_into().unwrap();
        let w_dims: [usize; 5] = self.weight.dims().try_into().unwrap();
        let g = Geometry::plan(x_dims, w_dims, self.cfg).unwrap();
        let [_, c, t_full, h, w] = self.x_storage.dims().try_into().unwrap();
        let strides = (c * t_full * h * w, t_full * h * w);
        let x_offset = self.t_offset * h * w;
        let res_offset = self
            .residual
            .as_ref()
            .map(|_| self.b_offset * g.output_dims()[1..].iter().product::<usize>());
        let act = self.norm.as_ref().map_or(0, |n| n.act.code());
        let transpose = g.transpose_params(strides, x_offset, act);
        let stats = g.norm_stats_params(
            strides,
            x_offset,
            self.norm
                .as_ref()
                .map_or(NormKind::Rms { eps: 0.0 }, |n| n.kind),
        );
        let params = g.params(g.vector_store(res_offset));
        let grids = [g.stats_grid(), g.transpose_grid(), (g.ctas() as u32, 1, 1)];

        let mut req = b"C3DEMU02".to_vec();
        let mut u32s = |v: &[u32]| {
            for x in v {
                req.extend_from_slice(&x.to_le_bytes());
            }
        };
        u32s(&[
            g.tile_n.width() as u32,
            policy.flags(),
            u32::from(self.norm.is_some()),
        ]);
        for (x, y, z) in grids {
            u32s(&[x, y, z]);
        }
        u32s(&[g.tile_n.smem_bytes() as u32]);
        req.extend_from_slice(&stats.to_bytes());
        req.extend_from_slice(&transpose.to_bytes());
        req.extend_from_slice(&params.to_bytes());
        push_u16s(&mut req, &bits(&self.x_storage));
        req.extend_from_slice(&(x_offset as u64).to_le_bytes());
        req.extend_from_slice(&(g.channels_last_len() as u64).to_le_bytes());
        push_u16s(
            &mut req,
            &bits(&gemm_weights(&self.weight, g.c_pad).unwrap()),
        );
        let bias: Vec<f32> = self.bias.to_dtype(DType::F32).unwrap().to_vec1().unwrap();
        let gamma: Vec<f32> = match self.norm.as_ref().and_then(|n| n.gamma.as_ref()) {
            Some(g) => g.to_dtype(DType::F32).unwrap().to_vec1().unwrap(),
            None => Vec::new(),
        };
        for v in [bias, gamma] {
            req.extend_from_slice(&(v.len() as u64).to_le_bytes());
            for b in v {
                req.extend_from_slice(&b.to_le_bytes());
            }
        }
        match &self.residual_storage {
            Some(s) => push_u16s(&mut req, &bits(s)),
            None => push_u16s(&mut req, &[]),
        }
        req.extend_from_slice(&(res_offset.unwrap_or(0) as u64).to_le_bytes());
        let out_len: usize = g.output_dims().iter().product();
        req.extend_from_slice(&(out_len as u64).to_le_bytes());
        (g, req)
    }

    /// Runs the emulated kernels and checks the result against the f32 reference on the same
    /// bf16 values: each element within one bf16 rounding plus f32 summation-order noise.
    fn check(&self, policy: Policy) {
        let (g, req) = self.request(policy);
        let dir = std::env::temp_dir();
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let run_id = RUNS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("cadence-conv3d-{}-{run_id}", std::process::id());
        let (req_path, out_path) = (
            dir.join(format!("{tag}.req")),
            dir.join(format!("{tag}.out")),
        );
        std::fs::write(&req_path, &req).unwrap();
        let run = Command::new(emulator())
            .arg(&req_path)
            .arg(&out_path)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}: emulator failed ({:?}): {}",
            self.name,
            policy,
            String::from_utf8_lossy(&run.stderr)
        );
        let bytes = std::fs::read(&out_path).unwrap();
        let _ = std::fs::remove_file(&req_path);
        let _ = std::fs::remove_file(&out_path);
        let got: Vec<f32> = bytes
            .chunks_exact(2)
            .map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect();

        // The reference in f32 on the same bf16 values; with an input norm, on the input
        // normalised in bf16 (the kernel rounds the normalised input to bf16 as the codecs do).
        let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let x = match &self.norm {
            Some(n) => f(&normalize_input(&self.x, n).unwrap()),
            None => f(&self.x),
        };
        let residual = self.residual.as_ref().map(f);
        let want = conv3d_with(
            &Conv3dOptions {
                kernel: Some(Conv3dKernel::Reference),
            },
            &x,
            &f(&self.weight),
            Some(&f(&self.bias)),
            self.cfg,
            Fused {
                input_norm: None,
                residual: residual.as_ref(),
            },
        )
        .unwrap();
        let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got.len(), want.len());
        let (mut worst, mut num, mut den) = (0f32, 0f64, 0f64);
        for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
            let err = (a - b).abs();
            let allowed = b.abs() / 256.0 + 1e-3;
            assert!(
                err <= allowed,
                "{} ({policy:?}): element {i} is {a}, reference {b}",
                self.name
            );
            worst = worst.max(err / allowed);
            num += f64::from(err * err);
            den += f64::from(b * b);
        }
        let rel = (num / den.max(1e-30)).sqrt();
        println!(
            "emulated {} box {:?} tile {} ring {} vector_store {} ({policy:?}): rel_l2 {rel:.1e}, \
             worst error {worst:.2} of allowed",
            self.name,
            g.boxed,
            g.tile_n.width(),
            g.a_buffers,
            g.vector_store(self.residual.as_ref().map(|_| self.b_offset)),
        );
        assert!(rel < 3e-3, "{}: rel_l2 {rel}", self.name);
    }
}

#[test]
fn the_kernel_source_computes_edge_cases_under_every_schedule() {
    let cube = Dims3::all(3);
    let problems = [
        // Replicate padding on one frame, W = 9 (scalar stores), a strided input view.
        Problem::new(
            "replicate T=1 W=9".into(),
            [1, 12, 1, 5, 9],
            2,
            24,
            cube,
            Conv3dConfig::replicate_time(Dims3::all(1)),
            true,
            1,
        ),
        // 1x1x1 over 5 chunks: the 4-slot input ring wraps; 16-wide rows: vector stores with a
        // residual view at an offset.
        Problem::new(
            "1x1x1 C=160 ring wrap".into(),
            [1, 160, 2, 3, 16],
            0,
            12,
            Dims3::all(1),
            Conv3dConfig::default(),
            true,
            2,
        ),
        // Spatial stride 2, odd sizes, two batch items, 70 output channels (N128, partial).
        Problem::new(
            "stride 2 C_out=70".into(),
            [2, 33, 5, 7, 11],
            1,
            70,
            cube,
            Conv3dConfig {
                stride: Dims3::new(1, 2, 2),
                ..Conv3dConfig::padded(Dims3::all(1))
            },
            false,
            3,
        ),
        // A view whose start is not 16-byte aligned (4 positions per frame, one frame in),
        // though P and both strides are multiples of 8: the transposition must load scalars.
        Problem::new(
            "misaligned input view".into(),
            [1, 24, 2, 2, 2],
            2,
            16,
            cube,
            Conv3dConfig::replicate_time(Dims3::all(1)),
            false,
            5,
        ),
        // Turbo's norm -> SiLU in front of a 3x3x3 conv, vector loads (P = 2 x 4 x 16).
        Problem::new(
            "turbo norm".into(),
            [1, 40, 2, 4, 16],
            0,
            24,
            cube,
            Conv3dConfig::replicate_time(Dims3::all(1)),
            true,
            6,
        )
        .with_norm(NormKind::Rms { eps: 1e-8 }, false, Activation::Silu, 0),
        // Wan's L2 norm with gamma on a strided, misaligned view (scalar loads, odd P).
        Problem::new(
            "wan norm".into(),
            [2, 36, 3, 3, 5],
            2,
            20,
            cube,
            Conv3dConfig::padded(Dims3::new(0, 1, 1)),
            false,
            7,
        )
        .with_norm(NormKind::L2 { eps: 1e-12 }, true, Activation::Silu, 8),
        // Wan's temporal downsampler: (3,1,1), stride 2 in time.
        Problem::new(
            "time stride 2".into(),
            [1, 40, 5, 2, 8],
            0,
            40,
            Dims3::new(3, 1, 1),
            Conv3dConfig {
                stride: Dims3::new(2, 1, 1),
                ..Conv3dConfig::default()
            },
            true,
            4,
        ),
    ];
    for p in &problems {
        for policy in POLICIES {
            p.check(policy);
        }
    }
}

#[test]
fn the_kernel_source_computes_real_turbo_layers() {
    let layers = turbo_layers();
    let mut rng = Rng::new(23);
    let mut seen = Vec::new();
    let mut n = 0u64;
    for layer in &layers {
        let key = (layer.c_out, layer.c_in, layer.kernel);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        n += 1;
        let k = layer.kernel;
        // The emulator is ~1e5x slower than the GPU: keep one box per problem, and the
        // 512-input-channel layers to a third of their chunks' worth of sizes.
        let cfg = Conv3dConfig::replicate_time(Dims3::new(k.t / 2, k.h / 2, k.w / 2));
        let (t, h, w) = (rng.range(1, 3), rng.range(1, 5), rng.pick(&[5, 8, 16, 13]));
        let p = Problem::new(
            format!("{} {t}x{h}x{w}", layer.name),
            [1, layer.c_in, t, h, w],
            rng.range(0, 2),
            layer.c_out,
            k,
            cfg,
            rng.coin(),
            n,
        );
        // Half of them with the norm -> activation the decoder puts in front of its convs.
        let p = match n % 4 {
            1 => p.with_norm(NormKind::Rms { eps: 1e-8 }, false, Activation::Relu, n),
            3 => p.with_norm(NormKind::Rms { eps: 1e-6 }, false, Activation::None, n),
            _ => p,
        };
        p.check(POLICIES[(n % 8) as usize]);
    }
    assert!(seen.len() >= 10);
}
