"""The package's structure: no import cycle anywhere in research/ (imports made
inside functions included), models import no task, plots import no model, every
module says in its first line what it holds, and the default run imports no TFDS."""
import ast
import pathlib
import subprocess
import sys

from conftest import ROOT


def module_imports(package: pathlib.Path, prefix: str) -> dict[str, set[str]]:
  """{module: the modules of the package it imports}, anywhere in its file."""
  names = {'.'.join((prefix, *p.relative_to(package).with_suffix('').parts)).removesuffix(
      '.__init__'): p for p in package.rglob('*.py')}
  graph = {}
  for name, path in names.items():
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        found.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module:
        found.add(node.module)
        found.update(f'{node.module}.{a.name}' for a in node.names)
    graph[name] = {m for m in found if m in names and m != name}
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Every import cycle found by a depth-first search, each as its path."""
  found, state = [], {}

  def visit(node, path):
    state[node] = 'open'
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 'open':
        found.append(path[path.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = 'done'

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
  pkg = tmp_path / 'pkg'
  pkg.mkdir()
  (pkg / '__init__.py').write_text('')
  (pkg / 'a.py').write_text('from pkg import b\n')
  (pkg / 'b.py').write_text('def f():\n  from pkg import c\n')
  (pkg / 'c.py').write_text('import pkg.a\n')
  assert cycles(module_imports(pkg, 'pkg')) == [['pkg.a', 'pkg.b', 'pkg.c', 'pkg.a']]
  (pkg / 'c.py').write_text('import os\n')
  assert cycles(module_imports(pkg, 'pkg')) == []


def _graph():
  return module_imports(ROOT / 'research', 'research')


def test_the_package_has_no_import_cycle():
  assert cycles(_graph()) == []


def test_models_import_no_task_and_plots_no_model():
  graph = _graph()
  for name, imports in graph.items():
    if name.startswith('research.models'):
      assert not {m for m in imports if m.startswith('research.tasks')}, name
    if name.startswith(('research.evaluation', 'research.losses')):
      assert not {m for m in imports if m.startswith('research.tasks')}, name
  assert not {m for m in graph['research.plots'] if m.startswith('research.models')}


def test_every_module_opens_with_a_one_line_summary():
  for path in sorted((ROOT / 'research').rglob('*.py')):
    doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
    assert doc, f'{path} has no docstring'
    lines = doc.split('\n')
    assert lines[0].rstrip().endswith(('.', ':')) and (len(lines) == 1 or not lines[1].strip()), (
        f'{path}: the first line of its docstring is not a summary of its own: {lines[0]!r}')


def test_the_default_run_imports_no_tfds():
  code = ('import sys; from research import config, tasks; '
          "tasks.validate(config.load_config_file('configs/dates.py', None)); "
          "print('tensorflow_datasets' in sys.modules)")
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == 'False'
