//! JSON for pickles: a documented, lossless mapping between a [`Graph`] value and JSON.
//!
//! Values JSON has map to themselves, so a pickle of plain data becomes plain JSON: `None` is
//! `null`, `True`/`False` are `true`/`false`, an int in the `i64` range is a number, a finite
//! float is a number written as Python's `repr` writes it (always with a `.` or an exponent),
//! a str is a string, a list is an array and a dict whose keys are all strs is an object (in
//! insertion order). Everything else is an object with one *tag*, a key starting with a single
//! `$`:
//!
//! | Python | JSON |
//! | --- | --- |
//! | tuple | `{"$tuple": [...]}` |
//! | set, frozenset | `{"$set": [...]}`, `{"$frozenset": [...]}` |
//! | dict with a non-str key | `{"$dict": [[key, value], ...]}` |
//! | bytes, bytearray | `{"$bytes": "base64"}`, `{"$bytearray": "base64"}` |
//! | int beyond `i64` | `{"$int": "decimal"}` |
//! | nan, inf, -inf, -0.0 | `{"$float": "nan"}` (`"inf"`, `"-inf"`, `"-0.0"`) |
//! | complex | `{"$complex": [real, imag]}` |
//! | str with lone surrogates | `{"$str": ["text", 55296, "more"]}` |
//! | class or function | `{"$global": ["module", "qualname"]}` |
//! | object built by a call | `{"$instance": callable, "construct": "reduce", "args": ..., ...}` |
//! | persistent id, extension code | `{"$persid": pid}`, `{"$ext": code}` |
//! | out-of-band buffer | `{"$buffer": "base64", "readonly": true}` |
//!
//! An object referenced more than once (or from inside itself) carries `"$id": n` where it
//! first appears and is `{"$ref": n}` afterwards; a shared list is `{"$id": n, "$list": [...]}`.
//! A dict key that starts with `$` gets one more `$` in front (`"$id"` is written `"$$id"`), so
//! tags never collide with data. `docs/json-mapping.md` in the repository is the full
//! specification.
//!
//! Nothing here recurses over the depth of the data: [`to_json`], [`from_json`], [`write_json`],
//! [`parse`] and [`drop_json`] all use explicit stacks, so a list nested a million deep
//! converts both ways. `serde_json`'s own `Display`, serde (de)serialization and `Drop` of a
//! [`serde_json::Value`] *do* recurse: for deep values use this module's functions instead.
//!
//! ```
//! let loaded = pikl::loads(b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.")?;
//! let json = pikl::json::to_json(&loaded.graph, loaded.root);
//! assert_eq!(pikl::json::to_string(&json), "[1,2]");
//! let (graph, root) = pikl::json::from_json(&json)?;
//! assert_eq!(graph.view(root).to_string(), "[1, 2]");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};

use num_bigint::BigInt;
pub use serde_json;
use serde_json::{Map, Number, Value as Json};

use crate::value::{
    format_float, push_code_point, Construct, Global, Graph, Instance, Items, ObjId, Object, PickleBuffer, PyStr, Value,
};

/// Strs, bytes and big ints whose payload is at most this many bytes are written by value
/// wherever they appear, even when the graph shares one object (their identity does not
/// change what the pickle loads to). Larger shared ones get `$id` / `$ref`, so that a small
/// pickle referring many times to one large string cannot turn into a huge JSON text.
pub const BY_VALUE_MAX_BYTES: usize = 64;

// ---------------------------------------------------------------------------------------------
// Errors

/// A JSON text that does not parse, or a JSON value that does not follow the mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    message: String,
    /// Byte offset in the text, for syntax errors.
    offset: Option<usize>,
    /// (line, column), both from 1, for syntax errors.
    line_col: Option<(usize, usize)>,
    /// JSON Pointer of the offending value, for mapping errors.
    path: Option<String>,
}

impl JsonError {
    fn syntax(text: &[u8], offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        JsonError { message: message.into(), offset: Some(offset), line_col: Some((line, column)), path: None }
    }

    fn mapping(path: String, message: impl Into<String>) -> Self {
        JsonError { message: message.into(), offset: None, line_col: None, path: Some(path) }
    }

    /// The message alone.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The byte offset in the text, for a syntax error.
    pub fn offset(&self) -> Option<usize> {
        self.offset
    }

    /// The JSON Pointer (RFC 6901) of the value that breaks the mapping, for a mapping error
    /// (`""` is the whole document).
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// True for a text that is not JSON (as opposed to JSON that does not follow the mapping).
    pub fn is_syntax(&self) -> bool {
        self.offset.is_some()
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(offset), Some((line, col))) = (self.offset, self.line_col) {
            write!(f, "invalid JSON at byte {offset} (line {line}, column {col}): {}", self.message)
        } else {
            match self.path.as_deref() {
                Some("") | None => write!(f, "bad value at the top level: {}", self.message),
                Some(p) => write!(f, "bad value at {p}: {}", self.message),
            }
        }
    }
}

impl std::error::Error for JsonError {}

// ---------------------------------------------------------------------------------------------
// Graph -> JSON

/// Converts `value` (of `graph`) to JSON. See the [module documentation](self) for the
/// mapping; several values sharing objects go through one [`Encoder`] instead.
pub fn to_json(graph: &Graph, value: Value) -> Json {
    Encoder::new(graph, &[value]).encode(value)
}

