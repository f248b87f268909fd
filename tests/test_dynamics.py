"""Tests of the last-layer model, batched gradient descent and the margin ODE."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch

from noisypo import dynamics
from noisypo.losses import LOSSES, Z, get_loss

NAMES = tuple(LOSSES)


def make_problem(batch=(), n=24, d=5, seed=0, dtype=torch.float64):
    """Unit embeddings x (*batch, n, d) and labels s (*batch, n) in {+1, -1}."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, n, d, generator=generator, dtype=dtype)
    x = x / x.norm(dim=-1, keepdim=True)
    s = torch.where(torch.rand(*batch, n, generator=generator) < 0.5, -1.0, 1.0).to(dtype)
    return x, s


# --- the model and the margin -------------------------------------------------


def test_margins_shape_broadcasts():
    x, s = make_problem(batch=(3,), n=7, d=4)
    delta = torch.randn(2, 3, 4, dtype=torch.float64)
    assert dynamics.margins(delta, x, s, 0.5).shape == (2, 3, 7)


def test_margins_equal_definition():
    x, s = make_problem(n=9, d=4)
    delta = torch.randn(4, dtype=torch.float64)
    expected = 0.3 * s * (x @ delta)
    torch.testing.assert_close(dynamics.margins(delta, x, s, 0.3), expected, rtol=1e-14, atol=1e-15)


