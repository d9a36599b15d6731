#!/usr/bin/env python3
"""Generate real-world scientific pickles (numpy, pandas) and CPython's verdicts on them.

Usage: gen_thirdparty.py [--no-pandas] OUTDIR

Writes OUTDIR/<name>.pkl (the pickles), OUTDIR/repickle/<name>.pkl (CPython's re-pickles
that are not byte-identical to a pickle already written) and OUTDIR/manifest.json. See
README.md beside this script for the layout and how the fixtures are regenerated.

Needs numpy (1.x or 2.x) and, unless --no-pandas, pandas. Deterministic: the script
re-executes itself with PYTHONHASHSEED=0, and builds every value from fixed data.
"""

import os
import sys

if __name__ == '__main__' and os.environ.get('PYTHONHASHSEED') != '0' and '--hash-probe' not in sys.argv:
    env = dict(os.environ, PYTHONHASHSEED='0')
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import io  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import pickletools  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402

sys.dont_write_bytecode = True

import numpy as np  # noqa: E402

PROTOCOLS = range(6)
# A second hash seed: a re-pickle whose bytes change with it writes a set in hash order, and
# comparing its bytes means nothing.
PROBE_HASH_SEED = '12345'


# ---------------------------------------------------------------------------
# The values. Each builder returns [(name, value)], in a fixed order.

def object_array(items):
    a = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        a[i] = x
    return a


def numpy_values():
    v = []
    add = lambda name, value: v.append((name, value))  # noqa: E731

    add('bool', np.array([True, False, True, True, False]))
    for t in ('int8', 'int16', 'int32', 'int64'):
        info = np.iinfo(t)
        add(t, np.array([info.min, -1, 0, 1, 2, info.max], dtype=t))
    for t in ('uint8', 'uint16', 'uint32', 'uint64'):
        info = np.iinfo(t)
        add(t, np.array([0, 1, 2, 200, info.max], dtype=t))
    floats = [0.0, -0.0, 1.5, -2.25, 1e-3, float('inf'), float('-inf'), float('nan')]
    for t in ('float16', 'float32', 'float64'):
        add(t, np.array(floats, dtype=t))
    for t in ('complex64', 'complex128'):
        add(t, np.array([1 + 2j, -0.5j, complex(float('nan'), 1.0), 3.0], dtype=t))
    add('bytes_S5', np.array([b'ab', b'hello', b'', b'\x00\xff\x80'], dtype='S5'))
    add('unicode_U7', np.array(['a', 'h\xe9llo', '', '\xfcn\xef\u20ac\U0001f600', 'seven77'], dtype='U7'))
    add('datetime64_ns', np.array(['2024-01-01T00:00:00', '1970-01-01T00:00:00.000000001', 'NaT',
                                   '1900-03-04T05:06:07'], dtype='datetime64[ns]'))
    add('timedelta64_s', np.array([0, 1, -86400, 'NaT', 3600], dtype='timedelta64[s]'))
    add('object_mixed', object_array([1, 'a', None, 2.5, (1, 2), {'k': [1, 2]}, b'xy', 10 ** 30,
                                      'text', [3, 4], True, 1 + 1j]))
    shared = [7, 8]
    add('object_shared_items', object_array([shared, shared, 'same', 'same']))
    add('zero_d_float', np.array(3.25))
    add('zero_d_int', np.array(-7, dtype='int16'))
    add('zero_d_object', np.array(None, dtype=object))
    c2 = np.arange(12, dtype='int32').reshape(3, 4)
    add('c_order_2d', c2)
    add('fortran_order_2d', np.asfortranarray(c2.astype('float64')))
    add('c_order_3d', np.arange(24, dtype='uint16').reshape(2, 3, 4))
    add('transposed_2d', c2.T)  # a Fortran-contiguous view
    add('empty_f8', np.array([], dtype='float64'))
    add('empty_2d_i2', np.zeros((0, 3), dtype='int16'))
    add('empty_object', np.array([], dtype=object))
    add('strided_view', np.arange(20, dtype='int64')[::2])
    add('strided_2d_view', np.arange(30, dtype='float32').reshape(5, 6)[::2, 1::2])
    add('big_endian_i4', np.arange(-3, 5, dtype='>i4'))
    add('big_endian_f8', np.array([1.0, -2.5, 1e300], dtype='>f8'))
    rec = np.dtype([('id', '<i4'), ('pos', [('x', '<f4'), ('y', '<f4')]),
                    ('name', 'S4'), ('vals', '<i2', (3,))])
    add('structured_nested', np.array([(1, (0.5, -1.5), b'ab', (1, 2, 3)),
                                      (2, (2.0, 3.0), b'cdef', (4, 5, 6)),
                                      (3, (0.0, 0.0), b'', (-1, -2, -3))], dtype=rec))
    add('structured_aligned', np.zeros(2, dtype=np.dtype([('a', 'u1'), ('b', '<f8')], align=True)))
    add('masked', np.ma.array([1, 2, 3, 4], mask=[False, True, False, False], fill_value=-9))
    add('masked_2d_float', np.ma.masked_invalid(np.array([[1.0, float('nan')], [3.0, 4.0]])))
    add('scalar_float64', np.float64(1.5))
    add('scalar_int32', np.int32(7))
    add('scalar_bool', np.bool_(True))
    add('scalar_complex128', np.complex128(1 - 2j))
    add('scalar_datetime64', np.datetime64('2024-02-29', 'D'))
    add('scalar_bytes', np.bytes_(b'abc'))
    add('scalar_str', np.str_('h\xe9'))
    add('dtype_f8', np.dtype('float64'))
    add('dtype_be_i4', np.dtype('>i4'))
    add('dtype_U7', np.dtype('U7'))
    add('dtype_M8_ns', np.dtype('datetime64[ns]'))
    add('dtype_object', np.dtype(object))
    add('dtype_structured', rec)
    a = np.linspace(0.0, 1.0, 5)
    add('shared_array_list', [a, a])
    add('dict_of_arrays', {'x': np.arange(3), 'y': np.ones((2, 2), dtype='float32'),
                           'label': np.array(['p', 'q'], dtype='U1'), 'x_again_is_new': np.arange(3)})
    add('large_f8_300', np.arange(300, dtype='float64') / 8)
    add('large_u1_256', np.arange(256, dtype='uint8'))
    return v


