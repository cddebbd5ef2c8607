"""Carlini's original control flow in plain float64 numpy, for a linear two-class model.

Written from carlini/nn_robust_attacks (l2_attack.py, l0_attack.py, li_attack.py at c6b8f6a)
without any code of `keras_takd.attacks`: the tanh change of variables with each original's
factor, the margin loss and its gradient in closed form for logits [0, w . x + b], and TF1's
Adam update. The attacks' results are compared with these on problems whose discrete
decisions (abort checks, success tests, pixel order) are far from their thresholds; each
function also returns the smallest relative distance of such a decision to its threshold, so
a test can check that float32 round-off cannot flip one.
"""

from __future__ import annotations

import numpy as np

L2_SCALE = 0.999999  # l2_attack.py: arctanh((x - boxplus) / boxmul * 0.999999)
L0_LINF_SCALE = 1.999999  # l0_attack.py, li_attack.py: arctanh(x * 1.999999) on [-0.5, 0.5]


class LinearModel:
    """Logits [0, w . x + b] of images x [N, H, W, C] in [0, 1]."""

    def __init__(self, w: np.ndarray, b: float):
        self.w, self.b = np.asarray(w, np.float64), float(b)

    def logits(self, x: np.ndarray) -> np.ndarray:
        z1 = np.sum(x * self.w, axis=(1, 2, 3)) + self.b
        return np.stack([np.zeros_like(z1), z1], axis=1)

    def margin(self, x, label, kappa, targeted):
        """The original's loss1 per example and its gradient with respect to x."""
        z = self.logits(x)
        rows = np.arange(len(x))
        own, other = z[rows, label], z[rows, 1 - label]
        raw = (other - own if targeted else own - other) + kappa
        # d(z1)/dx = w, d(z0)/dx = 0; the sign says whether the loss grows with z1.
        grows_with_z1 = np.where(label == 1, 1.0, -1.0) * (-1.0 if targeted else 1.0)
        grad = (raw > 0)[:, None, None, None] * grows_with_z1[:, None, None, None] * self.w
        return np.maximum(raw, 0.0), grad


class Adam:
    """TF1's AdamOptimizer (lr, 0.9, 0.999, 1e-8), one state per example row."""

    def __init__(self, shape, learning_rate):
        self.lr = learning_rate
        self.m, self.v = np.zeros(shape), np.zeros(shape)
        self.p1, self.p2 = 0.9, 0.999

    def step(self, w, grad):
        alpha = self.lr * np.sqrt(1 - self.p2) / (1 - self.p1)
        self.m += (grad - self.m) * (1 - 0.9)
        self.v += (grad**2 - self.v) * (1 - 0.999)
        self.p1, self.p2 = self.p1 * 0.9, self.p2 * 0.999
        return w - self.m * alpha / (np.sqrt(self.v) + 1e-8)


def _compare(logits, label, kappa, targeted):
    logits = logits.copy()
    logits[label] += -kappa if targeted else kappa
    return (np.argmax(logits) == label) if targeted else (np.argmax(logits) != label)


