#!/usr/bin/env python3
"""The side-by-side baseline for the project's attention kernels, on the GPU machine's torch.

Same problems and FLOP counting as `attention_gpu bench` (crates/parity/examples): 40 query
heads over 8 KV heads, head_dim 128, bf16; full attention at 4k/15k/65k tokens, and the 1080p
super-resolution frame-window pattern (26 frames x 2040 tokens, 126 audio + 100 text tokens,
window f = 11) with only unmasked work counted (4 * 128 * 40 FLOP per allowed (query, key)).

Implementations: torch.nn.functional.scaled_dot_product_attention with each backend that runs
(flash, cuDNN, memory-efficient, and the default choice), flash-attn's own package when it is
installed, and FlexAttention with a 128 x 128 block mask for the frame-window pattern (the
block-sparse baseline; dense SDPA ignoring the mask is timed too, as an upper bound on what
skipping nothing costs). Timed with CUDA events, median of --reps calls after 2 warm-ups, inputs
rotated over 3 random sets. One JSON object per line to --out; a table on stdout.
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

HQ, HK, D = 40, 8, 128
FLOP_PER_PAIR = 4 * D * HQ


def sr_1080p():
    """(L, video tokens, tokens per frame, window, allowed pairs) of the 1080p layout."""
    frames, tpf, audio, text, f = 26, 2040, 126, 100, 11
    nv = frames * tpf
    length = nv + audio + text
    window = lambda i: min(i + f, frames - 1) - max(i - f, 0) + 1  # noqa: E731
    pairs = sum(tpf * (window(i) * tpf + audio + text) for i in range(frames))
    pairs += (audio + text) * length
    return length, nv, tpf, f, pairs


def inputs(length, sets=3, layout="bhld"):
    out = []
    for s in range(sets):
        g = torch.Generator(device="cuda").manual_seed(100 + s)

        def rand(h):
            shape = (1, h, length, D) if layout == "bhld" else (1, length, h, D)
            return torch.randn(shape, device="cuda", dtype=torch.bfloat16, generator=g)

        out.append((rand(HQ), rand(HK), rand(HK)))
    return out


def time_ms(fn, sets, reps):
    for i in range(2):
        fn(*sets[i % len(sets)])
    torch.cuda.synchronize()
    times = []
    for r in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        args = sets[r % len(sets)]
        start.record()
        fn(*args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2], times[0]


def sdpa_variants():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = [
        ("sdpa-flash", SDPBackend.FLASH_ATTENTION),
        ("sdpa-cudnn", SDPBackend.CUDNN_ATTENTION),
        ("sdpa-efficient", SDPBackend.EFFICIENT_ATTENTION),
        ("sdpa-default", None),
    ]
    for name, backend in backends:

        def fn(q, k, v, backend=backend):
            if backend is None:
                return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

        yield name, fn


def flash_attn_variant():
    """flash-attn's own kernels (FA3 `flash_attn_interface` first, then FA2), if installed."""
    for module in ("flash_attn_interface", "flash_attn"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        func = getattr(mod, "flash_attn_func")

        def fn(q, k, v, func=func):
            out = func(q, k, v)
            return out[0] if isinstance(out, tuple) else out

        return f"{module}", fn
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, "
          f"cuDNN {torch.backends.cudnn.version()}")
    rows = []

    def record(impl, case, length, pairs, fn, sets):
        flops = FLOP_PER_PAIR * pairs
        try:
            median, best = time_ms(fn, sets, args.reps)
        except Exception as e:  # a backend that does not take these shapes
            print(f"{impl:<22} {case:<26} unavailable: {str(e).splitlines()[0][:100]}")
            return
        tflops = flops / (median * 1e-3) / 1e12
        rows.append(dict(impl=impl, case=case, len=length, useful_flops=flops,
                         median_ms=median, min_ms=best, tflops=tflops))
        print(f"{impl:<22} {case:<26} {median:9.3f} ms {tflops:7.1f} TFLOP/s")
        sys.stdout.flush()

    fa = flash_attn_variant()
    if fa is None:
        print("flash-attn is not installed here: no flash_attn rows")
    for case, length in (("full 4k", 4096), ("full 15k", 15360), ("full 65k", 65536)):
        sets = inputs(length)
        for impl, fn in sdpa_variants():
            record(impl, case, length, length * length, fn, sets)
        del sets
        if fa is not None:
            record(fa[0], case, length, length * length, fa[1], inputs(length, layout="blhd"))
        torch.cuda.empty_cache()

    length, nv, tpf, window, pairs = sr_1080p()
    case = "1080p local f=11"
    sets = inputs(length)
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def frame_window(b, h, q_idx, kv_idx):
            q_video, k_video = q_idx < nv, kv_idx < nv
            near = (kv_idx // tpf - q_idx // tpf).abs() <= window
            return ~q_video | ~k_video | near

        block_mask = create_block_mask(frame_window, B=None, H=None, Q_LEN=length,
                                       KV_LEN=length, device="cuda", BLOCK_SIZE=128)
        flex = torch.compile(flex_attention, dynamic=False)
        record("flex-attention", case, length, pairs,
               lambda q, k, v: flex(q, k, v, block_mask=block_mask, enable_gqa=True), sets)
    except Exception as e:
        print(f"flex-attention unavailable: {str(e).splitlines()[0][:200]}")
    for impl, fn in sdpa_variants():
        # Dense, mask ignored: the cost of computing every tile (FLOPs counted as dense).
        record(impl, "1080p dense, mask ignored", length, length * length, fn, sets)

    if args.out:
        with open(args.out, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
