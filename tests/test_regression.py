"""The regression family: NIST certified values, agreement with statsmodels and
scikit-learn, diagnostics that fire on the assumption they test, bad input,
and the launch.py contract."""
import functools
import json

import jax
import numpy as np
import pytest

from conftest import ROOT, launch
from research.config import load_config_file
from research.data import strd, tabular
from research.errors import UserError
from research.models import linear
from research.parallel import Runtime
from research.tasks.regression import RegressionTask

# The test extra installs both: a missing one fails the whole file, never skips it.
import statsmodels.api as sm  # noqa: E402
from sklearn import linear_model  # noqa: E402
from statsmodels.stats import diagnostic, outliers_influence, stattools  # noqa: E402


def float64(test):
  """Runs a test in float64, as the regression task's scope() runs the loop's work."""
  @functools.wraps(test)
  def run(*args, **kwargs):
    with jax.enable_x64(True):
      return test(*args, **kwargs)
  return run


def make_task(preset='ols', devices=1, **overrides):
  config = load_config_file(str(ROOT / 'configs/regression.py'), preset)
  config.name = f'regression-{preset}'
  for key, value in overrides.items():
    section, name = key.split('__')
    config[section][name] = value
  return RegressionTask(config, Runtime.create('mesh', jax.devices()[:devices]))


def fit(task):
  batch = task.runtime.put_batch(task.train)
  params, metrics = jax.jit(task.fit)(task.init(None), batch['x'], batch['y'], batch['mask'])
  return jax.device_get(params), jax.device_get(metrics)


def rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))


def write_csv(path, X, y, names=None):
  names = names or [f'x{i + 1}' for i in range(X.shape[1])]
  rows = [','.join(names + ['y'])] + [','.join(repr(float(v)) for v in list(x) + [t]) for x, t in zip(X, y)]
  path.write_text('\n'.join(rows) + '\n')
  return path


# --- accuracy ------------------------------------------------------------------------


@float64
@pytest.mark.parametrize('name', list(strd.DATASETS))
def test_nist_certified_coefficients_and_standard_errors(name):
  task = make_task('nist', data__synthetic=f'nist:{name}')
  params, metrics = fit(task)
  out = task.final_results(params)
  beta, beta_sd = task.certified
  got = np.array(list(out['coefficients'].values()))
  digits = -np.log10(np.maximum(np.abs(got - beta) / np.abs(beta), 1e-17))
  assert digits.min() >= 12, (name, got, beta)  # the issue asks for 9; measured 13.2 at worst.
  assert out['nist/min_significant_digits'] == pytest.approx(digits.min())
  assert out['nist/min_std_error_digits'] >= 11
  assert np.isfinite(metrics['loss'])


@float64
def test_refinement_is_what_makes_wampler5_exact():
  plain = make_task('nist', data__synthetic='nist:Wampler5', model__refine_steps=0)
  assert plain.final_results(fit(plain)[0])['nist/min_significant_digits'] < 9
  refined = make_task('nist', data__synthetic='nist:Wampler5')
  assert refined.final_results(fit(refined)[0])['nist/min_significant_digits'] >= 16


@float64
def test_raw_monomials_of_filip_lose_digits_the_scaled_basis_keeps():
  """Why the polynomial basis is scaled: raw monomials of Filip's x cost 5 or more digits."""
  raw = make_task('nist', data__synthetic='nist:Filip', model__basis='raw')
  out = raw.final_results(fit(raw)[0])
  assert out['nist/min_significant_digits'] < 9
  scaled = make_task('nist', data__synthetic='nist:Filip')
  assert scaled.final_results(fit(scaled)[0])['nist/min_significant_digits'] >= 12


# --- OLS against statsmodels ------------------------------------------------------------


