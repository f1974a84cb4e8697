"""What seqlab's TFDS builders of parallel text share.

What seqlab's TFDS builders of parallel text share: a local folder for
offline use, and {'source', 'target'} text features."""
import tensorflow_datasets as tfds


class ParallelTextBuilder(tfds.core.GeneratorBasedBuilder):
  """Abstract, so TFDS does not register it; multi30k.py and tatoeba.py subclass it."""
  HOMEPAGE = ''
  LOCAL_NAME = ''  # the local copy's folder under $SEQLAB_DATA.

  def __init__(self, *, local_dir: str = '', **kwargs):
    self.local_dir = local_dir
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
            {'source': tfds.features.Text(), 'target': tfds.features.Text()}),
        supervised_keys=('source', 'target'), homepage=self.HOMEPAGE)

  def _generate_examples(self, pairs):
    for i, (source, target) in enumerate(pairs):
      yield i, {'source': source, 'target': target}
