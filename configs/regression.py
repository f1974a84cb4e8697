"""The linear regression family: OLS, polynomial, ridge, lasso and elastic net,
with MSE / RMSE / MAE / R^2 / adjusted R^2 on train and held-out rows,
statsmodels-style inference and the assumption diagnostics.

Presets: ols, polynomial (degree 3), ridge (alpha by GCV), lasso and
elastic_net (alpha by 5-fold CV with model.cv_folds, or model.alpha as given
with cv_folds=0), nist (a NIST StRD certified dataset, e.g.
--config.data.synthetic=nist:Filip; its degree and intercept come with it),
and tiny (tests).

Run:
  python launch.py --config=configs/regression.py:ols --config.data.csv=FILE --config.data.target=COLUMN
  python launch.py --config=configs/regression.py:polynomial --config.model.degree=5 ...
  python launch.py --config=configs/regression.py:ols --config.data.synthetic=heteroscedastic
  python launch.py --config=configs/regression.py:nist --config.data.synthetic=nist:Filip
  python launch.py --config=configs/regression.py:lasso --mode=benchmark --config.bench.n=1000000 --config.bench.p=100

Expected: every coefficient of the 11 NIST StRD linear datasets to >= 13.2
significant digits (Filip, the hardest: 13.7; 9 required; results.json:
nist/min_significant_digits),
checked by tests/test_regression.py. The OLS benchmark at n = 990k, p = 100
(--mode=benchmark --config.bench.n=1000000 --config.bench.p=100
--config.data.test_fraction=0.01): 3.31 s a fit on 2 CPU cores, 2.66x
scikit-learn's 8.81 s. Every figure: docs/benchmarks.md.
"""
from research.config import base_config

PRESETS = ('ols', 'polynomial', 'ridge', 'lasso', 'elastic_net', 'nist')


def get_config(preset: str = 'ols'):
  if preset not in PRESETS + ('tiny',):
    raise ValueError(f'unknown preset {preset!r} for configs/regression.py; use '
                     + ', '.join(PRESETS + ('tiny',)))
  c = base_config()
  c.task = 'regression'

  c.data.name = 'table'
  c.data.csv = ''              # a CSV with a header row...
  c.data.target = 'y'          # ...and this column as the response.
  c.data.features = ''         # comma-separated columns; '' = every other column.
  c.data.test_csv = ''         # held-out rows; '' = a data.test_fraction of data.csv.
  c.data.test_fraction = 0.2
  c.data.nonfinite = 'error'   # error | drop (rows with NaN or inf, counted).
  # Without data.csv: linear | nonlinear | heteroscedastic | heavy_tailed | collinear |
  # bench | nist:NAME (Norris, Pontius, NoInt1, NoInt2, Filip, Longley, Wampler1-5).
  c.data.synthetic = 'linear'
  c.data.n = 2000
  c.data.p = 5
  c.data.noise = 1.0

  # No model.name: the estimator below picks the fit, not a registered model.
  c.model.estimator = 'ols' if preset in ('ols', 'polynomial', 'nist', 'tiny') else preset
  c.model.intercept = True
  c.model.degree = 3 if preset == 'polynomial' else 1
  c.model.basis = 'scaled'     # scaled: polynomials of (x - center) / half-range; raw: of x.
  c.model.rcond = 1e-12        # R diagonal below rcond * the largest: a dependent column.
  c.model.refine_steps = 2     # OLS: refinement steps with double-double residuals,
  c.model.refine_tol = 2.0 ** -44  # skipped on large designs where QR's error estimate is below this.
  c.model.qr_block_rows = 16384    # OLS: rows per TSQR block (0: one block per device).
  c.model.alpha = 1.0
  c.model.gcv = preset == 'ridge'  # ridge: alpha from a log grid (alpha * 1e-4 .. 1e4) by GCV.
  c.model.l1_ratio = 0.5
  c.model.cv_folds = 5 if preset in ('lasso', 'elastic_net') else 0
  c.model.num_alphas = 100     # the path / CV grid, scikit-learn's: alpha_max down to 1e-3 of it.
  c.model.path = False         # lasso / elastic net: fit the whole warm-started path (plots/path.png),
  c.model.working_set = 128    # on at most this many Gram columns when p is larger (0: all).
  c.model.tol = 1e-4           # scikit-learn's duality-gap tolerance (times ||y||^2).
  c.model.max_iter = 1000
  if preset in ('lasso', 'elastic_net'):
    c.model.alpha = 0.01

  # One train step is the whole fit.
  c.train.steps = 1
  c.train.batch_size = 0       # 0: the full training set, in one step.
  c.train.log_every = 1
  c.eval.every = 1
  c.checkpoint.every = 1

  c.bench.n = 0                # > 0: replace the data by sklearn_linear.py's synthetic n x p.
  c.bench.p = 100
  c.bench.nonzero = 0          # nonzero true weights; 0: p // 5 (sklearn_linear.py's path data: p // 10).
  c.bench.warmup_steps = 1
  c.bench.steps = 3
  c.bench.matmul_size = 0

  if preset == 'nist':
    c.data.synthetic = 'nist:Longley'
  if preset == 'tiny':
    c.data.n, c.data.p = 200, 3
  return c