@float64
@pytest.mark.parametrize('intercept', [True, False])
def test_ols_inference_matches_statsmodels(tmp_path, intercept):
  rng = np.random.default_rng(1)
  X = rng.standard_normal((300, 4)) * [1, 10, 0.1, 3] + [0, 5, 0, -2]
  y = 1.5 + X @ [0.5, -0.2, 3.0, 0.0] + rng.standard_normal(300)
  task = make_task('ols', data__csv=str(write_csv(tmp_path / 'd.csv', X, y)),
                   data__test_fraction=0.0, model__intercept=intercept)
  params, _ = fit(task)
  out = task.final_results(params)
  exog = sm.add_constant(X) if intercept else X
  ref = sm.OLS(y, exog).fit()
  names = (['const'] if intercept else []) + ['x1', 'x2', 'x3', 'x4']
  vec = lambda key: np.array([out[key][n] for n in names])
  assert rel(vec('coefficients'), ref.params) < 1e-10
  assert rel(vec('std_errors'), ref.bse) < 1e-8
  assert rel(vec('t_values'), ref.tvalues) < 1e-8
  assert rel(vec('p_values'), ref.pvalues) < 1e-8
  assert rel(vec('conf_low'), ref.conf_int()[:, 0]) < 1e-8
  assert rel(vec('conf_high'), ref.conf_int()[:, 1]) < 1e-8
  for ours, theirs in [('f_statistic', ref.fvalue), ('f_p_value', ref.f_pvalue),
                       ('aic', ref.aic), ('bic', ref.bic), ('log_likelihood', ref.llf)]:
    assert rel(out[ours], theirs) < 1e-8, ours
  metrics = task.evaluate(params, 'train')
  assert rel(metrics['r2'], ref.rsquared) < 1e-10 if intercept else True
  assert rel(metrics['mse'], ref.ssr / 300) < 1e-10


@float64
def test_diagnostics_match_statsmodels(tmp_path):
  rng = np.random.default_rng(2)
  X = rng.standard_normal((400, 3))
  X[:, 2] = X[:, 0] + 0.3 * rng.standard_normal(400)
  y = X @ [1.0, 2.0, -1.0] + 0.4 * X[:, 0] ** 2 + rng.standard_normal(400) * np.exp(0.5 * X[:, 1])
  task = make_task('ols', data__csv=str(write_csv(tmp_path / 'd.csv', X, y)),
                   data__test_fraction=0.0)
  out = task.final_results(fit(task)[0])
  exog = sm.add_constant(X)
  ref = sm.OLS(y, exog).fit()
  jb, jb_p, skew, kurt = stattools.jarque_bera(ref.resid)
  assert rel([out['diagnostics/jarque_bera'], out['diagnostics/jarque_bera_p'],
              out['diagnostics/skew'], out['diagnostics/kurtosis']], [jb, jb_p, skew, kurt]) < 1e-8
  lm, lm_p, _, _ = diagnostic.het_breuschpagan(ref.resid, exog)
  assert rel([out['diagnostics/breusch_pagan'], out['diagnostics/breusch_pagan_p']], [lm, lm_p]) < 1e-8
  reset = diagnostic.linear_reset(ref, power=3, use_f=True)
  assert rel([out['diagnostics/reset'], out['diagnostics/reset_p']],
             [float(reset.fvalue), float(reset.pvalue)]) < 1e-8
  vifs = [outliers_influence.variance_inflation_factor(exog, j) for j in (1, 2, 3)]
  assert rel(list(out['diagnostics/vif'].values()), vifs) < 1e-8
  assert rel(out['diagnostics/condition_number'], ref.condition_number) < 1e-8


def _violations(out):
  return {k[len('verdict/'):] for k, v in out.items()
          if k.startswith('verdict/') and ('rejects' in v or 'finds the' in v or 'severe' in v)}


@float64
def test_clean_synthetic_data_passes_every_diagnostic():
  task = make_task('ols', data__synthetic='linear')
  assert _violations(task.final_results(fit(task)[0])) == set()


@pytest.mark.parametrize('kind, fires', [
    ('nonlinear', 'linearity'), ('heteroscedastic', 'homoscedasticity'),
    ('heavy_tailed', 'normality'), ('collinear', 'multicollinearity')])
@float64
def test_each_synthetic_violation_fires_its_diagnostic(kind, fires):
  task = make_task('ols', data__synthetic=kind)
  assert fires in _violations(task.final_results(fit(task)[0]))


