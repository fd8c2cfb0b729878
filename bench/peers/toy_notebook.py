#!/usr/bin/env python3
"""The toy-model training loop of the Toy Models of Superposition notebook, in plain PyTorch, as the peer that
`nativeengine bench toy` measures beside itself: many instances batched in one tensor, fresh uniform-sparse batches
every step, importance-weighted MSE, AdamW(lr=1e-3). The notebook's model is relu_output (x' = ReLU(W W^T x + b));
--model linear and relu_hidden (h = ReLU(W^T x)) follow the paper's other tied models. Without --data the
importance is 0.9^i and the feature probability geometric over the instances (the notebook's defaults); with
--data FILE both come from a JSON file {"importance": [I*n], "feature_probability": [I*n]} (row-major, instance
first), as a paper config resolves them. Prints one JSON line."""
import argparse
import json

import torch

from torch_peer import add_run_options, device_for, finish, load_data, run_steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--m", type=int, default=20)
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--model", default="relu_output", choices=["linear", "relu_output", "relu_hidden"])
    ap.add_argument("--data", default=None)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--optimizer", default="adamw", choices=["adamw", "adam"])
    add_run_options(ap)
    args = ap.parse_args()
    device = device_for(args)
    n, m, instances = args.n, args.m, args.instances

    # As in the notebook: W (instances, n, m) xavier-normal, b_final zeros.
    W = torch.nn.Parameter(torch.empty((instances, n, m), device=device))
    torch.nn.init.xavier_normal_(W)
    b_final = torch.nn.Parameter(torch.zeros((instances, n), device=device))
    if args.data is None:
        importance = (0.9 ** torch.arange(n, device=device, dtype=torch.float32))[None, :]
        feature_probability = (0.01 ** torch.linspace(0, 1, instances, device=device))[:, None]
    else:
        importance, feature_probability = load_data(args.data, instances, n, device)
    optimizer = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    opt = optimizer([W, b_final], lr=args.lr, weight_decay=args.weight_decay)

    def batch_loss():
        feat = torch.rand((args.batch, instances, n), device=device)
        batch = torch.where(torch.rand((args.batch, instances, n), device=device) <= feature_probability, feat,
                            torch.zeros((), device=device))
        hidden = torch.einsum("...if,ifh->...ih", batch, W)
        if args.model == "relu_hidden":
            hidden = torch.relu(hidden)
        out = torch.einsum("...ih,ifh->...if", hidden, W) + b_final
        if args.model != "linear":
            out = torch.relu(out)
        error = importance * (batch.abs() - out) ** 2
        return error.mean(dim=(0, 2)).sum()

    def step():
        loss = batch_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    steps, seconds = run_steps(step, device, args, warmup=5, chunk=5)
    whole_script = finish(args, {"W": W, "b_final": b_final}, batch_loss)
    print(json.dumps({
        "peer": "pytorch notebook loop (toy_notebook.py)",
        "torch_version": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "model": args.model,
        "steps": steps,
        "seconds": round(seconds, 4),
        "steps_per_second": round(steps / seconds, 2),
        **whole_script,
    }))


if __name__ == "__main__":
    main()
