#!/usr/bin/env python3
"""CPython's own pickle test-suite (test/pickletester.py) with pikl in the loop.

    python3 tests/pickletester/run_pickletester.py PIKL_BINARY [-v] [-k PATTERN ...]

Every pickle a test looks at is one that pikl wrote from the object graph pikl loaded:

* ``dumps(obj, proto)``: CPython pickles ``obj`` at ``proto`` (so in-process hooks of the
  *pickler* -- ``__reduce__``, ``persistent_id``, ``reducer_override``, ``dispatch_table`` --
  run in CPython as usual), then ``pikl convert --protocol proto`` loads that stream and writes
  it again; the test gets pikl's bytes.
* ``loads(data)``: ``pikl convert --protocol 5`` loads the test's bytes (``encoding=`` and
  ``errors=`` become ``--encoding`` / ``--errors``) and CPython's ``pickle.loads`` loads what
  pikl wrote.  When pikl refuses the data (exit 1) the runner raises the exception CPython
  raises for the message pikl printed (``ERROR_CLASSES``): pikl words its errors as CPython
  does but a command line has no exception classes.  A stream that ends where an opcode
  should start is EOFError; one that ends inside an opcode (pikl names the opcode) is
  UnpicklingError, as CPython's "pickle data was truncated".
* ``pickle.loads`` reads one pickle and ignores what follows, ``pikl convert`` converts the
  whole stream: when pikl fails past the end of the first pickle (its STOP as ``pikl dis``
  lists it), the runner converts just the first pickle.

AbstractPickleTests and AbstractUnpickleTests run as one class (as CPython's own
InMemoryPickleTests); the module-level, persistent-id, Pickler/Unpickler-object,
reducer_override and dispatch_table suites run too, with a CPython Pickler subclass whose
output goes through pikl (``PiklPickler``) and an Unpickler that loads pikl's conversion.

Tests that need something a command line cannot carry (in-process unpickler hooks, out-of-band
buffers, the copyreg extension registry, Python-level Pickler/Unpickler objects) are skipped
with the reason (``SKIP``); tests that never reach pikl are skipped too (``CPYTHON_ONLY``) and
a test that passes without calling pikl is an error, so "passed" always means "passed through
pikl".  ``expected_failures.txt`` lists genuine pikl limitations (``Class.test  reason``); an
expected failure that passes is an error, so the list stays honest.

The summary also reports, without failing on them: the ``dumps`` whose pikl bytes differ from
CPython's own bytes for the same object (pikl promises byte-identical output), and the bad
inputs where CPython's own ``loads`` raises another exception class or message than pikl's.
"""

import argparse
import copyreg
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

if sys.version_info[:2] != (3, 11):
    sys.exit(f"run_pickletester: needs CPython 3.11 (SKIP and expected_failures.txt are for its "
             f"test/pickletester.py), this is {sys.version.split()[0]}")

try:
    from test.pickletester import (
        AbstractDispatchTableTests,
        AbstractHookTests,
        AbstractIdentityPersistentPicklerTests,
        AbstractPersistentPicklerTests,
        AbstractPickleModuleTests,
        AbstractPickleTests,
        AbstractPicklerUnpicklerObjectTests,
        AbstractUnpickleTests,
        AbstractCustomPicklerClass,
    )
except ImportError as e:  # the Rust test must fail, not skip, without the test package
    sys.exit(f"run_pickletester: cannot import test.pickletester ({e}); "
             "install CPython's test package (python3.11 with its stdlib tests)")

HERE = os.path.dirname(os.path.abspath(__file__))
PIKL = None  # set by main()


# ----------------------------------------------------------------------------------------------
# Talking to pikl

class PiklHarnessError(BaseException):
    """pikl misbehaved (crash, usage error, refused CPython's own output) or the test needs
    something the command line cannot carry.  A BaseException so that no ``assertRaises`` in
    a test can mistake it for the error the test expects."""


class CannotCarry(PiklHarnessError):
    pass


