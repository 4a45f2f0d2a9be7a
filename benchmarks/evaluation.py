"""Evaluation and re-ranking on a Market-1501-sized problem: time, peak memory, correctness.

Builds 3,368 queries x 19,732 gallery images with Market-like ids and cameras (750 test
identities, 6 cameras, 2,798 distractors with pid 0, 3,819 junk images with pid -1) and random
seeded float32 distances, then:
  1. times `tfreid.evaluation.evaluate` for both AP conventions (best of --repeats runs) and
     measures its peak extra memory with tracemalloc in a separate run;
  2. checks the results against a straightforward per-query loop (identical within 1e-6);
  3. times k-reciprocal re-ranking (`k_reciprocal_features`, k1=20, k2=6, lambda=0.3) on random
     identity-clustered features of the same size (or a fraction of it: --rerank_scale).

Usage: python benchmarks/evaluation.py [--repeats 3] [--rerank_scale 1.0] [--feat_dim 2048]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc

import numpy as np

from tfreid.evaluation import evaluate
from tfreid.evaluation.rerank import k_reciprocal_features

NUM_QUERY, NUM_GALLERY, NUM_IDS, NUM_CAMS = 3368, 19732, 750, 6
NUM_DISTRACTORS, NUM_JUNK = 2798, 3819


def market_like(seed: int = 0):
    """Ids/cameras shaped like Market-1501's test split, and random float32 distances."""
    rng = np.random.default_rng(seed)
    n_real = NUM_GALLERY - NUM_DISTRACTORS - NUM_JUNK
    g_pids = np.concatenate([np.arange(1, NUM_IDS + 1),                       # every id present
                             rng.integers(1, NUM_IDS + 1, n_real - NUM_IDS),
                             np.zeros(NUM_DISTRACTORS, np.int64),
                             np.full(NUM_JUNK, -1)])
    g_cams = rng.integers(1, NUM_CAMS + 1, NUM_GALLERY)
    q_pids = np.concatenate([np.arange(1, NUM_IDS + 1),
                             rng.integers(1, NUM_IDS + 1, NUM_QUERY - NUM_IDS)])
    q_cams = rng.integers(1, NUM_CAMS + 1, NUM_QUERY)
    perm = rng.permutation(NUM_GALLERY)
    g_pids, g_cams = g_pids[perm], g_cams[perm]
    distmat = rng.random((NUM_QUERY, NUM_GALLERY), dtype=np.float32)
    return distmat, q_pids, g_pids, q_cams, g_cams


def loop_evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    """Straightforward per-query reference (stable argsort); returns both AP conventions."""
    cmc_sum, ap = np.zeros(max_rank), {"market": [], "mean_precision": []}
    inp = []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        p, c = g_pids[order], g_cams[order]
        keep = (p != -1) & ~((p == q_pids[i]) & (c == q_cams[i]))
        ranks = np.flatnonzero(p[keep] == q_pids[i])      # 0-based ranks of the positives
        if ranks.size == 0:
            continue
        if ranks[0] < max_rank:
            cmc_sum[ranks[0]:] += 1
        hits = np.arange(1, ranks.size + 1)
        prec = hits / (ranks + 1)
        before = np.array([(h - 1) / r if r > 0 else 1.0 for h, r in zip(hits, ranks)])
        ap["mean_precision"].append(prec.mean())
        ap["market"].append(((before + prec) / 2).mean())
        inp.append(ranks.size / (ranks[-1] + 1))
    n = len(inp)
    return cmc_sum / n, {k: float(np.mean(v)) for k, v in ap.items()}, float(np.mean(inp)), n


def peak_mb(fn):
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak / 2 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rerank_scale", type=float, default=1.0,
                        help="fraction of the Market-sized query/gallery counts for re-ranking")
    parser.add_argument("--feat_dim", type=int, default=2048)
    parser.add_argument("--skip_reference", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start, numpy {np.__version__}")
    data = market_like(args.seed)
    print(f"problem: {NUM_QUERY} queries x {NUM_GALLERY} gallery, float32 random distances")
    results = {}
    for ap in ("market", "mean_precision"):
        times, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            results[ap] = evaluate(*data, max_rank=50, ap=ap)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        _, peak = peak_mb(lambda: evaluate(*data, max_rank=50, ap=ap))
        print(f"evaluate ap={ap:14s} best {min(times):.3f} s, median {np.median(times):.3f} s "
              f"of {args.repeats} (CPU time {min(cpu):.3f} s); peak extra memory {peak:.0f} MB (distmat itself: "
              f"{data[0].nbytes / 2 ** 20:.0f} MB)\n  {results[ap]}")

    if not args.skip_reference:
        t0 = time.perf_counter()
        cmc, aps, minp, n_valid = loop_evaluate(*data)
        print(f"per-query loop reference: {time.perf_counter() - t0:.1f} s (both conventions)")
        for ap, r in results.items():
            same = (np.allclose(r.cmc, cmc, atol=1e-6, rtol=0) and abs(r.mAP - aps[ap]) < 1e-6
                    and abs(r.mINP - minp) < 1e-6 and r.num_valid_queries == n_valid)
            print(f"  ap={ap}: {'identical (1e-6)' if same else 'MISMATCH'} "
                  f"(mAP {r.mAP:.8f} vs {aps[ap]:.8f}, mINP {r.mINP:.8f} vs {minp:.8f})")
            if not same:
                raise SystemExit("evaluate differs from the per-query reference")

    nq = max(1, round(NUM_QUERY * args.rerank_scale))
    ng = max(1, round(NUM_GALLERY * args.rerank_scale))
    rng = np.random.default_rng(args.seed + 1)
    centres = rng.normal(size=(NUM_IDS, args.feat_dim)).astype(np.float32)
    qf = centres[data[1][:nq] - 1] + rng.normal(size=(nq, args.feat_dim)).astype(np.float32)
    g_ids = np.where(data[2][:ng] > 0, data[2][:ng] - 1, rng.integers(0, NUM_IDS, ng))
    gf = centres[g_ids] + rng.normal(size=(ng, args.feat_dim)).astype(np.float32)
    t0, c0 = time.perf_counter(), time.process_time()
    reranked, peak = peak_mb(lambda: k_reciprocal_features(qf, gf, k1=20, k2=6, lambda_value=0.3))
    elapsed, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    full = " (full Market size)" if args.rerank_scale == 1.0 else \
        f" ({args.rerank_scale:g} of the Market size)"
    print(f"k-reciprocal re-ranking {nq} x {ng}{full}, {args.feat_dim}-d features: "
          f"{elapsed:.1f} s wall, {cpu_s:.1f} s CPU (under tracemalloc), peak traced memory {peak:.0f} MB "
          f"(output {reranked.nbytes / 2 ** 20:.0f} MB; the dense original needs "
          f"~{4 * 4 * (nq + ng) ** 2 / 2 ** 30:.1f} GB for its (q+g)^2 float32 matrices)")
    print(f"load average {os.getloadavg()[0]:.2f} at end (wall times above depend on it; other "
          f"processes sharing the CPUs slow them down)")


if __name__ == "__main__":
    main()
