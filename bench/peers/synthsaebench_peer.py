#!/usr/bin/env python3
"""SynthSAEBench's protocol in plain PyTorch, beside `nativeengine bench synthsaebench`.

Trains BatchTopK and Matryoshka BatchTopK SAEs on the shards the engine wrote (raw bfloat16 or float32, samples of
the generator's training stream), shuffled epoch by epoch, with the engine's training rules (decoder rows random unit
vectors, W_enc = W_dec^T, b_dec at the geometric median of the first batch, Adam 0.9/0.999/1e-8 at a constant lr,
decoder gradient projected off each row and rows renormalised after each step, AuxK on latents dead for 10M tokens
with k_aux = d/2 and coefficient 1/32 normalised by the residual's energy, batchtopk's inference threshold an EMA of
the smallest kept code). Matryoshka adds the reconstruction loss of each inner width (128, 512, 2048 below the full
width) and an AuxK term per level (dead latents of the level reconstructing the residual of the levels up to it,
scaled by min(dead / k_aux, 1)), as SAELens's MatryoshkaBatchTopK with use_matryoshka_aux_loss.

Every dictionary (its own, and with --evaluate the engine's saved ones, SAELens layout) is measured with SynthSAEBench's
metrics on the evaluation set the engine wrote (x.npy and the true active features): MCC (Hungarian matching of
|cos| by scipy.optimize.linear_sum_assignment), uniqueness, per-latent precision/recall/F1/accuracy against each
latent's best feature, explained variance, shrinkage, L0, true L0, dead latents; as docs/synthsaebench.md defines them.

Runs on PyTorch 1.13 (Debian) and 2.x, CPU. Prints progress on stderr and its JSON as the last stdout line.
"""
import argparse
import glob
import json
import os
import struct
import sys
import time

import numpy as np
import torch

IMPLEMENTED = ("batchtopk", "matryoshka_batchtopk")
MATRYOSHKA_WIDTHS = (128, 512, 2048)
DEAD_WINDOW = 10_000_000
AUXK_ALPHA = 1.0 / 32


def log(message):
    print(message, file=sys.stderr, flush=True)


def read_safetensors(path):
    """The float32 and int32 tensors of a .safetensors file, as numpy arrays."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        base = 8 + length
        out = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype = {"F32": np.float32, "I32": np.int32}.get(entry["dtype"])
            if dtype is None:
                raise ValueError(f"{path}: tensor {name} has dtype {entry['dtype']}; this peer reads F32 and I32")
            begin, end = entry["data_offsets"]
            f.seek(base + begin)
            out[name] = np.frombuffer(f.read(end - begin), dtype=dtype).reshape(entry["shape"]).copy()
        return out


class Shards:
    """Samples [tokens][d] from raw shards, served shuffled: each epoch visits chunks of CHUNK tokens in a random
    order and each chunk's rows in a random order."""
    CHUNK = 65536

    def __init__(self, folder, pattern, dtype, d, seed):
        paths = sorted(glob.glob(os.path.join(folder, pattern)))
        if not paths:
            raise SystemExit(f"no shards {pattern} in {folder}")
        element = np.uint16 if dtype == "bfloat16" else np.float32
        self.maps = [np.memmap(p, dtype=element, mode="r").reshape(-1, d) for p in paths]
        self.bf16 = dtype == "bfloat16"
        self.d = d
        self.chunks = [(i, s, min(s + self.CHUNK, m.shape[0])) for i, m in enumerate(self.maps)
                       for s in range(0, m.shape[0], self.CHUNK)]
        self.rng = np.random.default_rng(seed)
        self.pending = np.empty((0, d), dtype=np.float32)

    def _rows(self, shard, begin, end):
        raw = np.asarray(self.maps[shard][begin:end])
        if self.bf16:
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32, copy=True)

    def batches(self, batch):
        while True:
            for c in self.rng.permutation(len(self.chunks)):
                rows = self._rows(*self.chunks[c])
                rows = rows[self.rng.permutation(rows.shape[0])]
                self.pending = np.concatenate([self.pending, rows]) if self.pending.size else rows
                while self.pending.shape[0] >= batch:
                    out, self.pending = self.pending[:batch], self.pending[batch:]
                    yield torch.from_numpy(np.ascontiguousarray(out))


def geometric_median(x, iterations=100, tolerance=1e-7):
    x = x.double()
    c = x.mean(0)
    for _ in range(iterations):
        dist = (x - c).norm(dim=1)
        keep = dist > 1e-12
        w = 1.0 / dist[keep]
        new = (x[keep] * w[:, None]).sum(0) / w.sum()
        moved = (new - c).norm()
        c = new
        if moved < tolerance * (1 + c.norm()):
            break
    return c.float()