/// Converts `value` (of `graph`) to compact JSON text on one line, as [`write_json`] writes
/// what [`to_json`] returns.
pub fn to_json_string(graph: &Graph, value: Value) -> String {
    let mut out = Vec::new();
    Encoder::new(graph, &[value]).write(value, &mut out).expect("writing to a Vec");
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// Converts several values of one graph, such as the pickles of one stream, to JSON documents
/// that share `$id` numbers: an object of an earlier document that a later one refers to gets
/// its `$id` where it first appears and is a `{"$ref": n}` in the later document.
pub struct Encoder<'g, 'a> {
    graph: &'g Graph<'a>,
    /// Incoming references per object, saturating at 2.
    counts: Vec<u8>,
    /// The `$id` given to each shared object (0: none yet).
    ids: Vec<u32>,
    next_id: u32,
}

/// What is left to write, in order (the last one first).
enum EncTask<'g> {
    Emit(Value),
    BeginArray,
    EndArray,
    EndObject,
    Key(&'static str),
    /// A dict key, escaped.
    DictKey(&'g str),
    Str(&'static str),
}

impl<'g, 'a> Encoder<'g, 'a> {
    /// An encoder for the values `roots` of `graph` (every value later passed to
    /// [`Encoder::encode`] or [`Encoder::write`]), which decide what is shared.
    pub fn new(graph: &'g Graph<'a>, roots: &[Value]) -> Self {
        let mut counts = vec![0u8; graph.len()];
        let mut stack: Vec<Value> = roots.iter().rev().copied().collect();
        while let Some(v) = stack.pop() {
            let Value::Obj(id) = v else { continue };
            let c = &mut counts[id.index()];
            let first = *c == 0;
            *c = (*c + 1).min(2);
            if first {
                push_children(graph.get(id), &mut stack);
            }
        }
        Encoder { graph, ids: vec![0; counts.len()], counts, next_id: 0 }
    }

    /// The JSON document for `root`, one of the roots given to [`Encoder::new`].
    pub fn encode(&mut self, root: Value) -> Json {
        let mut sink = ValueSink::default();
        self.run(root, &mut sink);
        sink.done.take().expect("one document")
    }

    /// Writes the JSON document for `root` (one of the roots given to [`Encoder::new`]) as
    /// compact text on one line, without a line break: what [`write_json`] writes for
    /// [`Encoder::encode`]'s result, without building it.
    pub fn write<W: Write + ?Sized>(&mut self, root: Value, out: &mut W) -> io::Result<()> {
        let mut sink = TextSink::new(out);
        self.run(root, &mut sink);
        sink.finish()
    }

    /// True when `id` is written once with `$id` and referenced with `$ref` elsewhere.
    fn shared(&self, id: ObjId) -> bool {
        self.counts[id.index()] >= 2 && !by_value(self.graph.get(id))
    }

    fn run<S: Sink>(&mut self, root: Value, s: &mut S) {
        let mut tasks = vec![EncTask::Emit(root)];
        while let Some(task) = tasks.pop() {
            if s.failed() {
                return;
            }
            match task {
                EncTask::Emit(v) => self.emit(v, &mut tasks, s),
                EncTask::BeginArray => s.begin_array(),
                EncTask::EndArray => s.end_array(),
                EncTask::EndObject => s.end_object(),
                EncTask::Key(k) => s.key(k, false),
                EncTask::DictKey(k) => s.key(k, true),
                EncTask::Str(v) => s.str(v),
            }
        }
    }

    fn emit<S: Sink>(&mut self, v: Value, tasks: &mut Vec<EncTask<'g>>, s: &mut S) {
        let oid = match v {
            Value::None => return s.null(),
            Value::Bool(b) => return s.bool(b),
            Value::Int(i) => return s.int(i),
            Value::Float(f) => return float_events(s, f),
            Value::Obj(id) => id,
        };
        let id = if self.shared(oid) {
            let known = self.ids[oid.index()];
            if known != 0 {
                s.begin_object();
                s.key("$ref", false);
                s.int(known.into());
                return s.end_object();
            }
            self.next_id += 1;
            self.ids[oid.index()] = self.next_id;
            Some(self.next_id)
        } else {
            None
        };
        let g: &'g Graph<'a> = self.graph;
        match g.get(oid) {
            Object::Int(i) => {
                open_tag(s, id, "$int");
                s.str(&i.to_string());
                s.end_object();
            }
            Object::Complex(re, im) => {
                open_tag(s, id, "$complex");
                s.begin_array();
                float_events(s, *re);
                float_events(s, *im);
                s.end_array();
                s.end_object();
            }
            Object::Str(st) => match (st.as_str(), id) {
                (Some(text), None) => s.str(text),
                (Some(text), Some(_)) => {
                    open_tag(s, id, "$str");
                    s.str(text);
                    s.end_object();
                }
                (None, _) => {
                    open_tag(s, id, "$str");
                    str_segments(s, st);
                    s.end_object();
                }
            },
            Object::Bytes(b) => {
                open_tag(s, id, "$bytes");
                s.str(&base64_encode(b));
                s.end_object();
            }
            Object::ByteArray(b) => {
                open_tag(s, id, "$bytearray");
                s.str(&base64_encode(b));
                s.end_object();
            }
            Object::List(items) => {
                if id.is_none() {
                    s.begin_array();
                    tasks.push(EncTask::EndArray);
                } else {
                    open_tag(s, id, "$list");
                    s.begin_array();
                    tasks.push(EncTask::EndObject);
                    tasks.push(EncTask::EndArray);
                }
                tasks.extend(items.iter().rev().map(|&v| EncTask::Emit(v)));
            }
            Object::Tuple(items) => open_seq(s, id, "$tuple", items, tasks),
            Object::Set(set) => open_seq(s, id, "$set", set.items(), tasks),
            Object::FrozenSet(set) => open_seq(s, id, "$frozenset", set.items(), tasks),
            Object::Dict(d) => {
                if self.plain_keys(d.entries()) {
                    s.begin_object();
                    if let Some(n) = id {
                        s.key("$id", false);
                        s.int(n.into());
                    }
                    tasks.push(EncTask::EndObject);
                    for &(k, v) in d.entries().iter().rev() {
                        tasks.push(EncTask::Emit(v));
                        tasks.push(EncTask::DictKey(g.view(k).as_str().expect("checked str key")));
                    }
                } else {
                    open_tag(s, id, "$dict");
                    s.begin_array();
                    tasks.push(EncTask::EndObject);
                    tasks.push(EncTask::EndArray);
                    push_pairs(d.entries(), tasks);
                }
            }
            Object::Global(gl) => {
                open_tag(s, id, "$global");
                s.begin_array();
                s.str(&gl.module);
                s.str(&gl.name);
                s.end_array();
                s.end_object();
            }
            Object::Instance(inst) => {
                open_tag(s, id, "$instance");
                tasks.push(EncTask::EndObject);
                // Pushed last to first: callable, construct, args, kwargs, state, items.
                if !inst.set_items.is_empty() {
                    tasks.push(EncTask::EndArray);
                    tasks.extend(inst.set_items.iter().rev().map(|&v| EncTask::Emit(v)));
                    tasks.push(EncTask::BeginArray);
                    tasks.push(EncTask::Key("setitems"));
                }
                if !inst.dict_items.is_empty() {
                    tasks.push(EncTask::EndArray);
                    push_pairs(&inst.dict_items, tasks);
                    tasks.push(EncTask::BeginArray);
                    tasks.push(EncTask::Key("dictitems"));
                }
                if !inst.list_items.is_empty() {
                    tasks.push(EncTask::EndArray);
                    tasks.extend(inst.list_items.iter().rev().map(|&v| EncTask::Emit(v)));
                    tasks.push(EncTask::BeginArray);
                    tasks.push(EncTask::Key("listitems"));
                }
                if let Some(state) = inst.state {
                    tasks.push(EncTask::Emit(state));
                    tasks.push(EncTask::Key("state"));
                }
                if let Some(kwargs) = inst.kwargs {
                    tasks.push(EncTask::Emit(kwargs));
                    tasks.push(EncTask::Key("kwargs"));
                }
                tasks.push(EncTask::Emit(inst.args));
                tasks.push(EncTask::Key("args"));
                tasks.push(EncTask::Str(construct_name(inst.construct)));
                tasks.push(EncTask::Key("construct"));
                tasks.push(EncTask::Emit(inst.callable));
            }
            Object::PersistentId(pid) => {
                open_tag(s, id, "$persid");
                tasks.push(EncTask::EndObject);
                tasks.push(EncTask::Emit(*pid));
            }
            Object::Extension(code) => {
                open_tag(s, id, "$ext");
                s.int((*code).into());
                s.end_object();
            }
            Object::Buffer(b) => {
                open_tag(s, id, "$buffer");
                s.str(&base64_encode(&b.data));
                s.key("readonly", false);
                s.bool(b.readonly);
                s.end_object();
            }
        }
    }

    /// True when every key is a str JSON can hold that is written by value.
    fn plain_keys(&self, entries: &[(Value, Value)]) -> bool {
        entries.iter().all(|&(k, _)| match k.obj_id() {
            Some(id) => matches!(self.graph.get(id), Object::Str(s) if s.as_str().is_some() && !self.shared(id)),
            None => false,
        })
    }
}

/// `{"$id": id, tag: ` (without `$id` when `None`).
fn open_tag<S: Sink>(s: &mut S, id: Option<u32>, tag: &str) {
    s.begin_object();
    if let Some(n) = id {
        s.key("$id", false);
        s.int(n.into());
    }
    s.key(tag, false);
}

/// `{"$id"?, tag: [items...]}`, the items still to write.
fn open_seq<'g, S: Sink>(s: &mut S, id: Option<u32>, tag: &str, items: &[Value], tasks: &mut Vec<EncTask<'g>>) {
    open_tag(s, id, tag);
    s.begin_array();
    tasks.push(EncTask::EndObject);
    tasks.push(EncTask::EndArray);
    tasks.extend(items.iter().rev().map(|&v| EncTask::Emit(v)));
}

/// Pushes `[k, v]` pairs to write, the first pair on top.
fn push_pairs(pairs: &[(Value, Value)], tasks: &mut Vec<EncTask>) {
    for &(k, v) in pairs.iter().rev() {
        tasks.push(EncTask::EndArray);
        tasks.push(EncTask::Emit(v));
        tasks.push(EncTask::Emit(k));
        tasks.push(EncTask::BeginArray);
    }
}

fn push_children(obj: &Object, stack: &mut Vec<Value>) {
    match obj {
        Object::List(items) | Object::Tuple(items) => stack.extend(items.iter().rev()),
        Object::Dict(d) => {
            for &(k, v) in d.entries().iter().rev() {
                stack.push(v);
                stack.push(k);
            }
        }
        Object::Set(s) | Object::FrozenSet(s) => stack.extend(s.items().iter().rev()),
        Object::Instance(inst) => {
            stack.extend(inst.set_items.iter().rev());
            for &(k, v) in inst.dict_items.iter().rev() {
                stack.push(v);
                stack.push(k);
            }
            stack.extend(inst.list_items.iter().rev());
            stack.extend(inst.state);
            stack.extend(inst.kwargs);
            stack.push(inst.args);
            stack.push(inst.callable);
        }
        Object::PersistentId(pid) => stack.push(*pid),
        Object::Int(_)
        | Object::Complex(..)
        | Object::Str(_)
        | Object::Bytes(_)
        | Object::ByteArray(_)
        | Object::Global(_)
        | Object::Extension(_)
        | Object::Buffer(_) => {}
    }
}

/// Objects whose sharing is not recorded: immutable, small, and loading the same either way.
fn by_value(obj: &Object) -> bool {
    match obj {
        Object::Str(s) => s.as_bytes().len() <= BY_VALUE_MAX_BYTES,
        Object::Bytes(b) => b.len() <= BY_VALUE_MAX_BYTES,
        Object::Int(i) => i.bits() <= 8 * BY_VALUE_MAX_BYTES as u64,
        Object::Tuple(items) => items.is_empty(),
        Object::Complex(..) | Object::Global(_) | Object::Extension(_) => true,
        _ => false,
    }
}

fn construct_name(c: Construct) -> &'static str {
    match c {
        Construct::Reduce => "reduce",
        Construct::NewObj => "newobj",
        Construct::NewObjEx => "newobj_ex",
        Construct::Inst => "inst",
        Construct::Obj => "obj",
    }
}

fn construct_from_name(s: &str) -> Option<Construct> {
    Some(match s {
        "reduce" => Construct::Reduce,
        "newobj" => Construct::NewObj,
        "newobj_ex" => Construct::NewObjEx,
        "inst" => Construct::Inst,
        "obj" => Construct::Obj,
        _ => return None,
    })
}

/// The text of a float that JSON has no number for (`None` for the others).
fn special_float(f: f64) -> Option<&'static str> {
    if f.is_nan() {
        Some("nan")
    } else if f == f64::INFINITY {
        Some("inf")
    } else if f == f64::NEG_INFINITY {
        Some("-inf")
    } else if f == 0.0 && f.is_sign_negative() {
        Some("-0.0")
    } else {
        None
    }
}