def l2_attack(
    model,
    x,
    labels,
    *,
    kappa=0.0,
    targeted=False,
    lr=1e-2,
    steps=9,
    iters=100,
    abort_early=True,
    initial_const=1e-3,
):
    """l2_attack.py's attack_batch on one batch (the whole-batch abort rule).

    Returns:
        `(x_adv, const, success, closest)`: the best images (x where none), the c of each best
        image (the last c for failures, as keras_takd reports), success, and the smallest
        relative distance of an abort check's ratio to 0.9999.
    """
    n = len(x)
    w0 = np.arctanh((x - 0.5) / 0.5 * L2_SCALE)
    x_start = np.tanh(w0) * 0.5 + 0.5
    lower, upper, const = np.zeros(n), np.full(n, 1e10), np.full(n, initial_const)
    best_l2, best, best_const = np.full(n, 1e10), x.copy(), np.full(n, np.nan)
    closest = np.inf
    for outer in range(steps):
        if steps >= 10 and outer == steps - 1:
            const = upper.copy()
        modifier, adam = np.zeros_like(x), Adam(x.shape, lr)
        succeeded, prev = np.zeros(n, bool), np.inf
        for it in range(iters):
            t = np.tanh(modifier + w0)
            x_new = t * 0.5 + 0.5
            loss1, dloss1 = model.margin(x_new, labels, kappa, targeted)
            l2 = np.sum((x_new - x_start) ** 2, axis=(1, 2, 3))
            total = np.sum(const * loss1 + l2)
            if abort_early and it % (iters // 10) == 0:
                if np.isfinite(prev):
                    closest = min(closest, abs(total / prev - 0.9999))
                if total > prev * 0.9999:
                    break
                prev = total
            logits = model.logits(x_new)
            for e in range(n):
                if _compare(logits[e], labels[e], kappa, targeted):
                    succeeded[e] = True
                    if l2[e] < best_l2[e]:
                        best_l2[e], best[e], best_const[e] = l2[e], x_new[e], const[e]
            grad_x = const[:, None, None, None] * dloss1 + 2 * (x_new - x_start)
            modifier = adam.step(modifier, grad_x * 0.5 * (1 - t**2))
        upper = np.where(succeeded, np.minimum(upper, const), upper)
        lower = np.where(succeeded, lower, np.maximum(lower, const))
        const = np.where(upper < 1e9, (lower + upper) / 2, np.where(succeeded, const, const * 10))
    found = np.isfinite(best_const)
    return best, np.where(found, best_const, const), found, closest


def _l0_solve(model, x, label, start, valid, const, *, lr, iters, largest_const):
    """l0_attack.py's doit for one image: Adam from `start` with c doubling and carried."""
    w_start = np.arctanh((start - 0.5) * L0_LINF_SCALE)
    x_ref = np.tanh(np.arctanh((x - 0.5) * L0_LINF_SCALE)) / 2 + 0.5
    modifier, adam = np.zeros_like(x), Adam(x.shape, lr)
    closest = np.inf
    while const < largest_const:
        for _ in range(iters):
            t = np.tanh(modifier + w_start)
            x_new = (t / 2 + 0.5) * valid + (1 - valid) * x
            loss1, dloss1 = model.margin(x_new, label, 0.01, False)
            closest = min(closest, abs(loss1[0] - 1e-4) / 1e-4)
            grad_x = const * dloss1 + 2 * (x_new - x_ref)
            grad = grad_x * valid * 0.5 * (1 - t**2)
            if loss1[0] < 1e-4:
                return grad, x_new, const, closest
            modifier = adam.step(modifier, grad)
        const *= 2.0
    return None, None, const, closest


def l0_attack(model, x, label, *, lr=1e-2, iters=1000, initial_const=1e-3, largest_const=2e6):
    """l0_attack.py's attack_single for one image [1, H, W, C] (abort_early=True).

    Pixels tied in score are frozen in index order (numpy's stable sort).

    Returns:
        `(x_adv or None, const, rounds, closest)`: the last successful image, its c, the number
        of successful solves, and the smallest relative distance of a success test to 1e-4.
    """
    valid = np.ones(x.shape[:3] + (1,))
    prev, last, last_const, const, rounds, closest = x.copy(), None, np.nan, initial_const, 0, 1.0
    while True:
        grad, x_new, const, near = _l0_solve(
            model, x, label, prev, valid, const, lr=lr, iters=iters, largest_const=largest_const
        )
        closest = min(closest, near)
        if x_new is None:
            return last, last_const, rounds, closest
        rounds += 1
        changed = np.sum(~np.all(np.abs(x - x_new)[0] < 1e-4, axis=-1))
        total = np.abs(np.sum(x_new[0] - x[0], axis=-1)) * np.sum(np.abs(grad[0]), axis=-1)
        flat_valid = valid.reshape(-1)
        did = 0
        for e in np.argsort(total.reshape(-1), kind="stable"):
            if flat_valid[e]:
                did += 1
                flat_valid[e] = 0
                if total.reshape(-1)[e] > 0.01 or did >= 0.3 * changed**0.5:
                    break
        valid = flat_valid.reshape(valid.shape)
        last = prev = x_new
        last_const = const


def linf_attack(
    model,
    x,
    label,
    *,
    lr=5e-3,
    iters=1000,
    initial_const=1e-5,
    largest_const=20.0,
    decrease_factor=0.9,
    abort_early=True,
):
    """li_attack.py's attack_single for one image [1, H, W, C].

    `abort_early=False` checks for success at the last step of each c only (keras_takd's
    reading; the original at HEAD never succeeds then).

    Returns:
        `(x_adv or None, const, failed_checks, closest)`: the last successful image, its c,
        how many success checks found the wrong class, and the smallest relative distance of
        a success test (loss < 1e-4 c) to its threshold.
    """
    x_ref = np.tanh(np.arctanh((x - 0.5) * L0_LINF_SCALE)) / 2 + 0.5
    prev, last, last_const, tau, const, closest = x.copy(), None, np.nan, 1.0, initial_const, 1.0
    failed_checks = 0
    while tau > 1.0 / 256:
        w_start = np.arctanh((prev - 0.5) * L0_LINF_SCALE)
        modifier, adam, found = np.zeros_like(x), Adam(x.shape, lr), None
        while const < largest_const and found is None:
            for step in range(iters):
                t = np.tanh(modifier + w_start)
                x_new = t / 2 + 0.5
                loss1, dloss1 = model.margin(x_new, label, 0.0, False)
                excess = np.abs(x_new - x_ref) - tau
                loss = const * loss1[0] + np.sum(np.maximum(excess, 0))
                closest = min(closest, abs(loss - 1e-4 * const) / (1e-4 * const))
                grad_x = const * dloss1 + (excess > 0) * np.sign(x_new - x_ref)
                modifier = adam.step(modifier, grad_x * 0.5 * (1 - t**2))
                if loss < 1e-4 * const and (abort_early or step == iters - 1):
                    updated = np.tanh(modifier + w_start) / 2 + 0.5
                    if np.argmax(model.logits(updated)[0]) != label[0]:
                        found = updated
                        break
                    failed_checks += 1
            else:
                const *= 2.0
        if found is None:
            break
        last, last_const = found, const
        tau = min(tau, float(np.max(np.abs(found - x)))) * decrease_factor
        prev = found
    return last, last_const, failed_checks, closest
