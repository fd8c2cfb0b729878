#!/usr/bin/env python3
"""A TopK sparse autoencoder trained the way EleutherAI's sparsify and OpenAI's sparse_autoencoder train one: the
dense encoder product, then everything after the top-k runs over the k active latents only.
 - Encoder: one autograd function (sparsify's fused encoder). Its backward gives the input's gradient as a weighted
   sum of the chosen rows of W_enc (embedding_bag), and W_enc's gradient as the sparse [d_sae x tokens] matrix of
   code gradients times the inputs (OpenAI's sparse-transpose-dense product, here torch.sparse.mm: on the CPU,
   index_add_ of the per-code rows, which sparsify uses on GPUs, is a row-at-a-time loop in PyTorch 1.13).
 - Decoder: embedding_bag of the chosen rows of W_dec weighted by the codes (sparsify's decoder without Triton),
   whose native backward is sparse too: each code's gradient is the dot product of its row with the output's
   gradient, and W_dec's gradient is accumulated row by row.
The same model, loss and optimizer as topk_sae.py (MSE, Adam, unit decoder rows with the parallel gradient
component removed); `nativeengine bench factorize` measures it beside the plain one. Prints one JSON line (tokens
per second)."""
import argparse
import json

import torch
import torch.nn.functional as F

from torch_peer import add_run_options, device_for, finish, run_steps


class TopKEncoder(torch.autograd.Function):
    """(values, indices) of the k largest of relu(x W_enc^T + b_enc) per row; W_enc is [d_sae][d] as in nn.Linear."""

    @staticmethod
    def forward(ctx, x, W_enc, b_enc, k):
        values, indices = F.relu(F.linear(x, W_enc, b_enc)).topk(k, dim=-1, sorted=False)
        ctx.save_for_backward(x, W_enc, values, indices)
        return values, indices

    @staticmethod
    def backward(ctx, grad_values, grad_indices):
        x, W_enc, values, indices = ctx.saved_tensors
        grad_pre = grad_values * (values > 0)  # through the relu
        tokens, k = indices.shape
        grad_x = F.embedding_bag(indices, W_enc, mode="sum", per_sample_weights=grad_pre)
        # [d_sae x tokens] with the code gradients where codes are, times x: only the chosen rows of W_enc move.
        where = torch.stack([indices.reshape(-1), torch.arange(tokens, device=x.device).repeat_interleave(k)])
        codes = torch.sparse_coo_tensor(where, grad_pre.reshape(-1), (W_enc.shape[0], tokens))
        grad_W = torch.sparse.mm(codes, x)
        grad_b = torch.zeros(W_enc.shape[0], dtype=W_enc.dtype, device=W_enc.device).index_add_(
            0, indices.reshape(-1), grad_pre.reshape(-1))
        return grad_x, grad_W, grad_b, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--synthetic", default=None, metavar="FEATURES,ACTIVE,DECAY",
                    help="train on fresh synthetic batches (Sharkey et al.: FEATURES random unit directions, feature i "
                         "active with probability proportional to DECAY^i, ACTIVE on average, coefficients U[0,1)) "
                         "instead of one fixed Gaussian batch")
    add_run_options(ap)
    args = ap.parse_args()
    device = device_for(args)
    d, m, k = args.d, args.d_sae, args.k

    W_dec = torch.nn.Parameter(F.normalize(torch.randn(m, d, device=device), dim=1))
    W_enc = torch.nn.Parameter(W_dec.detach().clone())
    b_enc = torch.nn.Parameter(torch.zeros(m, device=device))
    b_dec = torch.nn.Parameter(torch.zeros(d, device=device))
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=2e-4 / (m / 2 ** 14) ** 0.5)
    fixed = torch.randn(args.batch, d, device=device)
    if args.synthetic:
        count, active, decay = args.synthetic.split(",")
        features = F.normalize(torch.randn(int(count), d, device=device), dim=1)
        probability = float(decay) ** torch.arange(int(count), device=device, dtype=torch.float32)
        probability = (probability * float(active) / probability.sum()).clamp(max=1)

    def batch():
        if not args.synthetic:
            return fixed
        codes = (torch.rand(args.batch, len(probability), device=device) < probability) * torch.rand(
            args.batch, len(probability), device=device)
        return codes @ features

    def step():
        x = batch()
        values, indices = TopKEncoder.apply(x - b_dec, W_enc, b_enc, k)
        x_hat = F.embedding_bag(indices, W_dec, mode="sum", per_sample_weights=values) + b_dec
        loss = (x_hat - x).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            unit = W_dec / W_dec.norm(dim=1, keepdim=True)
            W_dec.grad -= (W_dec.grad * unit).sum(1, keepdim=True) * unit
        opt.step()
        with torch.no_grad():
            W_dec.div_(W_dec.norm(dim=1, keepdim=True))

    def batch_loss():
        x = batch()
        values, indices = TopKEncoder.apply(x - b_dec, W_enc, b_enc, k)
        x_hat = F.embedding_bag(indices, W_dec, mode="sum", per_sample_weights=values) + b_dec
        return (x_hat - x).pow(2).sum(-1).mean()

    steps, seconds = run_steps(step, device, args, warmup=2, chunk=1)
    whole_script = finish(args, {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}, batch_loss)
    if whole_script and args.synthetic:
        # Mean max cosine of the true features with the learned decoder rows, as factorize's metrics report it.
        with torch.no_grad():
            whole_script["mmcs"] = round(float((features @ F.normalize(W_dec, dim=1).t()).max(1).values.mean()), 4)
    print(json.dumps({
        "peer": "pytorch topk sae, sparse decoder and backward (sparsify-style)",
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "d": d, "d_sae": m, "k": k, "batch": args.batch,
        "steps": steps, "seconds": round(seconds, 4),
        "tokens_per_second": round(steps * args.batch / seconds, 1),
        **whole_script,
    }))


if __name__ == "__main__":
    main()