@float64
def test_rank_deficiency_is_reported_with_the_minimum_norm_fit(tmp_path):
  rng = np.random.default_rng(3)
  X = rng.standard_normal((100, 3))
  X = np.column_stack([X, X[:, 0] + X[:, 1]])  # x4 = x1 + x2
  y = X[:, :3] @ [1.0, 2.0, 3.0] + 0.1 * rng.standard_normal(100)
  task = make_task('ols', data__csv=str(write_csv(tmp_path / 'd.csv', X, y)),
                   data__test_fraction=0.0)
  params, _ = fit(task)
  out = task.final_results(params)
  assert out['rank_deficient'] and out['rank'] == 4  # of 5 with the intercept.
  assert out['dependent_columns'] == ['x4']
  with pytest.warns(Warning, match='rank'):  # statsmodels warns of the deficiency too.
    ref = sm.OLS(y, sm.add_constant(X)).fit()  # its pinv: the minimum-norm solution.
  assert rel(list(out['coefficients'].values()), ref.params) < 1e-8


@float64
@pytest.mark.parametrize('refine_steps, block_rows, blocks', [(0, 0, 4), (2, 0, 4), (0, 200, 16)])
def test_tsqr_over_four_devices_equals_one_device(refine_steps, block_rows, blocks):
  kw = dict(data__n=4000, data__p=6, model__refine_steps=refine_steps, model__refine_tol=0.0)
  one = make_task('ols', model__qr_block_rows=0, **kw)
  four = make_task('ols', devices=4, model__qr_block_rows=block_rows, **kw)
  assert one.num_blocks == 1 and four.num_blocks == blocks
  assert rel(fit(four)[0]['coef'], fit(one)[0]['coef']) < 1e-12


@float64
def test_refinement_is_skipped_only_where_qr_is_already_accurate():
  hard = make_task('nist', data__synthetic='nist:Wampler5', model__basis='raw')  # float64 on.
  X, y = np.random.default_rng(0).standard_normal((500, 4)), np.random.default_rng(1).standard_normal(500)
  mask = np.ones(500)
  skipped = linear.ols(X, y, mask, refine_steps=2)
  forced = linear.ols(X, y, mask, refine_steps=2, refine_tol=0.0)
  assert float(skipped['error_estimate']) < 2.0 ** -44
  assert rel(skipped['params'], forced['params']) < 1e-14
  # Wampler5 (condition ~1e13 in the raw basis) is refined, and it matters.
  F = np.asarray(hard.features(hard.init(None), hard.train['x']))
  est = linear.ols(F, hard.train['y'], hard.train['mask'], refine_steps=0)['error_estimate']
  assert float(est) > 2.0 ** -44


@float64
@pytest.mark.parametrize('preset', ['ridge', 'lasso', 'elastic_net'])
def test_regularized_fits_on_four_devices_equal_one(preset):
  one = make_task(preset, data__n=1000, data__p=6, model__num_alphas=10)
  four = make_task(preset, devices=4, data__n=1000, data__p=6, model__num_alphas=10)
  a, b = fit(one)[0], fit(four)[0]
  assert float(a['alpha']) == pytest.approx(float(b['alpha']), rel=1e-12)
  assert np.max(np.abs(a['coef'] - b['coef'])) < 1e-9


@float64
@pytest.mark.parametrize('preset', ['ols', 'ridge'])
def test_polynomial_padding_rows_change_nothing(preset):
  # 1003 rows leave 803 to train: 4 devices pad them with rows whose monomials are not zero.
  kw = dict(data__n=1003, data__p=2, model__degree=2, model__gcv=False)
  one, four = make_task(preset, **kw), make_task(preset, devices=4, **kw)
  assert len(four.train['mask']) > four.n_train
  assert rel(fit(four)[0]['coef'], fit(one)[0]['coef']) < 1e-10


