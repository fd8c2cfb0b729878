#!/usr/bin/env python3
"""Classical sparse dictionary learning as the peer of `nativeengine bench dictionary`: scikit-learn's
MiniBatchDictionaryLearning (Mairal et al. 2009), one partial_fit per minibatch: the batch's sparse codes by the
fit algorithm (LARS on the lasso by default), then the dictionary update by block coordinate descent. It learns
d_sae atoms from the activations in --data (an .npy file [tokens][d] float32, the batches the engine trains on),
cycling through them --batch tokens at a time. Prints one JSON line: samples per second and the mean nonzero codes
per sample the lasso gave on the last batch."""
import argparse
import json
import time

import numpy as np
import sklearn
from sklearn.decomposition import MiniBatchDictionaryLearning, sparse_encode


def blas_info(threads):
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return None, {"blas": "unknown (threadpoolctl not installed)"}
    limiter = threadpool_limits(limits=threads, user_api="blas") if threads > 0 else None
    blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    info = {"blas": ", ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)" for p in blas)}
    return limiter, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--d-sae", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--fit-algorithm", default="lars", choices=["lars", "cd"])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    _limiter, info = blas_info(args.threads)
    X = np.load(args.data).astype(np.float32, copy=False)
    tokens = X.shape[0] - X.shape[0] % args.batch
    if tokens == 0:
        raise SystemExit(f"--data has {X.shape[0]} tokens, fewer than one batch of {args.batch}")
    batches = [X[i:i + args.batch] for i in range(0, tokens, args.batch)]
    model = MiniBatchDictionaryLearning(n_components=args.d_sae, alpha=args.alpha, fit_algorithm=args.fit_algorithm,
                                        batch_size=args.batch, random_state=0)
    model.partial_fit(batches[0])  # warm-up: the dictionary's initialisation (an SVD of the first batch)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        model.partial_fit(batches[(steps + 1) % len(batches)])
        steps += 1
    seconds = time.perf_counter() - start
    last = batches[steps % len(batches)]
    codes = sparse_encode(last, model.components_, algorithm="lasso_" + args.fit_algorithm, alpha=args.alpha)
    print(json.dumps({
        "peer": f"scikit-learn MiniBatchDictionaryLearning (fit_algorithm={args.fit_algorithm}, alpha={args.alpha})",
        "sklearn_version": sklearn.__version__,
        **info,
        "d": X.shape[1], "d_sae": args.d_sae, "batch": args.batch,
        "steps": steps, "seconds": round(seconds, 4),
        "samples_per_second": round(steps * args.batch / seconds, 1),
        "codes_per_sample": round(float(np.count_nonzero(codes)) / last.shape[0], 2),
    }))


if __name__ == "__main__":
    main()
