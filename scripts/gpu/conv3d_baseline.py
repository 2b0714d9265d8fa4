#!/usr/bin/env python3
"""The side-by-side baseline for the project's conv3d kernel, on the GPU machine's torch.

Reads the layer list that `conv3d_gpu shapes --out FILE` writes (every distinct conv of a
1080p Turbo-VAED window: channels, kernel, size, padding, whether a residual follows) and times,
in bf16 on the same shapes, with torch.backends.cudnn.benchmark on:

  torch-cudnn        F.conv3d alone on an NCDHW input already padded in time (cuDNN's kernel
                     time for exactly the work the project's kernel does, minus the padding)
  torch-cudnn-cl     the same with channels_last_3d tensors (cuDNN's preferred layout)
  torch-ref-path     what the reference decoder runs per conv: replicate time padding
                     (F.pad), F.conv3d with spatial padding, then `+ residual` where one follows

FLOPs are the useful ones (2 * C_in * C_out * taps * output positions, as the bench counts).
Timed with CUDA events, median of --reps calls after 2 warm-ups. One JSON object per line to
--out (with the layer's calls per window and window factor, for the clip estimate); a table on
stdout.
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F


def time_ms(fn, reps):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2], times[0]


def variants(layer):
    """(impl, zero-argument callable) pairs for one layer, inputs created here."""
    g = torch.Generator(device="cuda").manual_seed(17)
    cin, cout = layer["c_in"], layer["c_out"]
    kt, kh, kw = layer["kernel"]
    t, h, w = layer["size"]
    pt, ph, pw = layer["padding"]
    bf = torch.bfloat16

    def randn(*shape):
        return torch.randn(*shape, device="cuda", dtype=bf, generator=g)

    x = randn(1, cin, t, h, w)
    weight = randn(cout, cin, kt, kh, kw) / (cin * kt * kh * kw) ** 0.5
    bias = randn(cout)
    res = randn(1, cout, t, h, w) if layer["residual"] else None
    mode = "replicate" if layer["replicate_time"] else "constant"
    x_padded = F.pad(x, (0, 0, 0, 0, pt, pt), mode=mode) if pt > 0 else x

    def cudnn():
        return F.conv3d(x_padded, weight, bias, padding=(0, ph, pw))

    x_cl = x_padded.contiguous(memory_format=torch.channels_last_3d)
    w_cl = weight.contiguous(memory_format=torch.channels_last_3d)

    def cudnn_cl():
        return F.conv3d(x_cl, w_cl, bias, padding=(0, ph, pw))

    def ref_path():
        xp = F.pad(x, (0, 0, 0, 0, pt, pt), mode=mode) if pt > 0 else x
        y = F.conv3d(xp, weight, bias, padding=(0, ph, pw))
        return y + res if res is not None else y

    return [("torch-cudnn", cudnn), ("torch-cudnn-cl", cudnn_cl), ("torch-ref-path", ref_path)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", required=True, help="conv3d_gpu shapes --out FILE")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, "
          f"cuDNN {torch.backends.cudnn.version()}")
    layers = [json.loads(line) for line in open(args.shapes) if line.strip()]
    rows = []
    for layer in layers:
        for impl, fn in variants(layer):
            try:
                median, best = time_ms(fn, args.reps)
            except Exception as e:  # out of memory or an unsupported configuration
                print(f"{impl:<16} {layer['name']:<32} unavailable: {str(e).splitlines()[0][:100]}")
                torch.cuda.empty_cache()
                continue
            tflops = layer["flops"] / (median * 1e-3) / 1e12
            rows.append(dict(impl=impl, case=layer["name"], flops=layer["flops"], median_ms=median,
                             min_ms=best, tflops=tflops, calls=layer["calls"],
                             windows=layer["windows"]))
            print(f"{impl:<16} {layer['name']:<32} {median:9.3f} ms {tflops:7.1f} TFLOP/s")
            sys.stdout.flush()
        torch.cuda.empty_cache()

    if args.out:
        with open(args.out, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