@float64
def test_polynomial_with_two_features_maps_back_to_raw_monomials(tmp_path):
  rng = np.random.default_rng(4)
  X = rng.uniform(-3, 5, (200, 2)) + [10, 0]
  y = 1 + X[:, 0] - 0.5 * X[:, 0] * X[:, 1] + 0.2 * X[:, 1] ** 3 + 0.01 * rng.standard_normal(200)
  task = make_task('polynomial', data__csv=str(write_csv(tmp_path / 'd.csv', X, y)),
                   data__test_fraction=0.0, model__degree=3)
  params, _ = fit(task)
  names, values, _ = task.raw_coefficients(params)
  exps = linear.exponents(2, 3)
  raw = np.column_stack([np.prod(X ** np.array(e), axis=1) for e in exps])
  assert names[:4] == ['const', 'x1', 'x2', 'x1^2'] and 'x1 x2' in names
  pred = values[0] + raw @ values[1:]
  assert rel(pred, np.asarray(task.predict_values(params, X))) < 1e-9
  ref = sm.OLS(y, sm.add_constant(raw)).fit()
  assert rel(values, ref.params) < 1e-6


# --- regularized models against scikit-learn ---------------------------------------------


@pytest.fixture(scope='module')
def sparse_problem():
  rng = np.random.default_rng(5)
  X = rng.standard_normal((500, 30)) * rng.uniform(0.5, 2, 30) + rng.standard_normal(30)
  w = np.where(rng.uniform(size=30) < 0.3, rng.standard_normal(30) * 2, 0.0)
  return X, 3.0 + X @ w + rng.standard_normal(500)


@float64
@pytest.mark.parametrize('name, l1_ratio', [('lasso', 1.0), ('elastic_net', 0.5), ('elastic_net', 0.2)])
@pytest.mark.parametrize('intercept', [True, False])
def test_lasso_and_elastic_net_match_scikit_learn(tmp_path, sparse_problem, name, l1_ratio, intercept):
  X, y = sparse_problem
  task = make_task(name, data__csv=str(write_csv(tmp_path / 'd.csv', X, y)),
                   data__test_fraction=0.0, model__cv_folds=0, model__alpha=0.05,
                   model__l1_ratio=l1_ratio, model__intercept=intercept, model__tol=1e-14,
                   model__max_iter=100000)
  params, _ = fit(task)
  ref = linear_model.ElasticNet(alpha=0.05, l1_ratio=l1_ratio, fit_intercept=intercept,
                                tol=1e-14, max_iter=100000).fit(X, y)
  assert np.max(np.abs(params['coef'] - ref.coef_)) < 1e-6
  assert abs(float(params['intercept']) - ref.intercept_) < 1e-6
  assert np.sum(params['coef'] == 0) == np.sum(ref.coef_ == 0) > 0


@float64
def test_elastic_net_path_matches_scikit_learn(sparse_problem):
  X, y = sparse_problem
  from sklearn.linear_model import enet_path
  G, q, yy = X.T @ X, X.T @ y, y @ y
  alphas = np.asarray(linear.alpha_grid(q, len(y), 0.7, 30))
  coefs, gaps = jax.jit(lambda a: linear.elastic_net_path(G, q, yy, len(y), a, 0.7, tol=1e-13,
                                                          max_iter=100000))(alphas)
  ref_alphas, ref_coefs, _ = enet_path(X, y, l1_ratio=0.7, alphas=alphas, tol=1e-13,
                                       max_iter=100000)
  assert rel(alphas, ref_alphas) < 1e-12
  assert np.max(np.abs(np.asarray(coefs) - ref_coefs.T)) < 1e-6
  assert np.all(np.asarray(gaps) < 1e-13 * yy)


