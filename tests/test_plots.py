"""What each plot holds: its panels, its curves and their data, its size in pixels,
and pixels that are not blank."""
import matplotlib.image
import numpy as np
import pytest

from research import plots


@pytest.fixture
def drawn(monkeypatch):
  """The figures the plots close after saving, kept open for inspection."""
  figures, close = [], plots.plt.close
  monkeypatch.setattr(plots.plt, 'close', figures.append)
  yield figures
  for fig in figures:
    close(fig)


def _picture(path, fig):
  """The saved PNG: its size matches the figure's, and it is not one flat colour."""
  image = matplotlib.image.imread(path)
  width, height = fig.get_size_inches() * fig.dpi
  assert image.shape[:2] == (round(height), round(width))
  assert image[..., :3].std() > 0.05
  return image


def test_heatmap_shows_the_weights_with_dollar_signs_and_odd_bytes(tmp_path, drawn):
  path = tmp_path / 'a.png'
  weights = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.0, 0.0, 1.0]])
  plots.attention_heatmap(weights, ['$x', 'a$b$', '\x00'], ['$', '<0xB3>', '</s>'], str(path),
                          title="'5 $ bills' -> '$$'")
  fig, = drawn
  _picture(path, fig)
  ax, = [a for a in fig.axes if a.images]
  np.testing.assert_array_equal(ax.images[0].get_array(), weights)
  assert [t.get_text() for t in ax.get_yticklabels()] == [r'\$', '<0xB3>', '</s>']
  assert ax.get_xticklabels()[2].get_text() == r'\x00'  # a control byte is shown escaped.


def test_metric_curves_draw_one_panel_and_curve_per_metric(tmp_path, drawn):
  records = [{'step': s, 'train/loss': 5.0 / s, 'train/learning_rate': 1e-3, 'note': 'x'}
             for s in range(1, 6)] + [{'step': 5, 'validation/bleu': 12.5}]
  path = tmp_path / 'm.png'
  plots.metric_curves(records, str(path))
  fig, = drawn
  _picture(path, fig)
  panels = {ax.get_title(): ax for ax in fig.axes}
  assert set(panels) == {'train/loss', 'train/learning_rate', 'validation/bleu'}
  for name, ax in panels.items():
    line, = ax.get_lines()
    want = [(r['step'], r[name]) for r in records if name in r]
    np.testing.assert_allclose(np.c_[line.get_xdata(), line.get_ydata()], want)


def test_roc_curves_draw_one_curve_per_method_and_the_chance_line(tmp_path, drawn):
  labels = np.array([0, 0, 1, 1, 1, 0, 1, 0], np.float32)
  perfect, noisy = labels.copy(), np.linspace(0, 1, len(labels))
  path = tmp_path / 'roc.png'
  plots.roc_curves({'perfect': (labels, perfect), 'noisy': (labels, noisy)}, str(path))
  fig, = drawn
  _picture(path, fig)
  ax, = fig.axes
  curves = ax.get_lines()
  assert len(curves) == 3  # two methods and the diagonal.
  legend = [t.get_text() for t in ax.get_legend().get_texts()]
  assert legend[0] == 'perfect (AUC 1.000)' and legend[1].startswith('noisy (AUC ')
  np.testing.assert_allclose(curves[2].get_xydata(), [[0, 0], [1, 1]])


def test_attention_heads_draw_one_panel_per_head(tmp_path, drawn):
  weights = np.random.default_rng(0).dirichlet(np.ones(4), size=(6, 3))  # [H, T, S]
  path = tmp_path / 'h.png'
  plots.attention_heads(weights, list('abcd'), list('xyz'), str(path), title='layer 0')
  fig, = drawn
  _picture(path, fig)
  shown = [ax for ax in fig.axes if ax.images]
  assert [ax.get_title() for ax in shown] == [f'head {h}' for h in range(6)]
  for h, ax in enumerate(shown):
    np.testing.assert_allclose(ax.images[0].get_array(), weights[h])
  assert len(fig.axes) == 8  # a grid of 4 columns: the two spare panels are blank.


def test_word_pairs_join_each_known_pair(tmp_path, drawn):
  rng = np.random.default_rng(1)
  vectors = {w: rng.normal(size=5) for w in ['paris', 'france', 'rome', 'italy', 'oslo']}
  path = tmp_path / 'pca.png'
  out = plots.word_pairs_pca(vectors, {'capitals': [('france', 'paris'), ('italy', 'rome'),
                                                    ('norway', 'oslo')]}, str(path))
  assert out == str(path)
  fig, = drawn
  _picture(path, fig)
  ax, = fig.axes
  assert len(ax.get_lines()) == 2  # norway is unknown: its pair is left out.
  assert {t.get_text() for t in ax.texts} == {'paris', 'france', 'rome', 'italy'}
