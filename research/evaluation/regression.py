"""Regression evaluation: error metrics, inference and assumption diagnostics.

Regression evaluation: error metrics, and the inference and assumption
diagnostics of a least-squares fit with statsmodels' definitions (OLS summary,
jarque_bera, het_breuschpagan, linear_reset, variance_inflation_factor), so the
numbers agree with it.

The matrix work is JAX (research.models.linear); tail probabilities come from
scipy.stats on the host, as statsmodels' do.
"""
import numpy as np
from scipy import stats

from research.models import linear

ALPHA = 0.05  # the level at which the verdicts call a test significant.


def inference(coef, cov_unscaled, rss, tss, n, rank, intercept: bool, level=0.95):
  """statsmodels' OLS results: standard errors, t, p, confidence intervals, R^2,
  adjusted R^2, F, log-likelihood, AIC and BIC. `coef` and `cov_unscaled`
  ((X^T X)^-1) include the intercept first when there is one; `tss` is the
  centered total sum of squares with an intercept, the uncentered one without."""
  coef, cov = np.asarray(coef, np.float64), np.asarray(cov_unscaled, np.float64)
  rss, tss = np.float64(rss), np.float64(tss)  # an exact fit gives inf and nan, not an exception.
  with np.errstate(divide='ignore', invalid='ignore'):
    return _inference(coef, cov, rss, tss, n, rank, intercept, level)


def _inference(coef, cov, rss, tss, n, rank, intercept, level):
  k_const = int(intercept)
  df_resid = n - rank
  df_model = rank - k_const
  sigma2 = rss / df_resid
  se = np.sqrt(np.diag(cov) * sigma2)
  t = coef / se
  half = stats.t.ppf(0.5 + level / 2, df_resid) * se
  r2 = 1 - rss / tss
  ess = tss - rss
  f = (ess / df_model) / sigma2 if df_model > 0 else float('nan')
  llf = -n / 2 * (np.log(2 * np.pi) + np.log(rss / n) + 1)
  k = df_model + k_const
  return dict(
      std_errors=se, t_values=t, p_values=2 * stats.t.sf(np.abs(t), df_resid),
      conf_low=coef - half, conf_high=coef + half,
      r2=r2, adj_r2=1 - (n - k_const) / df_resid * (1 - r2),
      f_statistic=f, f_p_value=stats.f.sf(f, df_model, df_resid) if df_model > 0 else float('nan'),
      log_likelihood=llf, aic=-2 * llf + 2 * k, bic=-2 * llf + np.log(n) * k,
      sigma=np.sqrt(sigma2), df_model=df_model, df_resid=df_resid)


def jarque_bera(resid):
  """(JB, p, skew, kurtosis) of the residuals (biased moments, as statsmodels)."""
  r = np.asarray(resid, np.float64)
  if not np.any(r - r.mean()):  # an exact fit: nothing to test.
    return float('nan'), float('nan'), float('nan'), float('nan')
  d = r - r.mean()
  m2, m3, m4 = (d ** 2).mean(), (d ** 3).mean(), (d ** 4).mean()
  skew, kurt = m3 / m2 ** 1.5, m4 / m2 ** 2
  jb = len(r) / 6 * (skew ** 2 + (kurt - 3) ** 2 / 4)
  return jb, stats.chi2.sf(jb, 2), skew, kurt


def _r2_of(X, y, mask):
  """Centered R^2 of y regressed on X with an intercept (QR, as every fit here)."""
  fit = linear.ols(X, y, mask, intercept=True)
  yc = (y - (mask @ y) / mask.sum()) * mask
  tss = float(yc @ yc)
  return (1 - float(fit['rss']) / tss if tss > 0 else float('nan')), fit


def breusch_pagan(X, resid, mask):
  """Koenker's studentized Breusch-Pagan LM test (statsmodels' default, robust=True):
  n R^2 of resid^2 on X, chi^2 with p degrees of freedom. Returns (LM, p)."""
  n = float(mask.sum())
  if n <= X.shape[1] + 1:
    return float('nan'), float('nan')
  r2, _ = _r2_of(X, resid ** 2, mask)
  lm = n * r2
  return lm, stats.chi2.sf(lm, X.shape[1])


def reset(X, y, fitted, mask, rss, rank, intercept=True, power=3):
  """Ramsey's RESET (statsmodels' linear_reset with use_f=True): F test of
  fitted^2 .. fitted^power added to the regressors. Returns (F, p)."""
  import jax.numpy as jnp
  n = float(mask.sum())
  z = (fitted - (mask @ fitted) / n)
  z = z / jnp.sqrt((mask * z) @ z / n)  # the span is the same; the powers stay well scaled.
  aug = jnp.concatenate([X] + [(z ** k)[:, None] for k in range(2, power + 1)], axis=1)
  q = power - 1
  df = n - (rank + q)
  if df <= 0:
    return float('nan'), float('nan')
  fit = linear.ols(aug, y, mask, intercept=intercept)
  f = ((rss - float(fit['rss'])) / q) / (float(fit['rss']) / df)
  return f, stats.f.sf(f, q, df)


def vif(cov, X, mask, intercept: bool):
  """Variance inflation factors of the columns of X, statsmodels' 1 / (1 - R_j^2)
  of column j on the others (and the constant): (X^T X)^-1_jj times the column's
  (centered, with a constant) sum of squares. `cov` is (X^T X)^-1 of the fit."""
  X, mask = np.asarray(X), np.asarray(mask) > 0
  X = X[mask]
  ss = np.sum((X - X.mean(0)) ** 2 if intercept else X ** 2, axis=0)
  return np.diag(np.asarray(cov))[int(intercept):] * ss


