"""Direct one-pass SGD at finite input dimension ``d``: the ground truth that the ODE describes.

Each step draws a fresh ``x ~ N(0, I_d)`` and label ``y = f*(x) + sqrt(noise) xi`` and updates
the normalised rows ``u_k <- u_k - (lr / d) (f(x) - y) relu'(u_k . x) x`` (Saad-Solla scaling;
eq. (3.1) of docs/theory.md). Time is ``steps / d``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from ..model.config import RunConfig

import numpy as np

from ..kernels.overlaps import embed_overlaps
from ..model.config import require_run_config
from ..model.initialisation import initial_overlaps, initial_weights
from ..model.loss import loss_from_overlaps
from ..status import Stopped
from .trajectory import FlowStatus, Trajectory, final_time_message

__all__ = ["simulate_sgd", "simulate_sgd_from_overlaps", "simulate_sgd_from_initial_overlaps", "sgd_cost", "SimulationStopped",
           "MAX_SGD_STEPS",
           "MAX_SGD_OPERATIONS", "MAX_SGD_BYTES"]


class SimulationStopped(Stopped):
    """Raised by :func:`simulate_sgd` when its ``should_stop`` callback says so (nobody waits for the result)."""

#: Largest number of SGD steps one call accepts (t_max * d); about a minute on one core.
MAX_SGD_STEPS = 5_000_000
#: Largest work of one call, steps x (K + M) x d multiply-adds: a step costs O((K + M) d), so capping
#: the steps alone lets a large d ask for hours (2,000 steps at d = 1e6 took 4 minutes).
MAX_SGD_OPERATIONS = 5e10
#: Largest memory of one call: the weights and a block of inputs, 8 bytes a number.
MAX_SGD_BYTES = 2 * 2**30
_CHUNK = 512
#: Inputs are drawn in blocks of at most this many bytes (512 inputs at d = 1e6 would be 4 GB).
_CHUNK_BYTES = 32 * 2**20


def _chunk(d):
    return int(max(1, min(_CHUNK, _CHUNK_BYTES // (8 * d))))


def sgd_cost(K: int, M: int, d: int, steps: int) -> tuple[float, float]:
    """Work and memory of an SGD run, to bound a request before it starts.

    Parameters
    ----------
    K, M : int
        Student and teacher widths.
    d : int
        Input dimension.
    steps : int
        Number of SGD steps (``t_max * d``).

    Returns
    -------
    operations : float
        Multiply-adds, ``steps * (K + M) * d`` (the forward pass of student and teacher, the update).
    bytes : float
        Peak memory of the weights and of one block of inputs, 8 bytes a number.

    Raises
    ------
    ValueError
        If an argument is not a positive whole number.
    """
    for name, value in (("K", K), ("M", M), ("d", d), ("steps", steps)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if name == "steps" else 1):
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    d = int(d)
    operations = float(steps) * (int(K) + int(M)) * d
    memory = 8.0 * d * (2 * int(K) + int(M) + _chunk(d))
    return operations, memory


def _record_steps(total_steps, d, n_points):
    first = max(1, d // 100)
    steps = np.geomspace(first, max(total_steps, first), n_points - 1).astype(np.int64)
    return np.unique(np.concatenate([[0], steps, [total_steps]]))


def simulate_sgd(config: RunConfig, d: int, seed: int | np.random.Generator, n_points: int = 200,
                 weights: tuple[ArrayLike, ArrayLike] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Trajectory:
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
    should_stop : callable, optional
        Called between blocks of inputs (at most ~32 MB of work apart); True stops the run with
        :class:`SimulationStopped` (e.g. the dashboard's visitor has left).

    Returns
    -------
    Trajectory
        Status ``t_max`` when the horizon is reached, ``diverged`` when the weights blow up.

    Raises
    ------
    ValueError
        If ``d`` is not a positive integer, the run would exceed ``MAX_SGD_STEPS`` steps,
        ``MAX_SGD_OPERATIONS`` operations or ``MAX_SGD_BYTES`` bytes (:func:`sgd_cost`), or
        ``weights`` have the wrong shapes.
    SimulationStopped
        When ``should_stop()`` returns True.
    """
    require_run_config(config)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be a positive whole number, got {d!r}")
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or not 2 <= n_points <= 100_000:
        raise ValueError(f"n_points must be a whole number from 2 to 100,000, got {n_points!r}")
    if d > 10**12:  # far beyond any memory budget; keeps the products below exact in floats
        raise ValueError(f"d = {d} is too large for a direct simulation")
    total_steps = int(round(config.t_max * d))
    if total_steps > MAX_SGD_STEPS:
        raise ValueError(
            f"t_max * d = {total_steps} SGD steps is more than the {MAX_SGD_STEPS} allowed; "
            "lower t_max or d (the ODE gives the d -> infinity limit at no cost)"
        )
    operations, memory = sgd_cost(config.K, config.M, d, total_steps)
    if operations > MAX_SGD_OPERATIONS or memory > MAX_SGD_BYTES:
        raise ValueError(
            f"SGD at d = {d} for {total_steps} steps needs {operations:.3g} operations and {memory / 2**30:.3g} GB; "
            f"at most {MAX_SGD_OPERATIONS:.3g} operations and {MAX_SGD_BYTES / 2**30:g} GB are allowed: "
            "lower d or t_max (the ODE gives the d -> infinity limit at no cost)"
        )
    if weights is None:
        W, W_teacher = initial_weights(config, d=d)
    else:
        W, W_teacher = (np.array(w, dtype=float) for w in weights)
        if W.shape != (config.K, d) or W_teacher.shape != (config.M, d):
            raise ValueError(
                f"weights must have shapes ({config.K}, {d}) and ({config.M}, {d}), got {W.shape} and {W_teacher.shape}"
            )
    if should_stop is not None and not callable(should_stop):
        raise ValueError(f"should_stop must be callable, got {should_stop!r}")
    rng = _data_stream(seed)
    record = _record_steps(total_steps, d, n_points)
    return _run(W, W_teacher, config, d, rng, record, should_stop)


