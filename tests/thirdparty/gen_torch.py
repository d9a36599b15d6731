#!/usr/bin/env python3
"""Generate PyTorch checkpoint pickles (`torch.save`) and CPython's verdicts on them.

Usage: gen_torch.py OUTDIR

`torch.save` writes a zip whose `archive/data.pkl` is a pickle in which every tensor is
`torch._utils._rebuild_tensor_v2(PERSID, offset, size, stride, requires_grad, hooks)` and
the persistent id is `('storage', torch.FloatStorage, key, location, numel)`. The legacy
format (`_use_new_zipfile_serialization=False`) is one stream of five pickles (magic number,
protocol version, sys info, the object, the storage keys) followed by the raw storage bytes;
its persistent ids have a sixth item (view metadata, None).

Writes OUTDIR/<value>_zip_p<P>.pkl (the data.pkl of a zip checkpoint),
OUTDIR/<value>_legacy_p<P>.pt (a whole legacy stream), OUTDIR/repickle/... (CPython's
re-pickles that differ from the pickle they come from) and OUTDIR/manifest.json. See
README.md beside this script.

CPython's verdicts come from a child process that never imports torch: its unpickler's
find_class gives every `torch*` global a stand-in class of the same module and name
(registered in stand-in modules, so the pickler writes it back as that global), and its
persistent_load records each id and returns a placeholder remembering it; the re-pickle is
one pickle.Pickler at the file's protocol whose persistent_id returns that id for
placeholders and None otherwise.

Deterministic: the script re-executes itself with PYTHONHASHSEED=0, seeds torch, and renames
the legacy format's storage keys (which are memory addresses) to ordinals; see
`DeterministicKeys`.
"""

import os
import sys

if __name__ == '__main__' and os.environ.get('PYTHONHASHSEED') != '0' and '--oracle' not in sys.argv:
    env = dict(os.environ, PYTHONHASHSEED='0')
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import copyreg  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import types  # noqa: E402

sys.dont_write_bytecode = True

# A second hash seed for the oracle: a re-pickle whose bytes change with it writes a set in
# hash order, and comparing its bytes means nothing.
PROBE_HASH_SEED = '12345'
# (format, protocol) of every value, and of the values that have a legacy form.
ZIP_PROTOCOLS = (1, 2, 3, 4, 5)
LEGACY_PROTOCOLS = (2, 4)
# The legacy stream: magic number, protocol version, sys info, the object, the storage keys.
LEGACY_PICKLES = 5


# ---------------------------------------------------------------------------
# The oracle (child process, no torch).

class Placeholder:
    """What persistent_load returns: remembers the persistent id."""

    def __init__(self, pid):
        self.pid = pid


class StandIn:
    """A torch class or function, by module and name. Records how the pickle built an
    instance, and reduces it the same way: REDUCE `cls(*args)`, NEWOBJ `cls.__new__(cls,
    *args)`, or `copyreg._reconstructor(cls, object, None)` (protocol 0/1 objects), with the
    state BUILD gave."""

    def __new__(cls, *args):
        self = object.__new__(cls)
        self.__dict__['_pikl_how'] = 'newobj'
        self.__dict__['_pikl_args'] = args
        return self

    def __init__(self, *args):
        self.__dict__['_pikl_how'] = 'reduce'

    def __setstate__(self, state):
        self.__dict__['_pikl_state'] = state

    def __reduce_ex__(self, proto):
        how = self.__dict__.get('_pikl_how')
        cls = type(self)
        if how == 'reduce':
            red = (cls, self._pikl_args)
        elif how == 'newobj':
            red = (copyreg.__newobj__, (cls,) + self._pikl_args)
        else:
            red = (copyreg._reconstructor, (cls, object, None))
        if '_pikl_state' in self.__dict__:
            red += (self._pikl_state,)
        return red


