"""The metric log: metrics.jsonl, TensorBoard event files, the console.

Only process 0 writes. On resume, lines logged after the restored step (by a
run that died before its next checkpoint) are dropped, so the file reads as
one uninterrupted run.
"""
import json
import math
import os
import time

import jax
import numpy as np


def _clean(value):
  value = value.item() if isinstance(value, (np.generic, np.ndarray)) else value
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricWriter:

  def __init__(self, workdir: str, resume_step: int):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    if os.path.exists(self.path):
      kept = [line for line in open(self.path) if _step_of(line) <= resume_step]
      with open(self.path, 'w') as f:
        f.writelines(kept)
    # tensorboardX's event writer, not its SummaryWriter, whose module imports torch
    # when it is installed: seconds of every run's start on a GPU image.
    from tensorboardX.event_file_writer import EventFileWriter  # pylint: disable=g-import-not-at-top
    from tensorboardX.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    self._tb = EventFileWriter(os.path.join(workdir, 'tensorboard'))
    self._event, self._summary = event_pb2.Event, summary_pb2.Summary

  def write(self, step: int, metrics: dict):
    if not self.enabled or self._tb is None:
      return
    record = {'step': int(step), **{k: _clean(v) for k, v in metrics.items()}}
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    values = [self._summary.Value(tag=k, simple_value=v) for k, v in record.items()
              if k != 'step' and isinstance(v, (int, float))]
    self._tb.add_event(self._event(wall_time=time.time(), step=int(step),
                                   summary=self._summary(value=values)))

  def close(self):
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def _step_of(line: str) -> float:
  try:
    return json.loads(line)['step']
  except (ValueError, KeyError):
    return math.inf


def read(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
