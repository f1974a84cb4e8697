import numpy as np

from research import plots


def test_heatmap_draws_text_with_dollar_signs_and_odd_bytes(tmp_path):
  path = tmp_path / 'a.png'
  plots.attention_heatmap(np.eye(3), ['$x', 'a$b$', '\x00'], ['$', '<0xB3>', '</s>'], str(path),
                          title="'5 $ bills' -> '$$'")
  assert path.stat().st_size > 1000