def stand_in(module, name):
    """The stand-in for `module.name`, made once and registered in stand-in modules."""
    parts = module.split('.')
    for i in range(1, len(parts) + 1):
        mod_name = '.'.join(parts[:i])
        if mod_name not in sys.modules:
            m = types.ModuleType(mod_name)
            m.__pikl_stand_ins__ = set()
            sys.modules[mod_name] = m
            if i > 1:
                setattr(sys.modules['.'.join(parts[:i - 1])], parts[i - 1], m)
    mod = sys.modules[module]
    if not isinstance(getattr(mod, '__pikl_stand_ins__', None), set):
        raise SystemExit('the oracle would stand in for %s.%s in a real module' % (module, name))
    if '.' in name:
        raise SystemExit('nested name %s.%s' % (module, name))
    if name not in mod.__dict__:
        cls = type(name, (StandIn,), {'__module__': module, '__qualname__': name})
        setattr(mod, name, cls)
        mod.__pikl_stand_ins__.add(name)
    return getattr(mod, name)


def is_torch(module):
    return module == 'torch' or module.startswith('torch.')


class OracleUnpickler(pickle.Unpickler):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.pids = []

    def find_class(self, module, name):
        if is_torch(module):
            return stand_in(module, name)
        return super().find_class(module, name)

    def persistent_load(self, pid):
        self.pids.append(pid)
        return Placeholder(pid)


class OraclePickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if type(obj) is Placeholder else None