def numpy_oob_values():
    """Values also pickled at protocol 5 with out-of-band buffers."""
    v = []
    add = lambda name, value: v.append((name, value))  # noqa: E731
    add('oob_int64', np.arange(-2, 6, dtype='int64'))
    add('oob_fortran_f4', np.asfortranarray(np.arange(6, dtype='float32').reshape(2, 3)))
    ro = np.arange(10, dtype='uint8')
    ro.setflags(write=False)
    add('oob_readonly_u1', ro)
    add('oob_dict_two', {'a': np.array([1.5, 2.5]), 'b': np.array([[1, 2], [3, 4]], dtype='>i2')})
    s = np.array([True, False, True])
    add('oob_shared', [s, s])
    add('oob_structured', np.array([(1, 2.0), (3, 4.0)], dtype=[('i', '<i4'), ('f', '<f8')]))
    add('oob_mixed_inband_object', [np.arange(3, dtype='int16'), object_array([1, 'x'])])
    return v


def pandas_values(pd):
    v = []
    add = lambda name, value: v.append((name, value))  # noqa: E731
    add('pd_dataframe_mixed', pd.DataFrame({
        'i': np.arange(5, dtype='int64'),
        'f': np.linspace(0.0, 1.0, 5),
        's': ['a', 'bb', 'c', 'dd', 'e'],
        'b': [True, False, True, True, False],
        'd': pd.date_range('2024-01-01', periods=5, freq='D'),
        'c': pd.Categorical(['x', 'y', 'x', 'z', 'y']),
    }))
    add('pd_series_named_index', pd.Series([1.5, 2.5, 3.5], index=pd.Index(['a', 'b', 'c'], name='key'),
                                           name='val'))
    add('pd_multiindex_frame', pd.DataFrame(
        {'v': [1, 2, 3, 4], 'w': [0.5, 1.5, 2.5, 3.5]},
        index=pd.MultiIndex.from_product([['a', 'b'], [1, 2]], names=['l1', 'l2'])))
    add('pd_timestamp_tz', pd.Timestamp('2024-03-10 12:30:00', tz='Europe/Paris'))
    add('pd_timestamp_utc', pd.Timestamp('2024-03-10 12:30:00.000001', tz='UTC'))
    add('pd_categorical', pd.Categorical(['lo', 'hi', 'lo', 'mid'], categories=['lo', 'mid', 'hi'], ordered=True))
    return v