fn float_events<S: Sink>(s: &mut S, f: f64) {
    match special_float(f) {
        Some(text) => {
            open_tag(s, None, "$float");
            s.str(text);
            s.end_object();
        }
        None => s.float(f),
    }
}

/// A str with lone surrogates as segments: runs of text as strings, surrogates as numbers.
fn str_segments<S: Sink>(s: &mut S, st: &PyStr) {
    s.begin_array();
    let mut run = String::new();
    for cp in st.code_points() {
        match char::from_u32(cp) {
            Some(c) => run.push(c),
            None => {
                if !run.is_empty() {
                    s.str(&run);
                    run.clear();
                }
                s.int(cp.into());
            }
        }
    }
    if !run.is_empty() {
        s.str(&run);
    }
    s.end_array();
}

/// `{"$id": id, tag: v}` (without `$id` when `None`), for the parser.
fn tagged(id: Option<u32>, tag: &str, v: Json) -> Json {
    let mut m = Map::new();
    if let Some(id) = id {
        m.insert("$id".into(), id.into());
    }
    m.insert(tag.into(), v);
    Json::Object(m)
}

fn float_json(f: f64) -> Json {
    match special_float(f) {
        Some(text) => tagged(None, "$float", Json::String(text.into())),
        None => Json::Number(Number::from_f64(f).expect("finite")),
    }
}

// ---------------------------------------------------------------------------------------------
// Sinks: where the encoder's events go

/// Receives a JSON document as events, in document order.
trait Sink {
    fn begin_array(&mut self);
    fn end_array(&mut self);
    fn begin_object(&mut self);
    fn end_object(&mut self);
    /// An object key; `escape` doubles a leading `$` (a dict key).
    fn key(&mut self, k: &str, escape: bool);
    fn null(&mut self);
    fn bool(&mut self, b: bool);
    fn int(&mut self, i: i64);
    fn uint(&mut self, u: u64);
    /// A finite float.
    fn float(&mut self, f: f64);
    fn str(&mut self, s: &str);
    /// True once writing failed: the rest is skipped.
    fn failed(&self) -> bool {
        false
    }
}

/// Builds a [`serde_json::Value`].
#[derive(Default)]
struct ValueSink {
    stack: Vec<Open>,
    done: Option<Json>,
}

impl ValueSink {
    fn attach(&mut self, v: Json) {
        match self.stack.last_mut() {
            None => self.done = Some(v),
            Some(Open::Array(items)) => items.push(v),
            Some(Open::Object(map, key)) => {
                map.insert(std::mem::take(key), v);
            }
        }
    }
}

impl Sink for ValueSink {
    fn begin_array(&mut self) {
        self.stack.push(Open::Array(Vec::new()));
    }
    fn end_array(&mut self) {
        let Some(Open::Array(items)) = self.stack.pop() else { unreachable!("balanced events") };
        self.attach(Json::Array(items));
    }
    fn begin_object(&mut self) {
        self.stack.push(Open::Object(Map::new(), String::new()));
    }
    fn end_object(&mut self) {
        let Some(Open::Object(map, _)) = self.stack.pop() else { unreachable!("balanced events") };
        self.attach(Json::Object(map));
    }
    fn key(&mut self, k: &str, escape: bool) {
        if let Some(Open::Object(_, key)) = self.stack.last_mut() {
            key.clear();
            if escape && k.starts_with('$') {
                key.push('$');
            }
            key.push_str(k);
        }
    }
    fn null(&mut self) {
        self.attach(Json::Null);
    }
    fn bool(&mut self, b: bool) {
        self.attach(Json::Bool(b));
    }
    fn int(&mut self, i: i64) {
        self.attach(Json::Number(i.into()));
    }
    fn uint(&mut self, u: u64) {
        self.attach(Json::Number(u.into()));
    }
    fn float(&mut self, f: f64) {
        self.attach(float_json(f));
    }
    fn str(&mut self, s: &str) {
        self.attach(Json::String(s.to_owned()));
    }
}

/// Writes compact JSON text, as `json.dumps(obj, ensure_ascii=False, separators=(",", ":"))`.
struct TextSink<'w, W: Write + ?Sized> {
    out: &'w mut W,
    buf: Vec<u8>,
    /// A `,` goes before the next value or key.
    comma: bool,
    err: Option<io::Error>,
}

impl<'w, W: Write + ?Sized> TextSink<'w, W> {
    fn new(out: &'w mut W) -> Self {
        TextSink { out, buf: Vec::with_capacity(1 << 14), comma: false, err: None }
    }

    fn value_start(&mut self) {
        if self.comma {
            self.buf.push(b',');
        }
    }

    fn value_end(&mut self) {
        self.comma = true;
        if self.buf.len() >= 1 << 14 && self.err.is_none() {
            if let Err(e) = self.out.write_all(&self.buf) {
                self.err = Some(e);
            }
            self.buf.clear();
        }
    }

    fn finish(mut self) -> io::Result<()> {
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        self.out.write_all(&self.buf)
    }
}

impl<W: Write + ?Sized> Sink for TextSink<'_, W> {
    fn begin_array(&mut self) {
        self.value_start();
        self.buf.push(b'[');
        self.comma = false;
    }
    fn end_array(&mut self) {
        self.buf.push(b']');
        self.value_end();
    }
    fn begin_object(&mut self) {
        self.value_start();
        self.buf.push(b'{');
        self.comma = false;
    }
    fn end_object(&mut self) {
        self.buf.push(b'}');
        self.value_end();
    }
    fn key(&mut self, k: &str, escape: bool) {
        self.value_start();
        if escape && k.starts_with('$') {
            self.buf.extend_from_slice(b"\"$");
            write_string_body(&mut self.buf, k);
        } else {
            self.buf.push(b'"');
            write_string_body(&mut self.buf, k);
        }
        self.buf.extend_from_slice(b"\":");
        self.comma = false;
    }
    fn null(&mut self) {
        self.value_start();
        self.buf.extend_from_slice(b"null");
        self.value_end();
    }
    fn bool(&mut self, b: bool) {
        self.value_start();
        self.buf.extend_from_slice(if b { b"true" } else { b"false" });
        self.value_end();
    }
    fn int(&mut self, i: i64) {
        self.value_start();
        self.buf.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
        self.value_end();
    }
    fn uint(&mut self, u: u64) {
        self.value_start();
        self.buf.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
        self.value_end();
    }
    fn float(&mut self, f: f64) {
        self.value_start();
        let mut s = String::new();
        format_float(&mut s, f, true);
        self.buf.extend_from_slice(s.as_bytes());
        self.value_end();
    }
    fn str(&mut self, s: &str) {
        self.value_start();
        self.buf.push(b'"');
        write_string_body(&mut self.buf, s);
        self.buf.push(b'"');
        self.value_end();
    }
    fn failed(&self) -> bool {
        self.err.is_some()
    }
}

// ---------------------------------------------------------------------------------------------
// JSON -> graph

/// Builds the graph a JSON document describes (see the [module documentation](self)), with
/// the document's value. Several documents sharing `$id` numbers go through one [`Decoder`].
pub fn from_json(json: &Json) -> Result<(Graph<'static>, Value), JsonError> {
    let mut d = Decoder::new();
    let v = d.decode(json)?;
    Ok((d.into_graph(), v))
}

/// Builds one graph from a sequence of JSON documents (such as the lines of `pikl json`'s
/// output for a stream of pickles). `$id` numbers are shared by all the documents: a
/// `{"$ref": n}` may name an object defined in an earlier one.
///
/// After an error the decoder holds a partly built graph and should be dropped.
#[derive(Default)]
pub struct Decoder {
    graph: Graph<'static>,
    /// `$id` -> (value, document that defined it).
    ids: HashMap<u64, (Value, u32)>,
    doc: u32,
    across: bool,
    /// Per object: 1 + its frame's index while it is being built, else 0.
    open_at: Vec<u32>,
}

#[derive(Clone, Copy)]
struct Seg<'j> {
    key: Option<&'j str>,
    index: Option<usize>,
}

