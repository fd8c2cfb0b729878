#!/usr/bin/env python3
"""The mixture-of-experts toy model of `nativeengine moe`, written as a PyTorch user would write it for a toy: the
peer `nativeengine bench moe` measures beside itself. Per instance: E experts, each a tied toy model of width m
(x' = ReLU(W_e h + b_e), h = W_e^T x, or ReLU(W_e^T x) for relu_hidden); a router g = softmax(x W_g) picks the
top_k experts; the output is sum over the chosen experts of gate_e * expert_e(x) (gate_e = g_e, or g_e over the sum
of the chosen g when --renormalize). Loss per instance: importance-weighted MSE (mean over batch and features)
+ load_balance * E * sum_e f_e P_e (f_e the routed fraction, no gradient; P_e the mean router probability)
+ z_loss * mean over the batch of (logsumexp of the logits)^2; AdamW. Data as the toy notebook: feature i of
instance j present with probability p_j, value uniform in [0, 1).
Every expert runs on every token and the gates mask the outputs: at toy sizes one batched einsum over the experts
is what such a loop does (gathering per-token weights costs more than it saves). Prints one JSON line."""
import argparse
import json

import torch

from torch_peer import add_run_options, device_for, finish, load_data, run_steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--m", type=int, default=5)
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--top-k", type=int, default=1)
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--expert-model", default="relu_output", choices=["relu_output", "relu_hidden"])
    ap.add_argument("--renormalize", type=int, default=0)
    ap.add_argument("--load-balance", type=float, default=0.01)
    ap.add_argument("--z-loss", type=float, default=0.001)
    ap.add_argument("--data", default=None, help='JSON {"importance": [I*n], "feature_probability": [I*n]}')
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    add_run_options(ap)
    args = ap.parse_args()
    device = device_for(args)
    n, m, E, K, I, B = args.n, args.m, args.experts, args.top_k, args.instances, args.batch

    W = torch.nn.Parameter(torch.empty((I, E, n, m), device=device))
    for e in range(E):
        torch.nn.init.xavier_normal_(W.data[:, e])
    b = torch.nn.Parameter(torch.zeros((I, E, n), device=device))
    W_gate = torch.nn.Parameter(torch.empty((I, n, E), device=device))
    torch.nn.init.xavier_normal_(W_gate)
    if args.data is None:
        importance = (0.7 ** torch.arange(n, device=device, dtype=torch.float32))[None, :].expand(I, n)
        feature_probability = (0.01 ** torch.linspace(0, 1, I, device=device))[:, None].expand(I, n)
    else:
        importance, feature_probability = load_data(args.data, I, n, device)
    opt = torch.optim.AdamW([W, b, W_gate], lr=args.lr, weight_decay=args.weight_decay)

    def batch_loss():
        feat = torch.rand((B, I, n), device=device)
        x = torch.where(torch.rand((B, I, n), device=device) <= feature_probability, feat, torch.zeros((), device=device))
        logits = torch.einsum("bin,ine->bie", x, W_gate)
        prob = torch.softmax(logits, dim=-1)
        chosen = logits.topk(K, dim=-1).indices                      # (B, I, K)
        gates = prob.gather(-1, chosen)
        if args.renormalize:
            gates = gates / gates.sum(-1, keepdim=True)
        weights = torch.zeros_like(prob).scatter(-1, chosen, gates)  # (B, I, E), zero off the chosen experts
        h = torch.einsum("bin,ienm->biem", x, W)
        if args.expert_model == "relu_hidden":
            h = torch.relu(h)
        out = torch.relu(torch.einsum("biem,ienm->bien", h, W) + b)
        y = torch.einsum("bie,bien->bin", weights, out)
        task = (importance * (y - x) ** 2).mean(dim=(0, 2)).sum()
        routed = torch.zeros_like(prob).scatter(-1, chosen, 1.0).mean(0) / K  # f_e (I, E)
        balance = args.load_balance * E * (routed.detach() * prob.mean(0)).sum()
        z = args.z_loss * (torch.logsumexp(logits, dim=-1) ** 2).mean(0).sum()
        return task + balance + z

    def step():
        loss = batch_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    steps, seconds = run_steps(step, device, args, warmup=5, chunk=5)
    whole_script = finish(args, {"W": W, "b": b, "W_gate": W_gate}, batch_loss)
    print(json.dumps({
        "peer": "pytorch moe toy loop (moe_toy.py)",
        "torch_version": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "experts_computed": "all E per token, masked by the gates",
        "steps": steps,
        "seconds": round(seconds, 4),
        "steps_per_second": round(steps / seconds, 2),
        **whole_script,
    }))


if __name__ == "__main__":
    main()