# ---------------------------------------------------------------------------
# Pickling and CPython's verdicts.

def dumps(value, proto):
    f = io.BytesIO()
    pickle.Pickler(f, proto).dump(value)
    return f.getvalue()


def load(data, buffers=None):
    f = io.BytesIO(data)
    obj = pickle.Unpickler(f, buffers=buffers).load()
    if f.read():
        raise SystemExit('trailing data after the pickle')
    return obj


def repickles(data, buffers=None):
    """CPython's re-pickle at each protocol of what `data` loads to (as gen_corpus.py: one
    Unpickler, one Pickler(f, P) per protocol), or the error it raises."""
    obj = load(data, buffers)
    out = {}
    for p in PROTOCOLS:
        try:
            out[p] = dumps(obj, p)
        except Exception as e:  # pragma: no cover (none of these values fails)
            out[p] = '%s: %s' % (type(e).__name__, e)
    return out


def oob_dumps(value):
    bufs = []
    data = pickle.dumps(value, protocol=5, buffer_callback=bufs.append)
    return data, [(bytes(b.raw()), b.raw().readonly) for b in bufs]


def oob_reload_and_dump(data, bufs):
    """Loads with the buffers (writable, as bytearrays: READONLY_BUFFER makes the read-only
    ones read-only again) and re-pickles at protocol 5 with a buffer callback."""
    obj = load(data, [bytearray(b) for b, _ in bufs])
    out = []
    again = pickle.dumps(obj, protocol=5, buffer_callback=out.append)
    return again, [(bytes(b.raw()), b.raw().readonly) for b in out]


def hash_probe(listing):
    """In a child with another hash seed: re-pickles each listed file (with its buffers) at
    every protocol; prints JSON {name: {P: hex}}."""
    result = {}
    with open(listing) as f:
        jobs = json.load(f)
    for job in jobs:
        with open(job['path'], 'rb') as f:
            data = f.read()
        bufs = [bytearray.fromhex(h) for h in job['buffers']] if job['buffers'] is not None else None
        got = repickles(data, bufs)
        result[job['name']] = {str(p): (b.hex() if isinstance(b, bytes) else b) for p, b in got.items()}
    json.dump(result, sys.stdout)


def uses_sets(data):
    """True if the pickle names set/frozenset or uses a set opcode."""
    for op, arg, _ in pickletools.genops(data):
        if op.name in ('EMPTY_SET', 'ADDITEMS', 'FROZENSET'):
            return True
        if isinstance(arg, str) and arg in ('set', 'frozenset', '__builtin__ set', 'builtins set',
                                            '__builtin__ frozenset', 'builtins frozenset'):
            return True
    return False


class Writer:
    """Writes each distinct byte string once: a pickle under its case name, a re-pickle that
    equals no file yet under repickle/."""

    def __init__(self, outdir):
        self.outdir = outdir
        self.by_content = {}
        os.makedirs(os.path.join(outdir, 'repickle'), exist_ok=True)

    def write(self, rel, data):
        with open(os.path.join(self.outdir, rel), 'wb') as f:
            f.write(data)
        self.by_content.setdefault(data, rel)
        return rel

    def ref(self, data, rel_if_new):
        """The file holding `data`, writing it as `rel_if_new` when there is none."""
        if data in self.by_content:
            return self.by_content[data]
        return self.write(rel_if_new, data)


