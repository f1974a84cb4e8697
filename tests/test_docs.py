"""The commands the documentation shows still work as written.

Every `python launch.py ...` command in README.md, docs/*.md, configs/papers/README.md
and the config docstrings is parsed: its flags must exist, its config file and
preset must load, and every --config.key=value must name an existing key and
hold a value of that key's type. Placeholders (NAME, FILE, ...) are skipped.
"""
import ast
import os
import pathlib
import re
import shlex

import pytest

from research import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC_FILES = ([ROOT / 'README.md', ROOT / 'configs' / 'papers' / 'README.md']
             + sorted((ROOT / 'docs').glob('*.md')))
CONFIG_FILES = sorted((ROOT / 'configs').glob('*.py')) + sorted((ROOT / 'configs' / 'papers').glob('*.py'))
PLACEHOLDER = re.compile(r'NAME|\[|\.\.\.|<')  # configs/NAME.py[:preset], ..., <point>.
PLACEHOLDER_VALUE = re.compile(r'[A-Z][A-Z_]*([./]\S*)?$')  # FILE, COLUMN, FILE.bin.
SHELL_END = {'|', '>', '>>', '&', '&&', ';', '2>', '<'}


def _docstring(path: pathlib.Path) -> str:
  return ast.get_docstring(ast.parse(path.read_text())) or ''


def _logical_lines(text: str):
  """Lines with backslash continuations joined."""
  return text.replace('\\\n', ' ').splitlines()


def commands(text: str) -> list[list[str]]:
  """The argument lists after `python launch.py` in a text, up to a shell
  operator, a comment, '...' or the end of an inline code span."""
  found = []
  for line in _logical_lines(text):
    for match in re.finditer(r'python launch\.py([^`\n]*)', line):
      rest = match.group(1).split(' #')[0]
      try:
        tokens = shlex.split(rest)
      except ValueError:
        tokens = rest.split()
      args = []
      for token in tokens:
        # The command ends at a shell operator, a comment in parentheses or '...'.
        if token in SHELL_END or token.startswith(('>', '|', '2>', '(', '...')):
          break
        args.append(token)
      if args and args[-1].endswith('.') and not args[-1].endswith('...'):  # a sentence's end.
        args[-1] = args[-1][:-1]
      found.append(args)
  return found


def documented_commands():
  out = []
  for path in DOC_FILES:
    out += [(path.relative_to(ROOT).as_posix(), args) for args in commands(path.read_text())]
  for path in CONFIG_FILES:
    out += [(path.relative_to(ROOT).as_posix(), args) for args in commands(_docstring(path))]
  return out


def defined_flags() -> set[str]:
  source = (ROOT / 'launch.py').read_text()
  return set(re.findall(r"DEFINE_\w+\(\s*'(\w+)'", source))


def defined_modes() -> set[str]:
  """The choices of launch.py's --mode."""
  source = (ROOT / 'launch.py').read_text()
  choices = re.search(r"DEFINE_enum\('mode', '\w+', \[([^\]]*)\]", source).group(1)
  return set(re.findall(r"'(\w+)'", choices))


def _coerce(value: str, current):
  """Raises ValueError if `value` cannot be the new value of a key holding `current`."""
  if isinstance(current, bool):
    if value.lower() not in ('true', 'false', '0', '1'):
      raise ValueError(f'{value!r} is not a bool')
  elif isinstance(current, int):
    int(value)
  elif isinstance(current, float):
    float(value)


