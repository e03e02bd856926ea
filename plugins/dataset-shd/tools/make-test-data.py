"""Writes the small HDF5 files the dataset-shd tests read (test-data/). Run with Debian's
python3-h5py (`apt-get install python3-h5py`): `python3 tools/make-test-data.py`. The tests do not
need Python: the files are committed. Each mirrors the layout of the published SHD/SSC files
(Cramer et al. 2020): spikes/times and spikes/units as per-sample variable-length arrays, labels,
and extra/ fields."""
import os

import h5py
import numpy as np

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test-data')
os.makedirs(here, exist_ok=True)
rng = np.random.default_rng(2020)


def write(name, times, units, labels, time_dtype=np.float16, unit_dtype=np.uint16, extra=True):
    with h5py.File(os.path.join(here, name), 'w') as f:
        t = f.create_dataset('spikes/times', (len(times),), dtype=h5py.vlen_dtype(np.dtype(time_dtype)))
        u = f.create_dataset('spikes/units', (len(units),), dtype=h5py.vlen_dtype(np.dtype(unit_dtype)))
        for i, (ti, ui) in enumerate(zip(times, units)):
            t[i] = np.asarray(ti, dtype=time_dtype)
            u[i] = np.asarray(ui, dtype=unit_dtype)
        f.create_dataset('labels', data=np.asarray(labels, dtype=np.uint16))
        if extra:
            f.create_dataset('extra/speaker', data=np.arange(len(labels), dtype=np.uint16) % 3)
            f.create_dataset('extra/keys', data=np.array([b'zero', b'one', b'two']))


def sample(n, span=1.2):
    return np.sort(rng.uniform(0, span, n)), rng.integers(0, 700, n)


# The same 12 samples in each time layout; sample i has 4 + 3i events, label i % 4.
good = [sample(4 + 3 * i) for i in range(12)]
for dtype, name in [(np.float16, 'f16'), (np.float32, 'f32'), (np.float64, 'f64')]:
    # Half floats round: keep the times sorted after rounding (the published files are).
    times = [np.sort(np.asarray(t, dtype=dtype)) for t, _ in good]
    write(f'shd-{name}.h5', times, [u for _, u in good], [i % 4 for i in range(12)], time_dtype=dtype)

# One fault per sample (sample 0 is good): the tests name the sample in each error.
faults = [
    ([0.1, 0.2, 0.3], [1, 2, 3]),  # 0: good
    ([-0.1, 0.2], [1, 2]),  # 1: a negative time
    ([0.5, 0.2, 0.7], [1, 2, 3]),  # 2: times going back
    ([0.1, 0.2], [5, 700]),  # 3: channel 700 (0..699)
    ([0.1, np.nan, 0.3, np.inf, 0.4], [1, 2, 3, 4, 5]),  # 4: NaN and Inf (dropped with a warning)
    ([0.1, 0.2, 0.3], [1, 2]),  # 5: fewer units than times
]
write('shd-faults.h5', [t for t, _ in faults], [u for _, u in faults], [0, 1, 2, 3, 4, 5], time_dtype=np.float32)

# NaN and Inf spike times among good ones (dropped, counted).
write('shd-nan.h5', [[0.1, 0.2], [0.1, np.nan, 0.3, np.inf, 0.4], [0.5]], [[1, 2], [1, 2, 3, 4, 5], [6]], [0, 1, 1], time_dtype=np.float32)

# The layout, but labels for fewer samples than spikes.
write('shd-short-labels.h5', [t for t, _ in good[:3]], [u for _, u in good[:3]], [0, 1], time_dtype=np.float32, extra=False)

# An HDF5 file without the SHD datasets.
with h5py.File(os.path.join(here, 'not-shd.h5'), 'w') as f:
    f.create_dataset('images', data=np.zeros((2, 3), dtype=np.float32))

# 400 samples of a few events each, for the streaming test.
many = [sample(1 + (i % 7), 1.0) for i in range(400)]
write('shd-many.h5', [np.sort(np.asarray(t, dtype=np.float16)) for t, _ in many], [u for _, u in many], [i % 20 for i in range(400)])


def summary(name):
    """What `spikeflow data inspect` must print for a file, computed here independently (h5py)."""
    with h5py.File(os.path.join(here, name), 'r') as f:
        times = [np.asarray(t, dtype=np.float64) for t in f['spikes/times']]
        units = [np.asarray(u) for u in f['spikes/units']]
        labels = np.asarray(f['labels'])
    finite = [t[np.isfinite(t)] for t in times]
    counts = sorted(len(t) for t in finite)
    values, freq = np.unique(labels, return_counts=True)
    return {
        'samples': len(times),
        'classes': int(labels.max()) + 1,
        'channels': int(max(u[np.isfinite(t)].max() for t, u in zip(times, units) if np.isfinite(t).any())) + 1,
        'eventsPerSample': {'min': counts[0], 'median': float(np.median(counts)), 'max': counts[-1]},
        'durationSec': {'max': float(max(t[-1] for t in finite if len(t)))},
        'labelHistogram': {str(int(v)): int(c) for v, c in zip(values, freq)},
        'nonFiniteTimes': int(sum(len(t) - len(ft) for t, ft in zip(times, finite))),
    }


import json

for name in ['shd-f16.h5', 'shd-f32.h5', 'shd-f64.h5', 'shd-many.h5', 'shd-nan.h5']:
    with open(os.path.join(here, name.replace('.h5', '.inspect.json')), 'w') as out:
        json.dump(summary(name), out, indent=1)
        out.write('\n')
