"""Datasets, vocabularies and batching."""


def prepared_records(builder, split: str) -> list[dict]:
  """All records of a split of a prepared (array_record) TFDS builder, read through
  TFDS data sources, without TensorFlow."""
  source = builder.as_data_source(split)
  return source.__getitems__(list(range(len(source))))