def condition_number(X, mask, intercept: bool):
  """statsmodels' Cond. No.: the 2-norm condition number of the design as given
  (with its constant column), from the R of its QR."""
  import jax.numpy as jnp
  A = X * mask[:, None]
  if intercept:
    A = jnp.concatenate([mask[:, None], A], axis=1)
  s = np.linalg.svd(np.asarray(linear.qr_r(A)), compute_uv=False)
  return float(s[0] / s[-1]) if s[-1] > 0 else float('inf')


def verdicts(diag: dict) -> dict:
  """Plain words for each assumption."""
  def test(p, bad, good):
    if not np.isfinite(p):
      return 'not testable here (too few rows, or an exact fit)'
    return (f'{bad} (p = {p:.3g} < {ALPHA})' if p < ALPHA else f'{good} (p = {p:.3g})')
  out = {
      'linearity': test(diag['reset_p'], 'RESET rejects a linear mean: add terms or transform',
                        'RESET finds no missing nonlinearity'),
      'normality': test(diag['jarque_bera_p'], 'Jarque-Bera rejects normal residuals',
                        'residuals are consistent with a normal distribution'),
      'homoscedasticity': test(diag['breusch_pagan_p'],
                               'Breusch-Pagan finds the error variance changes with X',
                               'no evidence that the error variance changes with X'),
  }
  worst = max(diag['vif'].values()) if diag['vif'] else 1.0
  if worst > 10:
    out['multicollinearity'] = f'severe: the largest VIF is {worst:.1f} (> 10)'
  elif worst > 5:
    out['multicollinearity'] = f'moderate: the largest VIF is {worst:.1f} (> 5)'
  else:
    out['multicollinearity'] = f'none to speak of: the largest VIF is {worst:.2f}'
  return out


def summary_table(names, coef, inf: dict, diag: dict, n: int, title: str) -> str:
  """A text table in the manner of statsmodels' OLS summary."""
  w = 88
  lines = [title.center(w), '=' * w,
           f'{"Observations:":<22}{n:>14d}    {"R-squared:":<32}{inf["r2"]:>14.6f}',
           f'{"Df residuals:":<22}{inf["df_resid"]:>14d}    {"Adj. R-squared:":<32}{inf["adj_r2"]:>14.6f}',
           f'{"Df model:":<22}{inf["df_model"]:>14d}    {"F-statistic:":<32}{inf["f_statistic"]:>14.6g}',
           f'{"Residual std. error:":<22}{inf["sigma"]:>14.6g}    {"Prob (F-statistic):":<32}{inf["f_p_value"]:>14.4g}',
           f'{"Log-likelihood:":<22}{inf["log_likelihood"]:>14.6g}    {"AIC:":<32}{inf["aic"]:>14.6g}',
           f'{"":<22}{"":>14}    {"BIC:":<32}{inf["bic"]:>14.6g}',
           '=' * w,
           f'{"":<16}{"coef":>15}{"std err":>12}{"t":>10}{"P>|t|":>9}{"[0.025":>13}{"0.975]":>13}',
           '-' * w]
  for i, name in enumerate(names):
    lines.append(f'{name[:16]:<16}{coef[i]:>15.8g}{inf["std_errors"][i]:>12.4g}'
                 f'{inf["t_values"][i]:>10.3f}{inf["p_values"][i]:>9.3f}'
                 f'{inf["conf_low"][i]:>13.5g}{inf["conf_high"][i]:>13.5g}')
  lines += ['=' * w,
            f'{"Jarque-Bera:":<22}{diag["jarque_bera"]:>14.6g}    {"Prob(JB):":<32}{diag["jarque_bera_p"]:>14.4g}',
            f'{"Skew:":<22}{diag["skew"]:>14.6g}    {"Kurtosis:":<32}{diag["kurtosis"]:>14.6g}',
            f'{"Breusch-Pagan LM:":<22}{diag["breusch_pagan"]:>14.6g}    {"Prob(BP):":<32}{diag["breusch_pagan_p"]:>14.4g}',
            f'{"RESET F:":<22}{diag["reset"]:>14.6g}    {"Prob(RESET):":<32}{diag["reset_p"]:>14.4g}',
            f'{"Cond. No.:":<22}{diag["condition_number"]:>14.4g}    {"Max VIF:":<32}{max(diag["vif"].values(), default=float("nan")):>14.4g}',
            '=' * w, 'Assumptions:']
  lines += [f'  {k}: {v}' for k, v in verdicts(diag).items()]
  return '\n'.join(lines) + '\n'


def fit_metrics(pred, y, mask, num_coef) -> dict:
  """MSE, RMSE, MAE, R^2 and adjusted R^2 of predictions over the rows mask keeps
  (R^2 is None for a constant target)."""
  keep = mask > 0
  r = (y - pred)[keep]
  yk = y[keep]
  n = len(r)
  mse = float(np.mean(r ** 2))
  tss = float(np.sum((yk - yk.mean()) ** 2))
  r2 = 1 - float(np.sum(r ** 2)) / tss if tss > 0 else None  # undefined for a constant target.
  return {'mse': mse, 'rmse': float(np.sqrt(mse)), 'mae': float(np.mean(np.abs(r))), 'r2': r2,
          'adj_r2': None if r2 is None else 1 - (1 - r2) * (n - 1) / max(n - num_coef - 1, 1)}