def simulate_sgd_from_overlaps(config, Q, R, d, seed, n_points=200, should_stop=None):
    """One-pass SGD at dimension ``d`` started from given overlaps ``(Q, R)`` with ``config``'s teacher.

    The overlaps are embedded in ``d`` dimensions (any embedding will do: the Gaussian inputs are
    rotation invariant), so this run and the ODE from the same overlaps differ only by finite-``d``
    fluctuations.

    Parameters
    ----------
    config : RunConfig
        Teacher, ``lr``, ``noise`` and ``t_max`` of the run (its ``init`` is not used).
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    d : int
        Input dimension, at least the rank of ``[[Q, R], [R^T, T]]``.
    seed : int or numpy.random.Generator
        Randomness of the data stream.
    n_points : int, optional
        Number of recorded times.
    should_stop : callable, optional
        As for :func:`simulate_sgd`.

    Returns
    -------
    Trajectory

    Raises
    ------
    ValueError
        If ``d`` is below the rank of the overlaps, the overlaps are invalid, or as :func:`simulate_sgd`.
    SimulationStopped
        If ``should_stop`` returned True.
    """
    require_run_config(config)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be a positive whole number, got {d!r}")
    embedding = embed_overlaps(Q, R, config.teacher_matrix())
    if embedding.rank > d:
        raise ValueError(f"SGD d = {d} is smaller than the rank {embedding.rank} of the overlaps; raise it")
    W, W_teacher = np.zeros((config.K, d)), np.zeros((config.M, d))
    W[:, : embedding.rank], W_teacher[:, : embedding.rank] = embedding.student, embedding.teacher
    return simulate_sgd(config, d=int(d), seed=seed, n_points=n_points, weights=(W, W_teacher),
                        should_stop=should_stop)


def simulate_sgd_from_initial_overlaps(config, d, seed, n_points=200, should_stop=None):
    """:func:`simulate_sgd_from_overlaps` from the ODE's own initial overlaps
    (:func:`landscape.model.initialisation.initial_overlaps` of ``config``).

    Raises
    ------
    ValueError
        As :func:`simulate_sgd_from_overlaps`.
    """
    require_run_config(config)
    Q0, R0 = initial_overlaps(config)
    return simulate_sgd_from_overlaps(config, Q0, R0, d, seed, n_points=n_points, should_stop=should_stop)


def _data_stream(seed):
    # The student is drawn from default_rng(init.seed); seeding the data stream the same way
    # would make the first inputs equal to the student's own weights (correlated start). A
    # distinct SeedSequence branch keeps the two streams independent for equal integer seeds.
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0x5D6]))


def _run(W, W_teacher, config, d, rng, record, should_stop=None):
    T = W_teacher @ W_teacher.T
    step_size = config.lr / d
    noise_scale = np.sqrt(config.noise)
    bound = 1e6 * max(1.0, float(np.max(np.diag(T))))
    Qs, Rs, times = [W @ W.T], [W @ W_teacher.T], [0.0]
    status, step, next_record = FlowStatus.T_MAX, 0, 1
    with np.errstate(over="ignore", invalid="ignore"):
        while step < record[-1] and status is FlowStatus.T_MAX:
            if should_stop is not None and should_stop():
                raise SimulationStopped(f"SGD stopped at step {step} of {int(record[-1])}: nobody waits for it")
            batch = min(_chunk(d), int(record[-1] - step))
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