def main(argv):
    if len(argv) == 3 and argv[1] == '--hash-probe':
        hash_probe(argv[2])
        return 0
    with_pandas = '--no-pandas' not in argv
    args = [a for a in argv[1:] if a != '--no-pandas']
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    outdir = args[0]
    if sys.version_info[:2] != (3, 11):
        sys.stderr.write('warning: the oracle is CPython 3.11; this is %d.%d, bytes may differ\n'
                         % sys.version_info[:2])
    pd = None
    if with_pandas:
        try:
            import pandas as pd
        except ImportError:
            sys.stderr.write('pandas is missing: install it, or pass --no-pandas\n')
            return 1
    os.makedirs(outdir, exist_ok=True)
    w = Writer(outdir)

    cases = []
    values = numpy_values() + (pandas_values(pd) if pd is not None else [])
    names = set()
    for vname, value in values:
        assert vname not in names, vname
        names.add(vname)
        for p in PROTOCOLS:
            name = '%s_p%d' % (vname, p)
            data = dumps(value, p)
            cases.append(dict(name=name, value=vname, protocol=p, data=data, bufs=None))
    for vname, value in numpy_oob_values():
        assert vname not in names, vname
        names.add(vname)
        data, bufs = oob_dumps(value)
        assert bufs, '%s: no out-of-band buffer' % vname
        cases.append(dict(name=vname + '_p5', value=vname, protocol=5, data=data, bufs=bufs))

    # Write the pickles first, so a re-pickle equal to any of them refers to it.
    for c in cases:
        c['file'] = w.write(c['name'] + '.pkl', c['data'])

    # The re-pickles, in this process and under another hash seed.
    probe_jobs = []
    for c in cases:
        bufs = [bytearray(b) for b, _ in c['bufs']] if c['bufs'] is not None else None
        c['repickle'] = repickles(c['data'], bufs)
        probe_jobs.append(dict(name=c['name'], path=os.path.join(outdir, c['file']),
                               buffers=[b.hex() for b, _ in c['bufs']] if c['bufs'] is not None else None))
    listing = os.path.join(outdir, 'hash-probe-jobs.json')
    with open(listing, 'w') as f:
        json.dump(probe_jobs, f)
    env = dict(os.environ, PYTHONHASHSEED=PROBE_HASH_SEED)
    probe = json.loads(subprocess.run([sys.executable, os.path.abspath(__file__), '--hash-probe', listing],
                                      env=env, check=True, stdout=subprocess.PIPE).stdout)
    os.remove(listing)

    manifest_cases = []
    for c in cases:
        entry = {'name': c['name'], 'file': c['file'], 'value': c['value'], 'protocol': c['protocol']}
        rep, errs = {}, {}
        seed_dependent = []
        for p in PROTOCOLS:
            got = c['repickle'][p]
            if isinstance(got, str):
                rep[str(p)] = None
                errs[str(p)] = got
                continue
            rep[str(p)] = w.ref(got, 'repickle/%s.to_p%d.pkl' % (c['name'], p))
            if probe[c['name']][str(p)] != got.hex():
                seed_dependent.append(p)
        entry['repickle'] = rep
        if errs:
            entry['repickle_errors'] = errs
        own = c['repickle'][c['protocol']]
        entry['repickle_same_as_file'] = own == c['data']
        sets = uses_sets(c['data']) or any(uses_sets(b) for b in c['repickle'].values() if isinstance(b, bytes))
        entry['repickle_exact'] = not (seed_dependent or sets)
        if seed_dependent:
            entry['note'] = ('re-pickle bytes change with PYTHONHASHSEED at protocols %s (a set written in '
                             'hash order)' % seed_dependent)
        elif sets:
            entry['note'] = 'contains a set or frozenset (CPython writes its items in hash order)'
        if c['bufs'] is not None:
            entry['buffers'] = [b.hex() for b, _ in c['bufs']]
            entry['buffers_readonly'] = [ro for _, ro in c['bufs']]
            again, again_bufs = oob_reload_and_dump(c['data'], c['bufs'])
            entry['oob_repickle'] = w.ref(again, 'repickle/%s.oob.pkl' % c['name'])
            entry['oob_repickle_buffers'] = [b.hex() for b, _ in again_bufs]
            entry['oob_repickle_buffers_readonly'] = [ro for _, ro in again_bufs]
        manifest_cases.append(entry)

    manifest = {
        'generator': 'tests/thirdparty/gen_thirdparty.py',
        'python': platform.python_version(),
        'numpy': np.__version__,
        'pandas': pd.__version__ if pd is not None else None,
        'cases': manifest_cases,
    }
    with open(os.path.join(outdir, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1, ensure_ascii=True)
        f.write('\n')
    inexact = sum(not e['repickle_exact'] for e in manifest_cases)
    differs = sum(not e['repickle_same_as_file'] for e in manifest_cases)
    print('wrote %d cases (%d values; %d with out-of-band buffers) to %s: numpy %s, pandas %s, '
          'python %s; %d not byte-comparable, %d whose own-protocol re-pickle differs from the file'
          % (len(manifest_cases), len(names), sum('buffers' in e for e in manifest_cases), outdir,
             manifest['numpy'], manifest['pandas'], manifest['python'], inexact, differs))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