const ROOT: Seg<'static> = Seg { key: None, index: None };

fn at_key(key: &str) -> Seg<'_> {
    Seg { key: Some(key), index: None }
}

fn at_index(key: Option<&str>, i: usize) -> Seg<'_> {
    Seg { key, index: Some(i) }
}

/// A JSON container being decoded: where it is, and what it builds.
struct Frame<'j> {
    seg: Seg<'j>,
    obj: Option<ObjId>,
    /// True while the edges to its children are ones the pickle adds after creating the
    /// object (list items, dict entries, set items, an instance's state and items): a cycle
    /// must go through at least one such edge.
    mutation: bool,
    /// Number of frames up to and including this one with `mutation` set.
    prefix: u32,
}

enum DecTask<'j> {
    Decode(&'j Json, Seg<'j>),
    /// A `[key, value]` pair of `$dict` or `dictitems`.
    Pair(&'j Json, Seg<'j>),
    EmptyTuple,
    EndPair,
    EndList {
        obj: ObjId,
        n: usize,
    },
    EndTuple {
        obj: ObjId,
        n: usize,
    },
    EndSet {
        obj: ObjId,
        n: usize,
    },
    EndDictObj {
        obj: ObjId,
        map: &'j Map<String, Json>,
    },
    EndDictPairs {
        obj: ObjId,
        n: usize,
    },
    InstanceHead {
        obj: ObjId,
        kwargs: bool,
    },
    EndInstance {
        obj: ObjId,
        state: bool,
        list: usize,
        dict: usize,
        set: usize,
    },
    EndPersId {
        obj: ObjId,
    },
}

/// The tags of the mapping and the other keys their objects may have.
fn tag_fields(tag: &str) -> Option<&'static [&'static str]> {
    Some(match tag {
        "$ref" | "$list" | "$tuple" | "$set" | "$frozenset" | "$dict" | "$bytes" | "$bytearray" | "$int" | "$float"
        | "$complex" | "$str" | "$global" | "$persid" | "$ext" => &[],
        "$buffer" => &["readonly"],
        "$instance" => &["construct", "args", "kwargs", "state", "listitems", "dictitems", "setitems"],
        _ => return None,
    })
}

fn is_tag(key: &str) -> bool {
    key.starts_with('$') && !key.starts_with("$$")
}

