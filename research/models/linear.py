"""The linear regression family as pure JAX functions (float64).

The linear regression family as pure JAX functions (float64): OLS, ridge, lasso
and elastic net, plus polynomial features.

Every fit takes row-masked data: `mask` is 1 for a real row and 0 for padding
(rows added so the data divide over the devices). Padding rows of X and y must
be zero, so they add nothing to any sum and no masked copy of X is needed.
Rows may be sharded over devices; the reductions below (Householder QR of row
blocks, Gram matrices) are what XLA partitions.

Accuracy (OLS), see `ols`: the intercept is a column of ones and each column
is scaled by a power of two, so the scaled design is exactly the data; the
factorization is Householder QR of [A y] (R alone; TSQR over row blocks);
refinement by the corrected seminormal equations with double-double residuals
recovers what float64 QR loses to large residuals. Polynomial features are
built in t = (x - shift) / scale with an exact shift and scale, whose monomials
are well conditioned, and mapped back to the raw monomials of x exactly by the
binomial expansion (`monomial_map`): NIST's Filip goes from 7.9 significant
digits in raw monomials to 13.7.

Lasso and elastic net minimize scikit-learn's objective
  1 / (2 n) ||y - X w - b||^2 + alpha l1_ratio ||w||_1 + alpha (1 - l1_ratio) / 2 ||w||^2
by coordinate descent on the Gram matrix, with scikit-learn's duality-gap
stopping rule (tol * ||y||^2), so the same tol means the same accuracy.
Coordinates are swept over the active set (nonzero or violating the optimality
condition, checked for all coordinates at once), as glmnet does.
"""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np


# --- preparing the columns -------------------------------------------------------


def exponents(num_features: int, degree: int) -> list[tuple[int, ...]]:
  """Exponent tuples of every monomial of total degree 1..degree, in
  scikit-learn's PolynomialFeatures order (degree by degree, then lexicographic)."""
  out = []
  for d in range(1, degree + 1):
    for combo in itertools.combinations_with_replacement(range(num_features), d):
      e = [0] * num_features
      for i in combo:
        e[i] += 1
      out.append(tuple(e))
  return out


def polynomial_features(X, exps, shift, scale):
  """Monomials of t = (X - shift) / scale, one column per exponent tuple, each
  the product of a lower one and one t column (no [n, p, d] intermediate)."""
  T = (X - shift) / scale
  cols = {}
  for e in exps:
    i = max(j for j, k in enumerate(e) if k)
    parent = e[:i] + (e[i] - 1,) + e[i + 1:]
    cols[e] = T[:, i] if sum(e) == 1 else cols[parent] * T[:, i]
  return jnp.stack([cols[e] for e in exps], axis=1)


def monomial_map(exps, shift, scale):
  """The matrix M and vector m with  sum_a g_a t^a = m . g + sum_b (M g)_b x^b
  for t = (x - shift) / scale: row b of M holds the raw monomial x^b's share of
  each scaled monomial t^a, by the binomial expansion; m is the constant term."""
  index = {e: i for i, e in enumerate(exps)}
  rows, cols, coefs, const_cols, const_coefs = [], [], [], [], []
  for a_i, a in enumerate(exps):
    for b in itertools.product(*[range(k + 1) for k in a]):
      # prod_i C(a_i, b_i) x_i^b_i (-shift_i)^(a_i - b_i) / scale_i^a_i
      c = math.prod(math.comb(ak, bk) for ak, bk in zip(a, b))
      term = c * jnp.prod(jnp.asarray((-shift) ** (np.array(a) - np.array(b))) / scale ** np.array(a))
      if sum(b) == 0:
        const_cols.append(a_i)
        const_coefs.append(term)
      else:
        rows.append(index[tuple(b)])
        cols.append(a_i)
        coefs.append(term)
  p = len(exps)
  M = jnp.zeros((p, p), jnp.result_type(shift)).at[jnp.array(rows), jnp.array(cols)].add(
      jnp.stack(coefs))
  m = jnp.zeros(p, jnp.result_type(shift)).at[jnp.array(const_cols)].add(jnp.stack(const_coefs))
  return M, m


# --- OLS ---------------------------------------------------------------------------