# CPython's exception class for the message pikl printed after "unpickling error at byte N
# (opcode X): ".  Messages not listed are UnpicklingError, as in _pickle.c.
ERROR_CLASSES = [
    (r"^invalid literal for int\(\)", ValueError),
    (r"^could not convert string to (int|float)", ValueError),
    (r"^negative \w+ argument", ValueError),
    (r"^unsupported pickle protocol", ValueError),
    (r"^Trailing \\ in string", ValueError),
    (r"^invalid \\x escape", ValueError),
    (r"codec can't decode", UnicodeDecodeError),
    (r"object is not callable$", TypeError),
    (r"^argument list must be a tuple", TypeError),
    (r"^unhashable type", TypeError),
]

ERR_RE = re.compile(r"^pikl: .*?: (unpickling error|unexpected end of pickle|pickling error|I/O error)"
                    r"(?: at byte (\d+))?(?: \(opcode (\w+)\))?(?:: (.*))?$", re.S)

stats = {"calls": 0, "dumps": 0, "dumps_differ": 0, "refused": 0}
error_differences = []  # (test id, data, the exception raised for pikl's message, CPython's)
differing = []  # (test id, proto, cpython bytes, pikl bytes)
current_test = [None]


def run_pikl(args, data):
    stats["calls"] += 1
    p = subprocess.run([PIKL, *args], input=data, capture_output=True)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace").strip()


def parse_error(stderr):
    """(kind, offset, opcode, message) of pikl's one-line error."""
    m = ERR_RE.match(stderr)
    if not m:
        raise PiklHarnessError(f"pikl exit 1 with an unrecognised message: {stderr!r}")
    kind, off, op, msg = m.groups()
    return kind, (int(off) if off is not None else None), op, (msg or "")


def exception_for(stderr):
    exc = _exception_for(stderr)
    exc.pikl_message = parse_error(stderr)[3]
    return exc


def _exception_for(stderr):
    kind, _, opcode, msg = parse_error(stderr)
    text = stderr[len("pikl: <stdin>: "):] if stderr.startswith("pikl: <stdin>: ") else stderr
    if kind == "unexpected end of pickle":
        # CPython: EOFError ("Ran out of input") when the stream ends where an opcode should
        # start, UnpicklingError ("pickle data was truncated") when it ends inside an opcode's
        # argument -- which pikl tells by naming the opcode it was reading.
        return pickle.UnpicklingError(text) if opcode else EOFError(text)
    if kind != "unpickling error":
        raise PiklHarnessError(f"pikl failed on the data with a {kind}: {stderr}")
    for pat, cls in ERROR_CLASSES:
        if re.search(pat, msg):
            if cls is UnicodeDecodeError:
                codec = re.match(r"'([^']*)'", msg)
                return UnicodeDecodeError(codec.group(1) if codec else "?", b"", 0, 0, text)
            return cls(text)
    return pickle.UnpicklingError(text)


def first_pickle_end(data):
    """End offset of the first pickle of `data` as `pikl dis` lists it, or None."""
    code, out, _ = run_pikl(["dis", "-"], data)
    if code != 0:
        return None
    stops = re.findall(rb"^\s*(\d+): \.\s+STOP\s*$", out, re.M)
    return int(stops[-1]) + 1 if stops else None


def convert(data, proto, *, encoding=None, errors=None, first_only=False):
    """pikl convert --protocol proto of data; raises what CPython would for bad data."""
    # --memo: the streams here come from one Pickler (dump() called once or more), so their
    # pickles share the memo, as one Unpickler reads them.
    args = ["convert", "--memo", "--protocol", str(proto)]
    if encoding is not None:
        args += ["--encoding", encoding]
    if errors is not None:
        args += ["--errors", errors]
    args.append("-")
    code, out, err = run_pikl(args, data)
    if code == 0:
        return out
    if code != 1:
        raise PiklHarnessError(f"pikl {' '.join(args)} exited {code}: {err}")
    if first_only:
        _, off, _, _ = parse_error(err)
        end = first_pickle_end(data)
        if end is not None and off is not None and off >= end and end < len(data):
            return convert(data[:end], proto, encoding=encoding, errors=errors)
    raise exception_for(err)


