"""The regression task: the linear family trained by the shared loop.

The regression family through the shared loop: OLS, polynomial, ridge, lasso
and elastic net (research/models/linear.py), with statsmodels-style inference
and assumption diagnostics (research/evaluation/regression.py).

A fit is one train step: `train_step` solves the whole problem (QR, an
eigendecomposition, or coordinate descent to scikit-learn's tolerance) on the
full training set, sharded by rows over the devices. So train.steps is 1, the
step is jit-compiled like every other, and a checkpoint holds the fit.

Everything runs in float64: the task's scope() turns jax_enable_x64 on for the
loop's work with it, and for nothing else in the process.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from research import plots, validation
from research.data import pipeline, tabular
from research.errors import UserError
from research.evaluation import regression as rstats
from research.models import linear
from research.tasks.base import Rejected, Task, register

ESTIMATORS = ('ols', 'ridge', 'lasso', 'elastic_net')


@register('regression')
class RegressionTask(Task):
  eval_splits = ('train', 'test')
  evaluators = ('fit',)
  optimizer_keys = ()  # a closed-form (or coordinate-descent) fit: no optimizer.
  full_batch = True

  @classmethod
  def validate(cls, config):
    super().validate(config)
    V = validation
    V.check(config, [
        ('model.estimator', V.one_of(*ESTIMATORS)), ('model.basis', V.one_of('scaled', 'raw')),
        ('data.nonfinite', V.one_of('error', 'drop')),
        ('model.alpha', V.number(0.0)), ('model.l1_ratio', V.number(0.0, 1.0)),
        # degree 0 would leave only the intercept: no feature is modelled.
        ('model.degree', V.integer(1)), ('model.cv_folds', V.integer(0)),
        ('model.num_alphas', V.integer(1)), ('model.max_iter', V.integer(1)),
        ('model.tol', V.number(0.0, open_low=True)), ('model.rcond', V.number(0.0)),
        ('model.qr_block_rows', V.integer(0)), ('model.refine_steps', V.integer(0)),
        ('data.test_fraction', V.number(0.0, 1.0, open_high=True)),
        ('data.n', V.integer(1)), ('data.p', V.integer(1)), ('data.noise', V.number(0.0))])

  def __init__(self, config, runtime, workdir: str = ''):
    super().__init__(config, runtime, workdir)
    d, m = config.data, config.model
    if m.estimator not in ESTIMATORS:
      raise UserError(f'unknown model.estimator {m.estimator!r}; use {", ".join(ESTIMATORS)}')
    self.certified = None
    degree, intercept = m.degree, m.intercept
    if d.path:  # the shared schema's data.path would otherwise be ignored for synthetic rows.
      raise UserError(f'data.path={d.path!r} is not read by regression; drop it, and give '
                      'a table as --config.data.csv=FILE (with data.target=COLUMN)')
    if config.bench.n:  # --mode=benchmark's data: scikit-learn's benchmark generator.
      X, y, names = tabular.synthetic('bench', config.bench.n, config.bench.p, config.seed,
                                      nonzero=config.bench.nonzero)
      self.dropped = 0
    elif d.csv:
      X, y, names, self.dropped = tabular.read_csv(d.csv, d.target, d.features, d.nonfinite)
    elif d.synthetic.startswith('nist:'):
      X, y, names, beta, beta_sd, degree, intercept = tabular.nist(d.synthetic[5:])
      self.certified = (beta, beta_sd)
      self.dropped = 0
    elif d.synthetic:
      X, y, names = tabular.synthetic(d.synthetic, d.n, d.p, d.seed, d.noise)
      self.dropped = 0
    else:
      raise UserError('no data: set data.csv=FILE (with data.target=COLUMN) or data.synthetic')
    if self.dropped:
      logging.warning('dropped %d row(s) with NaN or inf (data.nonfinite=drop)', self.dropped)
    self.degree, self.intercept = degree, intercept
    self.exps = linear.exponents(X.shape[1], degree)
    num_params = len(self.exps) + int(intercept)

    # Held-out rows: a test CSV, or a seeded fraction of the rows (none for NIST data,
    # whose certified values are for the whole set).
    test_fraction = 0.0 if self.certified is not None else d.test_fraction
    if d.test_csv:
      Xt, yt, _, _ = tabular.read_csv(d.test_csv, d.target, ','.join(names), d.nonfinite)
    else:
      held = int(round(test_fraction * len(X)))
      if held and (held < 2 or len(X) - held <= num_params):
        logging.warning('data.test_fraction=%g of %d rows would hold out %d, too few to score '
                        'or to leave more rows than the %d parameters: fitting every row, '
                        'with no held-out metrics', test_fraction, len(X), held, num_params)
        held = 0
      order = np.random.default_rng(d.seed).permutation(len(X))
      cut = len(X) - held
      X, y, Xt, yt = X[order[:cut]], y[order[:cut]], X[order[cut:]], y[order[cut:]]
    tabular.check_columns(X, names, num_params)
    self.names = names
    self.feature_names = [_monomial_name(e, names) for e in self.exps]

    # Polynomial features are fitted in t = (x - shift) / scale, about [-1, 1]: the
    # shift is the midpoint cut to 8 significant bits and the scale a power of two, so
    # x - shift and the division are exact and integer data give exact monomials.
    if degree > 1 and m.basis == 'scaled':
      lo, hi = X.min(0), X.max(0)
      mantissa, exponent = np.frexp((hi + lo) / 2)
      self.shift = np.ldexp(np.round(mantissa * 256) / 256, exponent)
      self.scale = 2.0 ** np.ceil(np.log2(np.maximum((hi - lo) / 2, 1e-300)))
    elif m.basis in ('scaled', 'raw'):
      self.shift, self.scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
    else:
      raise UserError(f'model.basis must be scaled or raw, not {m.basis!r}')

    # Rows padded to whole blocks on every device; padding has mask 0.
    sparse = m.estimator in ('lasso', 'elastic_net')
    self.num_folds = m.cv_folds if sparse and m.cv_folds > 1 else 1
    self.num_path = m.num_alphas if sparse and (m.path or self.num_folds > 1) else 0
    # OLS factors row blocks of about model.qr_block_rows on each device (TSQR): XLA's
    # CPU QR runs twice as fast on ~16k-row blocks as on a million rows at once.
    devices, k = runtime.num_devices, len(self.exps) + 1
    per_device = -(-len(X) // devices) // max(m.qr_block_rows, k + 1) if m.qr_block_rows else 1
    blocks = devices * max(1, per_device)
    self.num_blocks = blocks if m.estimator == 'ols' and len(X) >= blocks * (k + 1) else 1
    multiple = int(np.lcm(self.num_blocks, devices * self.num_folds))
    self.train = _padded(X, y, multiple)
    self.test = _padded(Xt, yt, runtime.num_devices) if len(Xt) else None
    self.n_train, self.n_test = len(X), len(Xt)

  # --- the model --------------------------------------------------------------------

  def features(self, params, X):
    if self.degree == 1:  # the columns as they are (shift 0, scale 1).
      return X
    return linear.polynomial_features(X, self.exps, params['shift'], params['scale'])

  def init(self, rng):
    del rng
    p = len(self.exps)
    params = {'coef': jnp.zeros(p, jnp.float64), 'intercept': jnp.zeros((), jnp.float64),
              'alpha': jnp.asarray(self.config.model.alpha, jnp.float64),
              'shift': jnp.asarray(self.shift, jnp.float64),
              'scale': jnp.asarray(self.scale, jnp.float64)}
    # The alpha grid, the path (model.path) and the CV curve (cv_folds > 1), for the plot.
    if self.num_path:
      params['path_alphas'] = jnp.zeros(self.num_path, jnp.float64)
    if self.config.model.path:
      params['path_coefs'] = jnp.zeros((self.num_path, p), jnp.float64)
    if self.num_folds > 1:
      params['cv_mse'] = jnp.zeros(self.num_path, jnp.float64)
    return params

  def scope(self):
    """float64 for everything the loop does with this task."""
    return jax.enable_x64(True)

  def init_opt_state(self, params):
    del params
    return ()

  def train_batch(self, step: int):
    """The whole training set, every step: this process's rows of it."""
    del step
    rows = pipeline.process_slice(len(self.train['x']))
    return {k: v[rows] for k, v in self.train.items()}

  def units(self, batch):
    return {'examples': int(batch['mask'].sum())}

  def train_step(self, state, batch, schedule):
    """The whole fit, as one jit-compiled step."""
    del schedule
    params, metrics = self.fit(state.params, batch['x'], batch['y'], batch['mask'])
    return state.replace(step=state.step + 1, params=params), metrics

  def fit(self, params, X, y, mask):
    m = self.config.model
    F = self.features(params, X)
    if self.degree > 1:  # the estimators take padding rows as zero; a monomial of 0 is not.
      F = F * mask[:, None]
    n = mask.sum()
    extra = {}
    if m.estimator == 'ols':
      fit = self._ols(F, y, mask)
      coef, b, alpha = _split_intercept(fit['params'], self.intercept) + (params['alpha'],)
      loss = fit['rss'] / (2 * n)
    else:
      # The path alone, with many features: Gram columns of a working set only.
      screen = m.path and self.num_folds == 1 and 8 <= m.working_set < F.shape[1]
      G, q, yy, xm, ym = linear.gram(F, y, mask, self.intercept, full=not screen)
      if m.estimator == 'ridge':
        alphas = jnp.asarray(_ridge_grid(m), jnp.float64)
        coefs, gcv = linear.ridge(G, q, yy, n, alphas)
        best = jnp.argmin(gcv)
        coef, alpha = coefs[best], alphas[best]
      else:
        l1_ratio = 1.0 if m.estimator == 'lasso' else m.l1_ratio
        alpha = params['alpha']
        if self.num_path:
          alphas = linear.alpha_grid(q, n, l1_ratio, m.num_alphas)
          params = dict(params, path_alphas=alphas)
        if self.num_folds > 1:
          mse = linear.cross_validate(
              linear.fold_moments(F, y, mask, self.num_folds), alphas, l1_ratio,
              intercept=self.intercept, tol=m.tol, max_iter=m.max_iter).mean(0)
          alpha = alphas[jnp.argmin(mse)]
          params = dict(params, cv_mse=mse)
        if screen:
          coefs, _, columns = linear.screened_path(F, q, yy, n, xm, alphas, l1_ratio,
                                                   budget=m.working_set, tol=m.tol,
                                                   max_iter=m.max_iter)
          params = dict(params, path_coefs=coefs)
          extra = {'path_gram_columns': columns}
        elif m.path:  # the whole path, warm-started; the model is its last (smallest) alpha.
          coefs, _ = linear.elastic_net_path(G, q, yy, n, alphas, l1_ratio, tol=m.tol,
                                             max_iter=m.max_iter)
          params = dict(params, path_coefs=coefs)
        if m.path:
          coef = coefs[-1] if self.num_folds == 1 else coefs[jnp.argmin(mse)]
          alpha = alphas[-1] if self.num_folds == 1 else alpha
        else:
          coef, _, _ = linear.elastic_net(G, q, yy, n, alpha, l1_ratio, jnp.zeros_like(q),
                                          tol=m.tol, max_iter=m.max_iter)
      b = ym - xm @ coef
      if screen:  # no Gram matrix: the residual itself.
        r = (y - b - F @ coef) * mask
        loss, grad = r @ r / (2 * n), r @ F / n
      else:
        rss = yy - 2 * q @ coef + coef @ G @ coef
        loss = rss / (2 * n)
        grad = (q - G @ coef) / n  # X^T r / n, from the Gram matrix.
    if m.estimator == 'ols':  # X^T r / n is ~0 at the least-squares solution: a check of the solve.
      grad = F.T @ ((y - b - F @ coef) * mask) / n
    params = dict(params, coef=coef, intercept=b, alpha=alpha)
    return params, {'loss': loss, 'grad_norm': jnp.sqrt(grad @ grad), 'alpha': alpha, **extra}

  def _ols(self, F, y, mask):
    m = self.config.model
    # Always refine polynomials (the map back to raw monomials can amplify an error
    # that QR's normwise estimate calls small) and designs under 2^20 entries (there a
    # step costs milliseconds and buys the last digits of small coefficients).
    always = self.degree > 1 or F.shape[0] * F.shape[1] <= 2 ** 20
    return linear.ols(F, y, mask, intercept=self.intercept, num_blocks=self.num_blocks,
                      rcond=m.rcond, refine_steps=m.refine_steps,
                      refine_tol=0.0 if always else m.refine_tol)

  def predict_values(self, params, X):
    return params['intercept'] + self.features(params, X) @ params['coef']

  # --- evaluation ---------------------------------------------------------------------

  def split_rows(self, split: str):
    """A split's padded rows ({x, y, mask}), or None: the training set, or the test set."""
    return self.train if split == 'train' else self.test

  def predict_rows(self, params, x):
    """Predictions for rows of x, jit-compiled once."""
    return self._predict(params, x)

  @property
  def _predict(self):
    if not hasattr(self, '_predict_fn'):
      self._predict_fn = jax.jit(self.predict_values)
    return self._predict_fn

  def raw_coefficients(self, params):
    """(names, [intercept,] coefficients on the raw monomials of x, transform T)
    with raw = T @ fitted, T the identity unless a scaled polynomial basis was used."""
    p = len(self.exps)
    M, c = linear.monomial_map(self.exps, jnp.asarray(params['shift']),
                               jnp.asarray(params['scale']))
    coef = np.asarray(M @ params['coef'])
    b = float(params['intercept'] + c @ params['coef'])
    if self.intercept:
      T = np.block([[np.ones((1, 1)), np.asarray(c)[None, :]], [np.zeros((p, 1)), np.asarray(M)]])
      return ['const'] + self.feature_names, np.concatenate([[b], coef]), T
    return self.feature_names, coef, np.asarray(M)

  def final_results(self, params) -> dict:
    """Coefficients at full float64 precision, inference (OLS) and diagnostics."""
    names, values, T = self.raw_coefficients(params)
    out = {'coefficients': dict(zip(names, map(float, values))), 'num_params': len(values),
           'alpha': float(params['alpha']), 'rows_dropped': self.dropped,
           'rows_fitted': self.n_train, 'rows_held_out': self.n_test}
    stats = self._statistics(params, T, values)
    out.update(stats['results'])
    if self.certified is not None:
      beta, beta_sd = self.certified
      digits = -np.log10(np.maximum(np.abs(values - beta) / np.abs(beta), 1e-17))
      out['nist/min_significant_digits'] = float(digits.min())
      if 'std_errors' in out:
        se = np.array(list(out['std_errors'].values()))
        # Exact fits (Wampler1, 2) certify standard errors of 0: measure against the coefficient.
        denom = np.where(beta_sd != 0, np.abs(beta_sd), np.abs(beta))
        out['nist/min_std_error_digits'] = float(
            (-np.log10(np.maximum(np.abs(se - beta_sd) / denom, 1e-17))).min())
    self._summary = (names, values, stats)
    return out

  def _statistics(self, params, T, values):
    m = self.config.model
    data = self.train
    X, y, mask = (jnp.asarray(data[k]) for k in ('x', 'y', 'mask'))
    F = self.features(params, X)
    fitted = self.predict_values(params, X) * mask
    resid = (y * mask - fitted)
    n = self.n_train
    fit = jax.jit(self._ols)(F, y, mask)
    rank = int(fit['rank'])
    rss = float(resid @ resid)
    yc = y - (float(mask @ y) / n if self.intercept else 0.0)
    tss = float(((yc * mask) @ (yc * mask)))
    jb, jb_p, skew, kurt = rstats.jarque_bera(np.asarray(resid)[np.asarray(mask) > 0])
    bp, bp_p = rstats.breusch_pagan(F, resid, mask)
    rs, rs_p = rstats.reset(F, y, fitted, mask, rss, rank, self.intercept)
    cov = np.asarray(linear.ols_covariance(fit))
    vifs = rstats.vif(cov, F, mask, self.intercept) if len(self.exps) > 1 else np.ones(1)
    diag = dict(jarque_bera=jb, jarque_bera_p=jb_p, skew=skew, kurtosis=kurt,
                breusch_pagan=bp, breusch_pagan_p=bp_p, reset=rs, reset_p=rs_p,
                condition_number=rstats.condition_number(F, mask, self.intercept),
                vif=dict(zip(self.feature_names, map(float, vifs))))
    results = {f'diagnostics/{k}': float(v) for k, v in diag.items() if k != 'vif'}
    results['diagnostics/vif'] = diag['vif']
    results['rank'] = rank
    results['rank_deficient'] = rank < len(values)
    if rank < len(values):
      columns = ['const'] * self.intercept + self.feature_names
      dependent = [columns[j] for j in np.flatnonzero(~np.asarray(fit['independent']))]
      logging.warning('the design is rank deficient (rank %d of %d); dependent column(s): %s; '
                      'the minimum-norm solution is reported', rank, len(values),
                      ', '.join(dependent))
      results['dependent_columns'] = dependent
    inf = None
    if m.estimator == 'ols':
      inf = rstats.inference(values, T @ cov @ T.T, rss, tss, n, rank, self.intercept)
      names = ['const'] + self.feature_names if self.intercept else self.feature_names
      for k in ('std_errors', 't_values', 'p_values', 'conf_low', 'conf_high'):
        results[k] = dict(zip(names, map(float, inf[k])))
      for k in ('f_statistic', 'f_p_value', 'log_likelihood', 'aic', 'bic', 'sigma'):
        results[k] = float(inf[k])
    results.update({f'verdict/{k}': v for k, v in rstats.verdicts(diag).items()})
    return {'results': results, 'diag': diag, 'inference': inf,
            'fitted': np.asarray(fitted)[np.asarray(mask) > 0],
            'resid': np.asarray(resid)[np.asarray(mask) > 0]}

  def predict(self, params, lines):
    """Each line: comma-separated feature values -> the prediction."""
    out, want = [], f'{len(self.names)} value(s) ({",".join(self.names)})'
    for line in lines:
      try:
        x = np.array([[float(v) for v in line.split(',')]])
      except ValueError:
        out.append(Rejected(f'{line[:60]!r} is not comma-separated numbers; expected {want}'))
        continue
      if x.shape[1] != len(self.names):
        out.append(Rejected(f'expected {want}, got {x.shape[1]}'))
      elif not np.isfinite(x).all():
        out.append(Rejected(f'{line[:60]!r} holds NaN or inf; expected {want}, each finite'))
      else:
        out.append(repr(float(self.predict_values(params, jnp.asarray(x))[0])))
    return out

  def write_artifacts(self, params, workdir: str):
    if jax.process_index() != 0:
      return []
    if not hasattr(self, '_summary'):
      self.final_results(params)
    names, values, stats = self._summary
    title = (f'{self.config.name}: {self.config.model.estimator}, degree {self.degree}; '
             f'{self.n_train} rows fitted, {self.n_test} held out')
    if stats['inference'] is not None:
      text = rstats.summary_table(names, values, stats['inference'], stats['diag'],
                                  self.n_train, title)
    else:
      text = title + '\n' + '\n'.join(f'{n:<20}{v:>24.16g}' for n, v in zip(names, values)) + '\n'
      text += '\n'.join(f'  {k}: {v}' for k, v in rstats.verdicts(stats['diag']).items()) + '\n'
    path = os.path.join(workdir, 'summary.txt')
    with open(path, 'w') as f:
      f.write(text)
    logging.info('\n%s', text)
    out = [path, plots.regression_diagnostics(
        stats['fitted'], stats['resid'], stats['diag']['vif'],
        os.path.join(workdir, 'plots', 'diagnostics.png'), title, rstats.verdicts(stats['diag']))]
    if self.num_path:
      out.append(plots.regularization_path(
          np.asarray(params['path_alphas']), np.asarray(params.get('path_coefs', [])),
          self.feature_names, os.path.join(workdir, 'plots', 'path.png'),
          np.asarray(params.get('cv_mse', [])), float(params['alpha']), title))
    return out

  def benchmark_fields(self, params, seconds: float, steps: int) -> dict:
    out = {'fit_seconds': round(seconds / steps, 4), 'n': self.n_train, 'p': len(self.exps)}
    if self.test is not None:  # the peer prints its held-out R^2: compare at equal accuracy.
      r2 = self.evaluate(params, 'test')['r2']
      out['heldout_r2'] = None if r2 is None else round(r2, 6)
    return out


def _split_intercept(params, intercept: bool):
  return (params[1:], params[0]) if intercept else (params, jnp.zeros((), params.dtype))


def _ridge_grid(m):
  """model.alpha alone, or (model.gcv) a log grid around it searched by GCV."""
  if not m.gcv:
    return [m.alpha]
  return list(np.logspace(np.log10(m.alpha) - 4, np.log10(m.alpha) + 4, 33))


def _padded(X, y, multiple):
  n = len(X)
  total = -(-n // multiple) * multiple
  pad = total - n
  return {'x': np.concatenate([X, np.zeros((pad, X.shape[1]))]).astype(np.float64),
          'y': np.concatenate([y, np.zeros(pad)]).astype(np.float64),
          'mask': np.concatenate([np.ones(n), np.zeros(pad)])}


def _monomial_name(e, names):
  parts = [n if k == 1 else f'{n}^{k}' for n, k in zip(names, e) if k]
  return ' '.join(parts)
