#!/usr/bin/env python3
"""Host check of mma_async_tile_kernel (kernels/cuda/gemm_tiles.cuh), no GPU needed.

Replays the kernel block by block in numpy: the STAGES-deep ring of k-major
shared slices as the cp.async loaders fill it (zero outside the operands and
past the block's k range), every lane's shared-memory reads that build its
mma.sync.m16n8k16 A and B registers (pairs: the first element is the low
half, the lower k), the MMA itself through the fragment layouts of the PTX ISA
("Matrix fragments for mma.m16n8k16 with floating point type"), the epilogue's
16 x LDC staging tile per warp and the guarded store loop. Checks that the
result is A x B over the k range, every element written, and that no slice is
overwritten before it is consumed. The offsets are copied from the kernel by
hand: mirror any change there. Prints one line per case; exits 1 on a mismatch.
"""
import sys

import numpy as np

K_PAD, BK, STAGES = 4, 16, 3


def ptx_a(regs, g, t, Am):
    """Places one lane's A registers (4 pairs) by the PTX layout."""
    a = [x for pair in regs for x in pair]  # a0..a7, low half first
    for e in range(8):
        Am[g + (8 if e in (2, 3, 6, 7) else 0), 2 * t + (e & 1) + (8 if e >= 4 else 0)] = a[e]


def ptx_b(regs, g, t, Bm):
    b = [x for pair in regs for x in pair]  # b0..b3
    for e in range(4):
        Bm[2 * t + (e & 1) + (8 if e >= 2 else 0), g] = b[e]


def kernel(A, B, kb, ke, BM, BN, WM, WN):
    M, N = A.shape[0], B.shape[1]
    LDA, LDB, LDC = BM + K_PAD, BN + K_PAD, 16 + K_PAD
    WTM, WTN = BM // WM, BN // WN
    MT, NT = WTM // 16, WTN // 8
    k_stage = BK * (LDA + LDB)
    C = np.full((M, N), np.nan)
    tiles_n = (N + BN - 1) // BN
    for block in range(((M + BM - 1) // BM) * tiles_n):
        m0, n0 = (block // tiles_n) * BM, (block % tiles_n) * BN
        smem = np.full(STAGES * k_stage, np.nan)
        held = {}  # stage -> slice it holds
        slices = (ke - kb + BK - 1) // BK if kb < ke else 0

        def issue(sl):  # fetch_async of A then B into stage sl % STAGES (zero-filled)
            st = (sl % STAGES) * k_stage
            for k in range(BK):
                gk = kb + sl * BK + k
                for i in range(BM):
                    smem[st + k * LDA + i] = A[m0 + i, gk] if m0 + i < M and gk < ke else 0.0
                for j in range(BN):
                    smem[st + BK * LDA + k * LDB + j] = B[gk, n0 + j] if n0 + j < N and gk < ke else 0.0
            held[sl % STAGES] = sl

        for s in range(STAGES - 1):
            if s < slices:
                issue(s)
        acc = np.zeros((8, MT, NT, 32, 4))
        for it in range(slices):
            if it + STAGES - 1 < slices:
                issue(it + STAGES - 1)  # after the barrier: stage (it - 1) % STAGES is free
            if held.get(it % STAGES) != it:
                return None, f"slice {it} overwritten before use"
            for warp in range(8):
                wm, wn = warp // WN, warp % WN
                for kk in range(0, BK, 16):
                    Am = np.full((MT, 16, 16), np.nan)
                    Bm = np.full((NT, 16, 8), np.nan)
                    for lane in range(32):
                        g, t = lane // 4, lane % 4
                        # as / bs, then ak / bk, then + i * 16 / + j * 8, as in the kernel
                        base = (it % STAGES) * k_stage
                        ak = base + wm * WTM + g + (kk + 2 * t) * LDA
                        bk = base + BK * LDA + wn * WTN + g + (kk + 2 * t) * LDB
                        for i in range(MT):
                            c = ak + i * 16
                            ptx_a([(smem[c], smem[c + LDA]), (smem[c + 8], smem[c + LDA + 8]),
                                   (smem[c + 8 * LDA], smem[c + 9 * LDA]),
                                   (smem[c + 8 * LDA + 8], smem[c + 9 * LDA + 8])], g, t, Am[i])
                        for j in range(NT):
                            c = bk + j * 8
                            ptx_b([(smem[c], smem[c + LDB]), (smem[c + 8 * LDB], smem[c + 9 * LDB])], g, t, Bm[j])
                    for i in range(MT):
                        for j in range(NT):
                            D = Am[i] @ Bm[j]
                            for lane in range(32):  # PTX: d0, d1 row g; d2, d3 row g + 8; cols 2t, 2t + 1
                                g, t = lane // 4, lane % 4
                                acc[warp, i, j, lane] += [D[g, 2 * t], D[g, 2 * t + 1],
                                                          D[g + 8, 2 * t], D[g + 8, 2 * t + 1]]
        smem[:] = np.nan  # the stages are dead; the epilogue stages its tiles there
        for warp in range(8):
            wm, wn = warp // WN, warp % WN
            cs, i0, j0 = warp * 16 * LDC, m0 + wm * WTM, n0 + wn * WTN
            for i in range(MT):
                for jj in range(0, NT, 2):
                    for h in range(2):
                        for lane in range(32):
                            g, t = lane // 4, lane % 4
                            d = acc[warp, i, jj + h, lane]
                            smem[cs + g * LDC + h * 8 + 2 * t] = d[0]
                            smem[cs + g * LDC + h * 8 + 2 * t + 1] = d[1]
                            smem[cs + (g + 8) * LDC + h * 8 + 2 * t] = d[2]
                            smem[cs + (g + 8) * LDC + h * 8 + 2 * t + 1] = d[3]
                    for e in range(64):  # 16 rows x 4 groups of 4 columns, store_group's guards
                        r, c = e // 4, (e % 4) * 4
                        gi, gj = i0 + i * 16 + r, j0 + jj * 8 + c
                        if gi < M:
                            for q in range(4):
                                if gj + q < N:
                                    C[gi, gj + q] = smem[cs + r * LDC + c + q]
    return C, ""


def main():
    rng = np.random.default_rng(1)
    ok = True
    tiles = [(64, 64, 2, 4), (64, 128, 2, 4), (128, 64, 4, 2)]
    cases = [(M, N, K, 0, K, tile) for (M, N, K) in [(7, 5, 3), (33, 65, 17), (70, 130, 50), (130, 70, 49)]
             for tile in tiles]
    cases.append((33, 65, 100, 32, 80, tiles[0]))  # one split of a split-K product
    for M, N, K, kb, ke, (BM, BN, WM, WN) in cases:
        A, B = rng.standard_normal((M, K)), rng.standard_normal((K, N))
        C, why = kernel(A, B, kb, ke, BM, BN, WM, WN)
        err = np.abs(C - A[:, kb:ke] @ B[kb:ke, :]).max() if C is not None else np.nan
        good = bool(err < 1e-9)  # float64 sums in another order; nan (unwritten) fails
        ok &= good
        print(f"M {M} N {N} k [{kb},{ke}) tile {BM}x{BN} warps {WM}x{WN}: max |C - A B| = {err:.3g} "
              f"{'ok' if good else 'MISMATCH ' + why}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
