"""The optimizers of :func:`heatsync.physics.calibrate`: Levenberg-Marquardt, optax Adam,
and sandwich standard errors (private to :mod:`heatsync.physics`)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import optax

#: LM gives up after this many rejected steps in a row (damping x 5 each)
_LM_MAX_REJECTS = 8


def lm(evaluate, theta, current, *, iters, tol, verbose):
    """Levenberg-Marquardt on ``r(theta).r(theta)`` with Marquardt's diagonal scaling.

    Stops when a step would move ``theta`` by less than ``tol`` (not evaluated), when
    an accepted step lowers the loss by less than ``tol`` relative, after
    ``_LM_MAX_REJECTS`` rejected steps in a row, or after ``iters`` accepted steps.

    **Returns**: ``(theta, (loss, r, jac, y), history, iterations, n_evals, converged)``.
    """
    loss, r, jac, y = current
    history, accepted, n_evals, converged, lam, rejects = [loss], 0, 1, False, 1e-3, 0
    while accepted < iters and not converged:
        a = jac.T @ jac
        diag = np.diag(np.diag(a) + 1e-12 * max(float(np.max(np.diag(a))), 1e-300))
        step = np.linalg.solve(a + lam * diag, -(jac.T @ r))
        if float(np.max(np.abs(step))) < tol:
            converged = True
            break
        trial = evaluate(theta + step)
        n_evals += 1
        if math.isfinite(trial[0]) and trial[0] < loss and np.all(np.isfinite(trial[2])):
            rel = (loss - trial[0]) / max(loss, 1e-300)
            theta = theta + step
            loss, r, jac, y = trial
            lam, rejects = max(lam / 5.0, 1e-9), 0
            accepted += 1
            history.append(loss)
            converged = rel < tol
        else:
            lam, rejects = lam * 5.0, rejects + 1
            converged = rejects >= _LM_MAX_REJECTS  # no descent left at this precision
        if verbose:
            print(f"lm iteration {accepted}: loss {loss:.6g}, damping {lam:.2g}, "
                  f"{n_evals} evaluations", flush=True)
    return theta, (loss, r, jac, y), history, accepted, n_evals, converged


def adam(evaluate, theta, current, *, iters, tol, verbose, learning_rate):
    """``optax.adam`` on the gradient ``2 J^T r``; keeps the best iterate.

    **Returns**: as :func:`lm`; ``converged`` is True (a fixed number of steps).
    """
    del tol
    loss, r, jac, y = current
    opt = optax.adam(learning_rate)
    state = opt.init(jnp.asarray(theta))
    best = (loss, theta, (loss, r, jac, y))
    history = [loss]
    for k in range(iters):
        upd, state = opt.update(jnp.asarray(2.0 * jac.T @ r), state)
        theta = np.asarray(optax.apply_updates(jnp.asarray(theta), upd), np.float64)
        loss, r, jac, y = evaluate(theta)
        history.append(loss)
        if loss < best[0]:
            best = (loss, theta, (loss, r, jac, y))
        if verbose:
            print(f"adam step {k + 1}: loss {loss:.6g}", flush=True)
    return best[1], best[2], history, iters, iters + 1, True


def std_error(jac, coef, rms, series, dv, names) -> dict[str, float]:
    """Sandwich standard errors of the values, noise variance per series from ``rms``.

    A parameter the trace does not excite (a Jacobian column ~0) gets ``inf``.
    """
    var = (coef ** 2 * np.array([rms[s] ** 2 for s in series])[:, None]).reshape(-1)
    inv = np.linalg.pinv(jac.T @ jac)
    cov = inv @ (jac.T @ (var[:, None] * jac)) @ inv
    se = np.sqrt(np.maximum(np.diag(cov), 0.0)) * np.abs(dv)
    norm = np.linalg.norm(jac, axis=0)
    se = np.where(norm <= 1e-10 * max(float(np.max(norm)), 1e-300), np.inf, se)
    return {k: float(se[i]) for i, k in enumerate(names)}
