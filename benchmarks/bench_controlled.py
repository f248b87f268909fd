"""Time the batched controlled-experiment engine against a per-trial PyTorch loop.

    python benchmarks/bench_controlled.py [--device cpu] [--loop-trials 2] [--all]

Part 1 runs one paper-scale grid (the cpu profile's kappa sweep: 5 kappas x
21 noise rates in [0, 1/2] x 3 losses x 100 trials, mislabeled labels) with
:func:`noisypo.experiments.controlled.run_controlled`, and a subsample of the
same runs with the plain loop of :mod:`noisypo.experiments.reference` (one
``nn.Linear`` policy, autograd and ``torch.optim.SGD`` per run). A "run" is
one data set, noise rate and loss: 10 gradient steps and a test accuracy on
2,000 points. The engine's time includes drawing the data and the exact
risk integral. The loop's time covers training and testing only, on data
drawn beforehand, so the ratio understates the engine's advantage.

Part 2 (``--all``) times every grid of the paper-scale profile: the kappa
and n sweeps for mislabeled and uncertain labels, as
``python -m noisypo controlled --profile cpu`` runs them.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from noisypo import profiles
from noisypo.experiments.controlled import (
    draw_datasets,
    epsilon_grid,
    run_controlled,
    sweep_configs,
)
from noisypo.experiments.reference import reference_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device of the engine (default: cpu)")
    parser.add_argument("--loop-trials", type=int, default=2,
                        help="trials of one kappa that the per-trial loop runs (default: 2)")
    parser.add_argument("--all", action="store_true", help="also time every paper-scale grid")
    args = parser.parse_args()

    sizes = profiles.sizes("controlled", "cpu")
    config = sweep_configs(sizes, "mislabeled", device=args.device)["kappa"]
    config = config.replace(epsilons=epsilon_grid(sizes["epsilon_step"], 0.5))
    runs = len(config.kappas) * len(config.epsilons) * len(config.losses) * config.trials
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; "
          f"load average {os.getloadavg()[0]:.1f} (other processes share the CPU when it exceeds the cores); "
          f"engine device {args.device}")
    print(f"grid: d={config.d}, n={config.ns[0]}, {len(config.kappas)} kappas x {len(config.epsilons)} "
          f"epsilons x {len(config.losses)} losses x {config.trials} trials = {runs} runs, "
          f"{config.test_samples} test points each")

    started, started_cpu = time.perf_counter(), time.process_time()
    results = run_controlled(config, progress=False)
    engine_seconds = time.perf_counter() - started
    engine_cpu = time.process_time() - started_cpu
    exact_free = run_controlled(config.replace(exact=False), progress=False).seconds

    kappa = config.kappas[len(config.kappas) // 2]
    loop_config = config.replace(device="cpu")
    item = draw_datasets(loop_config, kappa)
    loop_runs = args.loop_trials * len(config.epsilons) * len(config.losses)
    started, started_cpu = time.perf_counter(), time.process_time()
    reference_runs(loop_config, item, config.ns[0], range(args.loop_trials))
    loop_seconds = time.perf_counter() - started
    loop_cpu = time.process_time() - started_cpu

    engine_per_run = engine_seconds / runs
    loop_per_run = loop_seconds / loop_runs
    print(f"engine: {engine_seconds:8.2f} s for {runs} runs = {1e3 * engine_per_run:8.3f} ms per run "
          f"(CPU time {engine_cpu:.2f} s; without the exact risk: {exact_free:.2f} s)")
    print(f"loop:   {loop_seconds:8.2f} s for {loop_runs} runs = {1e3 * loop_per_run:8.3f} ms per run "
          f"(CPU time {loop_cpu:.2f} s; kappa={kappa:g}, {args.loop_trials} trials)")
    print(f"speed-up of the engine per run: {loop_per_run / engine_per_run:.1f}x wall clock, "
          f"{(loop_cpu / loop_runs) / (engine_cpu / runs):.1f}x CPU time "
          f"(loop estimate for the whole grid: {loop_per_run * runs / 60:.1f} min)")
    mean_gap = (results.trials.accuracy_sampled - results.trials.accuracy_exact).mean()
    print(f"mean sampled - exact accuracy over the grid: {mean_gap:+.5f}")

    if args.all:
        total = 0.0
        for noise_model in ("mislabeled", "uncertain"):
            for sweep, grid in sweep_configs(sizes, noise_model, device=args.device).items():
                seconds = run_controlled(grid, progress=False).seconds
                total += seconds
                count = len(grid.kappas) * len(grid.ns) * len(grid.epsilons) * len(grid.losses) * grid.trials
                print(f"{noise_model:>10}-{sweep:<5} {count:7d} runs {seconds:8.2f} s")
        print(f"all paper-scale grids: {total:.1f} s ({total / 60:.2f} min)")


if __name__ == "__main__":
    main()