def resolve_proto(proto):
    if proto is None:
        return pickle.DEFAULT_PROTOCOL
    return pickle.HIGHEST_PROTOCOL if proto < 0 else proto


def through_pikl(data, proto, *, compare=True):
    """CPython's pickle `data` of protocol `proto`, re-written by pikl at `proto`."""
    try:
        out = convert(data, proto)
    except PiklHarnessError:
        raise
    except Exception as e:
        if "out-of-band data" in str(e):
            raise CannotCarry("the pickle has out-of-band buffers: `pikl convert` cannot be given them")
        raise PiklHarnessError(f"pikl refused CPython's own protocol-{proto} pickle {data[:200]!r}: {e}")
    if compare and current_test[0] not in NO_BYTE_COMPARE:
        stats["dumps"] += 1
        if out != data:
            stats["dumps_differ"] += 1
            differing.append((current_test[0], proto, data, out))
    return out


def pikl_dumps(obj, proto=None, *, protocol=None, fix_imports=True, **kwargs):
    if protocol is not None:
        proto = protocol
    if not fix_imports:
        raise CannotCarry("fix_imports=False: `pikl convert` has no such option")
    data = pickle.dumps(obj, proto, fix_imports=fix_imports, **kwargs)
    return through_pikl(data, resolve_proto(proto))


def check_load_kwargs(kwds):
    if not kwds.pop("fix_imports", True):
        raise CannotCarry("fix_imports=False: `pikl convert` has no such option")
    if kwds.pop("buffers", None) is not None:
        raise CannotCarry("buffers=: `pikl convert` cannot be given out-of-band buffers")
    encoding = kwds.pop("encoding", None)
    errors = kwds.pop("errors", None)
    if kwds:
        raise CannotCarry(f"loads() arguments the command line cannot carry: {sorted(kwds)}")
    return encoding, errors


def pikl_loads(data, **kwds):
    orig_kwds = dict(kwds)
    encoding, errors = check_load_kwargs(kwds)
    try:
        out = convert(bytes(data), 5, encoding=encoding, errors=errors, first_only=True)
    except Exception as e:
        compare_error(bytes(data), orig_kwds, e)
        raise
    return pickle.loads(out)


def compare_error(data, kwds, pikl_exc):
    """Notes how CPython's own loads fails on the data pikl refused (informational)."""
    stats["refused"] += 1
    try:
        pickle.loads(data, **kwds)
        cp = None
    except Exception as e:
        cp = e
    pk_msg = getattr(pikl_exc, "pikl_message", "")
    if cp is None or type(cp) is not type(pikl_exc) or (pk_msg and pk_msg.lower() != str(cp).lower()):
        error_differences.append((current_test[0], data, pikl_exc, cp))


class PiklPickler(pickle.Pickler):
    """CPython's Pickler (with its in-process hooks) whose output goes through pikl.

    The Pickler keeps its memo across dump() calls, so each dump converts the whole stream
    written since the last clear_memo() (pikl's convert keeps one memo across the stream too)
    and writes the part of pikl's output that is new."""

    def __init__(self, file, protocol=None, *, fix_imports=True, buffer_callback=None):
        if not fix_imports:
            raise CannotCarry("fix_imports=False: `pikl convert` has no such option")
        self._pikl_file = file
        self._pikl_proto = resolve_proto(protocol)
        self._pikl_buf = io.BytesIO()
        self._pikl_done = b""
        super().__init__(self._pikl_buf, protocol, fix_imports=fix_imports,
                         buffer_callback=buffer_callback)

    def dump(self, obj):
        start = self._pikl_buf.tell()
        try:
            super().dump(obj)
        except BaseException:
            self._pikl_buf.seek(start)
            self._pikl_buf.truncate()
            raise
        stream = self._pikl_buf.getvalue()
        # fast mode writes no memo opcodes, which pikl's writer always does
        out = through_pikl(stream, self._pikl_proto, compare=not getattr(self, "fast", False))
        if not out.startswith(self._pikl_done):
            raise PiklHarnessError("pikl's conversion of a longer stream does not extend the shorter one's")
        new = out[len(self._pikl_done):]
        self._pikl_done = out
        self._pikl_file.write(new)

    def clear_memo(self):
        super().clear_memo()
        self._pikl_buf.seek(0)
        self._pikl_buf.truncate()
        self._pikl_done = b""


