"""Helper classes for the pikl differential corpus.

Pickles in the corpus reference these by their qualified name
``pikl_corpus_classes.<Name>``, so this module must be importable (the corpus
scripts put their own directory on sys.path).  Everything here must stay
deterministic: changing a class changes the bytes of the corpus.
"""

import collections
import dataclasses
import enum


def make_thing(a, b=None):
    """Module-level callable used by ReduceCallable and functools.partial."""
    return ReduceCallable(a, b)


class Plain:
    """A plain class: pickled as NEWOBJ/_reconstructor + BUILD of __dict__."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = object.__hash__


class Old:
    """Stands in for a Python 2 old-style class (INST / OBJ opcodes)."""

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = object.__hash__


class ReduceCallable:
    """__reduce__ returning (callable, args)."""

    def __init__(self, a, b=None):
        self.a = a
        self.b = b

    def __reduce__(self):
        return (make_thing, (self.a, self.b))

    def __eq__(self, other):
        return type(self) is type(other) and (self.a, self.b) == (other.a, other.b)

    __hash__ = object.__hash__


class Reduce5:
    """__reduce__ returning a 5-tuple: (cls, args, state, listitems, dictitems)."""

    def __init__(self):
        self.items = []
        self.mapping = {}
        self.state = None

    def append(self, x):
        self.items.append(x)

    def extend(self, xs):
        for x in xs:
            self.items.append(x)

    def __setitem__(self, k, v):
        self.mapping[k] = v

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):
        return (Reduce5, (), self.state, iter(self.items),
                iter(self.mapping.items()))

    def __eq__(self, other):
        return (type(self) is type(other) and self.items == other.items
                and self.mapping == other.mapping and self.state == other.state)

    __hash__ = object.__hash__


class GetSetState:
    """__getstate__/__setstate__ with a non-dict (tuple) state."""

    def __init__(self, x=0, y=0):
        self.x = x
        self.y = y

    def __getstate__(self):
        return (self.x, self.y)

    def __setstate__(self, state):
        self.x, self.y = state

    def __eq__(self, other):
        return type(self) is type(other) and (self.x, self.y) == (other.x, other.y)

    __hash__ = object.__hash__


class Slots:
    """__slots__ without __dict__: state is (None, {slot: value})."""

    __slots__ = ('a', 'b')

    def __init__(self, a=None, b=None):
        self.a = a
        if b is not None:
            self.b = b

    def __eq__(self, other):
        return (type(self) is type(other)
                and getattr(self, 'a', None) == getattr(other, 'a', None)
                and getattr(self, 'b', None) == getattr(other, 'b', None))

    __hash__ = object.__hash__


class SlotsDict:
    """__slots__ with __dict__: state is ({dict}, {slots})."""

    __slots__ = ('a', '__dict__')

    def __init__(self, a=None, **kw):
        self.a = a
        self.__dict__.update(kw)

    def __eq__(self, other):
        return (type(self) is type(other) and self.a == other.a
                and self.__dict__ == other.__dict__)

    __hash__ = object.__hash__


class NewArgs(int):
    """int subclass with __getnewargs__ and an attribute."""

    def __new__(cls, value, tag):
        self = super().__new__(cls, value)
        self.tag = tag
        return self

    def __getnewargs__(self):
        return (int(self), self.tag)


class NewArgsEx:
    """__getnewargs_ex__ with keyword-only arguments."""

    def __new__(cls, x, *, y):
        self = super().__new__(cls)
        self.x = x
        self.y = y
        return self

    def __getnewargs_ex__(self):
        return ((self.x,), {'y': self.y})

    def __eq__(self, other):
        return type(self) is type(other) and (self.x, self.y) == (other.x, other.y)

    __hash__ = object.__hash__


class MyList(list):
    """list subclass with an extra attribute."""


class MyDict(dict):
    """dict subclass with an extra attribute."""


@dataclasses.dataclass
class DataPoint:
    x: int
    y: float
    label: str = 'p'
    tags: list = dataclasses.field(default_factory=list)


Point = collections.namedtuple('Point', ['x', 'y'])


class Color(enum.Enum):
    RED = 1
    GREEN = 2
    BLUE = 'blue'


class Perm(enum.IntFlag):
    R = 4
    W = 2
    X = 1


class PersRef:
    """Stands for an object stored outside the pickle.

    The corpus picklers return ``self.pid`` from persistent_id() for
    instances of this class, and persistent_load(pid) returns PersRef(pid),
    so persistent ids round-trip when re-pickling.
    """

    def __init__(self, pid):
        self.pid = pid

    def __repr__(self):
        return 'PersRef(%r)' % (self.pid,)

    def __eq__(self, other):
        return type(self) is type(other) and self.pid == other.pid

    def __hash__(self):
        return hash(('PersRef', repr(self.pid)))