@float64
@pytest.mark.parametrize('nonzero, screened', [(11, True), (60, False)])
def test_screened_path_equals_the_full_gram_path(nonzero, screened):
  rng = np.random.default_rng(7)
  X = rng.standard_normal((1000, 60)) + rng.standard_normal(60)
  y = 2.0 + X[:, :nonzero] @ rng.standard_normal(nonzero) * 2 + 0.5 * rng.standard_normal(1000)
  mask = np.ones(1000)
  G, q, yy, xm, _ = linear.gram(X, y, mask, True)
  alphas = linear.alpha_grid(q, 1000, 0.8, 40, eps=0.02)  # noise features stay out.
  full, _ = linear.elastic_net_path(G, q, yy, 1000, alphas, 0.8, tol=1e-13, max_iter=100000)
  _, q2, yy2, xm2, _ = linear.gram(X, y, mask, True, full=False)
  coefs, gaps, columns = jax.jit(lambda a: linear.screened_path(
      X, q2, yy2, 1000, xm2, a, 0.8, budget=16, tol=1e-13, max_iter=100000))(alphas)
  assert np.max(np.abs(np.asarray(coefs) - np.asarray(full))) < 1e-8
  assert np.all(np.asarray(gaps) < 1e-13 * yy)
  if screened:  # a few Gram columns, grown past the first 8 as features entered.
    assert 8 < int(columns) <= 16
  else:  # every feature enters: the working set overflows into the full Gram matrix.
    assert int(columns) == 60


@float64
def test_lasso_path_task_screens_when_p_exceeds_the_working_set():
  kw = dict(data__n=600, data__p=40, model__cv_folds=0, model__path=True, model__num_alphas=20,
            model__tol=1e-12, model__max_iter=100000, data__synthetic='bench', bench__nonzero=3)
  a, ma = fit(make_task('lasso', model__working_set=16, **kw))
  b, mb = fit(make_task('lasso', model__working_set=0, **kw))
  assert 'path_gram_columns' in ma and 'path_gram_columns' not in mb
  assert np.max(np.abs(a['path_coefs'] - b['path_coefs'])) < 1e-8
  assert float(ma['loss']) == pytest.approx(float(mb['loss']), rel=1e-10)


@float64
def test_cross_validation_matches_elastic_net_cv(tmp_path, sparse_problem):
  X, y = sparse_problem
  task = make_task('elastic_net', data__csv=str(write_csv(tmp_path / 'd.csv', X, y)),
                   data__test_fraction=0.0, model__cv_folds=5, model__num_alphas=20,
                   model__tol=1e-12, model__max_iter=100000)
  assert len(task.train['y']) == 500  # no padding: five equal contiguous folds, as KFold(5).
  params, _ = fit(task)
  rows = task.train
  ref = linear_model.ElasticNetCV(l1_ratio=0.5, cv=5, alphas=20, tol=1e-12,
                                  max_iter=100000).fit(rows['x'], rows['y'])
  assert rel(float(params['alpha']), ref.alpha_) < 1e-12
  assert np.max(np.abs(params['coef'] - ref.coef_)) < 1e-6


@float64
def test_ridge_matches_scikit_learn_and_gcv_picks_the_brute_force_minimum(tmp_path, sparse_problem):
  X, y = sparse_problem
  path = str(write_csv(tmp_path / 'd.csv', X, y))
  task = make_task('ridge', data__csv=path, data__test_fraction=0.0, model__gcv=False,
                   model__alpha=3.0)
  params, _ = fit(task)
  ref = linear_model.Ridge(alpha=3.0).fit(X, y)
  assert rel(params['coef'], ref.coef_) < 1e-9
  task = make_task('ridge', data__csv=path, data__test_fraction=0.0, model__alpha=1.0)
  params, _ = fit(task)
  Xc, yc = X - X.mean(0), y - y.mean()
  def gcv(a):
    H = Xc @ np.linalg.solve(Xc.T @ Xc + a * np.eye(30), Xc.T)
    r = yc - H @ yc
    return len(y) * (r @ r) / (len(y) - np.trace(H)) ** 2
  grid = np.logspace(-4, 4, 33)
  assert float(params['alpha']) == pytest.approx(grid[np.argmin([gcv(a) for a in grid])])


# --- bad input --------------------------------------------------------------------------


