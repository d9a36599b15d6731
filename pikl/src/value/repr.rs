//! Python's `repr()` for values of a graph, without recursion.
//!
//! Builtin types print exactly as CPython prints them (`[...]`, `{...}` where an object
//! contains itself). Classes print as `module.name`, and instances as the call that built them:
//! `collections.OrderedDict([('a', 1)])`-like text such as `module.Cls(args)`, followed by
//! `.__setstate__(state)`, `.extend([...])` or `.update({...})` for what `BUILD`, `APPENDS` and
//! `SETITEMS` added.

use std::fmt::{self, Write};

use super::printable::is_printable;
use super::{Graph, Object, PyStr, Value};

/// Options for [`Graph::repr`](super::Graph).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReprOptions {
    /// Stop after about this many characters, ending with `...`.
    pub max_chars: Option<usize>,
}

enum Task<'g> {
    Val(Value),
    Text(&'static str),
    Leave(u32),
    /// `key: value` of a dict entry.
    Entry(Value, Value),
    /// `name=value` of a keyword argument.
    Keyword(Value, Value),
    Items(&'g [Value], &'static str),
}

/// Writes Python's repr of `v` to `out`; `Ok(false)` when it was cut at `max_chars`.
pub(crate) fn write_repr(g: &Graph, v: Value, out: &mut dyn Write, opts: ReprOptions) -> Result<bool, fmt::Error> {
    let mut w = Limited { out, left: opts.max_chars.unwrap_or(usize::MAX), cut: false };
    match repr_into(g, v, &mut w) {
        Err(_) if w.cut => w.out.write_str("...").map(|_| false),
        other => other.map(|_| true),
    }
}

/// Stops writing once the character budget is spent.
struct Limited<'o> {
    out: &'o mut dyn Write,
    left: usize,
    cut: bool,
}

impl Write for Limited<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() > self.left {
            let mut end = self.left;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.out.write_str(&s[..end])?;
            self.cut = true;
            return Err(fmt::Error);
        }
        self.left -= s.len();
        self.out.write_str(s)
    }
}

