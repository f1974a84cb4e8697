"""One process of a multi-host test: joins the cluster, then trains each run of a
JSON list in turn ({"config", "preset", "overrides", "workdir"}), as launch.py
would, so that one pair of processes serves every task family.

  python tests/multihost_worker.py RUNS.json COORDINATOR NUM_PROCESSES PROCESS_ID
"""
import json
import sys

from research import config as config_lib, distributed, train


def configured(run):
  config = config_lib.load_config_file(run['config'], run['preset'] or None)
  for key, value in run['overrides'].items():
    *parents, name = config_lib.resolve_alias(key).split('.')
    node = config
    for p in parents:
      node = node[p]
    node[name] = value
  return config


def main(runs_path, coordinator, num_processes, process_id):
  distributed.initialize(coordinator, int(num_processes), int(process_id), 120, 30)
  for run in json.load(open(runs_path)):
    train.train_and_evaluate(configured(run), run['workdir'])


if __name__ == '__main__':
  main(*sys.argv[1:])
