#!/usr/bin/env python3
"""Host check of mma_async_tile_kernel (kernels/cuda/gemm_tiles.cuh), no GPU needed,
for both of its input kinds: FP16/BF16 (m16n8k16) and TF32 (m16n8k8).

Replays the kernel block by block in numpy: the STAGES-deep ring of k-major
shared slices as the cp.async loaders fill it (zero outside the operands and
past the block's k range) with the B prologue's per-slice table beside it,
every lane's shared-memory reads that build its
mma.sync A and B registers (16-bit pairs: the first element is the low
half, the lower k), the MMA itself through the fragment layouts of the PTX ISA
("Matrix fragments for mma.m16n8k16 / mma.m16n8k8"), the epilogue's
16 x LDC staging tile per warp and the guarded store loop. Checks that the
result is A x B over the k range, every element written, and that no slice is
overwritten before it is consumed. The offsets are copied from the kernel by
hand: mirror any change there. Prints one line per case; exits 1 on a mismatch.
"""
import sys

import numpy as np

BK, STAGES = 16, 3
# Per input type (MmaInput<T> in the kernel): mma k depth, first k row of lane t
# (kLaneRow * t), row padding in floats, column swizzle (swizzle_col: column i
# of k row k is stored at i ^ (k & swz)).
INPUTS = {"fp16/bf16": dict(kK=16, lane_row=2, pad=4, swz=0),
          "tf32": dict(kK=8, lane_row=1, pad=8, swz=4)}


def load_a(kind, smem, c, ld, sw):
    """MmaInput<T>::load_a: the values of the lane's A registers, low half first;
    sw: the column shift of the lane's swizzled (k + 4) rows."""
    if kind == "tf32":
        return [smem[c], smem[c + 8], smem[c + 4 * ld + sw], smem[c + 4 * ld + 8 + sw]]
    return [smem[c], smem[c + ld], smem[c + 8], smem[c + ld + 8],
            smem[c + 8 * ld], smem[c + 9 * ld], smem[c + 8 * ld + 8], smem[c + 9 * ld + 8]]


def load_b(kind, smem, c, ld, sw):
    if kind == "tf32":
        return [smem[c], smem[c + 4 * ld + sw]]
    return [smem[c], smem[c + ld], smem[c + 8 * ld], smem[c + 9 * ld]]


def ptx_a(kind, a, g, t, Am):
    """Places one lane's A elements by the PTX layout (m16n8k16 / m16n8k8 .tf32)."""
    for e, v in enumerate(a):
        if kind == "tf32":  # a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4)
            Am[g + (8 if e in (1, 3) else 0), t + (4 if e >= 2 else 0)] = v
        else:  # a0..a7: rows g (+8 for 2,3,6,7), cols 2t + (e&1) (+8 for e >= 4)
            Am[g + (8 if e in (2, 3, 6, 7) else 0), 2 * t + (e & 1) + (8 if e >= 4 else 0)] = v


def ptx_b(kind, b, g, t, Bm):
    for e, v in enumerate(b):
        if kind == "tf32":  # b0 (k t), b1 (k t+4), column g
            Bm[t + (4 if e == 1 else 0), g] = v
        else:  # b0..b3: k 2t + (e&1) (+8 for e >= 2), column g
            Bm[2 * t + (e & 1) + (8 if e >= 2 else 0), g] = v