fn repr_into(g: &Graph, root: Value, w: &mut Limited) -> fmt::Result {
    let mut active = vec![0u64; g.len().div_ceil(64)];
    let mut tasks: Vec<Task> = vec![Task::Val(root)];
    while let Some(task) = tasks.pop() {
        let v = match task {
            Task::Text(s) => {
                w.write_str(s)?;
                continue;
            }
            Task::Leave(id) => {
                active[id as usize / 64] &= !(1 << (id % 64));
                continue;
            }
            Task::Entry(k, v) => {
                tasks.push(Task::Val(v));
                tasks.push(Task::Text(": "));
                k
            }
            Task::Keyword(k, v) => {
                match g.object(k) {
                    Some(Object::Str(s)) => w.write_str(&s.to_string_lossy())?,
                    _ => w.write_str("<key>")?,
                }
                w.write_str("=")?;
                v
            }
            Task::Items(items, sep) => {
                push_items(&mut tasks, items.iter().copied().map(Task::Val), sep);
                continue;
            }
            Task::Val(v) => v,
        };
        let id = match v {
            Value::None => {
                w.write_str("None")?;
                continue;
            }
            Value::Bool(b) => {
                w.write_str(if b { "True" } else { "False" })?;
                continue;
            }
            Value::Int(i) => {
                w.write_str(itoa::Buffer::new().format(i))?;
                continue;
            }
            Value::Float(f) => {
                write_float(w, f, true)?;
                continue;
            }
            Value::Obj(id) => id,
        };
        let obj = g.get(id);
        let bit = 1u64 << (id.0 % 64);
        let slot = id.0 as usize / 64;
        let recursive = active[slot] & bit != 0;
        match obj {
            Object::Int(i) => write!(w, "{i}")?,
            Object::Complex(re, im) => write_complex(w, *re, *im)?,
            Object::Str(s) => write_str_repr(w, s)?,
            Object::Bytes(b) => write_bytes_repr(w, b)?,
            Object::ByteArray(b) => {
                w.write_str("bytearray(")?;
                write_bytes_literal(w, b, true)?;
                w.write_str(")")?;
            }
            Object::Buffer(b) => {
                w.write_str("PickleBuffer(")?;
                write_bytes_repr(w, &b.data)?;
                w.write_str(")")?;
            }
            Object::Global(gl) => {
                w.write_str(&gl.module)?;
                w.write_str(".")?;
                w.write_str(&gl.name)?;
            }
            Object::Extension(code) => write!(w, "extension({code})")?,
            _ if recursive => w.write_str(match obj {
                Object::List(_) => "[...]",
                Object::Tuple(_) => "(...)",
                Object::Dict(_) => "{...}",
                Object::Set(_) => "set(...)",
                Object::FrozenSet(_) => "frozenset(...)",
                _ => "<...>",
            })?,
            _ => {
                active[slot] |= bit;
                tasks.push(Task::Leave(id.0));
                match obj {
                    Object::List(items) => {
                        w.write_str("[")?;
                        tasks.push(Task::Text("]"));
                        tasks.push(Task::Items(items, ", "));
                    }
                    Object::Tuple(items) => {
                        w.write_str("(")?;
                        tasks.push(Task::Text(if items.len() == 1 { ",)" } else { ")" }));
                        tasks.push(Task::Items(items, ", "));
                    }
                    Object::Dict(d) => {
                        w.write_str("{")?;
                        tasks.push(Task::Text("}"));
                        push_items(&mut tasks, d.iter().map(|(k, v)| Task::Entry(k, v)), ", ");
                    }
                    Object::Set(s) if s.is_empty() => w.write_str("set()")?,
                    Object::FrozenSet(s) if s.is_empty() => w.write_str("frozenset()")?,
                    Object::Set(s) => {
                        w.write_str("{")?;
                        tasks.push(Task::Text("}"));
                        tasks.push(Task::Items(s.items(), ", "));
                    }
                    Object::FrozenSet(s) => {
                        w.write_str("frozenset({")?;
                        tasks.push(Task::Text("})"));
                        tasks.push(Task::Items(s.items(), ", "));
                    }
                    Object::PersistentId(pid) => {
                        w.write_str("persistent_load(")?;
                        tasks.push(Task::Text(")"));
                        tasks.push(Task::Val(*pid));
                    }
                    Object::Instance(inst) => {
                        // Pushed in reverse: the call, then state and items.
                        if !inst.set_items.is_empty() {
                            tasks.push(Task::Text("})"));
                            tasks.push(Task::Items(&inst.set_items, ", "));
                            tasks.push(Task::Text(".update({"));
                        }
                        if !inst.dict_items.is_empty() {
                            tasks.push(Task::Text("})"));
                            push_items(&mut tasks, inst.dict_items.iter().map(|&(k, v)| Task::Entry(k, v)), ", ");
                            tasks.push(Task::Text(".update({"));
                        }
                        if !inst.list_items.is_empty() {
                            tasks.push(Task::Text("])"));
                            tasks.push(Task::Items(&inst.list_items, ", "));
                            tasks.push(Task::Text(".extend(["));
                        }
                        if let Some(state) = inst.state {
                            tasks.push(Task::Text(")"));
                            tasks.push(Task::Val(state));
                            tasks.push(Task::Text(".__setstate__("));
                        }
                        tasks.push(Task::Text(")"));
                        let args: &[Value] = match g.object(inst.args) {
                            Some(Object::Tuple(items)) => items,
                            _ => std::slice::from_ref(&inst.args),
                        };
                        let kwargs = match inst.kwargs.and_then(|k| g.object(k)) {
                            Some(Object::Dict(d)) => Some(d),
                            _ => None,
                        };
                        let kw_tasks = kwargs.into_iter().flat_map(|d| d.iter()).map(|(k, v)| Task::Keyword(k, v));
                        push_items(&mut tasks, args.iter().copied().map(Task::Val).chain(kw_tasks), ", ");
                        tasks.push(Task::Text("("));
                        tasks.push(Task::Val(inst.callable));
                    }
                    _ => unreachable!("scalar objects handled above"),
                }
            }
        }
    }
    Ok(())
}

/// Pushes `items` so that they pop in order, separated by `sep`.
fn push_items<'g>(tasks: &mut Vec<Task<'g>>, items: impl Iterator<Item = Task<'g>>, sep: &'static str) {
    let start = tasks.len();
    for (i, t) in items.enumerate() {
        if i > 0 {
            tasks.push(Task::Text(sep));
        }
        tasks.push(t);
    }
    tasks[start..].reverse();
}

/// Python's `repr(float)` (with `add_dot_0`) or complex's part format (without).
pub(crate) fn write_float(w: &mut dyn Write, f: f64, add_dot_0: bool) -> fmt::Result {
    let mut buf = String::new();
    format_float(&mut buf, f, add_dot_0);
    w.write_str(&buf)
}