impl Decoder {
    /// A decoder with an empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// The graph built so far.
    pub fn graph(&self) -> &Graph<'static> {
        &self.graph
    }

    /// The graph, giving up the decoder.
    pub fn into_graph(self) -> Graph<'static> {
        self.graph
    }

    /// True when some document referred (`$ref`) to an object defined in an earlier one.
    pub fn refers_across(&self) -> bool {
        self.across
    }

    /// Adds the objects of one document to the graph and returns its value.
    pub fn decode(&mut self, json: &Json) -> Result<Value, JsonError> {
        let mut frames: Vec<Frame> = Vec::new();
        let res = self.run(json, &mut frames);
        for f in &frames {
            if let Some(id) = f.obj {
                self.open_at[id.index()] = 0;
            }
        }
        self.doc += 1;
        res
    }

    fn run<'j>(&mut self, json: &'j Json, frames: &mut Vec<Frame<'j>>) -> Result<Value, JsonError> {
        let mut tasks = vec![DecTask::Decode(json, ROOT)];
        let mut vals: Vec<Value> = Vec::new();
        while let Some(task) = tasks.pop() {
            match task {
                DecTask::Decode(j, seg) => self.decode_one(j, seg, frames, &mut tasks, &mut vals)?,
                DecTask::Pair(j, seg) => match j {
                    Json::Array(kv) if kv.len() == 2 => {
                        self.push_frame(frames, seg, None, false);
                        tasks.push(DecTask::EndPair);
                        tasks.push(DecTask::Decode(&kv[1], at_index(None, 1)));
                        tasks.push(DecTask::Decode(&kv[0], at_index(None, 0)));
                    }
                    _ => return Err(err(frames, seg, "expected a [key, value] pair")),
                },
                DecTask::EmptyTuple => vals.push(self.graph.tuple(Vec::new())),
                DecTask::EndPair => self.pop_frame(frames),
                DecTask::EndList { obj, n } => {
                    let items = vals.split_off(vals.len() - n);
                    *self.graph.get_mut(obj) = Object::List(items.into());
                    self.pop_frame(frames);
                    vals.push(Value::Obj(obj));
                }
                DecTask::EndTuple { obj, n } => {
                    let items = vals.split_off(vals.len() - n);
                    *self.graph.get_mut(obj) = Object::Tuple(items.into());
                    self.pop_frame(frames);
                    vals.push(Value::Obj(obj));
                }
                DecTask::EndSet { obj, n } => {
                    let items = vals.split_off(vals.len() - n);
                    self.graph
                        .set_add_all(obj, items)
                        .map_err(|e| err(frames, ROOT, format!("unhashable type: '{}'", e.0)))?;
                    self.pop_frame(frames);
                    vals.push(Value::Obj(obj));
                }
                DecTask::EndDictObj { obj, map } => {
                    let keys: Vec<&String> = map.keys().filter(|k| *k != "$id").collect();
                    let values = vals.split_off(vals.len() - keys.len());
                    let mut entries = Vec::with_capacity(keys.len());
                    for (k, v) in keys.into_iter().zip(values) {
                        let k = k.strip_prefix('$').unwrap_or(k);
                        entries.push((self.graph.str(k.to_owned()), v));
                    }
                    self.graph.dict_set_all(obj, entries).expect("str keys are hashable");
                    self.pop_frame(frames);
                    vals.push(Value::Obj(obj));
                }
                DecTask::EndDictPairs { obj, n } => {
                    let flat = vals.split_off(vals.len() - 2 * n);
                    let pairs: Vec<_> = flat.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                    self.graph
                        .dict_set_all(obj, pairs)
                        .map_err(|e| err(frames, ROOT, format!("unhashable type: '{}'", e.0)))?;
                    self.pop_frame(frames);
                    vals.push(Value::Obj(obj));
                }
                DecTask::InstanceHead { obj, kwargs } => {
                    let kwargs = if kwargs { vals.pop() } else { None };
                    let args = vals.pop().expect("args");
                    let callable = vals.pop().expect("callable");
                    if let Object::Instance(inst) = self.graph.get_mut(obj) {
                        inst.callable = callable;
                        inst.args = args;
                        inst.kwargs = kwargs;
                    }
                    // The instance exists from here on: its state and items may refer to it.
                    let top = frames.len() - 1;
                    frames[top].mutation = true;
                    frames[top].prefix += 1;
                }
                DecTask::EndInstance { obj, state, list, dict, set } => {
                    let set_items = vals.split_off(vals.len() - set);
                    let flat = vals.split_off(vals.len() - 2 * dict);
                    let list_items = vals.split_off(vals.len() - list);
                    let state = if state { vals.pop() } else { None };
                    if let Object::Instance(inst) = self.graph.get_mut(obj) {
                        inst.state = state;
                        inst.list_items = list_items;
                        inst.dict_items = flat.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                        inst.set_items = set_items;
                    }
                    self.pop_frame(frames);
                    vals.push(Value::Obj(obj));
                }
                DecTask::EndPersId { obj } => {
                    let pid = vals.pop().expect("persistent id");
                    *self.graph.get_mut(obj) = Object::PersistentId(pid);
                    self.pop_frame(frames);
                    vals.push(Value::Obj(obj));
                }
            }
        }
        debug_assert_eq!(vals.len(), 1);
        Ok(vals.pop().expect("one value"))
    }

    fn push_frame<'j>(&mut self, frames: &mut Vec<Frame<'j>>, seg: Seg<'j>, obj: Option<ObjId>, mutation: bool) {
        let prefix = frames.last().map_or(0, |f| f.prefix) + mutation as u32;
        frames.push(Frame { seg, obj, mutation, prefix });
        if let Some(id) = obj {
            if self.open_at.len() <= id.index() {
                self.open_at.resize(self.graph.len().max(id.index() + 1), 0);
            }
            self.open_at[id.index()] = frames.len() as u32;
        }
    }

    fn pop_frame(&mut self, frames: &mut Vec<Frame>) {
        let f = frames.pop().expect("open frame");
        if let Some(id) = f.obj {
            self.open_at[id.index()] = 0;
        }
    }

    /// Records `$id` for `v`.
    fn register(&mut self, frames: &[Frame], seg: Seg, id: Option<u64>, v: Value) -> Result<(), JsonError> {
        let Some(n) = id else { return Ok(()) };
        if v.obj_id().is_none() {
            return Err(err(frames, seg, "\"$id\" on a value that is not an object"));
        }
        if self.ids.insert(n, (v, self.doc)).is_some() {
            return Err(err(frames, seg, format!("duplicate \"$id\" {n}")));
        }
        Ok(())
    }

    /// Adds an empty object that its children fill in later, with its frame.
    fn open<'j>(
        &mut self,
        frames: &mut Vec<Frame<'j>>,
        seg: Seg<'j>,
        id: Option<u64>,
        obj: Object<'static>,
        mutation: bool,
    ) -> Result<ObjId, JsonError> {
        let v = self.graph.add(obj);
        self.register(frames, seg, id, v)?;
        let oid = v.obj_id().expect("object");
        self.push_frame(frames, seg, Some(oid), mutation);
        Ok(oid)
    }

    fn decode_one<'j>(
        &mut self,
        j: &'j Json,
        seg: Seg<'j>,
        frames: &mut Vec<Frame<'j>>,
        tasks: &mut Vec<DecTask<'j>>,
        vals: &mut Vec<Value>,
    ) -> Result<(), JsonError> {
        let v = match j {
            Json::Null => Value::None,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => number_value(&mut self.graph, n),
            Json::String(s) => self.graph.str(s.clone()),
            Json::Array(items) => {
                let obj = self.open(frames, seg, None, Object::List(Items::new()), true)?;
                push_items(tasks, DecTask::EndList { obj, n: items.len() }, None, items);
                return Ok(());
            }
            Json::Object(map) => return self.decode_object(map, seg, frames, tasks, vals),
        };
        vals.push(v);
        Ok(())
    }

    fn decode_object<'j>(
        &mut self,
        map: &'j Map<String, Json>,
        seg: Seg<'j>,
        frames: &mut Vec<Frame<'j>>,
        tasks: &mut Vec<DecTask<'j>>,
        vals: &mut Vec<Value>,
    ) -> Result<(), JsonError> {
        let mut id = None;
        let mut tag: Option<(&'j str, &'j Json)> = None;
        for (k, v) in map {
            if k == "$id" {
                id = Some(v.as_u64().ok_or_else(|| err(frames, seg, "\"$id\" must be a non-negative integer"))?);
            } else if is_tag(k) {
                if let Some((t, _)) = tag {
                    return Err(err(frames, seg, format!("an object has one tag, not both {t} and {k}")));
                }
                tag = Some((k, v));
            }
        }
        let Some((tag, tv)) = tag else {
            // A dict with str keys.
            let obj = self.open(frames, seg, id, Object::Dict(Default::default()), true)?;
            tasks.push(DecTask::EndDictObj { obj, map });
            let entries: Vec<(&'j String, &'j Json)> = map.iter().filter(|(k, _)| *k != "$id").collect();
            tasks.extend(entries.into_iter().rev().map(|(k, v)| DecTask::Decode(v, at_key(k))));
            return Ok(());
        };
        let fields = tag_fields(tag).ok_or_else(|| err(frames, seg, format!("unknown tag \"{tag}\"")))?;
        for k in map.keys() {
            if k != tag && k != "$id" && !fields.contains(&k.as_str()) {
                return Err(err(frames, seg, format!("unexpected key \"{k}\" in a \"{tag}\" object")));
            }
        }
        let inner = at_key(tag);
        let array = |frames: &[Frame]| -> Result<&'j Vec<Json>, JsonError> {
            tv.as_array().ok_or_else(|| err(frames, inner, format!("\"{tag}\" takes an array")))
        };
        let string = |frames: &[Frame]| -> Result<&'j str, JsonError> {
            tv.as_str().ok_or_else(|| err(frames, inner, format!("\"{tag}\" takes a string")))
        };
        let v = match tag {
            "$ref" => {
                if map.len() != 1 {
                    return Err(err(frames, seg, "a \"$ref\" object has no other key"));
                }
                let n = tv.as_u64().ok_or_else(|| err(frames, inner, "\"$ref\" takes a non-negative integer"))?;
                let &(v, doc) =
                    self.ids.get(&n).ok_or_else(|| err(frames, inner, format!("no \"$id\" {n} before this")))?;
                if doc != self.doc {
                    self.across = true;
                }
                if let Some(oid) = v.obj_id() {
                    let at = self.open_at.get(oid.index()).copied().unwrap_or(0) as usize;
                    if at != 0 {
                        let f = &frames[at - 1];
                        let top = frames.last().expect("open frame").prefix;
                        if top - f.prefix + f.mutation as u32 == 0 {
                            return Err(err(
                                frames,
                                seg,
                                format!(
                                    "\"$ref\" {n} makes a cycle that goes through no list, dict, set, or \
                                     instance state or items: no pickle builds that"
                                ),
                            ));
                        }
                    }
                }
                v
            }
            "$list" => {
                let items = array(frames)?;
                let obj = self.open(frames, seg, id, Object::List(Items::new()), true)?;
                push_items(tasks, DecTask::EndList { obj, n: items.len() }, Some(tag), items);
                return Ok(());
            }
            "$tuple" => {
                let items = array(frames)?;
                let obj = self.open(frames, seg, id, Object::Tuple(Items::new()), false)?;
                push_items(tasks, DecTask::EndTuple { obj, n: items.len() }, Some(tag), items);
                return Ok(());
            }
            "$set" | "$frozenset" => {
                let items = array(frames)?;
                let (empty, mutation) = if tag == "$set" {
                    (Object::Set(Default::default()), true)
                } else {
                    (Object::FrozenSet(Default::default()), false)
                };
                let obj = self.open(frames, seg, id, empty, mutation)?;
                push_items(tasks, DecTask::EndSet { obj, n: items.len() }, Some(tag), items);
                return Ok(());
            }
            "$dict" => {
                let pairs = array(frames)?;
                let obj = self.open(frames, seg, id, Object::Dict(Default::default()), true)?;
                tasks.push(DecTask::EndDictPairs { obj, n: pairs.len() });
                tasks.extend(pairs.iter().enumerate().rev().map(|(i, p)| DecTask::Pair(p, at_index(Some(tag), i))));
                return Ok(());
            }
            "$persid" => {
                let obj = self.open(frames, seg, id, Object::PersistentId(Value::None), false)?;
                tasks.push(DecTask::EndPersId { obj });
                tasks.push(DecTask::Decode(tv, inner));
                return Ok(());
            }
            "$instance" => return self.decode_instance(map, tv, id, seg, frames, tasks),
            "$str" => {
                let s = match tv {
                    Json::String(s) => PyStr::new(s.clone()),
                    Json::Array(segs) => {
                        let mut bytes = Vec::new();
                        for (i, part) in segs.iter().enumerate() {
                            match part {
                                Json::String(s) => bytes.extend_from_slice(s.as_bytes()),
                                Json::Number(n) => match n.as_u64().filter(|&c| c <= 0x10FFFF) {
                                    Some(c) => push_code_point(&mut bytes, c as u32),
                                    None => return Err(err(frames, at_index(Some(tag), i), "not a code point")),
                                },
                                _ => {
                                    return Err(err(
                                        frames,
                                        at_index(Some(tag), i),
                                        "\"$str\" segments are strings and code points",
                                    ))
                                }
                            }
                        }
                        PyStr::from_surrogatepass(bytes).expect("built from code points")
                    }
                    _ => return Err(err(frames, inner, "\"$str\" takes a string or an array of segments")),
                };
                self.graph.add(Object::Str(s))
            }
            "$bytes" => {
                let b = base64_decode(string(frames)?).ok_or_else(|| err(frames, inner, "invalid base64"))?;
                self.graph.add(Object::Bytes(Cow::Owned(b)))
            }
            "$bytearray" => {
                let b = base64_decode(string(frames)?).ok_or_else(|| err(frames, inner, "invalid base64"))?;
                self.graph.add(Object::ByteArray(b))
            }
            "$buffer" => {
                let data = base64_decode(string(frames)?).ok_or_else(|| err(frames, inner, "invalid base64"))?;
                let readonly = match map.get("readonly") {
                    None => false,
                    Some(Json::Bool(b)) => *b,
                    Some(_) => return Err(err(frames, at_key("readonly"), "\"readonly\" takes true or false")),
                };
                self.graph.add(Object::Buffer(PickleBuffer { data, readonly }))
            }
            "$int" => {
                let s = string(frames)?;
                let digits = s.strip_prefix('-').unwrap_or(s);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err(frames, inner, "\"$int\" takes a decimal integer string"));
                }
                let i: BigInt = s.parse().map_err(|_| err(frames, inner, "\"$int\" takes a decimal integer string"))?;
                self.graph.int(i)
            }
            "$float" => Value::Float(
                parse_float_text(string(frames)?)
                    .ok_or_else(|| err(frames, inner, "\"$float\" takes \"nan\", \"inf\", \"-inf\" or a number"))?,
            ),
            "$complex" => {
                let parts = array(frames)?;
                let [re, im] = parts.as_slice() else {
                    return Err(err(frames, inner, "\"$complex\" takes [real, imag]"));
                };
                let part = |j: &Json, i: usize| {
                    json_float(j).ok_or_else(|| err(frames, at_index(Some(tag), i), "expected a number"))
                };
                let (re, im) = (part(re, 0)?, part(im, 1)?);
                self.graph.add(Object::Complex(re, im))
            }
            "$global" => {
                let parts = array(frames)?;
                let (Some(module), Some(name)) =
                    (parts.first().and_then(Json::as_str), parts.get(1).and_then(Json::as_str))
                else {
                    return Err(err(frames, inner, "\"$global\" takes [module, name]"));
                };
                if parts.len() != 2 {
                    return Err(err(frames, inner, "\"$global\" takes [module, name]"));
                }
                self.graph.add(Object::Global(Box::new(Global::new(module.to_owned(), name.to_owned()))))
            }
            "$ext" => {
                let code = tv
                    .as_u64()
                    .and_then(|c| u32::try_from(c).ok())
                    .ok_or_else(|| err(frames, inner, "\"$ext\" takes an extension code"))?;
                self.graph.add(Object::Extension(code))
            }
            _ => unreachable!("tag_fields knows every tag"),
        };
        if tag != "$ref" {
            self.register(frames, seg, id, v)?;
        } else if id.is_some() {
            return Err(err(frames, seg, "a \"$ref\" object has no other key"));
        }
        vals.push(v);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn decode_instance<'j>(
        &mut self,
        map: &'j Map<String, Json>,
        callable: &'j Json,
        id: Option<u64>,
        seg: Seg<'j>,
        frames: &mut Vec<Frame<'j>>,
        tasks: &mut Vec<DecTask<'j>>,
    ) -> Result<(), JsonError> {
        let construct = match map.get("construct") {
            None => Construct::Reduce,
            Some(Json::String(s)) => construct_from_name(s).ok_or_else(|| {
                err(frames, at_key("construct"), "expected \"reduce\", \"newobj\", \"newobj_ex\", \"inst\" or \"obj\"")
            })?,
            Some(_) => return Err(err(frames, at_key("construct"), "\"construct\" takes a string")),
        };
        let items = |name: &'static str, frames: &[Frame]| -> Result<&'j [Json], JsonError> {
            match map.get(name) {
                None => Ok(&[]),
                Some(Json::Array(a)) => Ok(a),
                Some(_) => Err(err(frames, at_key(name), format!("\"{name}\" takes an array"))),
            }
        };
        let (list, dict, set) = (items("listitems", frames)?, items("dictitems", frames)?, items("setitems", frames)?);
        let state = map.get("state");
        let kwargs = map.get("kwargs");
        let placeholder = Instance::new(Value::None, construct, Value::None, None);
        let obj = self.open(frames, seg, id, Object::Instance(Box::new(placeholder)), false)?;
        tasks.push(DecTask::EndInstance {
            obj,
            state: state.is_some(),
            list: list.len(),
            dict: dict.len(),
            set: set.len(),
        });
        tasks.extend(set.iter().enumerate().rev().map(|(i, j)| DecTask::Decode(j, at_index(Some("setitems"), i))));
        tasks.extend(dict.iter().enumerate().rev().map(|(i, j)| DecTask::Pair(j, at_index(Some("dictitems"), i))));
        tasks.extend(list.iter().enumerate().rev().map(|(i, j)| DecTask::Decode(j, at_index(Some("listitems"), i))));
        if let Some(s) = state {
            tasks.push(DecTask::Decode(s, at_key("state")));
        }
        tasks.push(DecTask::InstanceHead { obj, kwargs: kwargs.is_some() });
        if let Some(k) = kwargs {
            tasks.push(DecTask::Decode(k, at_key("kwargs")));
        }
        match map.get("args") {
            Some(a) => tasks.push(DecTask::Decode(a, at_key("args"))),
            None => tasks.push(DecTask::EmptyTuple),
        }
        tasks.push(DecTask::Decode(callable, at_key("$instance")));
        Ok(())
    }
}

