"""What the PyTorch peers share: the options every run takes, the importance and probabilities a resolved config
passes in (--data), and the timing loop, so that every peer is timed the same way."""
import json
import time

import torch


def add_run_options(ap):
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)


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
