"""Runs many `python launch.py ARGS` commands, each in a forked child of one
process that has imported the libraries once, two at a time.

  python tests/launch_batch.py < requests.jsonl > results.jsonl

A request is {"id", "args", "stdin" (optional), "env" (optional)}; a result is
{"id", "code", "stdout", "stderr"}. Each child runs launch.py as __main__ with
its own file descriptors, so what it prints and its exit code are those of a
fresh `python launch.py` (the huge-pages re-exec aside, which it skips).
"""
import json
import os
import runpy
import signal
import sys
import tempfile
import time
import traceback

os.environ['SEQLAB_HUGE_PAGES'] = '0'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# The heavy imports, once; none of them starts a JAX backend or a thread.
import flax  # noqa: E402,F401
import jax  # noqa: E402,F401
import optax  # noqa: E402,F401
import orbax.checkpoint  # noqa: E402,F401
from research import train  # noqa: E402,F401
from research.tasks import embeddings, language_model, popcorn, regression, translation  # noqa: E402,F401

PARALLEL, TIMEOUT = 2, 300


def _child(request, out_path, err_path):
  os.chdir(ROOT)
  os.environ.update(request.get('env', {}))
  with tempfile.TemporaryFile() as stdin:
    stdin.write(request.get('stdin', '').encode())
    stdin.seek(0)
    os.dup2(stdin.fileno(), 0)
  for fd, path in ((1, out_path), (2, err_path)):
    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
  sys.stdin = open(0, encoding='utf-8', closefd=False)
  sys.stdout = open(1, 'w', encoding='utf-8', closefd=False)
  sys.stderr = open(2, 'w', encoding='utf-8', closefd=False)
  sys.argv = ['launch.py'] + request['args']
  code = 0
  try:
    runpy.run_path(os.path.join(ROOT, 'launch.py'), run_name='__main__')
  except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()  # what the interpreter would print for an uncaught exception.
    code = 1
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)  # pylint: disable=protected-access


def main():
  requests = [json.loads(line) for line in sys.stdin if line.strip()]
  scratch = tempfile.mkdtemp(prefix='launch-batch-')
  running = {}  # pid -> (request, out, err, started)
  pending = list(requests)
  while pending or running:
    while pending and len(running) < PARALLEL:
      request = pending.pop(0)
      out = os.path.join(scratch, f'{len(running)}-{request["id"]}.out')
      err = out[:-4] + '.err'
      pid = os.fork()
      if pid == 0:
        _child(request, out, err)
      running[pid] = (request, out, err, time.time())
    pid, status = os.waitpid(-1, os.WNOHANG)
    if not pid:
      for p, (_, _, _, started) in running.items():
        if time.time() - started > TIMEOUT:
          os.kill(p, signal.SIGKILL)
      time.sleep(0.02)
      continue
    request, out, err, _ = running.pop(pid)
    code = os.waitstatus_to_exitcode(status)
    with open(out, encoding='utf-8', errors='replace') as f, \
         open(err, encoding='utf-8', errors='replace') as g:
      result = {'id': request['id'], 'code': code, 'stdout': f.read(), 'stderr': g.read()}
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
  main()