def test_softmax_normaliser_cancels():
    x, s = make_problem(n=11, d=4)
    generator = torch.Generator().manual_seed(5)
    weight_ref = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    weight = weight_ref + torch.randn(6, 4, generator=generator, dtype=torch.float64)
    a, b = 1, 3
    h = dynamics.log_ratio_margin(weight, weight_ref, x, s, a=a, b=b)
    delta = (weight[a] - weight[b]) - (weight_ref[a] - weight_ref[b])
    torch.testing.assert_close(h, dynamics.margins(delta, x, s, 1.0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("delta_shape", "s_shape"),
    [((4,), (10,)), ((5,), (9,))],
    ids=["s-too-long", "delta-wrong-d"],
)
def test_margins_shape_mismatch_raises(delta_shape, s_shape):
    x, _ = make_problem(n=9, d=4)
    with pytest.raises(ValueError, match="shape mismatch"):
        dynamics.margins(torch.zeros(delta_shape, dtype=torch.float64), x, torch.ones(s_shape), 0.1)


@pytest.mark.parametrize("beta", [0.0, -0.5, float("inf"), float("nan")])
def test_margins_invalid_beta_raises(beta):
    x, s = make_problem(n=5, d=3)
    with pytest.raises(ValueError, match="beta"):
        dynamics.margins(torch.zeros(3, dtype=torch.float64), x, s, beta)


def test_margins_nonfinite_input_raises():
    x, s = make_problem(n=5, d=3)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        dynamics.margins(torch.zeros(3, dtype=torch.float64), x, s, 0.1)


def test_margins_invalid_labels_raise():
    x, s = make_problem(n=5, d=3)
    s[0] = 0.0
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        dynamics.margins(torch.zeros(3, dtype=torch.float64), x, s, 0.1)


# --- gradients: SymPy, autograd and the explicit formula -----------------------


def _full_softmax_loss(weight, weight_ref, x, s, loss, beta, a, b):
    h = dynamics.log_ratio_margin(weight, weight_ref, x, s, a=a, b=b)
    return loss.f(beta * h).mean()


@pytest.mark.parametrize("name", NAMES)
def test_row_gradient_matches_autograd_of_full_model(name):
    loss = get_loss(name)
    x, s = make_problem(n=15, d=4, seed=2)
    generator = torch.Generator().manual_seed(7)
    weight_ref = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    weight = (weight_ref + torch.randn(5, 4, generator=generator, dtype=torch.float64)).requires_grad_(True)
    a, b, beta = 0, 3, 0.8
    (grad,) = torch.autograd.grad(_full_softmax_loss(weight, weight_ref, x, s, loss, beta, a, b), weight)
    delta = (weight[a] - weight[b] - weight_ref[a] + weight_ref[b]).detach()
    expected = dynamics.row_gradient(delta, x, s, loss, beta)
    torch.testing.assert_close(grad[a], expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad[b], -expected, rtol=1e-12, atol=1e-14)
    others = [row for row in range(5) if row not in (a, b)]
    assert grad[others].abs().max().item() < 1e-14


def test_sympy_gradient_matches_autograd():
    # Derive dL/dW symbolically for a 3-token vocabulary and one pair, then
    # compare with autograd at random numbers, for DPO's f.
    vocab, d, a, b = 3, 2, 0, 1
    w = sympy.Matrix(vocab, d, lambda i, j: sympy.Symbol(f"w{i}{j}", real=True))
    w_ref = sympy.Matrix(vocab, d, lambda i, j: sympy.Symbol(f"v{i}{j}", real=True))
    x = sympy.Matrix(d, 1, lambda i, _: sympy.Symbol(f"x{i}", real=True))
    s, beta = sympy.symbols("s beta", real=True)

    def log_softmax(matrix, token):
        logits = matrix * x
        return logits[token] - sympy.log(sum(sympy.exp(logits[k]) for k in range(vocab)))

    h = s * (log_softmax(w, a) - log_softmax(w_ref, a) - log_softmax(w, b) + log_softmax(w_ref, b))
    loss_expr = get_loss("dpo").sympy_f.subs(Z, beta * h)
    gradient = sympy.Matrix(vocab, d, lambda i, j: sympy.diff(loss_expr, w[i, j]))

    generator = torch.Generator().manual_seed(11)
    w_num = torch.randn(vocab, d, generator=generator, dtype=torch.float64)
    w_ref_num = torch.randn(vocab, d, generator=generator, dtype=torch.float64)
    x_num = torch.randn(d, generator=generator, dtype=torch.float64)
    values = {s: -1, beta: sympy.Rational(7, 10)}
    values.update({w[i, j]: float(w_num[i, j]) for i in range(vocab) for j in range(d)})
    values.update({w_ref[i, j]: float(w_ref_num[i, j]) for i in range(vocab) for j in range(d)})
    values.update({x[i]: float(x_num[i]) for i in range(d)})
    symbolic = torch.tensor([[float(gradient[i, j].subs(values)) for j in range(d)] for i in range(vocab)], dtype=torch.float64)

    weight = w_num.clone().requires_grad_(True)
    labels = torch.tensor([-1.0], dtype=torch.float64)
    loss = _full_softmax_loss(weight, w_ref_num, x_num[None, :], labels, get_loss("dpo"), 0.7, a, b)
    (grad,) = torch.autograd.grad(loss, weight)
    torch.testing.assert_close(symbolic, grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_descent_matches_autograd_training(name):
    loss = get_loss(name)
    x, s = make_problem(n=20, d=3, seed=4)
    generator = torch.Generator().manual_seed(8)
    weight_ref = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    weight = weight_ref.clone().requires_grad_(True)
    a, b, beta, lr, steps = 2, 0, 0.9, 0.4, 25
    optimizer = torch.optim.SGD([weight], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        _full_softmax_loss(weight, weight_ref, x, s, loss, beta, a, b).backward()
        optimizer.step()
    delta_autograd = (weight[a] - weight[b] - weight_ref[a] + weight_ref[b]).detach()
    result = dynamics.gradient_descent(x, s, name, beta=beta, lr=lr, steps=steps)
    torch.testing.assert_close(result.delta, delta_autograd, rtol=1e-10, atol=1e-12)


# --- batching --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ipo", "slic"])
def test_batched_equals_loop_exactly(name):
    x, s = make_problem(batch=(4, 3), n=30, d=6, seed=9)
    batched = dynamics.gradient_descent(x, s, name, beta=0.5, lr=0.3, steps=40).delta
    for i in range(4):
        for j in range(3):
            single = dynamics.gradient_descent(x[i, j], s[i, j], name, beta=0.5, lr=0.3, steps=40).delta
            assert torch.equal(batched[i, j], single), (i, j)


def test_batched_dpo_equals_loop_to_rounding():
    # DPO's f' calls torch.sigmoid. On CPU torch evaluates most entries with a
    # SIMD exp and the remainder with the scalar one, which can differ by one
    # ulp, so which entries are rounded which way depends on the batch layout.
    x, s = make_problem(batch=(4, 3), n=30, d=6, seed=9)
    batched = dynamics.gradient_descent(x, s, "dpo", beta=0.5, lr=0.3, steps=40).delta
    loop = torch.stack(
        [
            torch.stack([dynamics.gradient_descent(x[i, j], s[i, j], "dpo", beta=0.5, lr=0.3, steps=40).delta
                         for j in range(3)])
            for i in range(4)
        ]
    )
    torch.testing.assert_close(batched, loop, rtol=1e-13, atol=1e-15)


def test_shared_x_broadcasts_over_label_sets():
    x, _ = make_problem(n=25, d=4, seed=12)
    _, s = make_problem(batch=(5,), n=25, d=4, seed=13)
    batched = dynamics.gradient_descent(x, s, "ipo", beta=0.4, lr=0.2, steps=30).delta
    assert batched.shape == (5, 4)
    for i in range(5):
        single = dynamics.gradient_descent(x, s[i], "ipo", beta=0.4, lr=0.2, steps=30).delta
        assert torch.equal(batched[i], single), i


def test_loss_sequence_equals_separate_runs():
    x, s = make_problem(batch=(3,), n=20, d=4, seed=14)
    together = dynamics.gradient_descent(x, s, ["ipo", "slic"], beta=0.5, lr=0.3, steps=20).delta
    assert together.shape == (2, 3, 4)
    for index, name in enumerate(["ipo", "slic"]):
        alone = dynamics.gradient_descent(x, s, name, beta=0.5, lr=0.3, steps=20).delta
        assert torch.equal(together[index], alone), name


def test_beta_tensor_per_problem():
    x, s = make_problem(batch=(3,), n=20, d=4, seed=15)
    betas = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    batched = dynamics.gradient_descent(x, s, "ipo", beta=betas, lr=0.1, steps=15).delta
    for i in range(3):
        single = dynamics.gradient_descent(x[i], s[i], "ipo", beta=float(betas[i]), lr=0.1, steps=15).delta
        assert torch.equal(batched[i], single), i


@pytest.mark.parametrize("chunk", [1, 37, 600])
def test_chunked_kernel_equals_one_chunk(monkeypatch, chunk):
    x, _ = make_problem(n=12, d=5, seed=17)
    _, s = make_problem(batch=(4, 3), n=12, d=5, seed=18)
    betas = torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)
    whole = dynamics.gradient_descent(x, s, ["ipo", "slic"], beta=betas, lr=0.2, steps=12).delta
    whole_margins = dynamics.margins(whole, x, s, betas)
    monkeypatch.setattr(dynamics, "_CHUNK_ELEMENTS", chunk)
    chunked = dynamics.gradient_descent(x, s, ["ipo", "slic"], beta=betas, lr=0.2, steps=12).delta
    assert torch.equal(chunked, whole)
    assert torch.equal(dynamics.margins(whole, x, s, betas), whole_margins)


def test_trajectory_records_steps():
    x, s = make_problem(batch=(2,), n=10, d=3, seed=16)
    delta0 = torch.full((3,), 0.25, dtype=torch.float64)
    result = dynamics.gradient_descent(x, s, "dpo", beta=1.0, lr=0.5, steps=10, delta0=delta0, record_every=4)
    assert result.record_steps.tolist() == [0, 4, 8, 10]
    assert result.trajectory.shape == (2, 4, 3)
    assert torch.equal(result.trajectory[:, 0], delta0.expand(2, 3))
    assert torch.equal(result.trajectory[:, -1], result.delta)


def test_zero_steps_returns_initial_delta():
    x, s = make_problem(n=10, d=3)
    assert torch.equal(dynamics.gradient_descent(x, s, "dpo", beta=1.0, lr=0.5, steps=0).delta, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss": "kto"}, "unknown GPO loss"),
        ({"beta": 0.0}, "beta"),
        ({"beta": -1.0}, "beta"),
        ({"lr": 0.0}, "lr"),
        ({"steps": -1}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"record_every": 0}, "record_every"),
        ({"delta0": torch.zeros(7)}, "shape mismatch"),
        ({"loss": []}, "empty"),
    ],
)
def test_gradient_descent_invalid_arguments(kwargs, match):
    x, s = make_problem(n=10, d=3)
    arguments = {"loss": "dpo", "beta": 0.1, "lr": 0.1, "steps": 3, **kwargs}
    loss = arguments.pop("loss")
    with pytest.raises(ValueError, match=match):
        dynamics.gradient_descent(x, s, loss, **arguments)