class BatchTopKSae(torch.nn.Module):
    def __init__(self, d, m, k, widths, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w_dec = torch.randn(m, d, generator=g)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.W_dec = torch.nn.Parameter(w_dec)
        self.W_enc = torch.nn.Parameter(w_dec.t().clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(m))
        self.b_dec = torch.nn.Parameter(torch.zeros(d))
        self.k = k
        self.widths = [w for w in widths if w < m] + [m]
        self.threshold = None
        self.since_fired = torch.zeros(m, dtype=torch.long)

    def step(self, x, optimizer):
        batch, d = x.shape
        m = self.W_dec.shape[0]
        u = (x - self.b_dec) @ self.W_enc + self.b_enc
        relu = torch.relu(u)
        kept, flat = relu.flatten().topk(self.k * batch)
        z = torch.zeros_like(relu).flatten().scatter(0, flat, kept).view(batch, m)
        positive = kept[kept > 0]
        if positive.numel() > 0:
            smallest = positive.min().item()
            self.threshold = smallest if self.threshold is None else 0.99 * self.threshold + 0.01 * smallest
        dead = self.since_fired >= DEAD_WINDOW
        loss = torch.zeros(())
        partial = self.b_dec.expand(batch, d)
        previous = 0
        k_aux = max(1, d // 2)
        for width in self.widths:
            partial = partial + z[:, previous:width] @ self.W_dec[previous:width]
            loss = loss + ((x - partial) ** 2).sum(-1).mean()
            level_dead = dead[previous:width]
            dead_count = int(level_dead.sum())
            # BatchTopK (one level): the engine's AuxK; Matryoshka: one term per level, scaled by its dead share.
            if dead_count > 0:
                residual = (x - partial).detach()
                scores = u[:, previous:width].masked_fill(~level_dead, float("-inf"))
                top, index = scores.topk(min(k_aux, dead_count), dim=1)
                codes = torch.zeros_like(scores).scatter(1, index, torch.relu(top))
                rebuilt = codes @ self.W_dec[previous:width]
                energy = (residual ** 2).sum()
                if energy > 0:
                    scale = 1.0 if len(self.widths) == 1 else min(dead_count / k_aux, 1.0)
                    loss = loss + AUXK_ALPHA * scale * ((residual - rebuilt) ** 2).sum() / energy
            previous = width
        optimizer.zero_grad()
        loss.backward()
        with torch.no_grad():
            unit = self.W_dec / self.W_dec.norm(dim=1, keepdim=True)
            g = self.W_dec.grad
            g -= (g * unit).sum(1, keepdim=True) * unit
        optimizer.step()
        with torch.no_grad():
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)
            fired = (z > 0).any(0)
            self.since_fired += batch
            self.since_fired[fired] = 0
        return loss.item(), (z > 0).sum().item() / batch

    def inference(self):
        """The dictionary as the engine saves a batchtopk one: jumprelu with the global threshold per latent."""
        m = self.W_dec.shape[0]
        return Dictionary(self.W_enc.detach(), self.b_enc.detach(), self.W_dec.detach(), self.b_dec.detach(),
                          "jumprelu", torch.full((m,), float(self.threshold or 0.0)), None)


class Dictionary:
    def __init__(self, W_enc, b_enc, W_dec, b_dec, architecture, threshold, k):
        self.W_enc, self.b_enc, self.W_dec, self.b_dec = W_enc, b_enc, W_dec, b_dec
        self.architecture, self.threshold, self.k = architecture, threshold, k

    @staticmethod
    def load(folder):
        cfg = json.load(open(os.path.join(folder, "cfg.json")))
        t = read_safetensors(os.path.join(folder, "sae_weights.safetensors"))
        arch = cfg.get("architecture", "standard")
        tensor = lambda name: torch.from_numpy(t[name]).float()
        threshold = tensor("threshold") if "threshold" in t else None
        return Dictionary(tensor("W_enc"), tensor("b_enc"), tensor("W_dec"), tensor("b_dec"), arch, threshold, cfg.get("k"))

    def encode(self, x):
        u = (x - self.b_dec) @ self.W_enc + self.b_enc
        if self.architecture == "jumprelu":
            return u * (u > torch.clamp(self.threshold, min=0))
        if self.architecture == "topk":
            top, index = u.topk(int(self.k), dim=1)
            return torch.zeros_like(u).scatter(1, index, torch.relu(top))
        return torch.relu(u)


def unit_rows(a):
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-8)