class PiklUnpickler:
    """Reads the rest of `file`, converts it with pikl, and loads from pikl's output."""

    def __init__(self, file, *, fix_imports=True, encoding="ASCII", errors="strict", buffers=None):
        kw = {"fix_imports": fix_imports, "buffers": buffers}
        if encoding != "ASCII":
            kw["encoding"] = encoding
        if errors != "strict":
            kw["errors"] = errors
        self._enc, self._err = check_load_kwargs(kw)
        self._file = file
        self._inner = None

    def load(self):
        if self._inner is None:
            data = self._file.read()
            self._inner = pickle.Unpickler(io.BytesIO(convert(data, 5, encoding=self._enc, errors=self._err)))
        return self._inner.load()


def pikl_dump(obj, file, protocol=None, *, fix_imports=True, buffer_callback=None):
    file.write(pikl_dumps(obj, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback))


def pikl_load(file, **kwds):
    return PiklUnpickler(file, **kwds).load()


# ----------------------------------------------------------------------------------------------
# The test classes

class PiklPickleTests(AbstractPickleTests, AbstractUnpickleTests, unittest.TestCase):
    # Stricter than CPython's own suites (which accept IndexError, AttributeError, struct.error,
    # ... from the Python implementation): pikl must say the data is not a pickle.
    bad_stack_errors = (pickle.UnpicklingError,)
    truncated_errors = (pickle.UnpicklingError, EOFError)
    pickler = PiklPickler

    def dumps(self, arg, proto=None, **kwargs):
        return pikl_dumps(arg, proto, **kwargs)

    def loads(self, buf, **kwds):
        return pikl_loads(buf, **kwds)


class PiklPickleModuleTests(AbstractPickleModuleTests, unittest.TestCase):
    dump = staticmethod(pikl_dump)
    dumps = staticmethod(pikl_dumps)
    load = staticmethod(pikl_load)
    loads = staticmethod(pikl_loads)
    Pickler = PiklPickler
    Unpickler = PiklUnpickler


class PiklPersistentMixin:
    """Persistent ids are made and resolved by CPython's in-process hooks on both sides; pikl
    carries the PERSID/BINPERSID records in between."""

    def dumps(self, arg, proto=None):
        class PersPickler(pickle.Pickler):
            def persistent_id(subself, obj):
                return self.persistent_id(obj)
        f = io.BytesIO()
        PersPickler(f, proto).dump(arg)
        return through_pikl(f.getvalue(), resolve_proto(proto))

    def loads(self, buf, **kwds):
        class PersUnpickler(pickle.Unpickler):
            def persistent_load(subself, obj):
                return self.persistent_load(obj)
        encoding, errors = check_load_kwargs(kwds)
        out = convert(bytes(buf), 5, encoding=encoding, errors=errors, first_only=True)
        return PersUnpickler(io.BytesIO(out)).load()


class PiklPersPicklerTests(AbstractPersistentPicklerTests, PiklPersistentMixin, unittest.TestCase):
    pass


class PiklIdPersPicklerTests(AbstractIdentityPersistentPicklerTests, PiklPersistentMixin,
                             unittest.TestCase):
    pass


class PiklPicklerUnpicklerObjectTests(AbstractPicklerUnpicklerObjectTests, unittest.TestCase):
    pickler_class = PiklPickler
    unpickler_class = PiklUnpickler


