"""Paper reproduction: `launch.py --reproduce=NAME`.

Paper reproduction: `launch.py --reproduce=NAME` runs configs/papers/NAME.py
(one run, or its sweep) and writes report.md with seqlab's numbers beside the paper's.

A paper config is an ordinary config file plus a PAPER dict:

    PAPER = dict(
        title='...', authors='...', year=2014, where='Table 1',
        results=[dict(label='RNNsearch-50', point={}, metric='test/bleu', paper=26.75)],
        notes='what differs from the paper's setting')

`point` names the sweep point (its overrides) a row reads; `scale` (default 1)
multiplies seqlab's value, e.g. 100 to compare a fraction with a percentage;
`paper=None` shows seqlab's alone (a number the paper does not give).
An optional `curves` list draws, for each entry
dict(prefix='test/bleu_len_', file='bleu_by_length.png', xlabel=..., ylabel=...),
one line per result row over the bucketed metrics that share the prefix; an
optional `roc='roc.png'` draws one ROC curve per row from its test_scores.npz.

A point's metrics are its results.json, plus the metrics it lacks from an
eval_results.json of the same step (e.g. a metric added after the point trained).
"""
import datetime
import json
import os

import numpy as np

from research import config as config_lib, plots, sweep
from research.errors import UserError


def resolve(name: str, root: str) -> str:
  """A path to a paper config, from a NAME in configs/papers or a file path."""
  if os.path.isfile(name):
    return name
  papers = os.path.join(root, 'configs', 'papers')
  path = os.path.join(papers, f'{name}.py')
  if not os.path.isfile(path):
    known = sorted(f[:-3] for f in os.listdir(papers) if f.endswith('.py')
                   and not f.startswith('_')) if os.path.isdir(papers) else []
    raise UserError(f'no paper config {name!r} in {papers}; known: {", ".join(known) or "none"}')
  return path


def points_and_paper(path: str):
  module = config_lib.load_config_module(path)
  paper = getattr(module, 'PAPER', None)
  if not isinstance(paper, dict) or not paper.get('results'):
    raise UserError(f'{path} has no PAPER dict with results; it is not a paper config')
  points = config_lib.load_sweep(path, None) if hasattr(module, 'get_sweep') else [{}]
  return points, paper


def run(launch_path: str, path: str, workdir: str, parallel: int = 1, extra_args=(),
        log=print) -> str:
  points, paper = points_and_paper(path)
  sweep.run(launch_path, path, workdir, points, parallel, extra_args, log)
  report = write_report(workdir, paper, path, extra_args)
  log(f'reproduce: wrote {report}')
  return report


def write_report(workdir: str, paper: dict, path: str, extra_args=()) -> str:
  name = os.path.splitext(os.path.basename(path))[0]
  lines = [
      f'# Reproduction: {paper.get("title", name)}', '',
      f'{paper.get("authors", "")} ({paper.get("year", "")}), {paper.get("where", "")}.', '',
      f'Config: `{os.path.relpath(path)}`. Command: '
      f'`python launch.py --reproduce={name}{" " + " ".join(extra_args) if extra_args else ""}`. '
      f'Written {datetime.date.today().isoformat()}.', '',
      '| result | metric | paper | seqlab | difference |', '|---|---|---|---|---|',
  ]
  for row in paper['results']:
    point = sweep.point_name(row.get('point', {}))
    ours, note = _ours(workdir, point, row['metric'])
    theirs = row.get('paper')  # None: the paper gives no number for this one.
    cells = [row['label'], row['metric'], '-' if theirs is None else f'{theirs:g}']
    if ours is None:
      cells += [note, '']
    else:
      ours *= row.get('scale', 1)
      cells += [f'{ours:.4g}', '' if theirs is None else f'{ours - theirs:+.4g}']
    lines.append('| ' + ' | '.join(cells) + ' |')
  for curve in paper.get('curves', ()):
    series = {row['label']: _metrics(workdir, sweep.point_name(row.get('point', {})))
              for row in paper['results']}
    png = plots.bucket_curves(series, curve['prefix'], os.path.join(workdir, curve['file']),
                              curve.get('xlabel', ''), curve.get('ylabel', ''),
                              curve.get('title', ''))
    lines += ['', f'![{curve["file"]}]({curve["file"]})' if png else
              f'No `{curve["prefix"]}*` metrics yet, so no {curve["file"]}.']
  if paper.get('roc'):  # one ROC figure over the rows' test_scores.npz (binary classifiers).
    series = {}
    for row in paper['results']:
      scores = os.path.join(workdir, sweep.point_name(row.get('point', {})), 'test_scores.npz')
      if os.path.exists(scores) and row['label'] not in series:
        with np.load(scores) as z:
          series[row['label']] = (z['labels'], z['probabilities'])
    if series:
      plots.roc_curves(series, os.path.join(workdir, paper['roc']))
      lines += ['', f'![{paper["roc"]}]({paper["roc"]})']
  if paper.get('notes'):
    lines += ['', paper['notes'].strip()]
  report = os.path.join(workdir, 'report.md')
  with open(report, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return report


def _metrics(workdir: str, point: str) -> dict:
  """results.json, plus the metrics it lacks from an eval_results.json of the same step."""
  paths = [os.path.join(workdir, point, n) for n in ('results.json', 'eval_results.json')]
  out = json.load(open(paths[0])) if os.path.exists(paths[0]) else {}
  if os.path.exists(paths[1]):
    later = json.load(open(paths[1]))
    if later.get('step') == out.get('step'):
      out.update({k: v for k, v in later.items() if k not in out})
  return out


def _ours(workdir: str, point: str, metric: str):
  if not os.path.exists(os.path.join(workdir, point, 'results.json')):
    error = os.path.join(workdir, point, 'error.txt')
    return None, ('failed: ' + open(error).read().strip()) if os.path.exists(error) else 'not run'
  value = _metrics(workdir, point).get(metric)
  if not isinstance(value, (int, float)):
    return None, f'no {metric} in results.json'
  return float(value), ''
