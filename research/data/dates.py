"""Human-written dates paired with their ISO form, generated from a seed.

Every calendar day from 1950-01-01 to 2049-12-31 belongs to exactly one split,
so test dates never appear as training targets. Each example writes its day in
one of many human formats. The formats are chosen to be unambiguous: slashes
are month-first (US), dots are day-first (European), and two-digit years pivot
at 50 (50-99 -> 19xx, 00-49 -> 20xx).
"""
import datetime

import numpy as np

from research.data.parallel import Split

FIRST_DAY = datetime.date(1950, 1, 1)
LAST_DAY = datetime.date(2049, 12, 31)
_MONTHS = ['january', 'february', 'march', 'april', 'may', 'june', 'july',
           'august', 'september', 'october', 'november', 'december']
_WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday',
             'saturday', 'sunday']


def _ordinal(n: int) -> str:
  if 11 <= n % 100 <= 13:
    return f'{n}th'
  return f'{n}{ {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th") }'


def _parts(d: datetime.date) -> dict:
  month = _MONTHS[d.month - 1]
  weekday = _WEEKDAYS[d.weekday()]
  return dict(
      y=d.year, yy=d.year % 100, m=d.month, d=d.day, month=month,
      mon=month[:3], weekday=weekday, wd=weekday[:3], nth=_ordinal(d.day))


# Each format is a str.format template over _parts; words get a random case.
FORMATS = (
    '{weekday} {d} {month} {y}',          # tuesday 3 march 2015
    '{m}/{d}/{yy:02d}',                   # 3/3/15
    '{month} {nth}, {y}',                 # march 3rd, 2015
    '{d:02d}-{mon}-{y}',                  # 03-mar-2015
    '{weekday}, {month} {d}, {y}',        # tuesday, march 3, 2015
    '{d} {mon} {y}',                      # 3 mar 2015
    '{d:02d}.{m:02d}.{y}',                # 03.03.2015
    '{d}.{m}.{yy:02d}',                   # 3.3.15
    '{y}/{m:02d}/{d:02d}',                # 2015/03/03
    '{month} {d} {y}',                    # march 3 2015
    '{d} {month} {y}',                    # 3 march 2015
    '{mon} {d}, {y}',                     # mar 3, 2015
    'the {nth} of {month} {y}',           # the 3rd of march 2015
    '{m:02d}/{d:02d}/{y}',                # 03/03/2015
    '{wd}, {d} {mon} {y}',                # tue, 3 mar 2015
    '{y}{m:02d}{d:02d}',                  # 20150303
    '{nth} {month} {y}',                  # 3rd march 2015
    '{mon}. {d}, {y}',                    # mar. 3, 2015
)
_CASES = (str.lower, str.title, str.upper)


def human_date(day: datetime.date, fmt: int, case: int) -> str:
  return _CASES[case](FORMATS[fmt].format(**_parts(day)))


def iso_date(day: datetime.date) -> str:
  return day.isoformat()


def split_days(seed: int, test_fraction=0.1, validation_fraction=0.05):
  """Partitions all days into (train, validation, test) ordinal arrays."""
  first, last = FIRST_DAY.toordinal(), LAST_DAY.toordinal()
  days = np.random.default_rng([seed, 0]).permutation(np.arange(first, last + 1))
  n_test = int(len(days) * test_fraction)
  n_val = int(len(days) * validation_fraction)
  return days[n_test + n_val:], days[n_test:n_test + n_val], days[:n_test]


def make_split(days: np.ndarray, size: int, seed: int, split_id: int) -> Split:
  rng = np.random.default_rng([seed, 1, split_id])
  picks = rng.choice(days, size=size, replace=size > len(days))
  fmts = rng.integers(0, len(FORMATS), size=size)
  cases = rng.integers(0, len(_CASES), size=size)
  sources, targets = [], []
  for ordinal, fmt, case in zip(picks, fmts, cases):
    day = datetime.date.fromordinal(int(ordinal))
    sources.append(human_date(day, int(fmt), int(case)))
    targets.append(iso_date(day))
  return Split(sources, targets)


def load(seed: int, train_size: int, validation_size: int, test_size: int) -> dict[str, Split]:
  """Returns {'train', 'validation', 'test'} splits, fully determined by seed."""
  train, val, test = split_days(seed)
  return {
      'train': make_split(train, train_size, seed, 0),
      'validation': make_split(val, validation_size, seed, 1),
      'test': make_split(test, test_size, seed, 2),
  }