class PiklCustomPickler(AbstractCustomPicklerClass, PiklPickler):
    pass


class PiklHookTests(AbstractHookTests, unittest.TestCase):
    pickler_class = PiklCustomPickler


class PiklDispatchTableTests(AbstractDispatchTableTests, unittest.TestCase):
    pickler_class = PiklPickler

    def get_dispatch_table(self):
        return copyreg.dispatch_table.copy()


TEST_CLASSES = [
    PiklPickleTests,
    PiklPickleModuleTests,
    PiklPersPicklerTests,
    PiklIdPersPicklerTests,
    PiklPicklerUnpicklerObjectTests,
    PiklHookTests,
    PiklDispatchTableTests,
]

# ----------------------------------------------------------------------------------------------
# What is not run, and why

_OOB = ("out-of-band buffers (PEP 574): the test hands loads() a buffers= list or needs "
        "NEXT_BUFFER resolved; `pikl convert` has no way to be given buffers")
_EXT = ("copyreg.add_extension registers the code in this process; the pickle holds only "
        "EXT1/2/4 codes and `pikl convert` has no way to be given the extension registry")

SKIP = {
    "PiklPickleTests.test_oob_buffers": _OOB,
    "PiklPickleTests.test_oob_buffers_writable_to_readonly": _OOB,
    "PiklPickleTests.test_buffers_error": _OOB,
    "PiklPickleTests.test_buffers_numpy": _OOB + " (and numpy)",
    "PiklPickleModuleTests.test_dumps_loads_oob_buffers": _OOB,
    "PiklPickleModuleTests.test_dump_load_oob_buffers": _OOB,
    "PiklPickleTests.test_global_ext1": _EXT,
    "PiklPickleTests.test_global_ext2": _EXT,
    "PiklPickleTests.test_global_ext4": _EXT,
    "PiklPickleTests.test_framed_write_sizes_with_delayed_writer":
        "checks the sizes of the write() calls an in-process Pickler makes per frame; pikl's "
        "output comes back from a process in one piece",
    "PiklPickleModuleTests.test_bad_init":
        "Pickler/Unpickler subclasses whose __init__ skips the base class: tests CPython's "
        "Python-level objects, no pickle stream to carry",
    "PiklPickleModuleTests.test_unpickler_bad_file":
        "checks the Unpickler constructor's validation of Python file objects (read/readline/"
        "peek properties); no pickle stream to carry",
    "PiklPickleModuleTests.test_pickler_bad_file":
        "checks the Pickler constructor's validation of Python file objects; no pickle stream",
    "PiklPicklerUnpicklerObjectTests.test_priming_pickler_memo":
        "assigns one Pickler's memo to another: the second stream's GETs refer to objects "
        "pickled in a different stream, which no command line sees",
    "PiklPicklerUnpicklerObjectTests.test_priming_unpickler_memo":
        "assigns one Unpickler's memo to another (object identity across two streams held in "
        "this process)",
    "PiklPicklerUnpicklerObjectTests.test_reusing_unpickler_objects":
        "rewrites the file under a live Unpickler between load() calls; a command line reads "
        "its input once",
    "PiklPicklerUnpicklerObjectTests.test_multiple_unpicklings_seekable":
        "checks the Unpickler leaves the file position right after each pickle; a command line "
        "reads its input once",
}

CPYTHON_ONLY = {
    "PiklPickleTests.test_unpickle_module_race":
        "calls pickle.loads directly (import lock race in CPython's unpickler)",
    "PiklPickleTests.test_picklebuffer_error":
        "CPython's pickler refuses PickleBuffer below protocol 5 before anything reaches pikl",
    "PiklPickleTests.test_buffer_callback_error":
        "the buffer_callback raises inside CPython's pickler before anything reaches pikl",
    "PiklPickleTests.test_local_lookup_error":
        "CPython's pickler refuses a local function before anything reaches pikl",
    "PiklPickleTests.test_reduce_bad_iterator":
        "CPython's pickler refuses a __reduce__ whose 4th/5th items are not iterators before "
        "anything reaches pikl",
    "PiklPickleModuleTests.test_highest_protocol": "checks pickle.HIGHEST_PROTOCOL",
    "PiklDispatchTableTests.test_default_dispatch_table":
        "checks a Pickler object has no dispatch_table attribute",
}


