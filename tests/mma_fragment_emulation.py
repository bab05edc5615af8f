#!/usr/bin/env python3
"""Host check of mma_async_tile_kernel's fragment indexing (kernels/cuda/gemm_tiles.cuh).

No GPU here: this replays, for every warp and lane of one block, the shared-
memory reads the kernel makes to build its mma.sync.m16n8k16 A and B fragments
and the staging writes of its accumulators, composes them with the fragment
layouts of the PTX ISA ("Matrix fragments for mma.m16n8k16 with floating point
type"), and checks that the block computes A x B. Mirror any change to the
kernel's offsets here. Prints one line per tile shape; exits 1 on a mismatch.
"""
import sys

import numpy as np

K_PAD, BK = 4, 16


def block_product(A, B, BM, BN, WM, WN):
    LDA, LDB, LDC = BM + K_PAD, BN + K_PAD, 16 + K_PAD
    WTM, WTN = BM // WM, BN // WN
    MT, NT = WTM // 16, WTN // 8
    # One stage as the cp.async loaders fill it: As[k][i], then Bs[k][j].
    stage = np.zeros(BK * (LDA + LDB))
    for k in range(BK):
        stage[k * LDA:k * LDA + BM] = A[:, k]
        stage[BK * LDA + k * LDB:BK * LDA + k * LDB + BN] = B[k, :]
    C = np.full((BM, BN), np.nan)
    for warp in range(8):
        wm, wn = warp // WN, warp % WN
        for i in range(MT):
            for jj in range(0, NT, 2):
                cs = np.full(16 * LDC, np.nan)
                for h in range(2):
                    j = jj + h
                    Am, Bm = np.full((16, 16), np.nan), np.full((16, 8), np.nan)
                    for lane in range(32):
                        g, t = lane // 4, lane % 4
                        # the kernel's pointers: as/bs, then ak/bk (kk = 0), then + i*16 / + j*8
                        c = wm * WTM + g + (2 * t) * LDA + i * 16
                        a = [stage[c], stage[c + LDA], stage[c + 8], stage[c + LDA + 8],
                             stage[c + 8 * LDA], stage[c + 9 * LDA], stage[c + 8 * LDA + 8], stage[c + 9 * LDA + 8]]
                        for e in range(8):  # PTX: a_e at row g (+8 for e in 2,3,6,7), col 2t + (e&1) (+8 for e >= 4)
                            Am[g + (8 if e in (2, 3, 6, 7) else 0), 2 * t + (e & 1) + (8 if e >= 4 else 0)] = a[e]
                        cb = BK * LDA + wn * WTN + g + (2 * t) * LDB + j * 8
                        b = [stage[cb], stage[cb + LDB], stage[cb + 8 * LDB], stage[cb + 9 * LDB]]
                        for e in range(4):  # PTX: b_e at row (k) 2t + (e&1) (+8 for e >= 2), col g
                            Bm[2 * t + (e & 1) + (8 if e >= 2 else 0), g] = b[e]
                    D = Am @ Bm
                    for lane in range(32):  # PTX: d0,d1 row g, d2,d3 row g+8, col 2t, 2t+1
                        g, t = lane // 4, lane % 4
                        cs[g * LDC + h * 8 + 2 * t] = D[g, 2 * t]
                        cs[g * LDC + h * 8 + 2 * t + 1] = D[g, 2 * t + 1]
                        cs[(g + 8) * LDC + h * 8 + 2 * t] = D[g + 8, 2 * t]
                        cs[(g + 8) * LDC + h * 8 + 2 * t + 1] = D[g + 8, 2 * t + 1]
                for e in range(64):  # the store loop: 16 rows x 4 groups of 4 columns
                    r, col = e // 4, (e % 4) * 4
                    for q in range(4):
                        C[wm * WTM + i * 16 + r, wn * WTN + jj * 8 + col + q] = cs[r * LDC + col + q]
    return C


def main():
    rng = np.random.default_rng(0)
    ok = True
    for BM, BN, WM, WN in [(64, 64, 2, 4), (64, 128, 2, 4), (128, 64, 4, 2)]:
        A, B = rng.standard_normal((BM, BK)), rng.standard_normal((BK, BN))
        err = np.abs(block_product(A, B, BM, BN, WM, WN) - A @ B).max()  # nan (unwritten) fails too
        good = bool(err < 1e-12)
        ok &= good
        print(f"tile {BM}x{BN} warps {WM}x{WN}: max |C - A B| = {err:.3g} {'ok' if good else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