@float64
def test_csv_errors_name_the_problem(tmp_path):
  p = tmp_path / 'd.csv'
  p.write_text('a,b,y\n1,2,3\n4,five,6\n')
  with pytest.raises(UserError, match=r"row 3, column 'b': 'five' is not a number"):
    tabular.read_csv(str(p), 'y')
  with pytest.raises(UserError, match=r"no target column 'price'"):
    tabular.read_csv(str(p), 'price')
  p.write_text('a,b,y\n1,2,3\n4,nan,6\n7,8,inf\n2,1,0\n')
  with pytest.raises(UserError, match=r"row 3, column 'b' is nan; 2 row\(s\)"):
    tabular.read_csv(str(p), 'y')
  X, y, names, dropped = tabular.read_csv(str(p), 'y', nonfinite='drop')
  assert dropped == 2 and X.tolist() == [[1, 2], [2, 1]] and names == ['a', 'b']
  with pytest.raises(UserError, match="column 'c' is constant"):
    tabular.check_columns(np.array([[1.0, 2, 5], [2, 3, 5], [4, 1, 5], [0, 0, 5], [1, 1, 5]]),
                          ['a', 'b', 'c'], 4)
  with pytest.raises(UserError, match='3 rows for 4 parameters'):
    tabular.check_columns(np.eye(3), ['a', 'b', 'c'], 4)


@float64
def test_launch_writes_results_summary_and_plot(tmp_path):
  rng = np.random.default_rng(6)
  X = rng.standard_normal((120, 2))
  csv = write_csv(tmp_path / 'd.csv', X, X @ [2.0, -1.0] + 0.1 * rng.standard_normal(120))
  workdir = tmp_path / 'run'
  proc = launch('--config=configs/regression.py:polynomial', f'--config.data.csv={csv}',
                '--config.data.target=y', '--config.model.degree=2',
                '--config.model.intercept=False', f'--workdir={workdir}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / 'results.json').read_text())
  assert set(results['coefficients']) == {'x1', 'x2', 'x1^2', 'x1 x2', 'x2^2'}
  assert results['coefficients']['x1'] == pytest.approx(2.0, abs=0.1)
  assert isinstance(results['coefficients']['x1'], float) and len(repr(results['coefficients']['x1'])) > 12
  for key in ('test/r2', 'test/rmse', 'train/mse', 'train/adj_r2', 'params_sha256', 'p_values'):
    assert key in results
  assert 'Jarque-Bera' in (workdir / 'summary.txt').read_text()
  assert (workdir / 'plots' / 'diagnostics.png').stat().st_size > 10000
  assert (workdir / 'config.json').exists() and (workdir / 'metrics.jsonl').exists()

  # Bad input: one line, exit 2, and the finished run is untouched.
  bad = tmp_path / 'bad.csv'
  bad.write_text('x1,y\n1,2\n3,oops\n')
  proc = launch('--config=configs/regression.py:ols', f'--config.data.csv={bad}',
                f'--workdir={workdir}')
  assert proc.returncode != 0
  assert "row 3, column 'y': 'oops' is not a number" in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert json.loads((workdir / 'results.json').read_text()) == results


@float64
def test_benchmark_prints_fit_seconds():
  proc = launch('--config=configs/regression.py:lasso', '--mode=benchmark',
                '--config.bench.n=2000', '--config.bench.p=10', '--config.model.cv_folds=0')
  assert proc.returncode == 0, proc.stderr[-3000:]
  row = json.loads(proc.stdout.strip().splitlines()[-1])
  assert row['fit_seconds'] > 0 and row['n'] == 1600 and row['p'] == 10
  assert 0.9 < row['heldout_r2'] <= 1  # sklearn_linear.py's data: noise 0.5, weights ~3.
  assert {'config', 'devices', 'steps', 'seconds', 'examples_per_second', 'peak_rss_mb'} <= set(row)


@float64
def test_lasso_cv_with_path_draws_both(tmp_path):
  proc = launch('--config=configs/regression.py:lasso', '--config.model.path=True',
                '--config.data.n=300', '--config.model.num_alphas=12', f'--workdir={tmp_path}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['alpha'] > 0 and results['test/r2'] > 0.5
  assert (tmp_path / 'plots' / 'path.png').stat().st_size > 10000