def measure(dictionary, features, evaluation, batch=4096):
    """SynthSAEBench's metrics (docs/synthsaebench.md, "Metrics")."""
    from scipy.optimize import linear_sum_assignment
    start = time.time()
    x_all, begin, index = evaluation
    W_dec = dictionary.W_dec.numpy().astype(np.float64)
    cos = np.abs(unit_rows(W_dec) @ unit_rows(features.astype(np.float64)).T)  # [latents][features]
    rows, cols = linear_sum_assignment(1.0 - cos)
    mcc = float(cos[rows, cols].mean())
    best = cos.argmax(axis=1)
    m, n = cos.shape
    del cos
    uniqueness = len(np.unique(best)) / m if m else 0.0
    tp = np.zeros(m, np.int64)
    fp = np.zeros(m, np.int64)
    fn = np.zeros(m, np.int64)
    fires = np.zeros(m, np.int64)
    samples = x_all.shape[0]
    squared_error = sum_x2 = 0.0
    sum_x = np.zeros(x_all.shape[1])
    l0 = true_l0 = shrink = 0.0
    shrink_count = 0
    for s in range(0, samples, batch):
        e = min(samples, s + batch)
        x = torch.from_numpy(np.ascontiguousarray(x_all[s:e]))
        with torch.no_grad():
            z = dictionary.encode(x)
            x_hat = z @ dictionary.W_dec + dictionary.b_dec
        z = z.numpy() > 0
        truth = np.zeros((e - s, n), dtype=bool)
        for t in range(s, e):
            truth[t - s, index[begin[t]:begin[t + 1]]] = True
        true_of_best = truth[:, best]
        tp += (z & true_of_best).sum(0)
        fp += (z & ~true_of_best).sum(0)
        fn += (~z & true_of_best).sum(0)
        fires += z.sum(0)
        xd = x.double().numpy()
        xh = x_hat.double().numpy()
        squared_error += ((xd - xh) ** 2).sum()
        sum_x += xd.sum(0)
        sum_x2 += (xd ** 2).sum()
        norms = np.linalg.norm(xd, axis=1)
        ok = norms > 1e-6
        shrink += (np.linalg.norm(xh, axis=1)[ok] / norms[ok]).sum()
        shrink_count += int(ok.sum())
        l0 += z.sum()
        true_l0 += truth.sum()
    tn = samples - tp - fp - fn
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    mean_x = sum_x / samples
    variance = sum_x2 / samples - (mean_x ** 2).sum()
    mse = squared_error / samples
    if variance < 1e-10:
        explained = 1.0 if squared_error < 1e-10 else 0.0
    else:
        explained = 1.0 - mse / variance
    return {
        "mcc": mcc, "f1": float(f1.mean()), "precision": float(precision.mean()), "recall": float(recall.mean()),
        "accuracy": float(((tp + tn) / samples).mean()), "uniqueness": uniqueness, "explained_variance": float(explained),
        "shrinkage": shrink / shrink_count if shrink_count else 0.0, "l0": l0 / samples, "true_l0": true_l0 / samples,
        "dead_latents": int((fires == 0).sum()), "samples": samples, "seconds": time.time() - start,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="the folder of the shards and ground_truth.safetensors")
    p.add_argument("--pattern", default="shard_*.bf16")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--eval", required=True, help="the folder of x.npy, active_begin.npy, active_index.npy")
    p.add_argument("--out", required=True)
    p.add_argument("--architectures", default="batchtopk,matryoshka_batchtopk")
    p.add_argument("--width", type=int, default=4096)
    p.add_argument("--l0", type=int, default=25)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--samples", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--evaluate", action="append", default=[], metavar="NAME=FOLDER",
                   help="also measure a saved SAELens-layout dictionary (the engine's), named NAME")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    truth = read_safetensors(os.path.join(a.data, "ground_truth.safetensors"))
    features = truth["features"]
    d = features.shape[1]
    evaluation = (np.load(os.path.join(a.eval, "x.npy"), mmap_mode="r"),
                  np.load(os.path.join(a.eval, "active_begin.npy"))[:, 0].astype(np.int64),
                  np.load(os.path.join(a.eval, "active_index.npy"))[:, 0])
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for name in [s for s in a.architectures.split(",") if s]:
        if name not in IMPLEMENTED:
            rows.append({"architecture": name, "status": f"not implemented by the peer (it trains {', '.join(IMPLEMENTED)})"})
            continue
        widths = MATRYOSHKA_WIDTHS if name == "matryoshka_batchtopk" else ()
        sae = BatchTopKSae(d, a.width, a.l0, widths, a.seed)
        source = Shards(a.data, a.pattern, a.dtype, d, a.seed)
        stream = source.batches(a.batch)
        first = next(stream)
        with torch.no_grad():
            sae.b_dec.copy_(geometric_median(first))
        optimizer = torch.optim.Adam(sae.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
        steps = (a.samples + a.batch - 1) // a.batch
        start = time.time()
        for step in range(steps):  # the first batch only placed b_dec, as in the engine
            x = next(stream)
            loss, l0 = sae.step(x, optimizer)
            if step % 200 == 0 or step == steps - 1:
                log(f"peer {name}: step {step + 1}/{steps} loss {loss:.4f} L0 {l0:.1f}")
        seconds = time.time() - start
        log(f"peer {name}: measuring on {evaluation[0].shape[0]} samples")
        metrics = measure(sae.inference(), features, evaluation)
        rows.append({"architecture": name, "status": "ok", "train_seconds": seconds,
                     "samples_per_second": steps * a.batch / seconds if seconds > 0 else None, "metrics": metrics})
    agreement = []
    for spec in a.evaluate:
        name, folder = spec.split("=", 1)
        log(f"peer: measuring the engine's {name} dictionary")
        agreement.append({"architecture": name, "dictionary": folder,
                          "metrics": measure(Dictionary.load(folder), features, evaluation)})
    import scipy
    print(json.dumps({"peer": "pytorch", "version": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                      "threads": torch.get_num_threads(), "rows": rows, "agreement": agreement}))


if __name__ == "__main__":
    main()
