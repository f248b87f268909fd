"""Exact population risk against a Monte-Carlo test set: time and error side by side.

    python benchmarks/bench_risk.py [--boundaries 1000] [--d 64] [--kappa 256]

For many random boundaries near the Bayes direction, measures

* the time of ``noisypo.risk.population_risk`` (exact quadrature), and
* the time of a Monte-Carlo test set of 2,000 samples (the test-set size of
  the vMF experiments of Im and Li, 2025, arXiv:2510.01458), drawn once and
  shared by all boundaries,

and prints the largest deviation of the Monte-Carlo estimates from the exact
values, in absolute terms and in standard errors.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from noisypo import risk, vmf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boundaries", type=int, default=1000, help="number of boundaries")
    parser.add_argument("--d", type=int, default=64, help="dimension")
    parser.add_argument("--kappa", type=float, default=64.0, help="concentration")
    parser.add_argument("--phi", type=float, default=math.pi / 2, help="angle between the means, radians")
    parser.add_argument("--test-samples", type=int, default=2000, help="Monte-Carlo test samples in all")
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    mu_plus, mu_minus = vmf.two_class_means(args.d, args.phi)
    bayes = (mu_plus - mu_minus) / (mu_plus - mu_minus).norm()
    noise = torch.randn(args.boundaries, args.d, generator=generator, dtype=torch.float64)
    delta = bayes + 0.3 * noise / noise.norm(dim=1, keepdim=True)  # (boundaries, d)

    start = time.perf_counter()
    exact = risk.population_risk(delta, mu_plus, mu_minus, args.kappa)
    exact_seconds = time.perf_counter() - start

    start = time.perf_counter()
    half = args.test_samples // 2
    x_plus = vmf.sample_vmf(mu_plus, args.kappa, half, generator=generator)
    x_minus = vmf.sample_vmf(mu_minus, args.kappa, half, generator=generator)
    errors = torch.cat([x_plus @ delta.T <= 0, x_minus @ delta.T >= 0]).double()  # (samples, boundaries)
    estimate = errors.mean(dim=0).numpy()
    mc_seconds = time.perf_counter() - start
    # The standard error of a test-set estimate, from the exact risk.
    standard_error = np.sqrt(exact * (1 - exact) / errors.shape[0])

    deviation = np.abs(estimate - exact)
    print(f"d={args.d} kappa={args.kappa} phi={args.phi:.4f} boundaries={args.boundaries}")
    print(f"exact risk:   {exact_seconds:8.3f} s  ({args.boundaries / exact_seconds:10.0f} boundaries/s)")
    print(f"Monte Carlo:  {mc_seconds:8.3f} s  ({args.test_samples} test samples)")
    print(f"median exact risk {np.median(exact):.3e}; median MC standard error {np.median(standard_error):.3e}")
    print(f"largest |MC - exact| {deviation.max():.3e}; largest in standard errors {np.max(deviation / standard_error):.2f}")
    print(f"boundaries whose MC estimate is exactly 0: {np.mean(estimate == 0):.1%}")


if __name__ == "__main__":
    main()
