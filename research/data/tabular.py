"""Tables for regression: numeric CSVs read with checks, and synthetic tables.

Tables for regression: a numeric CSV read with checks, synthetic data that
breaks one assumption at a time, and the NIST StRD reference datasets.

Every problem is a UserError naming it: a missing target column, a
non-numeric cell (row and column), NaN or inf (an error, or the row dropped and
counted, per `nonfinite`), a constant column, fewer rows than parameters.
"""
import csv
import os

import numpy as np

from research.data import strd
from research.errors import UserError

SYNTHETIC = ('linear', 'nonlinear', 'heteroscedastic', 'heavy_tailed', 'collinear', 'bench')


def read_csv(path: str, target: str, features: str = '', nonfinite: str = 'error'):
  """(X [n, p], y [n], feature names, rows dropped) from a CSV with a header row."""
  if not path or not os.path.isfile(path):
    raise UserError(f'data.csv file {path!r} not found')
  if nonfinite not in ('error', 'drop'):
    raise UserError(f'data.nonfinite must be error or drop, not {nonfinite!r}')
  # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark.
  try:
    with open(path, newline='', encoding='utf-8-sig', errors='replace') as f:
      rows = list(csv.reader(f))
  except csv.Error as e:
    raise UserError(f'{path}: not a readable CSV ({e})') from None
  except OSError as e:
    raise UserError(f'could not read {path}: {e.strerror or e}') from None
  rows = [row for row in rows if any(cell.strip() for cell in row)]  # blank lines.
  if not rows:
    raise UserError(f'{path}: empty file')
  header = [h.strip() for h in rows[0]]
  if len(set(header)) != len(header):
    twice = sorted({h for h in header if header.count(h) > 1})
    raise UserError(f'{path}: the header names column(s) {", ".join(map(repr, twice))} twice')
  if target not in header:
    raise UserError(f'{path}: no target column {target!r}; columns: {", ".join(header)}')
  names = [c.strip() for c in features.split(',') if c.strip()] if features else \
      [h for h in header if h != target]
  for name in names:
    if name not in header:
      raise UserError(f'{path}: no feature column {name!r}; columns: {", ".join(header)}')
  cols = [header.index(n) for n in names] + [header.index(target)]
  data = np.empty((len(rows) - 1, len(cols)), np.float64)
  for i, row in enumerate(rows[1:]):
    if len(row) != len(header):
      raise UserError(f'{path}: row {i + 2} has {len(row)} cells; the header has {len(header)}')
    for j, c in enumerate(cols):
      try:
        data[i, j] = float(row[c])
      except ValueError:
        raise UserError(f'{path}: row {i + 2}, column {header[c]!r}: {row[c]!r} is not a number')
  bad = ~np.isfinite(data).all(axis=1)
  dropped = int(bad.sum())
  if dropped and nonfinite == 'error':
    i = int(np.flatnonzero(bad)[0])
    j = int(np.flatnonzero(~np.isfinite(data[i]))[0])
    raise UserError(f'{path}: row {i + 2}, column {header[cols[j]]!r} is {data[i, j]}; '
                    f'{dropped} row(s) have NaN or inf (data.nonfinite=drop drops them)')
  data = data[~bad]
  return data[:, :-1], data[:, -1], names, dropped


def synthetic(kind: str, n: int, p: int, seed: int, noise: float = 1.0, nonzero: int = 0):
  """(X, y, names): data that meets every assumption ('linear') or breaks one:
  'nonlinear' (a squared term the model lacks), 'heteroscedastic' (noise that
  grows with x1), 'heavy_tailed' (Student t with 2 degrees of freedom),
  'collinear' (x2 nearly equals x1); 'bench' is ../shared/bench/sklearn_linear.py's
  data (`nonzero` weights, by default a fifth, drawn times 3; noise 0.5)."""
  if kind not in SYNTHETIC:
    raise UserError(f'unknown data.synthetic {kind!r}; use {", ".join(SYNTHETIC)} or nist:NAME')
  rng = np.random.default_rng(seed)
  X = rng.standard_normal((n, p))
  if kind == 'bench':
    w = np.zeros(p)
    idx = rng.choice(p, nonzero or max(1, p // 5), replace=False)
    w[idx] = rng.standard_normal(len(idx)) * 3
    return X, X @ w + 0.5 * rng.standard_normal(n), [f'x{i + 1}' for i in range(p)]
  if kind == 'collinear' and p >= 2:
    X[:, 1] = X[:, 0] + 0.05 * rng.standard_normal(n)
  w = np.linspace(1.0, -1.0, p) + 0.5
  e = rng.standard_normal(n)
  if kind == 'heteroscedastic':
    e = e * np.exp(X[:, 0])
  elif kind == 'heavy_tailed':
    e = rng.standard_t(2, n)
  y = 2.0 + X @ w + noise * e
  if kind == 'nonlinear':
    y = y + 1.5 * X[:, 0] ** 2
  return X, y, [f'x{i + 1}' for i in range(p)]


def nist(name: str):
  """(X, y, names, certified beta, certified beta std devs, degree, intercept)."""
  if name not in strd.DATASETS:
    raise UserError(f'unknown NIST dataset {name!r}; known: {", ".join(strd.DATASETS)}')
  d = strd.DATASETS[name]
  X, y, beta, beta_sd = strd.load(name)
  names = ['x'] if X.shape[1] == 1 else [f'x{i + 1}' for i in range(X.shape[1])]
  return X, y, names, beta, beta_sd, d['degree'] or 1, d['intercept']


def check_columns(X, names, num_params: int):
  """Constant columns and too few rows are errors, before any fitting."""
  if len(X) <= num_params:
    raise UserError(f'{len(X)} rows for {num_params} parameters: need more rows than parameters')
  spread = X.max(axis=0) - X.min(axis=0) if len(X) else np.zeros(X.shape[1])
  for j in np.flatnonzero(spread == 0):
    raise UserError(f'column {names[j]!r} is constant ({X[0, j]:g}); drop it '
                    '(the intercept already models a constant)')