# Tests whose CPython stream is not what CPython writes for the object pikl (or CPython) loads
# from it, so byte identity is not to be expected.
NO_BYTE_COMPARE = {
    "PiklPickleTests.test_evil_pickler_mutating_collection":
        "persistent_id clears the collection while it is pickled: CPython's stream opens a "
        "MARK/APPENDS batch for items that are then gone",
}


def load_expected_failures(path):
    out = {}
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            tid, _, reason = line.partition(" ")
            if not reason.strip():
                sys.exit(f"{path}:{n}: a reason is required after the test id")
            out[tid] = reason.strip()
    return out


def all_test_ids():
    ids = set()
    loader = unittest.TestLoader()
    for cls in TEST_CLASSES:
        for name in loader.getTestCaseNames(cls):
            ids.add(f"{cls.__name__}.{name}")
    return ids


def apply_lists(expected):
    ids = all_test_ids()
    problems = []
    for table, what in ((SKIP, "SKIP"), (CPYTHON_ONLY, "CPYTHON_ONLY"),
                        (NO_BYTE_COMPARE, "NO_BYTE_COMPARE"), (expected, "expected failures")):
        for tid in table:
            if tid not in ids:
                problems.append(f"{what}: no such test {tid}")
    for tid in expected:
        if tid in SKIP or tid in CPYTHON_ONLY:
            problems.append(f"{tid} is both skipped and an expected failure")
    if problems:
        sys.exit("run_pickletester: " + "; ".join(problems))
    classes = {c.__name__: c for c in TEST_CLASSES}
    for tid, reason in list(SKIP.items()) + [(t, "CPython only, pikl not involved: " + r)
                                             for t, r in CPYTHON_ONLY.items()]:
        cname, name = tid.split(".")
        cls = classes[cname]
        setattr(cls, name, unittest.skip(reason)(getattr(cls, name)))
    for tid in expected:
        cname, name = tid.split(".")
        cls = classes[cname]
        setattr(cls, name, unittest.expectedFailure(getattr(cls, name)))


# ----------------------------------------------------------------------------------------------
# Running and reporting

def short_id(test):
    test = getattr(test, "test_case", test)  # a subTest reports as its test
    parts = test.id().split(".")
    return ".".join(parts[-2:])


class Result(unittest.TextTestResult):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.passed = []
        self.calls = {}
        self._start_calls = 0
        self._start_time = 0.0
        self.times = {}

    def startTest(self, test):
        current_test[0] = short_id(test)
        self._start_calls = stats["calls"]
        self._start_time = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        self.calls[short_id(test)] = stats["calls"] - self._start_calls
        self.times[short_id(test)] = time.monotonic() - self._start_time
        super().stopTest(test)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed.append(short_id(test))


