"""What the PyTorch peers share: the options every run takes, the importance and probabilities a resolved config
passes in (--data), and the timing loop, so that every peer is timed the same way. With --steps a peer runs as a
user's whole script instead (`nativeengine bench e2e` times it from process start to exit): exactly that many
steps, then the final loss on fresh batches and the weights saved under --out."""
import json
import os
import time

import torch


def add_run_options(ap):
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=0,
                    help="whole-script mode: train exactly this many steps, evaluate, save under --out (0: time --seconds)")
    ap.add_argument("--out", default=None, help="whole-script mode: folder for weights.pt and results.json")


def device_for(args):
    """Applies --threads (0: torch's default) and returns the --device."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)


def load_data(path, instances, n, device):
    """(importance, feature_probability), each (instances, n), from a JSON file {"importance": [I*n],
    "feature_probability": [I*n]} (row-major, instance first)."""
    with open(path) as f:
        data = json.load(f)
    return tuple(torch.tensor(data[key], device=device, dtype=torch.float32).reshape(instances, n)
                 for key in ("importance", "feature_probability"))


def time_steps(step, device, seconds, warmup, chunk):
    """Runs `warmup` untimed steps, then steps in chunks of `chunk`, each chunk ended by a device sync, until
    `seconds` have passed. Returns (steps, seconds)."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(chunk):
            step()
        sync()
        steps += chunk
    return steps, time.perf_counter() - start


def run_steps(step, device, args, warmup, chunk):
    """Exactly --steps steps (whole-script mode, no warm-up: a user's script has none), or time_steps for --seconds.
    Returns (steps, seconds)."""
    if args.steps <= 0:
        return time_steps(step, device, args.seconds, warmup, chunk)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps, time.perf_counter() - start


def finish(args, weights, evaluate=None, batches=16):
    """Whole-script mode's end, as a user's script ends: the mean loss over `batches` fresh batches (evaluate()
    returns one batch's loss) and the weights and results saved under --out. Returns the fields to report."""
    if args.steps <= 0:
        return {}
    result = {"mode": "whole script", "steps": args.steps}
    if evaluate is not None:
        with torch.no_grad():
            result["final_loss"] = round(sum(float(evaluate()) for _ in range(batches)) / batches, 6)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        torch.save({name: t.detach().cpu() for name, t in weights.items()}, os.path.join(args.out, "weights.pt"))
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(result, f)
    return result