/// Pushes the end task, then the items to decode (first item on top).
fn push_items<'j>(tasks: &mut Vec<DecTask<'j>>, end: DecTask<'j>, key: Option<&'j str>, items: &'j [Json]) {
    tasks.push(end);
    tasks.extend(items.iter().enumerate().rev().map(|(i, j)| DecTask::Decode(j, at_index(key, i))));
}

fn number_value(graph: &mut Graph<'static>, n: &Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::Int(i)
    } else if let Some(u) = n.as_u64() {
        graph.int(BigInt::from(u))
    } else {
        Value::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// A float from a JSON number or a `{"$float": ...}` object.
fn json_float(j: &Json) -> Option<f64> {
    match j {
        Json::Number(n) => n.as_f64(),
        Json::Object(m) if m.len() == 1 => m.get("$float").and_then(Json::as_str).and_then(parse_float_text),
        _ => None,
    }
}

fn parse_float_text(s: &str) -> Option<f64> {
    match s {
        "nan" => Some(f64::NAN),
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ if s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')) => s.parse().ok(),
        _ => None,
    }
}

/// A mapping error at `seg` below the open frames.
fn err(frames: &[Frame], seg: Seg, message: impl Into<String>) -> JsonError {
    let mut path = String::new();
    for s in frames.iter().map(|f| f.seg).chain(std::iter::once(seg)) {
        if let Some(k) = s.key {
            path.push('/');
            path.push_str(&k.replace('~', "~0").replace('/', "~1"));
        }
        if let Some(i) = s.index {
            path.push('/');
            path.push_str(itoa::Buffer::new().format(i));
        }
    }
    JsonError::mapping(path, message)
}

// ---------------------------------------------------------------------------------------------
// Text

/// Writes `json` as compact JSON text on one line, as Python's
/// `json.dumps(obj, ensure_ascii=False, separators=(",", ":"))` writes it: floats as `repr()`
/// writes them, non-ASCII text as UTF-8, control characters escaped.
pub fn write_json<W: Write + ?Sized>(json: &Json, out: &mut W) -> io::Result<()> {
    enum Frame<'j> {
        Array(std::slice::Iter<'j, Json>),
        Object(serde_json::map::Iter<'j>),
    }
    let mut s = TextSink::new(out);
    let mut stack: Vec<Frame> = Vec::new();
    let mut next = Some(json);
    loop {
        if let Some(j) = next.take() {
            match j {
                Json::Null => s.null(),
                Json::Bool(b) => s.bool(*b),
                Json::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        s.int(i)
                    } else if let Some(u) = n.as_u64() {
                        s.uint(u)
                    } else {
                        s.float(n.as_f64().unwrap_or(f64::NAN))
                    }
                }
                Json::String(text) => s.str(text),
                Json::Array(a) => {
                    s.begin_array();
                    stack.push(Frame::Array(a.iter()));
                }
                Json::Object(m) => {
                    s.begin_object();
                    stack.push(Frame::Object(m.iter()));
                }
            }
        }
        if s.failed() {
            break;
        }
        match stack.last_mut() {
            None => break,
            Some(Frame::Array(it)) => match it.next() {
                Some(j) => next = Some(j),
                None => {
                    s.end_array();
                    stack.pop();
                }
            },
            Some(Frame::Object(it)) => match it.next() {
                Some((k, j)) => {
                    s.key(k, false);
                    next = Some(j);
                }
                None => {
                    s.end_object();
                    stack.pop();
                }
            },
        }
    }
    s.finish()
}

/// `json` as compact JSON text (see [`write_json`]).
pub fn to_string(json: &Json) -> String {
    let mut out = Vec::new();
    write_json(json, &mut out).expect("writing to a Vec");
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// Appends `s` with JSON escapes, without the quotes.
fn write_string_body(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0..0x20 => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[(b >> 4) as usize]);
            buf.push(HEX[(b & 15) as usize]);
        } else {
            buf.extend_from_slice(esc);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

/// Drops a JSON value without recursing (`serde_json::Value`'s own `Drop` recurses, and
/// overflows the stack on values nested some ten thousand deep).
pub fn drop_json(json: Json) {
    let mut stack = vec![json];
    while let Some(j) = stack.pop() {
        match j {
            Json::Array(items) => stack.extend(items.into_iter().filter(is_container)),
            Json::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v).filter(is_container)),
            _ => {}
        }
    }
}

fn is_container(j: &Json) -> bool {
    matches!(j, Json::Array(a) if !a.is_empty()) || matches!(j, Json::Object(m) if !m.is_empty())
}

