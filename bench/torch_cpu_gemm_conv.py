#!/usr/bin/env python3
"""PyTorch CPU reference timings for the shapes in bench_cpu_gemm_conv.cpp.

Usage: /usr/bin/python3 bench/torch_cpu_gemm_conv.py [--threads 2]
Prints one line per case: name, median milliseconds, GFLOP/s (2 flops per
multiply-add), so the numbers line up with dofpose_bench's GFLOP/s counter.
"""
import argparse
import time

import torch
import torch.nn.functional as F


def median_ms(fn, min_time=0.5, min_iters=3):
    fn()  # warm-up (allocator, oneDNN primitive caches)
    times = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    with torch.no_grad():
        for n in (256, 512, 768, 1024):
            a, b = torch.randn(n, n), torch.randn(n, n)
            c = torch.empty(n, n)
            ms = median_ms(lambda: torch.mm(a, b, out=c))
            print(f"matmul n={n:<5d} {ms:9.3f} ms {2 * n**3 / ms * 1e-6:8.2f} GFLOP/s")

        # N, C, H(=W), K, R(=S), stride, pad, groups  (same list as the C++ benchmark)
        convs = [(1, 128, 64, 128, 3, 1, 1, 1), (1, 256, 64, 128, 1, 1, 0, 1),
                 (1, 128, 64, 256, 1, 1, 0, 1), (1, 3, 256, 64, 7, 2, 3, 1),
                 (1, 128, 16, 128, 3, 1, 1, 1), (4, 128, 64, 128, 3, 1, 1, 1),
                 (1, 128, 64, 128, 3, 1, 1, 128)]
        for (N, C, H, K, R, stride, pad, groups) in convs:
            x = torch.randn(N, C, H, H)
            w = torch.randn(K, C // groups, R, R)
            bias = torch.randn(K)
            P = (H + 2 * pad - R) // stride + 1
            flops = 2 * N * K * P * P * (C // groups) * R * R
            ms = median_ms(lambda: F.conv2d(x, w, bias, stride, pad, 1, groups))
            print(f"conv2d_forward N={N} C={C} H={H} K={K} R={R} s={stride} g={groups:<4d}"
                  f" {ms:9.3f} ms {flops / ms * 1e-6:8.2f} GFLOP/s")

        lx, lw, lb = torch.randn(64, 1024), torch.randn(1024, 1024), torch.randn(1024)
        ms = median_ms(lambda: F.linear(lx, lw, lb))
        print(f"linear_forward N=64 1024->1024 {ms:9.3f} ms {2 * 64 * 1024 * 1024 / ms * 1e-6:8.2f} GFLOP/s")

    # Backward (dx + dw + dbias) for two convs, same accounting as BM_conv2d_backward.
    for (N, C, H, K, R, stride, pad) in [(1, 128, 64, 128, 3, 1, 1), (1, 256, 64, 128, 1, 1, 0)]:
        x = torch.randn(N, C, H, H, requires_grad=True)
        w = torch.randn(K, C, R, R, requires_grad=True)
        bias = torch.randn(K, requires_grad=True)
        y = F.conv2d(x, w, bias, stride, pad)
        dy = torch.randn_like(y)
        P = y.shape[-1]
        flops = 2 * 2 * N * K * P * P * C * R * R
        ms = median_ms(lambda: torch.autograd.grad(y, (x, w, bias), dy, retain_graph=True))
        print(f"conv2d_backward N={N} C={C} H={H} K={K} R={R} {ms:9.3f} ms {flops / ms * 1e-6:8.2f} GFLOP/s")


if __name__ == "__main__":
    main()