def describe(x):
    """A persistent id as JSON: str, int, bool and None as themselves; tuples, lists, globals,
    bytes and floats tagged. pikl-cli/tests/torch.rs describes pikl's ids the same way."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return x if -2 ** 63 <= x < 2 ** 63 else {'int': str(x)}
    if isinstance(x, float):
        return {'float': repr(x)}
    if isinstance(x, bytes):
        return {'bytes': x.hex()}
    if isinstance(x, tuple):
        return {'tuple': [describe(i) for i in x]}
    if isinstance(x, list):
        return {'list': [describe(i) for i in x]}
    if isinstance(x, type) or isinstance(x, types.FunctionType):
        return {'global': [x.__module__, x.__qualname__]}
    raise SystemExit('cannot describe a persistent id item %r' % (x,))


def oracle(listing):
    """For each job {name, path, count, protocol}: loads `count` pickles from the file (each
    with a fresh unpickler at the previous one's end, as torch.load does), and prints JSON
    {name: {pickles: [{end, pids, repickle(hex)}], trailing_error}}."""
    for m in list(sys.modules):
        if is_torch(m):
            raise SystemExit('the oracle must not import torch (%s is loaded)' % m)
    sys.modules['torch'] = types.ModuleType('torch')
    result = {}
    with open(listing) as f:
        jobs = json.load(f)
    for job in jobs:
        for m in list(sys.modules):
            if is_torch(m):
                del sys.modules[m]
        root = types.ModuleType('torch')
        root.__pikl_stand_ins__ = set()
        sys.modules['torch'] = root
        with open(job['path'], 'rb') as f:
            data = f.read()
        f = io.BytesIO(data)
        pickles = []
        for _ in range(job['count']):
            u = OracleUnpickler(f)
            obj = u.load()
            out = io.BytesIO()
            OraclePickler(out, job['protocol']).dump(obj)
            pickles.append({'end': f.tell(), 'pids': [describe(p) for p in u.pids],
                            'repickle': out.getvalue().hex()})
        trailing_error = None
        if f.tell() < len(data):
            try:
                OracleUnpickler(f).load()
                trailing_error = 'loads'
            except Exception as e:
                trailing_error = '%s: %s' % (type(e).__name__, e)
        result[job['name']] = {'pickles': pickles, 'trailing_error': trailing_error}
        for m in list(sys.modules):
            if is_torch(m):
                del sys.modules[m]
    json.dump(result, sys.stdout)


# ---------------------------------------------------------------------------
# The values (main process, with torch).

def values(torch):
    nn = torch.nn
    torch.manual_seed(0)
    v = []
    add = lambda name, value, legacy=True: v.append((name, value, legacy))  # noqa: E731

    def model():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
        m.train()
        m(torch.randn(2, 1, 4, 4))  # BatchNorm's running stats and num_batches_tracked move
        return m

    m = model()
    add('state_dict', m.state_dict())
    add('whole_module', m, legacy=False)  # legacy: ids with the modules' source files
    add('dtypes', {
        'float32': torch.tensor([1.5, -0.0, 3.25], dtype=torch.float32),
        'float16': torch.tensor([0.5, -2.0, 65504.0], dtype=torch.float16),
        'bfloat16': torch.tensor([1.0, -3.5, 1e30], dtype=torch.bfloat16),
        'float64': torch.tensor([1e-300, 2.5], dtype=torch.float64),
        'int64': torch.tensor([-2 ** 63, -1, 0, 2 ** 63 - 1], dtype=torch.int64),
        'int32': torch.tensor([-7, 7], dtype=torch.int32),
        'int8': torch.tensor([-128, 127], dtype=torch.int8),
        'uint8': torch.tensor([0, 255], dtype=torch.uint8),
        'bool': torch.tensor([True, False, True]),
        'complex64': torch.tensor([1 + 2j, -0.5j], dtype=torch.complex64),
    })
    # Newer dtypes have no typed storage class: _rebuild_tensor_v3(UntypedStorage, ..., dtype).
    # torch.load cannot read them from the legacy format.
    add('new_dtypes', {
        'uint16': torch.tensor([0, 65535], dtype=torch.uint16),
        'float8_e4m3fn': torch.tensor([0.5, -1.0], dtype=torch.float8_e4m3fn),
        'float32': torch.tensor([2.0]),
    }, legacy=False)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    add('views', {
        'base': base,
        'transposed': base.t(),        # non-contiguous, same storage
        'column': base[:, 1],          # offset 1, stride 4
        'rows': base[1:],              # offset 4
        'other': torch.ones(2, 2),
    })
    add('zero_d', torch.tensor(3.5))
    add('empty', [torch.empty(0), torch.zeros(0, 3, dtype=torch.int64)])
    t = torch.tensor([1.0, 2.0, 3.0])
    add('same_tensor_twice', [t, t])
    torch.manual_seed(0)
    lin = nn.Linear(3, 2)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    lin(torch.randn(4, 3)).sum().backward()
    opt.step()
    add('sgd_state_dict', opt.state_dict())
    add('checkpoint', {
        'epoch': 3,
        'step': 1200,
        'loss': 0.25,
        'name': 'run-1',
        'best': None,
        'flags': (True, False),
        'history': [0.5, 0.375, 0.25],
        'model': lin.state_dict(),
        'optimizer': opt.state_dict(),
        'grad_leaf': torch.ones(2, requires_grad=True),
    })
    return v


class DeterministicKeys:
    """A `pickle_module` for torch.save's legacy format, which names each storage by its
    memory address (`str(storage._cdata)`) and writes the storages in the sorted order of
    those names. This module's Pickler renames each storage key to an ordinal, in the order
    the object's pickle meets the storages, its `dump` writes the key list renamed, and
    `sorted_by_use` (patched into torch.serialization while saving) orders the storages by
    first use: the pickles are what CPython writes for those ids, and torch.load reads the
    stream back (checked)."""

    def __init__(self):
        self.names = {}
        keys = self

        class Pickler(pickle.Pickler):
            def __init_subclass__(cls, **kw):
                super().__init_subclass__(**kw)
                inner = cls.persistent_id

                def persistent_id(self, obj):
                    pid = inner(self, obj)
                    if isinstance(pid, tuple) and pid[:1] == ('storage',):
                        if len(pid) != 6 or pid[5] is not None:
                            raise SystemExit('unexpected legacy storage id %r' % (pid,))
                        pid = pid[:2] + (keys.rename(pid[2]),) + pid[3:]
                    return pid
                cls.persistent_id = persistent_id

        self.module = types.ModuleType('pikl_deterministic_keys')
        self.module.Pickler = Pickler
        self.module.Unpickler = pickle.Unpickler
        self.module.load = pickle.load
        self.module.dump = self.dump

    def rename(self, key):
        return self.names.setdefault(key, str(len(self.names)))

    def dump(self, obj, f, protocol=None):
        if isinstance(obj, list) and obj and all(k in self.names for k in obj):
            obj = [self.names[k] for k in obj]
        pickle.dump(obj, f, protocol=protocol)

    def sorted_by_use(self, items, **kw):
        items = list(items)
        if not kw and items and all(k in self.names for k in items):
            return sorted(items, key=lambda k: int(self.names[k]))
        return sorted(items, **kw)


def save(torch, value, fmt, protocol):
    """torch.save's bytes: (file bytes, pickle count)."""
    import torch.serialization as ts
    import zipfile
    buf = io.BytesIO()
    if fmt == 'zip':
        torch.save(value, buf, pickle_protocol=protocol)
        z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
        names = [n for n in z.namelist() if n.endswith('/data.pkl')]
        assert names == ['archive/data.pkl'], z.namelist()
        return z.read(names[0]), buf.getvalue(), 1
    keys = DeterministicKeys()
    assert 'sorted' not in ts.__dict__
    ts.sorted = keys.sorted_by_use
    try:
        torch.save(value, buf, pickle_module=keys.module, pickle_protocol=protocol,
                   _use_new_zipfile_serialization=False)
    finally:
        del ts.sorted
    return buf.getvalue(), buf.getvalue(), LEGACY_PICKLES


def same_value(torch, a, b, where='value'):
    """Structural equality of what torch.load gives back (tensors: dtype, shape, stride,
    offset, requires_grad, values; storage sharing within one value is checked by
    `sharing`)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert (a.dtype, a.shape, a.stride(), a.storage_offset(), a.requires_grad) == \
            (b.dtype, b.shape, b.stride(), b.storage_offset(), b.requires_grad), where
        assert torch.equal(a.detach().view(torch.uint8) if a.dtype.is_floating_point and a.element_size() == 1
                           else a.detach(), b.detach().view(torch.uint8) if b.dtype.is_floating_point
                           and b.element_size() == 1 else b.detach()), where
    elif isinstance(a, torch.nn.Module):
        assert type(a) is type(b), where
        same_value(torch, a.state_dict(), b.state_dict(), where + '.state_dict()')
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), where
        for k in a:
            same_value(torch, a[k], b[k], '%s[%r]' % (where, k))
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same_value(torch, x, y, '%s[%d]' % (where, i))
    else:
        assert type(a) is type(b) and a == b, '%s: %r != %r' % (where, a, b)


def sharing(torch, value):
    """Which tensors share a storage, and which are the same object: a comparable summary."""
    seen, out = {}, []

    def walk(x):
        if isinstance(x, torch.Tensor):
            out.append((seen.setdefault(x.untyped_storage().data_ptr(), len(seen)), id(x)))
        elif isinstance(x, torch.nn.Module):
            walk(x.state_dict())
        elif isinstance(x, dict):
            for y in x.values():
                walk(y)
        elif isinstance(x, (list, tuple)):
            for y in x:
                walk(y)
    walk(value)
    ids = {}
    return [(s, ids.setdefault(i, len(ids))) for s, i in out]


def manifest_json(obj, indent=0, key=None):
    """JSON with one line per case field, and each persistent id on one line."""
    if key == 'pids' and obj:
        pad = ' ' * (indent + 1)
        return '[\n' + ',\n'.join(pad + json.dumps(p, ensure_ascii=True) for p in obj) + ']'
    if isinstance(obj, dict) and key not in ('repickle',):
        pad = ' ' * (indent + 1)
        items = [pad + json.dumps(k) + ': ' + manifest_json(v, indent + 1, k) for k, v in obj.items()]
        return '{\n' + ',\n'.join(items) + '}' + ('\n' if indent == 0 else '')
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        pad = ' ' * (indent + 1)
        return '[\n' + ',\n'.join(pad + manifest_json(v, indent + 1) for v in obj) + ']'
    return json.dumps(obj, ensure_ascii=True)


def run_oracle(listing, seed):
    env = dict(os.environ, PYTHONHASHSEED=seed)
    return json.loads(subprocess.run([sys.executable, os.path.abspath(__file__), '--oracle', listing],
                                     env=env, check=True, stdout=subprocess.PIPE).stdout)


def main(argv):
    if len(argv) == 3 and argv[1] == '--oracle':
        oracle(argv[2])
        return 0
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    outdir = argv[1]
    if sys.version_info[:2] != (3, 11):
        sys.stderr.write('warning: the oracle is CPython 3.11; this is %d.%d, bytes may differ\n'
                         % sys.version_info[:2])
    import torch
    import warnings
    warnings.simplefilter('ignore')  # torch warns about the legacy format's source files
    os.makedirs(os.path.join(outdir, 'repickle'), exist_ok=True)

    cases = []
    for vname, value, legacy in values(torch):
        variants = [('zip', p) for p in ZIP_PROTOCOLS] + ([('legacy', p) for p in LEGACY_PROTOCOLS] if legacy else [])
        for fmt, p in variants:
            name = '%s_%s_p%d' % (vname, fmt, p)
            data, whole, count = save(torch, value, fmt, p)
            again = save(torch, value, fmt, p)[0]
            assert again == data, '%s: torch.save is not deterministic' % name
            back = torch.load(io.BytesIO(whole), weights_only=False)
            same_value(torch, value, back, name)
            assert sharing(torch, value) == sharing(torch, back), name
            file = name + ('.pkl' if fmt == 'zip' else '.pt')
            with open(os.path.join(outdir, file), 'wb') as f:
                f.write(data)
            cases.append(dict(name=name, value=vname, format=fmt, protocol=p, file=file, data=data,
                              count=count))

    jobs = [dict(name=c['name'], path=os.path.join(outdir, c['file']), count=c['count'],
                 protocol=c['protocol']) for c in cases]
    listing = os.path.join(outdir, 'oracle-jobs.json')
    with open(listing, 'w') as f:
        json.dump(jobs, f)
    verdicts = run_oracle(listing, '0')
    probe = run_oracle(listing, PROBE_HASH_SEED)
    os.remove(listing)

    manifest_cases = []
    for c in cases:
        v = verdicts[c['name']]
        entry = {'name': c['name'], 'file': c['file'], 'value': c['value'], 'format': c['format'],
                 'protocol': c['protocol']}
        pickles, start = [], 0
        for i, pk in enumerate(v['pickles']):
            src = c['data'][start:pk['end']]
            rep = bytes.fromhex(pk['repickle'])
            e = {'offset': start, 'end': pk['end'], 'pids': pk['pids'], 'repickle_same_as_input': rep == src}
            if rep != src:
                rel = 'repickle/%s.%d.pkl' % (c['name'], i)
                with open(os.path.join(outdir, rel), 'wb') as f:
                    f.write(rep)
                e['repickle'] = rel
            e['repickle_exact'] = probe[c['name']]['pickles'][i]['repickle'] == pk['repickle']
            if not e['repickle_exact']:
                e['note'] = 're-pickle bytes change with PYTHONHASHSEED (a set written in hash order)'
            pickles.append(e)
            start = pk['end']
        entry['pickles'] = pickles
        entry['trailing_bytes'] = len(c['data']) - start
        if c['format'] == 'zip':
            assert entry['trailing_bytes'] == 0, c['name']
        else:
            assert entry['trailing_bytes'] > 0 and v['trailing_error'] not in (None, 'loads'), c['name']
            entry['trailing_error'] = v['trailing_error']
        n_pids = sum(len(p['pids']) for p in pickles)
        assert n_pids > 0, '%s: no persistent id' % c['name']
        manifest_cases.append(entry)

    manifest = {
        'generator': 'tests/thirdparty/gen_torch.py',
        'python': platform.python_version(),
        'torch': torch.__version__,
        'cases': manifest_cases,
    }
    with open(os.path.join(outdir, 'manifest.json'), 'w') as f:
        f.write(manifest_json(manifest))
    differs = sum(not p['repickle_same_as_input'] for e in manifest_cases for p in e['pickles'])
    inexact = sum(not p['repickle_exact'] for e in manifest_cases for p in e['pickles'])
    print('wrote %d cases (%d pickles, %d persistent ids) to %s: torch %s, python %s; %d re-pickles '
          'differ from their input, %d not byte-comparable'
          % (len(manifest_cases), sum(len(e['pickles']) for e in manifest_cases),
             sum(len(p['pids']) for e in manifest_cases for p in e['pickles']), outdir,
             manifest['torch'], manifest['python'], differs, inexact))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