def test_gradient_descent_shape_mismatch():
    x, s = make_problem(n=10, d=3)
    with pytest.raises(ValueError, match="shape mismatch"):
        dynamics.gradient_descent(x, s[:-1], "dpo", beta=0.1, lr=0.1, steps=1)


def test_batch_shapes_that_do_not_broadcast_raise():
    x, s = make_problem(batch=(3,), n=10, d=3)
    with pytest.raises(ValueError, match="do not broadcast"):
        dynamics.gradient_descent(x, s[:2], "dpo", beta=0.1, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="do not broadcast"):
        dynamics.margins(torch.zeros(2, 3, dtype=torch.float64), x, s, 0.1)
    with pytest.raises(ValueError, match="do not broadcast"):
        dynamics.gradient_descent(x, s, "dpo", beta=torch.tensor([0.1, 0.2]), lr=0.1, steps=1)


def test_gradient_descent_nonfinite_input():
    x, s = make_problem(n=10, d=3)
    x[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        dynamics.gradient_descent(x, s, "dpo", beta=0.1, lr=0.1, steps=1)


# --- gradient flow --------------------------------------------------------------


def test_ipo_closed_form_matches_integrator():
    x, s = make_problem(n=30, d=5, seed=21)
    times = np.linspace(0.0, 4.0, 9)
    exact = dynamics.ipo_closed_form(x, s, times, beta=0.7)
    numeric = dynamics.solve_margin_ode(x, s, "ipo", beta=0.7, t_eval=times, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(numeric.margins, exact.margins, rtol=0, atol=1e-8)
    np.testing.assert_allclose(numeric.delta, exact.delta, rtol=0, atol=1e-8)


def test_ipo_closed_form_with_fewer_samples_than_dimensions():
    x, s = make_problem(n=4, d=8, seed=22)
    delta0 = torch.linspace(-0.2, 0.3, 8, dtype=torch.float64)
    times = np.array([0.0, 0.5, 3.0])
    exact = dynamics.ipo_closed_form(x, s, times, beta=1.3, tau=2.0, delta0=delta0)
    numeric = dynamics.solve_margin_ode(x, s, "ipo", beta=1.3, tau=2.0, t_eval=times, delta0=delta0, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(numeric.delta, exact.delta, rtol=0, atol=1e-8)
    np.testing.assert_allclose(exact.delta[0], delta0.numpy(), rtol=0, atol=1e-15)


def test_ipo_closed_form_solves_linear_ode():
    x, s = make_problem(n=12, d=3, seed=23)
    beta, tau, t, step = 0.6, 1.5, 0.8, 1e-5
    second, mean = dynamics.second_moments(x, s)
    sol = dynamics.ipo_closed_form(x, s, [t - step, t, t + step], beta=beta, tau=tau)
    derivative = (sol.delta[2] - sol.delta[0]) / (2 * step)
    expected = (-4 * beta**2 * second @ sol.delta[1] + 4 * beta * mean) / tau
    np.testing.assert_allclose(derivative, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["dpo", "ipo"])
def test_ode_margins_consistent_with_delta(name):
    x, s = make_problem(n=15, d=4, seed=24)
    sol = dynamics.solve_margin_ode(x, s, name, beta=0.9, t_eval=np.linspace(0, 3, 5))
    recomputed = 0.9 * s.numpy()[None, :] * (sol.delta @ x.numpy().T)
    np.testing.assert_allclose(sol.margins, recomputed, rtol=0, atol=1e-8)


def test_gradient_descent_converges_first_order_to_flow():
    x, s = make_problem(n=20, d=4, seed=25)
    beta, horizon = 1.0, 2.0
    flow = dynamics.solve_margin_ode(x, s, "dpo", beta=beta, t_eval=[horizon], rtol=1e-12, atol=1e-13)
    errors = []
    for steps in (20, 40, 80, 160):
        delta = dynamics.gradient_descent(x, s, "dpo", beta=beta, lr=horizon / steps, steps=steps).delta
        margins = dynamics.margins(delta, x, s, beta).numpy()
        errors.append(np.abs(margins - flow.margins[-1]).max())
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 2.0, rtol=0.1)


@pytest.mark.parametrize("name", NAMES)
def test_first_step_is_along_labelled_mean_difference(name):
    x, s = make_problem(n=40, d=6, seed=26)
    _, mean = dynamics.second_moments(x, s)
    delta = dynamics.gradient_descent(x, s, name, beta=0.5, lr=1e-3, steps=1).delta.numpy()
    expected = -2 * 1e-3 * 0.5 * get_loss(name).f_prime_at_zero * mean
    np.testing.assert_allclose(delta, expected, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": 0.0}, "beta"),
        ({"tau": -1.0}, "tau"),
        ({"t_eval": [1.0, 0.5]}, "t_eval"),
        ({"t_eval": []}, "t_eval"),
        ({"delta0": np.zeros(2)}, "shape mismatch"),
    ],
)
def test_solve_margin_ode_invalid_arguments(kwargs, match):
    x, s = make_problem(n=6, d=3)
    arguments = {"beta": 0.5, "t_eval": [0.0, 1.0], **kwargs}
    with pytest.raises(ValueError, match=match):
        dynamics.solve_margin_ode(x, s, "dpo", **arguments)


def test_solve_margin_ode_rejects_batched_input():
    x, s = make_problem(batch=(2,), n=6, d=3)
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        dynamics.solve_margin_ode(x, s, "dpo", beta=0.5, t_eval=[1.0])


def test_second_moments_match_definition():
    x, s = make_problem(n=9, d=4, seed=27)
    second, mean = dynamics.second_moments(x, s)
    x_np, s_np = x.numpy(), s.numpy()
    np.testing.assert_allclose(second, sum(np.outer(row, row) for row in x_np) / 9, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(mean, (s_np[:, None] * x_np).mean(axis=0), rtol=1e-13, atol=1e-15)


def test_integer_embeddings_raise():
    x = torch.ones(5, 3, dtype=torch.int64)
    with pytest.raises(TypeError, match="floating-point"):
        dynamics.gradient_descent(x, torch.ones(5), "dpo", beta=0.1, lr=0.1, steps=1)


def test_log_policy_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape mismatch"):
        dynamics.log_policy(torch.zeros(4, 3), torch.zeros(5, 2))
