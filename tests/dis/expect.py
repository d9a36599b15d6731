#!/usr/bin/env python3
"""What pickletools prints / returns, as golden cases for the `pikl dis` and `pikl optimize`
tests (CPython is the oracle).

Usage:
  expect.py dis CORPUS CASES      one directory per `pikl dis` run under CASES
  expect.py optimize CORPUS OUT   OUT/<name>.opt (pickletools.optimize's bytes) or .err
  expect.py doctests OUT          the dis() calls of pickletools' own doctests

A `dis` case directory holds:
  args     the arguments of `pikl dis`, one per line
  stdin    (optional) the file to feed on standard input
  stdout   what `python3 -m pickletools` with those arguments prints
  code     its exit status (0, or 1 when pickletools raises)
  msg      the exception's message, if any

Single-file runs call pickletools.dis exactly as `python3 -m pickletools FILE` does;
several-file runs execute pickletools' own `__main__` block in-process (runpy).
A `doctests` case is OUT/<n>.data (the whole buffer dis() read from), OUT/<n>.want (the
doctest's expected output) and OUT/<n>.meta (start offset, memo group or -, indentlevel,
annotate; one per line).
"""

import contextlib
import doctest
import io
import os
import pickletools
import runpy
import sys


def single(path, indentlevel=4, annotate=0):
    """`python3 -m pickletools [-a] [-l N] path` (one file)."""
    out = io.StringIO()
    code, msg = 0, ""
    with open(path, "rb") as f:
        try:
            pickletools.dis(f, out, None, indentlevel, annotate)
        except Exception as e:  # a traceback and exit status 1
            code, msg = 1, str(e)
    return out.getvalue(), code, msg


def main_block(argv):
    """Run pickletools' `__main__` with `argv`, capturing standard output."""
    out = io.StringIO()
    old_argv, old_stdout = sys.argv, sys.stdout
    sys.argv = ["pickletools"] + argv
    sys.stdout = out
    code, msg = 0, ""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            runpy.run_module("pickletools", run_name="__main__", alter_sys=False)
    except SystemExit as e:
        code = e.code
    except Exception as e:
        code, msg = 1, str(e)
    finally:
        sys.argv, sys.stdout = old_argv, old_stdout
    return out.getvalue(), code, msg


class Cases:
    def __init__(self, root):
        self.root = root
        self.n = 0

    def add(self, args, stdout, code, msg, stdin=None):
        d = os.path.join(self.root, "%05d" % self.n)
        self.n += 1
        os.makedirs(d)
        with open(os.path.join(d, "args"), "w") as f:
            f.write("".join(a + "\n" for a in args))
        with open(os.path.join(d, "stdout"), "wb") as f:
            f.write(stdout.encode("utf-8"))
        with open(os.path.join(d, "code"), "w") as f:
            f.write(str(code))
        with open(os.path.join(d, "msg"), "w", encoding="utf-8") as f:
            f.write(msg)
        if stdin:
            with open(os.path.join(d, "stdin"), "w") as f:
                f.write(stdin)


def files(d):
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".pkl"))


def dis_cases(corpus, root):
    cases = Cases(root)
    good = files(os.path.join(corpus, "good"))
    bad = files(os.path.join(corpus, "bad"))
    for i, path in enumerate(good + bad):
        cases.add([path], *single(path))
        cases.add(["-a", path], *single(path, annotate=30))
        if i % 3 == 0:
            cases.add(["-l", "2", path], *single(path, indentlevel=2))
        if i % 5 == 0:
            cases.add(["-a", "-l", "0", path], *single(path, indentlevel=0, annotate=30))
        if i % 17 == 0:
            cases.add(["--indentlevel", "-3", "--annotate", path], *single(path, indentlevel=-3, annotate=30))
    # Standard input: `-` and no argument at all (pickletools itself needs a seekable file).
    for path in good[::40] + bad[::15]:
        out, code, msg = single(path)
        cases.add(["-"], out, code, msg, stdin=path)
        cases.add([], out, code, msg, stdin=path)
    # Several files: pickletools' own __main__ (preamble, -m).
    multi = os.path.join(corpus, "multi")
    for proto in range(6):
        chain = [os.path.join(multi, "chain_p%d_%d.pkl" % (proto, i)) for i in range(3)]
        for extra in ([], ["-m"], ["-m", "-a", "-l", "1"], ["-p", "--- {name!r} {{x}} ---"]):
            cases.add(extra + chain, *main_block(extra + chain))
    for group in (good[:3], good[10:12] + bad[:1] + good[12:13], [bad[5], good[7]]):
        for extra in ([], ["-m", "-p", "{name}:"]):
            cases.add(extra + group, *main_block(extra + group))


def optimize_cases(corpus, out):
    os.makedirs(out, exist_ok=True)
    for sub in ("good", "bad"):
        for path in files(os.path.join(corpus, sub)):
            with open(path, "rb") as f:
                data = f.read()
            name = sub + "_" + os.path.basename(path)[:-4]
            try:
                res = pickletools.optimize(data)
            except Exception as e:
                with open(os.path.join(out, name + ".err"), "w", encoding="utf-8") as f:
                    f.write(str(e))
            else:
                with open(os.path.join(out, name + ".opt"), "wb") as f:
                    f.write(res)
            with open(os.path.join(out, name + ".pkl"), "wb") as f:
                f.write(data)


def doctest_cases(out):
    os.makedirs(out, exist_ok=True)
    parser = doctest.DocTestParser()
    n = 0
    for test_name, text in sorted(pickletools.__test__.items()):
        globs = dict(pickletools.__dict__)
        real_dis = pickletools.dis
        calls = []
        memo_groups = {}

        def recording_dis(pickle, out=None, memo=None, indentlevel=4, annotate=0):
            if isinstance(pickle, (bytes, bytearray)):
                data, start = bytes(pickle), 0
            else:
                data, start = pickle.getvalue(), pickle.tell()
            group = None if memo is None else memo_groups.setdefault(id(memo), "%s-%d" % (test_name, len(memo_groups)))
            calls.append((data, start, group, indentlevel, annotate))
            return real_dis(pickle, out, memo, indentlevel, annotate)

        globs["dis"] = recording_dis
        examples = parser.get_examples(text)
        assert examples, test_name
        for ex in examples:
            before = len(calls)
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(ex.source, "<%s>" % test_name, "single"), globs)
            if len(calls) == before:
                continue
            assert len(calls) == before + 1, ex.source
            assert printed.getvalue() == ex.want, (ex.source, printed.getvalue(), ex.want)
            data, start, group, indentlevel, annotate = calls[-1]
            with open(os.path.join(out, "%d.data" % n), "wb") as f:
                f.write(data)
            with open(os.path.join(out, "%d.want" % n), "w", encoding="utf-8") as f:
                f.write(ex.want)
            with open(os.path.join(out, "%d.meta" % n), "w") as f:
                f.write("%d\n%s\n%d\n%d\n" % (start, group or "-", indentlevel, annotate))
            n += 1
    assert n >= 14, n


def main():
    mode = sys.argv[1]
    if mode == "dis":
        dis_cases(sys.argv[2], sys.argv[3])
    elif mode == "optimize":
        optimize_cases(sys.argv[2], sys.argv[3])
    elif mode == "doctests":
        doctest_cases(sys.argv[2])
    else:
        sys.exit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
