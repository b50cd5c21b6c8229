"""Direct one-pass SGD at finite input dimension ``d``: the ground truth that the ODE describes.

Each step draws a fresh ``x ~ N(0, I_d)`` and label ``y = f*(x) + sqrt(noise) xi`` and updates
the normalised rows ``u_k <- u_k - (lr / d) (f(x) - y) relu'(u_k . x) x`` (Saad-Solla scaling;
eq. (3.1) of docs/theory.md). Time is ``steps / d``.
"""

from __future__ import annotations

import numpy as np

from ..kernels.overlaps import embed_overlaps
from ..model.config import require_run_config
from ..model.initialisation import initial_overlaps, initial_weights
from ..model.loss import loss_from_overlaps
from .trajectory import FlowStatus, Trajectory, final_time_message

__all__ = ["simulate_sgd", "simulate_sgd_from_initial_overlaps", "MAX_SGD_STEPS"]

#: Largest number of SGD steps one call accepts (t_max * d); about a minute on one core.
MAX_SGD_STEPS = 5_000_000
_CHUNK = 512


def _record_steps(total_steps, d, n_points):
    first = max(1, d // 100)
    steps = np.geomspace(first, max(total_steps, first), n_points - 1).astype(np.int64)
    return np.unique(np.concatenate([[0], steps, [total_steps]]))


def simulate_sgd(config, d, seed, n_points=200, weights=None):
    """Run one-pass SGD for ``config.t_max * d`` steps and record the overlaps.

    Parameters
    ----------
    config : RunConfig
        Run description; its ``init`` must be ``random`` unless ``weights`` is given. The
        student is drawn in dimension ``d`` with ``config.init.seed`` and ``config.init.scale``.
    d : int
        Input dimension (at least the rank of the teacher).
    seed : int or numpy.random.Generator
        Randomness of the data stream (inputs and label noise).
    n_points : int, optional
        Number of recorded times (log-spaced in steps).
    weights : tuple of ndarray, optional
        ``(W, W_teacher)`` of shapes (K, d) and (M, d) to start from instead of drawing them.

    Returns
    -------
    Trajectory
        Status ``t_max`` when the horizon is reached, ``diverged`` when the weights blow up.

    Raises
    ------
    ValueError
        If ``d`` is not a positive integer, the run would exceed ``MAX_SGD_STEPS`` steps,
        or ``weights`` have the wrong shapes.
    """
    require_run_config(config)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be a positive whole number, got {d!r}")
    total_steps = int(round(config.t_max * d))
    if total_steps > MAX_SGD_STEPS:
        raise ValueError(
            f"t_max * d = {total_steps} SGD steps is more than the {MAX_SGD_STEPS} allowed; "
            "lower t_max or d (the ODE gives the d -> infinity limit at no cost)"
        )
    if weights is None:
        W, W_teacher = initial_weights(config, d=d)
    else:
        W, W_teacher = (np.array(w, dtype=float) for w in weights)
        if W.shape != (config.K, d) or W_teacher.shape != (config.M, d):
            raise ValueError(
                f"weights must have shapes ({config.K}, {d}) and ({config.M}, {d}), got {W.shape} and {W_teacher.shape}"
            )
    rng = _data_stream(seed)
    record = _record_steps(total_steps, d, n_points)
    return _run(W, W_teacher, config, d, rng, record)


def simulate_sgd_from_initial_overlaps(config, d, seed, n_points=200):
    """One-pass SGD at dimension ``d`` started from the ODE's own initial overlaps.

    :func:`landscape.model.initialisation.initial_overlaps` of ``config`` is embedded in ``d``
    dimensions (any embedding will do: the Gaussian inputs are rotation invariant), so this run and
    the ODE of the same config differ only by finite-``d`` fluctuations.

    Parameters
    ----------
    config : RunConfig
    d : int
        Input dimension, at least the rank of the initial overlap matrix ``[[Q0, R0], [R0^T, T]]``.
    seed : int or numpy.random.Generator
        Randomness of the data stream.
    n_points : int, optional
        Number of recorded times.

    Returns
    -------
    Trajectory

    Raises
    ------
    ValueError
        If ``d`` is below the rank of the initial overlaps, or as :func:`simulate_sgd`.
    """
    require_run_config(config)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be a positive whole number, got {d!r}")
    Q0, R0 = initial_overlaps(config)
    embedding = embed_overlaps(Q0, R0, config.teacher_matrix())
    if embedding.rank > d:
        raise ValueError(f"SGD d = {d} is smaller than the rank {embedding.rank} of the initial overlaps; raise it")
    W, W_teacher = np.zeros((config.K, d)), np.zeros((config.M, d))
    W[:, : embedding.rank], W_teacher[:, : embedding.rank] = embedding.student, embedding.teacher
    return simulate_sgd(config, d=int(d), seed=seed, n_points=n_points, weights=(W, W_teacher))


def _data_stream(seed):
    # The student is drawn from default_rng(init.seed); seeding the data stream the same way
    # would make the first inputs equal to the student's own weights (correlated start). A
    # distinct SeedSequence branch keeps the two streams independent for equal integer seeds.
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0x5D6]))


def _run(W, W_teacher, config, d, rng, record):
    T = W_teacher @ W_teacher.T
    step_size = config.lr / d
    noise_scale = np.sqrt(config.noise)
    bound = 1e6 * max(1.0, float(np.max(np.diag(T))))
    Qs, Rs, times = [W @ W.T], [W @ W_teacher.T], [0.0]
    status, step, next_record = FlowStatus.T_MAX, 0, 1
    with np.errstate(over="ignore", invalid="ignore"):
        while step < record[-1] and status is FlowStatus.T_MAX:
            batch = min(_CHUNK, int(record[-1] - step))
            inputs = rng.standard_normal((batch, d))
            labels = np.maximum(inputs @ W_teacher.T, 0.0).sum(axis=1)
            labels = labels + noise_scale * rng.standard_normal(batch)
            for x, y in zip(inputs, labels):
                preactivation = W @ x
                error = np.maximum(preactivation, 0.0).sum() - y
                W -= (step_size * error) * (preactivation > 0)[:, None] * x[None, :]
                step += 1
                if step == record[next_record]:
                    next_record += 1
                    Q = W @ W.T
                    if not np.all(np.isfinite(Q)) or np.max(np.abs(Q)) > bound:
                        status = FlowStatus.DIVERGED
                        break
                    Qs.append(Q)
                    Rs.append(W @ W_teacher.T)
                    times.append(step / d)
    Q, R = np.array(Qs), np.array(Rs)
    return Trajectory(
        t=np.array(times), Q=Q, R=R, T=T, loss=loss_from_overlaps(Q, R, T),
        status=status, message=final_time_message(status, step / d), method=f"sgd (d = {d})",
    )