/// Parses one JSON document (whitespace around it allowed), without recursing.
///
/// Beyond strict JSON it reads what Python's `json.dumps` writes: `NaN`, `Infinity` and
/// `-Infinity` become `{"$float": ...}`, integers beyond 64 bits become `{"$int": "..."}` and
/// numbers that overflow a float become `{"$float": "inf"}`, and a string with lone surrogate
/// escapes (`"\ud800"`) becomes the `{"$str": [...]}` form (an object key cannot have one).
/// Duplicate keys keep the last value, in the place of the first.
pub fn parse(text: &str) -> Result<Json, JsonError> {
    let mut docs = Documents::new(text);
    match docs.next() {
        None => Err(JsonError::syntax(text.as_bytes(), text.len(), "expected a JSON value")),
        Some(Err(e)) => Err(e),
        Some(Ok((_, j))) => match docs.next() {
            None => Ok(j),
            Some(Ok((at, extra))) => {
                drop_json(j);
                drop_json(extra);
                Err(JsonError::syntax(text.as_bytes(), at, "extra data after the JSON document"))
            }
            Some(Err(e)) => {
                drop_json(j);
                Err(e)
            }
        },
    }
}

/// The JSON documents of a text, one after another, separated by whitespace (JSON Lines, or
/// concatenated documents). Yields each document's starting byte offset; stops after an error.
pub struct Documents<'t> {
    text: &'t [u8],
    pos: usize,
    failed: bool,
}

impl<'t> Documents<'t> {
    /// The documents of `text`.
    pub fn new(text: &'t str) -> Self {
        Documents { text: text.as_bytes(), pos: 0, failed: false }
    }
}

impl Iterator for Documents<'_> {
    type Item = Result<(usize, Json), JsonError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let mut p = Parser { text: self.text, pos: self.pos };
        p.skip_ws();
        if p.pos >= self.text.len() {
            return None;
        }
        let start = p.pos;
        let res = p.value();
        if res.is_ok() {
            let end = p.pos;
            p.skip_ws();
            // Documents must be separated: `[1][2]` is fine, `12 3` too, `1true` is not.
            if p.pos == end
                && p.pos < self.text.len()
                && !matches!(self.text[end - 1], b']' | b'}' | b'"')
                && !matches!(self.text[p.pos], b'[' | b'{' | b'"')
            {
                if let Ok(j) = res {
                    drop_json(j);
                }
                self.failed = true;
                return Some(Err(JsonError::syntax(self.text, p.pos, "expected whitespace between documents")));
            }
        }
        self.pos = p.pos;
        match res {
            Ok(j) => Some(Ok((start, j))),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

struct Parser<'t> {
    text: &'t [u8],
    pos: usize,
}

