"""Throughput of noisypo.vmf.sample_vmf against scipy.stats.vonmises_fisher.

Both samplers draw the same (d, kappa, n) in one run; the script prints
floats per second (n * d / seconds, best of several repeats) and the ratio.
SciPy returns float64, so the float64 row is the like-for-like comparison;
the float32 row is what the book's experiments use.

    python benchmarks/bench_vmf.py                # torch's default threads, then 1
    python benchmarks/bench_vmf.py --threads 2

On a machine whose cores are shared with other jobs, torch's intra-op
threads can contend with them and run several times slower than one
thread, so by default both settings are timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import scipy
import torch
from scipy import stats

from noisypo.vmf import sample_vmf


def best_seconds(func, repeats: int, warm_up: bool = True) -> float:
    """Return the shortest wall time of ``repeats`` calls, after one untimed call if ``warm_up``."""
    if warm_up:
        func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def mean_direction(d: int) -> np.ndarray:
    """Return a unit vector that is not a basis vector, so that both samplers really rotate."""
    mu = np.zeros(d)
    mu[0], mu[1] = 0.6, 0.8
    return mu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        action="append",
        help="torch intra-op thread count to time; repeat for several (default: torch's default and 1)",
    )
    parser.add_argument("--kappa", type=float, default=100.0, help="concentration (default 100)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of our sampler (default 5)")
    parser.add_argument("--device", default="cpu", help="torch device for our sampler (default cpu)")
    args = parser.parse_args()
    threads = args.threads or sorted({torch.get_num_threads(), 1}, reverse=True)

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, device {args.device}, "
        f"SciPy {scipy.__version__}"
    )
    # SciPy builds a dense d x d rotation per call, so a small n would
    # understate its rate. These n keep its run near 10-20 s on an idle 2-core CPU.
    cases = [(1000, 3000), (4096, 500)]
    print(
        f"{'d':>5} {'n':>6} {'kappa':>7} {'SciPy Mfl/s':>12} {'threads':>8} "
        f"{'ours f64':>10} {'ours f32':>10} {'ratio f64':>10} {'ratio f32':>10}"
    )
    generator = torch.Generator(device=args.device).manual_seed(0)
    for d, n in cases:
        mu_np = mean_direction(d)
        scipy_dist = stats.vonmises_fisher(mu_np, args.kappa)
        rng = np.random.default_rng(0)
        scipy_s = best_seconds(lambda: scipy_dist.rvs(n, random_state=rng), repeats=1, warm_up=False)
        scipy_rate = n * d / scipy_s
        for count in threads:
            torch.set_num_threads(count)
            rates = {}
            for dtype in (torch.float64, torch.float32):
                mu = torch.tensor(mu_np, dtype=dtype, device=args.device)

                def draw():
                    sample_vmf(mu, args.kappa, n, generator=generator)
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()

                rates[dtype] = n * d / best_seconds(draw, args.repeats)
            print(
                f"{d:>5} {n:>6} {args.kappa:>7g} {scipy_rate / 1e6:>12.2f} {count:>8} "
                f"{rates[torch.float64] / 1e6:>10.1f} {rates[torch.float32] / 1e6:>10.1f} "
                f"{rates[torch.float64] / scipy_rate:>9.0f}x {rates[torch.float32] / scipy_rate:>9.0f}x"
            )


if __name__ == "__main__":
    main()
