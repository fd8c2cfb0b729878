#!/usr/bin/env python3
"""A plain PyTorch TopK sparse autoencoder, written the way SAELens/sparsify users write one (Gao et al. 2024):
encoder Linear(d, d_sae) on x - b_dec, top-k with ReLU, decoder as a dense matrix product of the sparse codes,
MSE loss, Adam; decoder rows renormalised after each step with the parallel gradient component removed. The peer
`nativeengine bench factorize` measures beside itself. Prints one JSON line (tokens per second)."""
import argparse
import json

import torch

from torch_peer import add_run_options, device_for, time_steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    add_run_options(ap)
    args = ap.parse_args()
    device = device_for(args)
    d, m, k = args.d, args.d_sae, args.k

    W_dec = torch.nn.Parameter(torch.nn.functional.normalize(torch.randn(m, d, device=device), dim=1))
    W_enc = torch.nn.Parameter(W_dec.detach().t().clone())
    b_enc = torch.nn.Parameter(torch.zeros(m, device=device))
    b_dec = torch.nn.Parameter(torch.zeros(d, device=device))
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=2e-4 / (m / 2 ** 14) ** 0.5)
    x = torch.randn(args.batch, d, device=device)

    def step():
        pre = (x - b_dec) @ W_enc + b_enc
        values, indices = pre.topk(k, dim=-1)
        z = torch.zeros_like(pre).scatter_(-1, indices, torch.relu(values))
        x_hat = z @ W_dec + b_dec
        loss = (x_hat - x).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            unit = W_dec / W_dec.norm(dim=1, keepdim=True)
            W_dec.grad -= (W_dec.grad * unit).sum(1, keepdim=True) * unit
        opt.step()
        with torch.no_grad():
            W_dec.div_(W_dec.norm(dim=1, keepdim=True))

    steps, seconds = time_steps(step, device, args.seconds, warmup=2, chunk=1)
    print(json.dumps({
        "peer": "pytorch topk sae",
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "d": d, "d_sae": m, "k": k, "batch": args.batch,
        "steps": steps, "seconds": round(seconds, 4),
        "tokens_per_second": round(steps * args.batch / seconds, 1),
    }))


if __name__ == "__main__":
    main()