enum Open {
    Array(Vec<Json>),
    Object(Map<String, Json>, String),
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.pos) {
            self.pos += 1;
        }
    }

    fn error(&self, message: impl Into<String>) -> JsonError {
        JsonError::syntax(self.text, self.pos, message)
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    /// One value, with an explicit stack of the arrays and objects still open.
    fn value(&mut self) -> Result<Json, JsonError> {
        let mut stack: Vec<Open> = Vec::new();
        let res = self.value_inner(&mut stack);
        for open in stack {
            match open {
                Open::Array(items) => items.into_iter().for_each(drop_json),
                Open::Object(map, _) => drop_json(Json::Object(map)),
            }
        }
        res
    }

    fn value_inner(&mut self, stack: &mut Vec<Open>) -> Result<Json, JsonError> {
        'value: loop {
            self.skip_ws();
            let mut v = match self.peek() {
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        Json::Array(Vec::new())
                    } else {
                        stack.push(Open::Array(Vec::new()));
                        continue 'value;
                    }
                }
                Some(b'{') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        Json::Object(Map::new())
                    } else {
                        let key = self.key()?;
                        stack.push(Open::Object(Map::new(), key));
                        continue 'value;
                    }
                }
                Some(b'"') => self.string_value()?,
                Some(b't') => self.literal("true", Json::Bool(true))?,
                Some(b'f') => self.literal("false", Json::Bool(false))?,
                Some(b'n') => self.literal("null", Json::Null)?,
                Some(b'N') => self.literal("NaN", float_json(f64::NAN))?,
                Some(b'I') => self.literal("Infinity", float_json(f64::INFINITY))?,
                Some(b'-') if self.text.get(self.pos + 1) == Some(&b'I') => {
                    self.pos += 1;
                    self.literal("Infinity", float_json(f64::NEG_INFINITY))?
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(_) => return Err(self.error("expected a JSON value")),
                None => return Err(self.error("unexpected end of the text: expected a JSON value")),
            };
            // Attach `v` to the innermost open container, closing those that end here.
            loop {
                match stack.last_mut() {
                    None => return Ok(v),
                    Some(Open::Array(items)) => {
                        items.push(v);
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                continue 'value;
                            }
                            Some(b']') => {
                                self.pos += 1;
                                let Some(Open::Array(items)) = stack.pop() else { unreachable!() };
                                v = Json::Array(items);
                            }
                            _ => return Err(self.error("expected ',' or ']'")),
                        }
                    }
                    Some(Open::Object(map, key)) => {
                        if let Some(old) = map.insert(std::mem::take(key), v) {
                            drop_json(old);
                        }
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                self.skip_ws();
                                *key = self.key()?;
                                continue 'value;
                            }
                            Some(b'}') => {
                                self.pos += 1;
                                let Some(Open::Object(map, _)) = stack.pop() else { unreachable!() };
                                v = Json::Object(map);
                            }
                            _ => return Err(self.error("expected ',' or '}'")),
                        }
                    }
                }
            }
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, JsonError> {
        if self.text[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.error("expected a JSON value"))
        }
    }

    /// An object key and the `:` after it.
    fn key(&mut self) -> Result<String, JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a string key"));
        }
        let start = self.pos;
        let (s, lone) = self.string()?;
        if lone {
            self.pos = start;
            return Err(self.error("an object key cannot hold a lone surrogate (use the \"$dict\" form)"));
        }
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.error("expected ':'"));
        }
        self.pos += 1;
        Ok(s)
    }

    fn string_value(&mut self) -> Result<Json, JsonError> {
        let start = self.pos;
        let (s, lone) = self.string()?;
        if !lone {
            return Ok(Json::String(s));
        }
        // Parse again, as segments.
        self.pos = start + 1;
        let mut segs = Vec::new();
        let mut run = String::new();
        loop {
            match self.char_or_escape()? {
                None => break,
                Some(Ok(c)) => run.push(c),
                Some(Err(cp)) => {
                    if !run.is_empty() {
                        segs.push(Json::String(std::mem::take(&mut run)));
                    }
                    segs.push(Json::Number(cp.into()));
                }
            }
        }
        if !run.is_empty() {
            segs.push(Json::String(run));
        }
        Ok(tagged(None, "$str", Json::Array(segs)))
    }

    /// A string; true when it has a lone surrogate escape (left out of the text).
    fn string(&mut self) -> Result<(String, bool), JsonError> {
        self.pos += 1;
        let mut out = String::new();
        let mut lone = false;
        loop {
            // Copy a run of plain characters at once.
            let run = self.text[self.pos..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            let end = self.pos + run.unwrap_or(self.text.len() - self.pos);
            out.push_str(std::str::from_utf8(&self.text[self.pos..end]).map_err(|_| self.error("invalid UTF-8"))?);
            self.pos = end;
            match self.char_or_escape()? {
                None => return Ok((out, lone)),
                Some(Ok(c)) => out.push(c),
                Some(Err(_)) => lone = true,
            }
        }
    }

    /// The next character of a string: `None` at the closing quote, `Err(cp)` for a lone
    /// surrogate escape.
    fn char_or_escape(&mut self) -> Result<Option<Result<char, u32>>, JsonError> {
        let Some(b) = self.peek() else { return Err(self.error("unterminated string")) };
        match b {
            b'"' => {
                self.pos += 1;
                Ok(None)
            }
            b'\\' => {
                let c = match self.text.get(self.pos + 1) {
                    Some(b'"') => '"',
                    Some(b'\\') => '\\',
                    Some(b'/') => '/',
                    Some(b'b') => '\u{8}',
                    Some(b'f') => '\u{c}',
                    Some(b'n') => '\n',
                    Some(b'r') => '\r',
                    Some(b't') => '\t',
                    Some(b'u') => {
                        let hi = self.hex4(self.pos + 2)?;
                        self.pos += 6;
                        if (0xD800..0xDC00).contains(&hi)
                            && self.text.get(self.pos) == Some(&b'\\')
                            && self.text.get(self.pos + 1) == Some(&b'u')
                        {
                            let lo = self.hex4(self.pos + 2)?;
                            if (0xDC00..0xE000).contains(&lo) {
                                self.pos += 6;
                                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                return Ok(Some(Ok(char::from_u32(cp).expect("valid pair"))));
                            }
                        }
                        return Ok(Some(char::from_u32(hi).ok_or(hi)));
                    }
                    _ => return Err(self.error("invalid escape")),
                };
                self.pos += 2;
                Ok(Some(Ok(c)))
            }
            0..0x20 => Err(self.error("control character in a string")),
            _ => {
                let len = match b {
                    0..0x80 => 1,
                    0xC0..0xE0 => 2,
                    0xE0..0xF0 => 3,
                    _ => 4,
                };
                let end = (self.pos + len).min(self.text.len());
                let s = std::str::from_utf8(&self.text[self.pos..end]).map_err(|_| self.error("invalid UTF-8"))?;
                self.pos = end;
                Ok(Some(Ok(s.chars().next().expect("one char"))))
            }
        }
    }

    fn hex4(&self, at: usize) -> Result<u32, JsonError> {
        let digits = self.text.get(at..at + 4).ok_or_else(|| self.error("invalid \\u escape"))?;
        let s = std::str::from_utf8(digits).map_err(|_| self.error("invalid \\u escape"))?;
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("invalid \\u escape"));
        }
        u32::from_str_radix(s, 16).map_err(|_| self.error("invalid \\u escape"))
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.pos;
        let t = self.text;
        let mut p = self.pos;
        if t.get(p) == Some(&b'-') {
            p += 1;
        }
        let digits = |p: &mut usize| {
            let s = *p;
            while t.get(*p).is_some_and(u8::is_ascii_digit) {
                *p += 1;
            }
            *p - s
        };
        let int_start = p;
        let n = digits(&mut p);
        if n == 0 || (n > 1 && t[int_start] == b'0') {
            self.pos = int_start;
            return Err(self.error("invalid number"));
        }
        let mut float = false;
        if t.get(p) == Some(&b'.') {
            p += 1;
            float = true;
            if digits(&mut p) == 0 {
                self.pos = p;
                return Err(self.error("invalid number: expected digits after '.'"));
            }
        }
        if let Some(b'e' | b'E') = t.get(p) {
            p += 1;
            float = true;
            if let Some(b'+' | b'-') = t.get(p) {
                p += 1;
            }
            if digits(&mut p) == 0 {
                self.pos = p;
                return Err(self.error("invalid number: expected exponent digits"));
            }
        }
        self.pos = p;
        let s = std::str::from_utf8(&t[start..p]).expect("ASCII");
        if float {
            let f: f64 = s.parse().map_err(|_| self.error("invalid number"))?;
            return Ok(if f.is_finite() { Json::Number(Number::from_f64(f).expect("finite")) } else { float_json(f) });
        }
        if let Ok(i) = s.parse::<i64>() {
            Ok(Json::Number(i.into()))
        } else if let Ok(u) = s.parse::<u64>() {
            Ok(Json::Number(u.into()))
        } else {
            Ok(tagged(None, "$int", Json::String(s.to_owned())))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Base64 (RFC 4648, standard alphabet, padded)

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `data` in standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` if `s` is not base64.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    let s = s.strip_suffix(b"==").or_else(|| s.strip_suffix(b"=")).unwrap_or(s);
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            };
            n |= (v as u32) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for n in 0..20 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let e = base64_encode(&data);
            assert_eq!(e.len() % 4, 0);
            assert_eq!(base64_decode(&e).unwrap(), data);
            assert_eq!(base64_decode(e.trim_end_matches('=')).unwrap(), data);
        }
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("a*==").is_none());
    }

    #[test]
    fn parse_and_write() {
        for text in [
            r#"{"a":[1,2.5,null,true,false],"b":"x\"y\\z\n\u0001"}"#,
            "[]",
            "{}",
            "-0",
            "1e+16",
            "[[[[]]]]",
            r#"{"$int":"123456789012345678901234567890"}"#,
        ] {
            let j = parse(text).unwrap();
            let again = parse(&to_string(&j)).unwrap();
            assert_eq!(j, again, "{text}");
        }
        assert_eq!(to_string(&parse("[1.0, 1e16, -0.0, 5e-324]").unwrap()), "[1.0,1e+16,-0.0,5e-324]");
        assert_eq!(
            to_string(&parse("123456789012345678901234567890").unwrap()),
            r#"{"$int":"123456789012345678901234567890"}"#
        );
        assert_eq!(
            to_string(&parse("[NaN,-Infinity,1e999]").unwrap()),
            r#"[{"$float":"nan"},{"$float":"-inf"},{"$float":"inf"}]"#
        );
        assert_eq!(to_string(&parse(r#""a\ud800b\ud83d\ude00""#).unwrap()), r#"{"$str":["a",55296,"b😀"]}"#);
        for bad in ["", "[1,]", "{\"a\" 1}", "01", "1.", "[1 2]", "\"\u{1}\"", "{\"\\ud800\":1}", "tru", "[", "1 x"] {
            let e = parse(bad).unwrap_err();
            assert!(e.is_syntax(), "{bad}: {e}");
        }
    }

    #[test]
    fn deep_nesting_without_recursion() {
        let n = 200_000;
        let text = format!("{}{}", "[".repeat(n), "]".repeat(n));
        let j = parse(&text).unwrap();
        assert_eq!(to_string(&j), text);
        let (g, v) = from_json(&j).unwrap();
        drop_json(j);
        let back = to_json(&g, v);
        assert_eq!(to_string(&back), text);
        drop_json(back);
        let bad = format!("{}1,", "[".repeat(n));
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn value_and_text_agree_and_round_trip() {
        let mut g = Graph::new();
        let shared = g.list(vec![Value::Int(1)]);
        let big = g.int(BigInt::from(1u8) << 100);
        let b = g.bytes(vec![0u8, 255]);
        let sur = g.add(Object::Str(PyStr::from_code_points([0x61, 0xD800])));
        let long = g.str("y".repeat(BY_VALUE_MAX_BYTES + 1));
        let (k1, k2, k3) = (g.str("$id"), g.str("plain"), g.str("$$x"));
        let tup = g.tuple(vec![shared, Value::Float(f64::NAN), Value::Float(-0.0), big, b, sur, long, long]);
        let d = g.dict(vec![(k1, tup), (k2, Value::Float(1e16)), (k3, Value::None)]).unwrap();
        let cls = g.global("m", "C");
        let args = g.tuple(vec![]);
        let mut inst = Instance::new(cls, Construct::NewObj, args, None);
        inst.state = Some(d);
        inst.list_items.push(shared);
        inst.dict_items.push((Value::Int(1), Value::Bool(true)));
        let inst = g.add(Object::Instance(Box::new(inst)));
        let root = g.list(vec![inst, shared]);
        if let Object::List(items) = g.get_mut(root.obj_id().unwrap()) {
            items.push(root);
        }
        let text = to_json_string(&g, root);
        let json = to_json(&g, root);
        assert_eq!(to_string(&json), text);
        assert_eq!(
            text,
            format!(
                r#"{{"$id":1,"$list":[{{"$instance":{{"$global":["m","C"]}},"construct":"newobj","args":{{"$tuple":[]}},"state":{{"$$id":{{"$tuple":[{{"$id":2,"$list":[1]}},{{"$float":"nan"}},{{"$float":"-0.0"}},{{"$int":"1267650600228229401496703205376"}},{{"$bytes":"AP8="}},{{"$str":["a",55296]}},{{"$id":3,"$str":"{y}"}},{{"$ref":3}}]}},"plain":1e+16,"$$$x":null}},"listitems":[{{"$ref":2}}],"dictitems":[[1,true]]}},{{"$ref":2}},{{"$ref":1}}]}}"#,
                y = "y".repeat(BY_VALUE_MAX_BYTES + 1)
            )
        );
        let (g2, v2) = from_json(&json).unwrap();
        assert_eq!(to_json_string(&g2, v2), text);
        // Sharing and the cycle are the same objects again.
        let items = g2.view(v2).as_slice().unwrap().to_vec();
        assert_eq!(items[2], v2);
        let inst = g2.view(items[0]).as_instance().unwrap();
        assert_eq!(inst.list_items[0], items[1]);
    }

    #[test]
    fn mapping_errors_name_the_place() {
        let e = from_json(&parse(r#"{"a":[1,{"$tuple":[{"$nope":1}]}]}"#).unwrap()).unwrap_err();
        assert_eq!(e.path(), Some("/a/1/$tuple/0"));
        let e = from_json(&parse(r#"{"$id":1,"$tuple":[{"$ref":1}]}"#).unwrap()).unwrap_err();
        assert!(e.message().contains("cycle"), "{e}");
        assert!(from_json(&parse(r#"{"$id":1,"$list":[{"$ref":1}]}"#).unwrap()).is_ok());
        assert!(from_json(&parse(r#"{"$id":1,"$tuple":[[{"$ref":1}]]}"#).unwrap()).is_ok());
        assert!(from_json(&parse(r#"{"$ref":1}"#).unwrap()).is_err());
        assert!(from_json(&parse(r#"{"$dict":[[[1],2]]}"#).unwrap()).is_err());
        assert!(from_json(&parse(r#"[{"$id":1,"$list":[]},{"$id":1,"$list":[]}]"#).unwrap()).is_err());
    }
}
