"""Time batched gradient descent against a loop over problems, and the kernel choice.

    python benchmarks/bench_dynamics.py [--problems 200] [--n 100] [--d 32] [--steps 50]

Prints, side by side in one run:

* ``noisypo.dynamics.gradient_descent`` on all problems at once versus one
  call per problem (same data, same result);
* the elementwise product-and-sum kernel the package uses versus a matmul
  kernel, for one full-batch gradient, which shows what the bit-exact
  batching costs.
"""

from __future__ import annotations

import argparse
import time

import torch

from noisypo import dynamics
from noisypo.losses import get_loss


def best_time(function, repeats: int = 3) -> float:
    """Return the best wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gradient(delta, x, s, beta, loss):
    """The same gradient as the package's kernel, with matmuls (not bit-stable)."""
    r = beta * s * (x @ delta.unsqueeze(-1)).squeeze(-1)  # (..., N)
    weights = loss.f_prime(r) * s
    return beta * (weights.unsqueeze(-2) @ x).squeeze(-2) / x.shape[-2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200, help="number of independent problems")
    parser.add_argument("--n", type=int, default=100, help="pairs per problem")
    parser.add_argument("--d", type=int, default=32, help="embedding dimension")
    parser.add_argument("--steps", type=int, default=50, help="gradient steps")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads; on a loaded shared machine more than 1 can be far slower",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    dtype = getattr(torch, args.dtype)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.problems, args.n, args.d, generator=generator, dtype=dtype)
    x = x / x.norm(dim=-1, keepdim=True)
    s = torch.where(torch.rand(args.problems, args.n, generator=generator) < 0.5, -1.0, 1.0).to(dtype)
    options = dict(beta=0.1, lr=50.0, steps=args.steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, "
          f"{args.problems} problems x N={args.n} x d={args.d}, {args.steps} steps")

    batched = best_time(lambda: dynamics.gradient_descent(x, s, "dpo", **options))
    looped = best_time(
        lambda: [dynamics.gradient_descent(x[i], s[i], "dpo", **options) for i in range(args.problems)], repeats=1
    )
    print(f"gradient_descent  batched {batched * 1e3:9.1f} ms   loop {looped * 1e3:9.1f} ms   "
          f"loop / batched {looped / batched:6.1f}")

    loss = get_loss("dpo")
    delta = torch.randn(args.problems, args.d, generator=generator, dtype=dtype)
    beta = torch.tensor(0.1, dtype=dtype)
    elementwise = best_time(lambda: [dynamics._row_gradient(delta, x, s, beta, (loss,)) for _ in range(20)]) / 20
    matmul = best_time(lambda: [matmul_gradient(delta, x, s, beta, loss) for _ in range(20)]) / 20
    print(f"one gradient      elementwise {elementwise * 1e3:7.3f} ms   matmul {matmul * 1e3:7.3f} ms   "
          f"elementwise / matmul {elementwise / matmul:6.2f}")


if __name__ == "__main__":
    main()
