#!/usr/bin/env python3
"""Loads what `pikl convert` writes for every fixture with numpy/pandas, and compares it with the
fixture's own value.

Usage: check_pikl_output.py FIXTURE_DIR PIKL_BINARY

Not run by CI (it needs the numpy/pandas of FIXTURE_DIR's manifest): the Rust test
pikl-cli/tests/thirdparty.rs compares bytes, and where pikl writes other bytes than CPython by
design (known_thirdparty_differences.txt), this script checks that the output still loads, with
numpy and pandas, to an equal value. Out-of-band fixtures are left out (`pikl convert` has no
buffers). Exit status 1 when an output fails to load or loads to another value.
"""

import json
import math
import os
import pickle
import subprocess
import sys

import numpy as np

try:
    import pandas as pd
except ImportError:  # pragma: no cover
    pd = None


def same(a, b, path='value'):
    """None when a and b are equal values of the same types (NaN equal to NaN), else why not."""
    if type(a) is not type(b):
        return '%s: type %s vs %s' % (path, type(a).__name__, type(b).__name__)
    if isinstance(a, np.ma.MaskedArray):
        for what in ('data', 'mask'):
            r = same(np.asarray(getattr(a, what)), np.asarray(getattr(b, what)), path + '.' + what)
            if r:
                return r
        return same(np.asarray(a.fill_value), np.asarray(b.fill_value), path + '.fill_value')
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return '%s: %s%s vs %s%s' % (path, a.dtype, a.shape, b.dtype, b.shape)
        if a.dtype.kind == 'O':
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel())):
                r = same(x, y, '%s[%d]' % (path, i))
                if r:
                    return r
            return None
        if a.tobytes() != b.tobytes() and not np.array_equal(a, b, equal_nan=a.dtype.kind in 'fc'):
            return '%s: data differs' % path
        return None
    if pd is not None and isinstance(a, (pd.DataFrame, pd.Series, pd.Index)):
        if not a.equals(b):
            return '%s: pandas values differ' % path
        if isinstance(a, pd.DataFrame) and not a.dtypes.equals(b.dtypes):
            return '%s: dtypes differ' % path
        if getattr(a, 'name', None) != getattr(b, 'name', None) or list(a.axes[0].names) != list(b.axes[0].names):
            return '%s: names differ' % path
        return None
    if pd is not None and isinstance(a, pd.Categorical):
        ok = a.equals(b) and a.ordered == b.ordered and list(a.categories) == list(b.categories)
        return None if ok else '%s: categoricals differ' % path
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return '%s: length %d vs %d' % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            r = same(x, y, '%s[%d]' % (path, i))
            if r:
                return r
        return None
    if isinstance(a, dict):
        if list(a) != list(b):
            return '%s: keys differ' % path
        for k in a:
            r = same(a[k], b[k], '%s[%r]' % (path, k))
            if r:
                return r
        return None
    if isinstance(a, (float, np.floating)) and math.isnan(a):
        return None if math.isnan(b) else '%s: nan vs %r' % (path, b)
    if isinstance(a, np.datetime64) and np.isnat(a):
        return None if np.isnat(b) else '%s: NaT vs %r' % (path, b)
    try:
        eq = a == b
    except Exception as e:  # pragma: no cover
        return '%s: cannot compare: %s' % (path, e)
    if pd is not None and isinstance(a, pd.Timestamp) and a.tz is not None and str(a.tz) != str(b.tz):
        return '%s: tz %s vs %s' % (path, a.tz, b.tz)
    if isinstance(a, np.dtype) and a.isnative != b.isnative:
        return '%s: byte order differs' % path
    return None if eq is True or (isinstance(eq, np.bool_) and eq) else '%s: %r vs %r' % (path, a, b)


def sharing(x):
    """Which top-level items of a list are the same object (shared_array_list)."""
    if isinstance(x, list):
        return [[i for i, y in enumerate(x) if y is z] for z in x]
    return None


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    fixtures, pikl = argv[1], argv[2]
    with open(os.path.join(fixtures, 'manifest.json')) as f:
        manifest = json.load(f)
    if manifest['numpy'] != np.__version__ or (pd is not None and manifest['pandas'] not in (None, pd.__version__)):
        sys.stderr.write('warning: fixtures made with numpy %s / pandas %s, this is numpy %s / pandas %s\n'
                         % (manifest['numpy'], manifest['pandas'], np.__version__, pd and pd.__version__))
    bad = checked = 0
    for case in manifest['cases']:
        if 'buffers' in case:
            continue
        path = os.path.join(fixtures, case['file'])
        with open(path, 'rb') as f:
            want = pickle.load(f)
        for p in range(6):
            out = subprocess.run([pikl, 'convert', '-p', str(p), path], capture_output=True)
            checked += 1
            if out.returncode != 0:
                print('FAIL %s -> %d: pikl convert: %s' % (case['name'], p, out.stderr.decode().strip()))
                bad += 1
                continue
            try:
                got = pickle.loads(out.stdout)
            except Exception as e:
                print('FAIL %s -> %d: CPython cannot load it: %s: %s' % (case['name'], p, type(e).__name__, e))
                bad += 1
                continue
            why = same(got, want) or (sharing(got) != sharing(want) and 'sharing differs') or None
            if why:
                print('FAIL %s -> %d: %s' % (case['name'], p, why))
                bad += 1
    print('%d outputs loaded, %d failed' % (checked, bad))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