def kernel(kind, A, B, kb, ke, BM, BN, WM, WN, prologue=None):
    """prologue: (mean, scale, beta) per k row of B, relu((v - mean) * scale + beta)
    applied as B is read for k < ke (the fused conv's b_prologue), or None."""
    In = INPUTS[kind]
    KK, swz = In["kK"], In["swz"]
    M, N = A.shape[0], B.shape[1]
    LDA, LDB, LDC = BM + In["pad"], BN + In["pad"], 16 + 4
    WTM, WTN = BM // WM, BN // WN
    MT, NT = WTM // 16, WTN // 8
    k_stage = BK * (LDA + LDB)
    C = np.full((M, N), np.nan)
    tiles_n = (N + BN - 1) // BN
    for block in range(((M + BM - 1) // BM) * tiles_n):
        m0, n0 = (block // tiles_n) * BM, (block % tiles_n) * BN
        smem = np.full(STAGES * k_stage, np.nan)
        table = np.full((STAGES * BK, 3), np.nan)  # pro_table: {mean, scale, beta} per stage row
        held = {}  # stage -> slice it holds
        slices = (ke - kb + BK - 1) // BK if kb < ke else 0

        def issue(sl):  # fetch_async of A then B into stage sl % STAGES (zero-filled)
            st = (sl % STAGES) * k_stage
            for k in range(BK):
                gk = kb + sl * BK + k
                for i in range(BM):
                    smem[st + k * LDA + (i ^ (k & swz))] = A[m0 + i, gk] if m0 + i < M and gk < ke else 0.0
                for j in range(BN):
                    smem[st + BK * LDA + k * LDB + (j ^ (k & swz))] = \
                        B[gk, n0 + j] if n0 + j < N and gk < ke else 0.0
                if prologue is not None:  # stage_prologue: thread k's row, the identity past ke
                    table[(sl % STAGES) * BK + k] = [p[gk] for p in prologue] if gk < ke else [0.0, 1.0, 0.0]
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
                for kk in range(0, BK, KK):
                    Am = np.full((MT, 16, KK), np.nan)
                    Bm = np.full((NT, KK, 8), np.nan)
                    for lane in range(32):
                        g, t = lane // 4, lane % 4
                        sw = (g ^ swz) - g
                        # as / bs, then ak / bk, then + i * 16 / + j * 8, as in the kernel
                        base = (it % STAGES) * k_stage
                        ak = base + wm * WTM + g + (kk + In["lane_row"] * t) * LDA
                        bk = base + BK * LDA + wn * WTN + g + (kk + In["lane_row"] * t) * LDB
                        for i in range(MT):
                            ptx_a(kind, load_a(kind, smem, ak + i * 16, LDA, sw), g, t, Am[i])
                        row0 = (it % STAGES) * BK + kk + In["lane_row"] * t  # the lane's table rows
                        rows = [0, 1, 8, 9] if kind != "tf32" else [0, 4]  # MmaInput<T>::b_row
                        for j in range(NT):
                            b = load_b(kind, smem, bk + j * 8, LDB, sw)
                            if prologue is not None:
                                pro = [table[row0 + r] for r in rows]
                                b = [max((v - m) * s + bt, 0.0) for v, (m, s, bt) in zip(b, pro)]
                            ptx_b(kind, b, g, t, Bm[j])
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


def ways(addresses):
    """Wavefronts of one warp access: the most distinct addresses on one bank."""
    banks = {}
    for addr in set(addresses):
        banks[addr % 32] = banks.get(addr % 32, 0) + 1
    return max(banks.values())


def worst_bank_conflict(kind, BM, BN, WM, WN, swz=None):
    """The most lanes of a warp that one fragment read sends to one shared-memory
    bank at different addresses (1: conflict-free), over every read of a slice.
    swz: the swizzle (default: the kernel's for this kind)."""
    In = INPUTS[kind]
    swz = In["swz"] if swz is None else swz
    LDA, LDB = BM + In["pad"], BN + In["pad"]
    WTM, WTN = BM // WM, BN // WN
    probe = np.arange(BK * (LDA + LDB))  # element index = address in floats
    worst = 1
    for warp in range(8):
        wm, wn = warp // WN, warp % WN
        for kk in range(0, BK, In["kK"]):
            for i in range(WTM // 16):
                reads = [load_a(kind, probe, wm * WTM + g + (kk + In["lane_row"] * t) * LDA + i * 16, LDA,
                                (g ^ swz) - g) for g in range(8) for t in range(4)]
                for r in zip(*reads):  # one register position, all 32 lanes
                    worst = max(worst, ways(r))
            for j in range(WTN // 8):
                reads = [load_b(kind, probe, BK * LDA + wn * WTN + g + (kk + In["lane_row"] * t) * LDB + j * 8, LDB,
                                (g ^ swz) - g) for g in range(8) for t in range(4)]
                for r in zip(*reads):
                    worst = max(worst, ways(r))
    return worst


def worst_store_conflict(kind, tile, swz=None):
    """The loaders' cp.async stores into a slice of `tile` columns (rows padded
    as for this kind, columns swizzled): the most wavefronts one warp store
    takes, over the two thread mappings of kernels/cuda (conv2d.cu, gemm.cu):
    row loaders (row_loader_coords: a warp 8 k by 4 columns, k = tid % 8 +
    8 * (tid / (8 * kStep)), column tt = tid / 8 % kStep, + l * kStep) and
    column loaders (column tid % tile, k = tid / tile + l * (256 / tile))."""
    In = INPUTS[kind]
    swz = In["swz"] if swz is None else swz
    ld = tile + In["pad"]
    worst = 1
    for warp in range(8):
        tids = range(32 * warp, 32 * warp + 32)
        k_step = 256 // BK
        for l in range(tile * BK // 256):
            row = [(tid % 8 + 8 * (tid // (8 * k_step)), tid // 8 % k_step + l * k_step) for tid in tids]
            col = [(tid // tile + l * (256 // tile), tid % tile) for tid in tids]
            for kt in (row, col):
                worst = max(worst, ways([k * ld + (t ^ (k & swz)) for k, t in kt]))
    return worst


def main():
    rng = np.random.default_rng(1)
    ok = True
    tiles = [(64, 64, 2, 4), (64, 128, 2, 4), (128, 64, 4, 2)]
    cases = [(M, N, K, 0, K, tile) for (M, N, K) in [(7, 5, 3), (33, 65, 17), (70, 130, 50), (130, 70, 49)]
             for tile in tiles]
    cases.append((33, 65, 100, 32, 80, tiles[0]))  # one split of a split-K product
    cases = [c + (False,) for c in cases]
    cases += [(70, 130, 50, 0, 50, tiles[1], True), (33, 65, 100, 32, 80, tiles[0], True)]  # B prologue
    for kind in INPUTS:
        for M, N, K, kb, ke, (BM, BN, WM, WN), with_prologue in cases:
            A, B = rng.standard_normal((M, K)), rng.standard_normal((K, N))
            pro, Bp = None, B
            if with_prologue:
                pro = (rng.standard_normal(K), rng.uniform(0.5, 2.0, K), rng.standard_normal(K))
                Bp = np.maximum((B - pro[0][:, None]) * pro[1][:, None] + pro[2][:, None], 0.0)
            C, why = kernel(kind, A, B, kb, ke, BM, BN, WM, WN, pro)
            err = np.abs(C - A[:, kb:ke] @ Bp[kb:ke, :]).max() if C is not None else np.nan
            good = bool(err < 1e-9)  # float64 sums in another order; nan (unwritten) fails
            ok &= good
            print(f"{kind} M {M} N {N} k [{kb},{ke}) tile {BM}x{BN} warps {WM}x{WN}"
                  f"{' B prologue' if with_prologue else ''}: "
                  f"max |C - A B| = {err:.3g} {'ok' if good else 'MISMATCH ' + why}")
    for kind in INPUTS:
        for BM, BN, WM, WN in tiles:
            w = worst_bank_conflict(kind, BM, BN, WM, WN)
            ok &= w == 1
            print(f"{kind} tile {BM}x{BN}: fragment reads {'conflict-free' if w == 1 else f'{w}-way BANK CONFLICT'}")
    for kind in INPUTS:
        for tile in (64, 128):
            w = worst_store_conflict(kind, tile)
            ok &= w == 1
            print(f"{kind} slice of {tile} columns: loader stores "
                  f"{'conflict-free' if w == 1 else f'{w}-way BANK CONFLICT'}")
    # The checks can fail: TF32 rows padded by 8 without the swizzle (the
    # kernel before 2026-11-28) store 2-way; padded by 4 they read 2-way.
    unswizzled = worst_store_conflict("tf32", 128, swz=0)
    INPUTS["tf32"]["pad"] = 4
    pad4 = worst_bank_conflict("tf32", 128, 64, 4, 2, swz=0)
    INPUTS["tf32"]["pad"] = 8
    ok &= unswizzled == 2 and pad4 == 2
    print(f"self-check: TF32 unswizzled stores {unswizzled}-way, 4-float padding reads {pad4}-way (both 2 expected)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