def check_command(source: str, args: list[str]):
  """Raises AssertionError (or the config's own error) if `args` would not run."""
  if any(a.startswith('[') for a in args):  # a synopsis: launch.py [--flag=...] ...
    return
  flags = defined_flags()
  spec, overrides = 'configs/dates.py', []
  for arg in args:
    assert arg.startswith('--'), f'{source}: stray argument {arg!r} in {args}'
    name, _, value = arg[2:].partition('=')
    if name.startswith('config.'):
      overrides.append((config_lib.resolve_alias(name[len('config.'):]), value))
      continue
    assert name in flags or (name.startswith('no') and name[2:] in flags), \
        f'{source}: launch.py has no flag --{name}'
    if name == 'config':
      spec = value
    elif name == 'reproduce' and not PLACEHOLDER.search(value):
      spec = f'configs/papers/{value}.py'
    elif name == 'mode':
      assert value in defined_modes(), f'{source}: --mode={value}'
  if PLACEHOLDER.search(spec):
    return
  path, _, preset = spec.partition(':')
  assert (ROOT / path).is_file(), f'{source}: no config file {path}'
  cwd = os.getcwd()
  os.chdir(ROOT)  # commands run from the repository root.
  try:
    config = config_lib.load_config_file(path, preset or None)
  finally:
    os.chdir(cwd)
  items = config_lib.flat_items(config)
  for key, value in overrides:
    assert key in items, f'{source}: {config_lib.unknown_key_message(key, config)} in {args}'
    if not PLACEHOLDER_VALUE.match(value):
      _coerce(value, items[key])


COMMANDS = documented_commands()


def test_the_docs_show_commands():
  sources = {source for source, _ in COMMANDS}
  assert {'README.md', 'docs/transformer.md', 'configs/dates.py'} <= sources, sorted(sources)
  assert len(COMMANDS) > 40


@pytest.mark.parametrize('source,args', COMMANDS,
                         ids=[f'{s}:{" ".join(a)[:60]}' for s, a in COMMANDS])
def test_documented_command(source, args):
  check_command(source, args)


def test_commands_are_found_in_every_form():
  text = ('```bash\npython launch.py --config=configs/dates.py:tiny \\\n'
          '  --config.train.steps=3 | tee log  # note\n```\n'
          'Run `python launch.py --mode=eval` and `echo x | python launch.py --mode=predict > out`.\n'
          'Run:  python launch.py --sweep   (two points)\n'
          'Or: python launch.py --config.seed=1 ...\n'
          'All of it: python launch.py --reproduce=popcorn.')
  assert commands(text) == [['--config=configs/dates.py:tiny', '--config.train.steps=3'],
                            ['--mode=eval'], ['--mode=predict'], ['--sweep'],
                            ['--config.seed=1'], ['--reproduce=popcorn']]


@pytest.mark.parametrize('args', [
    ['--config=configs/dates.py', '--config.train.stepz=3'],      # no such key
    ['--config=configs/dates.py', '--config.train.steps=three'],  # not an int
    ['--config=configs/dates.py:huge'],                           # no such preset
    ['--config=configs/nothing.py'],                              # no such file
    ['--config=configs/dates.py', '--epochs=3'],                  # no such flag
    ['--mode=fit'],
])
def test_a_wrong_command_fails(args):
  with pytest.raises((AssertionError, ValueError)):
    check_command('test', args)


def results_rows() -> list[tuple[str, list[str]]]:
  """(command, bold figures) of each row of the README's results table."""
  text = (ROOT / 'README.md').read_text()
  table = text.split('## Results', 1)[1].split('\n## ', 1)[0]
  rows = []
  for line in table.splitlines():
    found = commands(line)
    if line.startswith('|') and found:
      rows.append((found[0], re.findall(r'\*\*([^*]+)\*\*', line)))
  return rows


def test_results_table_agrees_with_benchmarks_and_configs():
  """Each figure the README's results table shows in bold is in docs/benchmarks.md
  and in the docstring of the config the row's command runs."""
  rows = results_rows()
  assert len(rows) >= 15
  benchmarks = (ROOT / 'docs' / 'benchmarks.md').read_text()
  for args, figures in rows:
    assert figures, args
    spec = next((a.split('=', 1)[1] for a in args if a.startswith('--config=')), 'configs/dates.py')
    reproduce = next((a.split('=', 1)[1] for a in args if a.startswith('--reproduce=')), None)
    path = ROOT / (f'configs/papers/{reproduce}.py' if reproduce else spec.split(':')[0])
    docstring = ' '.join(_docstring(path).split())
    for figure in figures:
      assert figure in benchmarks, f'{figure} ({args}) is not in docs/benchmarks.md'
      assert figure in docstring, f'{figure} ({args}) is not in the docstring of {path.name}'