def qr_r(A, num_blocks: int = 1):
  """R of the Householder QR of A [n, k] (TSQR over `num_blocks` row blocks)."""
  n, k = A.shape
  if num_blocks > 1:
    A = jnp.linalg.qr(A.reshape(num_blocks, n // num_blocks, k), mode='r').reshape(-1, k)
  return jnp.linalg.qr(A, mode='r')[:k]


def ols(X, y, mask, *, intercept: bool = True, num_blocks: int = 1, rcond: float = 1e-12,
        refine_steps: int = 0, refine_tol: float = 2.0 ** -44):
  """Least squares through Householder QR of the design [1, X] (the intercept as
  a column of ones), each column scaled by the power of two nearest its norm, so
  the scaled design is exactly the data. Never the normal equations.

  refine_steps > 0: up to that many steps of iterative refinement by the corrected
  seminormal equations, x += R^-1 R^-T A^T (y - A x), stopping early once a step
  changes nothing, with y - A x and A^T r accumulated in
  double-double arithmetic (`_dd_reduce`). With the exact residual each step
  moves x toward the exact least-squares solution of the data as given, however
  large the residual; R alone is needed, so the QR stays TSQR over row blocks.
  Refinement is skipped when QR's own first-order error estimate (Higham,
  Accuracy and Stability, section 20.1), u k (1 + k |r| / (|A| |x|)) with k the
  condition number of the scaled design, is already under refine_tol (default
  2^-44, about 13 digits normwise): well-conditioned problems, the usual case,
  need no correction, and a step costs more than the QR.

  Returns params ([intercept,] coefficients of the columns of X), and what
  inference needs: the R factor of the scaled design, the scales, the residual
  sum of squares and the numerical rank (columns whose R diagonal is under rcond
  times the largest are dependent; the fit is then the minimum-norm one, as
  statsmodels' pinv gives, and is not refined).
  """
  A = X  # Padding rows are zero (the tasks pad so): no masked copy.
  if intercept:
    A = jnp.concatenate([mask[:, None].astype(X.dtype), A], axis=1)
  y = y * mask
  norms = jnp.sqrt(jnp.sum(A * A, axis=0))
  scale = jnp.where(norms > 0, 2.0 ** jnp.round(jnp.log2(jnp.where(norms > 0, norms, 1.0))), 1.0)
  A = A / scale
  k = A.shape[1]
  R_aug = qr_r(jnp.concatenate([A, y[:, None]], axis=1), num_blocks)
  R, qty = R_aug[:k, :k], R_aug[:k, k]
  diag = jnp.abs(jnp.diag(R))
  independent = diag > rcond * jnp.max(diag)
  rank = jnp.sum(independent)
  full = rank == k
  solve = lambda b: jax.scipy.linalg.solve_triangular(R, b, lower=False)
  x = jax.lax.cond(full, lambda: solve(qty),
                   # the minimum norm of the raw coefficients: R S is the raw design's R.
                   lambda: (jnp.linalg.pinv(R * scale[None, :], rtol=rcond) @ qty) * scale)
  rss = jnp.where(full, R_aug[k, k] ** 2, jnp.sum((y - A @ x) ** 2))
  sv = jnp.linalg.svd(R, compute_uv=False)
  kappa = sv[0] / jnp.where(sv[-1] > 0, sv[-1], jnp.finfo(R.dtype).tiny)
  rel_residual = jnp.sqrt(rss) / (sv[0] * jnp.linalg.norm(x) + jnp.finfo(R.dtype).tiny)
  estimate = jnp.finfo(R.dtype).eps * kappa * (1 + kappa * rel_residual)
  if refine_steps:
    # Up to refine_steps corrections, stopping once one is below a unit in the last
    # place of the largest coefficient; the rss is the last residual's (its change is
    # second order in the correction).
    def step(carry):
      x, _, i, _ = carry
      r_hi, r_lo = _dd_residual(y, A, x, pair=True)
      dx = solve(jax.scipy.linalg.solve_triangular(R, _dd_rmatvec(A, r_hi, r_lo), lower=False,
                                                   trans='T'))
      done = jnp.max(jnp.abs(dx)) <= jnp.finfo(x.dtype).eps * jnp.max(jnp.abs(x))
      return x + dx, (r_hi + r_lo) @ (r_hi + r_lo), i + 1, done

    def more(carry):
      _, _, i, done = carry
      return full & (i < refine_steps) & ~done

    x, rss, _, _ = jax.lax.while_loop(more, step, (x, rss, 0, estimate < refine_tol))
  return dict(params=x / scale, R=R, scale=scale, rss=rss, rank=rank, independent=independent,
              error_estimate=estimate)


def ols_covariance(fit):
  """(X^T X)^-1 of the parameters (the intercept's too), from the scaled R
  without forming X^T X: S^-1 R^-1 R^-T S^-1."""
  R, scale = fit['R'], fit['scale']
  k = R.shape[0]
  S = jnp.where(fit['rank'] == k,
                jax.scipy.linalg.solve_triangular(R, jnp.eye(k, dtype=R.dtype), lower=False)
                / scale[:, None],
                jnp.linalg.pinv(R * scale[None, :]))  # statsmodels' pinv(X^T X) when deficient.
  return S @ S.T


# --- double-double sums (about 106 bits), for the refinement's residuals -------------


def _split(a):
  """a = hi + lo exactly, hi with the low 27 bits of the mantissa cleared (no
  arithmetic, so no compiler contraction can spoil it)."""
  bits = jax.lax.bitcast_convert_type(a, jnp.uint64)
  hi = jax.lax.bitcast_convert_type(bits & jnp.uint64(0xFFFFFFFFF8000000), jnp.float64)
  return hi, a - hi


def _two_prod(a, b):
  """(p, e) with p + e = a * b to about 2^-106 relative, from the halves' products,
  each exact. (Dekker's e = ah * bh - p + ... relies on the rounded p; compilers
  may fuse or simplify that away, and XLA did here.)"""
  ah, al = _split(a)
  bh, bl = _split(b)
  m, me = _two_sum(ah * bl, al * bh)
  p, e = _two_sum(ah * bh, m)
  return p, e + me + al * bl


def _two_sum(a, b):
  """(s, e) with s + e = a + b exactly (Knuth)."""
  s = a + b
  bb = s - a
  return s, (a - (s - bb)) + (b - bb)


def _dd_reduce(hi, lo, axis, pair=False):
  """The sum of hi + lo along `axis` in double-double, as a pairwise tree;
  pair=True returns it unrounded, as (hi, lo)."""
  hi, lo = jnp.moveaxis(hi, axis, 0), jnp.moveaxis(lo, axis, 0)
  n = hi.shape[0]
  size = 1 << max(0, (n - 1).bit_length())
  pad = [(0, size - n)] + [(0, 0)] * (hi.ndim - 1)
  hi, lo = jnp.pad(hi, pad), jnp.pad(lo, pad)
  while hi.shape[0] > 1:
    half = hi.shape[0] // 2
    s, e = _two_sum(hi[:half], hi[half:])
    hi, lo = s, lo[:half] + lo[half:] + e
  s, e = _two_sum(hi[0], lo[0])
  return (s, e) if pair else s + e


def _dd_residual(y, A, x, pair=False):
  """y - A x, each row summed in double-double (pair=True: unrounded, (hi, lo))."""
  p, e = _two_prod(A, -x[None, :])
  hi = jnp.concatenate([y[:, None], p], 1)
  lo = jnp.concatenate([jnp.zeros_like(y)[:, None], e], 1)
  return _dd_reduce(hi, lo, axis=1, pair=pair)


def _dd_rmatvec(A, r_hi, r_lo):
  """A^T (r_hi + r_lo) in double-double: A^T r nearly cancels at a least-squares
  solution, so rounding r to float64 first would swamp it (the cond^2 |r| term)."""
  p1, e1 = _two_prod(A, r_hi[:, None])
  p2, e2 = _two_prod(A, r_lo[:, None])
  return _dd_reduce(jnp.concatenate([p1, p2]), jnp.concatenate([e1, e2]), axis=0)


# --- ridge ---------------------------------------------------------------------------


def gram(X, y, mask, intercept: bool, full: bool = True):
  """(G, q, yy, x_mean, y_mean): Xc^T Xc, Xc^T yc and yc . yc of the centered data,
  from one pass of raw moments (X^T X - n m m^T), with no centered copy of X.
  full=False: G is None (for `screened_path`, which forms only some columns)."""
  n = mask.sum()
  # Padding rows are zero (the tasks pad so), so they add nothing: no masked copy of X.
  # y @ X, not X.T @ y: XLA's CPU matrix-vector product is ~7x slower transposed.
  G, q, yy = X.T @ X if full else None, y @ X, y @ y
  if not intercept:
    return G, q, yy, jnp.zeros(X.shape[1], X.dtype), jnp.zeros((), y.dtype)
  x_mean, y_mean = (mask @ X) / n, (mask @ y) / n
  if full:
    G = G - n * jnp.outer(x_mean, x_mean)
  return G, q - n * x_mean * y_mean, yy - n * y_mean ** 2, x_mean, y_mean


def ridge(G, q, yy, n, alphas):
  """Ridge for every alpha of `alphas` (scikit-learn's ||y - Xw||^2 + alpha ||w||^2)
  from one eigendecomposition of the Gram matrix, with the generalized
  cross-validation score n RSS / (n - df)^2 of each. Returns (coefs [a, p], gcv [a])."""
  d, V = jnp.linalg.eigh(G)
  d = jnp.maximum(d, 0.0)
  z = V.T @ q
  shrink = 1.0 / (d[None, :] + alphas[:, None])              # [a, p]
  coefs = (shrink * z[None, :]) @ V.T
  rss = yy - 2 * jnp.sum(z ** 2 * shrink, 1) + jnp.sum(d * (z * shrink) ** 2, 1)
  df = jnp.sum(d * shrink, 1)
  return coefs, n * rss / (n - df) ** 2


# --- lasso and elastic net --------------------------------------------------------------


def _soft(x, t):
  return jnp.sign(x) * jnp.maximum(jnp.abs(x) - t, 0.0)


def duality_gap(G, q, yy, w, h, l1, l2):
  """scikit-learn's duality gap of the elastic net (on the Gram matrix; l1 and l2
  already multiplied by n), and the residual norm squared."""
  xta = q - h - l2 * w
  dual_norm = jnp.max(jnp.abs(xta))
  q_w = w @ q
  r2 = yy + w @ h - 2 * q_w
  const = jnp.where(dual_norm > l1, l1 / jnp.maximum(dual_norm, 1e-300), 1.0)
  gap = jnp.where(dual_norm > l1, 0.5 * (r2 + r2 * const ** 2), r2)
  return gap + l1 * jnp.sum(jnp.abs(w)) - const * yy + const * q_w + 0.5 * l2 * (1 + const ** 2) * (w @ w)


def elastic_net(G, q, yy, n, alpha, l1_ratio, w0, *, tol=1e-4, max_iter=1000):
  """Coordinate descent for one alpha, warm-started at w0. Returns (w, sweeps, gap).

  A pass sweeps the active set (nonzero coordinates and those whose optimality
  condition fails, found for all coordinates at once from h = G w) until the
  largest update is small against the largest weight (scikit-learn's d_w_tol),
  then the duality gap decides: below tol * ||y||^2 it stops, else another pass.
  """
  G, q = jnp.asarray(G), jnp.asarray(q)
  p = G.shape[0]
  l1, l2 = alpha * l1_ratio * n, alpha * (1.0 - l1_ratio) * n
  diag = jnp.diag(G)
  denom = jnp.where(diag + l2 > 0, diag + l2, 1.0)
  gap_tol = tol * yy

  def sweep(w, h, idx, count):
    def coordinate(i, carry):
      w, h, dmax = carry
      j = idx[i]
      new = _soft(q[j] - h[j] + diag[j] * w[j], l1) / denom[j]
      d = new - w[j]
      return w.at[j].set(new), h + G[j] * d, jnp.maximum(dmax, jnp.abs(d))
    return jax.lax.fori_loop(0, count, coordinate, (w, h, jnp.zeros((), w.dtype)))

  def inner(state):
    w, h, sweeps, _, _ = state
    active = (w != 0) | (jnp.abs(q - h) > l1)
    count = jnp.sum(active)
    idx = jnp.nonzero(active, size=p, fill_value=0)[0]

    def cond(s):
      _, _, k, converged = s
      return (~converged) & (k < max_iter)

    def body(s):
      w, h, k, _ = s
      w, h, dmax = sweep(w, h, idx, count)
      wmax = jnp.max(jnp.abs(w))
      return w, h, k + 1, (wmax == 0) | (dmax / jnp.where(wmax > 0, wmax, 1.0) < tol)

    w, h, sweeps, _ = jax.lax.while_loop(cond, body, (w, h, sweeps, jnp.array(False)))
    # One full sweep, so no coordinate outside the active set is left unchecked.
    w, h, _ = sweep(w, h, jnp.arange(p), p)
    gap = duality_gap(G, q, yy, w, h, l1, l2)
    return w, h, sweeps + 1, gap, gap < gap_tol

  def outer_cond(state):
    _, _, sweeps, _, done = state
    return (~done) & (sweeps < max_iter)

  h0 = G @ w0
  state = (w0, h0, jnp.array(0), jnp.array(jnp.inf, G.dtype), jnp.array(False))
  w, _, sweeps, gap, _ = jax.lax.while_loop(outer_cond, inner, state)
  return w, sweeps, gap


def alpha_grid(q, n, l1_ratio, num: int = 100, eps: float = 1e-3):
  """scikit-learn's grid: alpha_max (all weights zero) down to eps * alpha_max, log-spaced."""
  alpha_max = jnp.max(jnp.abs(q)) / (n * max(l1_ratio, 1e-3))
  return jnp.logspace(jnp.log10(alpha_max), jnp.log10(alpha_max * eps), num)


def elastic_net_path(G, q, yy, n, alphas, l1_ratio, *, tol=1e-4, max_iter=1000):
  """Coefficients along `alphas` (largest first), each warm-started at the last.
  Returns (coefs [a, p], gaps [a])."""
  def step(w, alpha):
    w, _, gap = elastic_net(G, q, yy, n, alpha, l1_ratio, w, tol=tol, max_iter=max_iter)
    return w, (w, gap)
  _, (coefs, gaps) = jax.lax.scan(step, jnp.zeros(G.shape[0], G.dtype), alphas)
  return coefs, gaps


def screened_path(X, q, yy, n, x_mean, alphas, l1_ratio, *, budget=128, tol=1e-4,
                  max_iter=1000):
  """`elastic_net_path` without the full Gram matrix: glmnet's covariance updates
  on a working set with KKT checks. Start from the budget/2 features most
  correlated with y; solve the path on their Gram block; add the features whose
  optimality condition |x_j^T r| <= alpha l1_ratio n fails at some alpha (up to
  budget/8 a round, the worst first); repeat until none fails. Every feature then
  satisfies its condition at every alpha and the duality gap counts them all, so
  the path is the full problem's, from n p |W| flops of Gram columns instead of
  n p^2. If the working set would outgrow `budget`, the full Gram matrix is used.

  X: [n, p] with zero padding rows; q, yy, x_mean as `gram` returns them.
  Returns (coefs [a, p], gaps [a], columns: the working set's size, or p if full).
  """
  X, q, x_mean = jnp.asarray(X), jnp.asarray(q), jnp.asarray(x_mean)
  p = q.shape[0]
  first, more = budget // 2, max(1, budget // 8)
  l1 = alphas * l1_ratio * n

  def columns(idx):  # the centered Gram columns G[:, idx], one pass over X.
    return X.T @ X[:, idx] - n * jnp.outer(x_mean, x_mean[idx])

  def solve(Gc, idx, count):
    real = jnp.arange(budget) < count
    Gw = jnp.where(real[:, None] & real[None, :], Gc[idx], 0.0) + jnp.diag(jnp.where(real, 0.0, 1.0))
    coefs, gaps = elastic_net_path(Gw, jnp.where(real, q[idx], 0.0), yy, n, alphas, l1_ratio,
                                   tol=tol, max_iter=max_iter)
    violation = jnp.max(jnp.abs(q[None, :] - coefs @ Gc.T) - l1[:, None], axis=0)
    inside = jnp.zeros(p, bool).at[jnp.where(real, idx, p)].set(True, mode='drop')
    return coefs, gaps, jnp.where(inside, -jnp.inf, violation)

  def grow(state):
    Gc, idx, count, _, _, violation = state
    worst, new = jax.lax.top_k(violation, more)
    pos = count + jnp.arange(more)
    Gc = Gc.at[:, pos].set(columns(new))
    idx = idx.at[pos].set(new)
    count = count + jnp.sum(worst > 0)  # top_k sorts, so the violators come first.
    return (Gc, idx, count) + solve(Gc, idx, count)

  def fits(state):
    *_, count, _, _, violation = state
    return jnp.any(violation > 0) & (count + more <= budget)

  idx = jnp.zeros(budget, jnp.int32).at[:first].set(jax.lax.top_k(jnp.abs(q), first)[1])
  Gc = jnp.zeros((p, budget), q.dtype).at[:, :first].set(columns(idx[:first]))
  state = (Gc, idx, jnp.asarray(first)) + solve(Gc, idx, first)
  Gc, idx, count, coefs_w, gaps_w, violation = jax.lax.while_loop(fits, grow, state)
  real = jnp.arange(budget) < count

  def full():
    G = X.T @ X - n * jnp.outer(x_mean, x_mean)
    return elastic_net_path(G, q, yy, n, alphas, l1_ratio, tol=tol, max_iter=max_iter)

  def screened():
    coefs = jnp.zeros((alphas.shape[0], p), q.dtype)
    return coefs.at[:, jnp.where(real, idx, p)].set(coefs_w, mode='drop'), gaps_w

  overflow = jnp.any(violation > 0)
  coefs, gaps = jax.lax.cond(overflow, full, screened)
  return coefs, gaps, jnp.where(overflow, p, count)


def fold_moments(X, y, mask, num_folds: int):
  """Raw moments of each of `num_folds` contiguous, equal row blocks (the folds):
  (XtX [k, p, p], Xty [k, p], yty [k], x_sum [k, p], y_sum [k], count [k]).
  One pass over the data serves every fold's training and held-out statistics."""
  k = num_folds
  Xm = (X * mask[:, None]).reshape(k, -1, X.shape[1])
  ym = (y * mask).reshape(k, -1)
  return (jnp.einsum('kni,knj->kij', Xm, Xm), jnp.einsum('kni,kn->ki', Xm, ym),
          jnp.sum(ym * ym, 1), Xm.sum(1), ym.sum(1), mask.reshape(k, -1).sum(1))


def cross_validate(moments, alphas, l1_ratio, *, intercept=True, tol=1e-4, max_iter=1000):
  """K-fold cross-validation of the elastic net path: for each fold, the path on
  the other folds (their centered Gram from the moments), scored by the mean
  squared error on the fold. Returns the MSE [k, a]."""
  XtX, Xty, yty, xs, ys, cnt = moments

  def one_fold(i):
    keep = (jnp.arange(XtX.shape[0]) != i).astype(XtX.dtype)
    S, Sxy, Syy = jnp.einsum('k,kij->ij', keep, XtX), keep @ Xty, keep @ yty
    sx, sy, c = keep @ xs, keep @ ys, keep @ cnt
    xm, ym = (sx / c, sy / c) if intercept else (jnp.zeros_like(sx), jnp.zeros_like(sy))
    G = S - c * jnp.outer(xm, xm)
    q = Sxy - c * xm * ym
    yy = Syy - c * ym * ym
    coefs, _ = elastic_net_path(G, q, yy, c, alphas, l1_ratio, tol=tol, max_iter=max_iter)
    b = ym - coefs @ xm                                                 # [a]
    # Held-out squared error from the fold's own moments.
    sse = (yty[i] - 2 * coefs @ Xty[i] + jnp.einsum('ai,ij,aj->a', coefs, XtX[i], coefs)
           - 2 * b * (ys[i] - coefs @ xs[i]) + cnt[i] * b * b)
    return sse / cnt[i]

  return jax.lax.map(one_fold, jnp.arange(XtX.shape[0]))