def main():
    global PIKL
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pikl", help="the pikl binary")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("-k", dest="patterns", action="append", default=[],
                    help="only run tests whose id contains this (repeatable)")
    ap.add_argument("--expected-failures", default=os.path.join(HERE, "expected_failures.txt"))
    ap.add_argument("--show-differences", type=int, default=5, metavar="N",
                    help="print the first N dumps whose pikl bytes differ from CPython's")
    args = ap.parse_args()
    PIKL = os.path.abspath(args.pikl)
    if not os.access(PIKL, os.X_OK):
        sys.exit(f"run_pickletester: {PIKL} is not an executable")

    expected = load_expected_failures(args.expected_failures)
    apply_lists(expected)

    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = [f"*{p}*" for p in args.patterns]
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in TEST_CLASSES)

    workdir = tempfile.mkdtemp(prefix="pikl-pickletester-")
    old_cwd = os.getcwd()
    os.chdir(workdir)  # tests create TESTFN files in the current directory
    t0 = time.monotonic()
    try:
        runner = unittest.TextTestRunner(resultclass=Result, verbosity=2 if args.verbose else 1,
                                         stream=sys.stdout)
        result = runner.run(suite)
    finally:
        os.chdir(old_cwd)
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - t0

    failed = sorted({short_id(t) for t, _ in result.failures + result.errors})
    skipped = [(short_id(t), r) for t, r in result.skipped]
    xfail = sorted({short_id(t) for t, _ in result.expectedFailures})
    xpass = sorted({short_id(t) for t in result.unexpectedSuccesses})
    no_pikl = sorted(t for t in result.passed if result.calls.get(t, 0) == 0)

    print()
    print("=" * 78)
    print(f"pickletester with pikl in the loop ({PIKL}), {elapsed:.1f}s, "
          f"{stats['calls']} pikl runs")
    print(f"ran {result.testsRun}: passed {len(result.passed)}, failed {len(failed)}, "
          f"skipped {len(skipped)}, expected failures {len(xfail)}, "
          f"unexpected successes {len(xpass)}")
    if skipped:
        print("\nskipped:")
        for tid, reason in sorted(skipped):
            print(f"  {tid}: {reason}")
    if xfail:
        shown_path = os.path.relpath(args.expected_failures, os.path.join(HERE, "..", ".."))
        print(f"\nexpected failures ({shown_path}):")
        for tid in xfail:
            print(f"  {tid}: {expected.get(tid, '?')}")
    if failed:
        print("\nFAILED:")
        for tid in failed:
            print(f"  {tid}")
    if xpass:
        print("\nUNEXPECTED SUCCESS (remove from expected_failures.txt):")
        for tid in xpass:
            print(f"  {tid}")
    if no_pikl:
        print("\nPASSED WITHOUT CALLING PIKL (list them in CPYTHON_ONLY or fix the wiring):")
        for tid in no_pikl:
            print(f"  {tid}")
    print(f"\nbyte identity: {stats['dumps_differ']} of {stats['dumps']} re-pickled streams differ "
          "from CPython's bytes for the same object (informational)")
    by_test = {}
    for tid, proto, _, _ in differing:
        by_test.setdefault(tid, set()).add(proto)
    for tid in sorted(by_test, key=str):
        print(f"  {tid}: protocols {sorted(by_test[tid])}")
    for tid, proto, cp, pk in differing[:args.show_differences]:
        at = next((i for i, (a, b) in enumerate(zip(cp, pk)) if a != b), min(len(cp), len(pk)))
        lo = max(0, at - 16)
        print(f"  e.g. {tid} protocol {proto}, from byte {lo} (first difference at {at}):\n"
              f"    cpython {cp[lo:at + 48].hex()}\n    pikl    {pk[lo:at + 48].hex()}")
    print(f"\nerrors: pikl refused {stats['refused']} inputs in loads(); for "
          f"{len(error_differences)} CPython's own loads raises another class, or another "
          "message than the one pikl printed (informational):")
    per_test = {}
    for tid, *_ in error_differences:
        per_test[tid] = per_test.get(tid, 0) + 1
    for tid, n in sorted(per_test.items()):
        print(f"  {tid}: {n}")
    shown = set()
    for tid, data, pk, cp in error_differences:
        key = (tid, type(cp).__name__, str(cp)[:30])
        if key in shown or len(shown) >= args.show_differences * 2:
            continue
        shown.add(key)
        cpt = "no error" if cp is None else f"{type(cp).__name__}: {cp}"
        print(f"  {tid} {data[:40]!r}\n    pikl    {type(pk).__name__}: {pk}\n    cpython {cpt}")
    slow = sorted(result.times.items(), key=lambda kv: -kv[1])[:5]
    print("\nslowest: " + ", ".join(f"{t} {s:.1f}s" for t, s in slow))

    ok = not failed and not xpass and not no_pikl
    print("\nOK" if ok else "\nFAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