/// Appends Python's shortest repr of `f` to `out`.
pub(crate) fn format_float(out: &mut String, f: f64, add_dot_0: bool) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    let mut rb = ryu::Buffer::new();
    let s = rb.format_finite(f.abs());
    let (mant, exp) = match s.find('e') {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().unwrap_or(0)),
        None => (s, 0),
    };
    let point = mant.find('.').unwrap_or(mant.len()) as i32;
    let mut digits: Vec<u8> = mant.bytes().filter(|&b| b != b'.').collect();
    let lead = digits.iter().take_while(|&&b| b == b'0').count();
    digits.drain(..lead);
    let mut decpt = point - lead as i32 + exp;
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits.is_empty() {
        digits.push(b'0');
        decpt = 1;
    }
    let n = digits.len() as i32;
    let ds = std::str::from_utf8(&digits).expect("ascii digits");
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(ds);
        } else if decpt >= n {
            out.push_str(ds);
            out.extend(std::iter::repeat_n('0', (decpt - n) as usize));
            if add_dot_0 {
                out.push_str(".0");
            }
        } else {
            out.push_str(&ds[..decpt as usize]);
            out.push('.');
            out.push_str(&ds[decpt as usize..]);
        }
    } else {
        out.push_str(&ds[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&ds[1..]);
        }
        let e = decpt - 1;
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        let ea = e.unsigned_abs();
        if ea < 10 {
            out.push('0');
        }
        out.push_str(itoa::Buffer::new().format(ea));
    }
}

fn write_complex(w: &mut dyn Write, re: f64, im: f64) -> fmt::Result {
    let mut s = String::new();
    let bare = re == 0.0 && re.is_sign_positive();
    if !bare {
        s.push('(');
        format_float(&mut s, re, false);
        if !im.is_sign_negative() || im.is_nan() {
            s.push('+');
        }
    }
    format_float(&mut s, im, false);
    s.push('j');
    if !bare {
        s.push(')');
    }
    w.write_str(&s)
}

fn quote_for(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double {
        '"'
    } else {
        '\''
    }
}

/// Python's `repr(str)`.
pub(crate) fn write_str_repr(w: &mut dyn Write, s: &PyStr) -> fmt::Result {
    let bytes = s.as_bytes();
    let quote = quote_for(bytes.contains(&b'\''), bytes.contains(&b'"'));
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push(quote);
    for cp in s.code_points() {
        match cp {
            0x5C => out.push_str("\\\\"),
            0x09 => out.push_str("\\t"),
            0x0A => out.push_str("\\n"),
            0x0D => out.push_str("\\r"),
            _ if cp == quote as u32 => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7E => out.push(cp as u8 as char),
            0..=0x1F | 0x7F => {
                let _ = write!(out, "\\x{cp:02x}");
            }
            _ if is_printable(cp) => out.push(char::from_u32(cp).expect("printable is a char")),
            0x80..=0xFF => {
                let _ = write!(out, "\\x{cp:02x}");
            }
            0x100..=0xFFFF => {
                let _ = write!(out, "\\u{cp:04x}");
            }
            _ => {
                let _ = write!(out, "\\U{cp:08x}");
            }
        }
    }
    out.push(quote);
    w.write_str(&out)
}

/// Python's `repr(bytes)`.
pub(crate) fn write_bytes_repr(w: &mut dyn Write, b: &[u8]) -> fmt::Result {
    write_bytes_literal(w, b, false)
}

/// A bytes literal; `bytearray`'s repr escapes every `'`, even inside `"` quotes
/// (`bytearray(b"\'")`), where a bytes repr writes it bare (`b"'"`).
fn write_bytes_literal(w: &mut dyn Write, b: &[u8], escape_single: bool) -> fmt::Result {
    let quote = quote_for(b.contains(&b'\''), b.contains(&b'"'));
    let mut out = String::with_capacity(b.len() + 3);
    out.push('b');
    out.push(quote);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if c as char == quote || (escape_single && c == b'\'') => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7E => out.push(c as char),
            _ => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(quote);
    w.write_str(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytearray_escapes_every_single_quote() {
        // CPython 3.11: repr(bytearray(b"'")), repr(b"'"), repr(bytearray(b'\'"')).
        let lit = |b: &[u8], ba: bool| {
            let mut s = String::new();
            write_bytes_literal(&mut s, b, ba).expect("write");
            s
        };
        assert_eq!(lit(b"'", true), r#"b"\'""#);
        assert_eq!(lit(b"'", false), r#"b"'""#);
        assert_eq!(lit(b"'\"", true), r#"b'\'"'"#);
        assert_eq!(lit(b"'\"", false), r#"b'\'"'"#);
    }

    fn f(x: f64) -> String {
        let mut s = String::new();
        format_float(&mut s, x, true);
        s
    }

    #[test]
    fn floats_print_as_python() {
        assert_eq!(f(1e16), "1e+16");
        assert_eq!(f(1e15), "1000000000000000.0");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(0.00001), "1e-05");
        assert_eq!(f(5e-324), "5e-324");
        assert_eq!(f(-0.0), "-0.0");
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(123456789.123), "123456789.123");
        assert_eq!(f(1e22), "1e+22");
        assert_eq!(f(2.5e-310), "2.5e-310");
        assert_eq!(f(0.1), "0.1");
    }
}
