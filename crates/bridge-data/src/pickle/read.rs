//! The pickle machine: opcodes to an arena of nodes, then nodes to a [`Value`] tree.
//!
//! Containers live in an arena and the stack and memo hold indices, so that a list memoised
//! before its items are appended (what Python always does) is the same list when fetched again.
//! NumPy calls are interpreted only at the end, once every `BUILD` state is known.

use std::collections::HashMap;

use super::{ArrayData, DType, DTypeKind, NdArray, Value};

/// Why a pickle could not be decoded; `offset` is the byte where the failing opcode starts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("at byte {offset}{}: {kind}", opcode_suffix(*opcode))]
pub struct PickleError {
    pub offset: usize,
    /// The opcode being executed, when the failure is tied to one.
    pub opcode: Option<u8>,
    pub kind: PickleErrorKind,
}

fn opcode_suffix(opcode: Option<u8>) -> String {
    match opcode {
        Some(op) if op.is_ascii_graphic() => format!(" (opcode 0x{op:02x} '{}')", op as char),
        Some(op) => format!(" (opcode 0x{op:02x})"),
        None => String::new(),
    }
}

/// The kinds of pickle failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleErrorKind {
    #[error("input ends before the STOP opcode (truncated file?)")]
    Truncated,
    #[error("unknown opcode (corrupt data?)")]
    UnknownOpcode,
    #[error("unsupported pickle feature: {0}")]
    Unsupported(&'static str),
    #[error(
        "out-of-band buffer (pickled with buffer_callback); only in-band buffers are supported"
    )]
    OutOfBandBuffer,
    #[error("stack underflow (corrupt data?)")]
    StackUnderflow,
    #[error("no MARK on the stack (corrupt data?)")]
    NoMark,
    #[error("memo key {0} was never stored (corrupt data?)")]
    MissingMemo(u64),
    #[error("malformed text argument {0:?}")]
    BadText(String),
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    #[error("{context}: expected {expected}, found {found}")]
    WrongType {
        context: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("{0}")]
    NumPy(String),
    #[error("nesting deeper than {0} levels (self-referential object?)")]
    TooDeep(usize),
    #[error("{0} bytes after the STOP opcode")]
    TrailingData(usize),
}

/// Decodes one pickle (protocol 0 to 5) into a [`Value`]. The whole input must be one pickle.
pub fn from_slice(bytes: &[u8]) -> Result<Value, PickleError> {
    let mut machine = Machine::new(bytes);
    let root = machine.run()?;
    if machine.pos < bytes.len() {
        return Err(PickleError {
            offset: machine.pos,
            opcode: None,
            kind: PickleErrorKind::TrailingData(bytes.len() - machine.pos),
        });
    }
    machine.into_value(root)
}

type Id = usize;

enum Node {
    Leaf(Value),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    Global {
        module: String,
        name: String,
    },
    Call(Call),
    /// A placeholder whose value was moved out during conversion.
    Taken,
}

struct Call {
    callable: Id,
    args: Id,
    state: Option<Id>,
    list_items: Vec<Id>,
    dict_items: Vec<(Id, Id)>,
    offset: usize,
}

const MAX_DEPTH: usize = 512;

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Start of the opcode being executed, for errors.
    op_start: usize,
    opcode: u8,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

impl<'a> Machine<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Machine {
            bytes,
            pos: 0,
            op_start: 0,
            opcode: 0,
            nodes: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn error(&self, kind: PickleErrorKind) -> PickleError {
        PickleError {
            offset: self.op_start,
            opcode: Some(self.opcode),
            kind,
        }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(count)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.error(PickleErrorKind::Truncated))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take_array::<1>()?[0])
    }

    fn u32_len(&mut self) -> Result<usize, PickleError> {
        Ok(u32::from_le_bytes(self.take_array()?) as usize)
    }

    fn u64_len(&mut self) -> Result<usize, PickleError> {
        let len = u64::from_le_bytes(self.take_array()?);
        usize::try_from(len).map_err(|_| self.error(PickleErrorKind::Truncated))
    }

    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.error(PickleErrorKind::Truncated))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    fn line_str(&mut self) -> Result<&'a str, PickleError> {
        let line = self.line()?;
        std::str::from_utf8(line).map_err(|_| self.error(PickleErrorKind::InvalidUtf8))
    }

    fn utf8(&self, bytes: &[u8]) -> Result<String, PickleError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| self.error(PickleErrorKind::InvalidUtf8))
    }

    fn push_node(&mut self, node: Node) {
        self.nodes.push(node);
        self.stack.push(self.nodes.len() - 1);
    }

    fn push_leaf(&mut self, value: Value) {
        self.push_node(Node::Leaf(value));
    }

    fn pop(&mut self) -> Result<Id, PickleError> {
        // Items below the latest MARK belong to the enclosing frame.
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.error(PickleErrorKind::StackUnderflow));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.error(PickleErrorKind::StackUnderflow))
    }

    fn top(&self) -> Result<Id, PickleError> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.error(PickleErrorKind::StackUnderflow))
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.error(PickleErrorKind::NoMark))?;
        Ok(self.stack.split_off(mark))
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| self.error(PickleErrorKind::MissingMemo(key)))?;
        self.stack.push(id);
        Ok(())
    }

    fn run(&mut self) -> Result<Id, PickleError> {
        loop {
            self.op_start = self.pos;
            self.opcode = 0;
            if self.pos >= self.bytes.len() {
                return Err(PickleError {
                    offset: self.pos,
                    opcode: None,
                    kind: PickleErrorKind::Truncated,
                });
            }
            self.opcode = self.u8()?;
            if self.opcode == b'.' {
                return self.pop();
            }
            self.step(self.opcode)?;
        }
    }

    fn step(&mut self, opcode: u8) -> Result<(), PickleError> {
        match opcode {
            0x80 => {
                let _protocol = self.u8()?;
            }
            0x95 => {
                // FRAME: a length prefix only; the opcodes inside are read in sequence anyway.
                self.take(8)?;
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.top()?;
                self.stack.push(top);
            }
            _ => return self.step_value(opcode),
        }
        Ok(())
    }

    fn step_value(&mut self, opcode: u8) -> Result<(), PickleError> {
        match opcode {
            b'N' => self.push_leaf(Value::None),
            0x88 => self.push_leaf(Value::Bool(true)),
            0x89 => self.push_leaf(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(self.take_array()?);
                self.push_leaf(Value::Int(i64::from(v)));
            }
            b'K' => {
                let v = self.u8()?;
                self.push_leaf(Value::Int(i64::from(v)));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.take_array()?);
                self.push_leaf(Value::Int(i64::from(v)));
            }
            0x8a => {
                let len = usize::from(self.u8()?);
                let bytes = self.take(len)?;
                self.push_leaf(long_from_le(bytes));
            }
            0x8b => {
                let len = self.u32_len()?;
                let bytes = self.take(len)?;
                self.push_leaf(long_from_le(bytes));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.take_array()?);
                self.push_leaf(Value::Float(v));
            }
            b'I' | b'L' | b'F' => self.text_number(opcode)?,
            _ => return self.step_string(opcode),
        }
        Ok(())
    }

    fn text_number(&mut self, opcode: u8) -> Result<(), PickleError> {
        let line = self.line_str()?.trim();
        let bad = || PickleErrorKind::BadText(line.to_string());
        let value = match (opcode, line) {
            (b'I', "01") => Value::Bool(true),
            (b'I', "00") => Value::Bool(false),
            (b'F', _) => Value::Float(line.parse().map_err(|_| self.error(bad()))?),
            _ => {
                let digits = line.strip_suffix('L').unwrap_or(line);
                Value::Int(digits.parse().map_err(|_| self.error(bad()))?)
            }
        };
        self.push_leaf(value);
        Ok(())
    }

    fn step_string(&mut self, opcode: u8) -> Result<(), PickleError> {
        match opcode {
            b'X' => {
                let len = self.u32_len()?;
                let text = self.take(len)?;
                let text = self.utf8(text)?;
                self.push_leaf(Value::Str(text));
            }
            0x8c => {
                let len = usize::from(self.u8()?);
                let text = self.take(len)?;
                let text = self.utf8(text)?;
                self.push_leaf(Value::Str(text));
            }
            0x8d => {
                let len = self.u64_len()?;
                let text = self.take(len)?;
                let text = self.utf8(text)?;
                self.push_leaf(Value::Str(text));
            }
            b'V' => {
                let line = self.line()?;
                self.push_leaf(Value::Str(raw_unicode_escape(line)));
            }
            // Python 2 `str` (BINSTRING, SHORT_BINSTRING, STRING) are kept as bytes, as
            // Python 3 does with encoding="bytes"; numpy's raw data arrives this way.
            b'T' | b'B' => {
                let len = self.u32_len()?;
                let bytes = self.take(len)?.to_vec();
                self.push_leaf(Value::Bytes(bytes));
            }
            b'U' | b'C' => {
                let len = usize::from(self.u8()?);
                let bytes = self.take(len)?.to_vec();
                self.push_leaf(Value::Bytes(bytes));
            }
            0x8e | 0x96 => {
                let len = self.u64_len()?;
                let bytes = self.take(len)?.to_vec();
                self.push_leaf(Value::Bytes(bytes));
            }
            b'S' => {
                let line = self.line()?;
                let bytes = python_string_literal(line)
                    .ok_or_else(|| self.error(PickleErrorKind::BadText(lossy(line))))?;
                self.push_leaf(Value::Bytes(bytes));
            }
            _ => return self.step_container(opcode),
        }
        Ok(())
    }

    fn step_container(&mut self, opcode: u8) -> Result<(), PickleError> {
        match opcode {
            b']' => self.push_node(Node::List(Vec::new())),
            b')' => self.push_node(Node::Tuple(Vec::new())),
            b'}' => self.push_node(Node::Dict(Vec::new())),
            0x8f => self.push_node(Node::Set(Vec::new())),
            b'l' => {
                let items = self.pop_mark()?;
                self.push_node(Node::List(items));
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push_node(Node::Tuple(items));
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push_node(Node::Set(items));
            }
            0x85..=0x87 => {
                let count = usize::from(opcode - 0x84);
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push_node(Node::Tuple(items));
            }
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.push_node(Node::Dict(pairs));
            }
            b'a' => {
                let item = self.pop()?;
                self.append(vec![item])?;
            }
            b'e' | 0x90 => {
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![(key, value)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.set_items(pairs)?;
            }
            _ => return self.step_memo(opcode),
        }
        Ok(())
    }

    fn pairs(&self, items: Vec<Id>) -> Result<Vec<(Id, Id)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.error(PickleErrorKind::StackUnderflow));
        }
        Ok(items.chunks_exact(2).map(|p| (p[0], p[1])).collect())
    }

    fn append(&mut self, items: Vec<Id>) -> Result<(), PickleError> {
        let target = self.top()?;
        match &mut self.nodes[target] {
            Node::List(list) | Node::Set(list) => list.extend(items),
            Node::Call(call) => call.list_items.extend(items),
            _ => return Err(self.wrong_target("APPEND(S)/ADDITEMS", "list or set", target)),
        }
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<(Id, Id)>) -> Result<(), PickleError> {
        let target = self.top()?;
        match &mut self.nodes[target] {
            Node::Dict(dict) => dict.extend(pairs),
            Node::Call(call) => call.dict_items.extend(pairs),
            _ => return Err(self.wrong_target("SETITEM(S)", "dict", target)),
        }
        Ok(())
    }

    fn wrong_target(&self, context: &'static str, expected: &'static str, id: Id) -> PickleError {
        let found = match &self.nodes[id] {
            Node::Leaf(v) => v.type_name(),
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Dict(_) => "dict",
            Node::Set(_) => "set",
            Node::Global { .. } => "global",
            Node::Call(_) => "object",
            Node::Taken => "value",
        };
        self.error(PickleErrorKind::WrongType {
            context,
            expected,
            found: found.to_string(),
        })
    }

    fn step_memo(&mut self, opcode: u8) -> Result<(), PickleError> {
        match opcode {
            b'q' => {
                let key = self.u8()?;
                self.memo_put(u64::from(key))?;
            }
            b'r' => {
                let key = u32::from_le_bytes(self.take_array()?);
                self.memo_put(u64::from(key))?;
            }
            b'p' => {
                let key = self.memo_key_line()?;
                self.memo_put(key)?;
            }
            0x94 => {
                let key = self.memo.len() as u64;
                self.memo_put(key)?;
            }
            b'h' => {
                let key = self.u8()?;
                self.memo_get(u64::from(key))?;
            }
            b'j' => {
                let key = u32::from_le_bytes(self.take_array()?);
                self.memo_get(u64::from(key))?;
            }
            b'g' => {
                let key = self.memo_key_line()?;
                self.memo_get(key)?;
            }
            _ => return self.step_object(opcode),
        }
        Ok(())
    }

    fn memo_key_line(&mut self) -> Result<u64, PickleError> {
        let line = self.line_str()?;
        line.trim()
            .parse()
            .map_err(|_| self.error(PickleErrorKind::BadText(line.to_string())))
    }

    fn step_object(&mut self, opcode: u8) -> Result<(), PickleError> {
        match opcode {
            b'c' => {
                let module = self.line_str()?.to_string();
                let name = self.line_str()?.to_string();
                self.push_node(Node::Global { module, name });
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let module = self.leaf_str(module, "STACK_GLOBAL module")?;
                let name = self.leaf_str(name, "STACK_GLOBAL name")?;
                self.push_node(Node::Global { module, name });
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.push_call(callable, args);
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let callable = self.pop()?;
                self.push_call(callable, args);
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?;
                match &mut self.nodes[target] {
                    Node::Call(call) => call.state = Some(state),
                    _ => return Err(self.wrong_target("BUILD", "object", target)),
                }
            }
            0x97 => return Err(self.error(PickleErrorKind::OutOfBandBuffer)),
            0x98 => {
                // READONLY_BUFFER: marks the top buffer read-only; irrelevant to its value.
                self.top()?;
            }
            b'P' | b'Q' => return Err(self.error(PickleErrorKind::Unsupported("persistent id"))),
            b'i' | b'o' => {
                return Err(self.error(PickleErrorKind::Unsupported(
                    "protocol-0/1 INST/OBJ class instances",
                )));
            }
            0x82..=0x84 => {
                return Err(self.error(PickleErrorKind::Unsupported("extension registry codes")));
            }
            _ => return Err(self.error(PickleErrorKind::UnknownOpcode)),
        }
        Ok(())
    }

    fn push_call(&mut self, callable: Id, args: Id) {
        let offset = self.op_start;
        self.push_node(Node::Call(Call {
            callable,
            args,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
            offset,
        }));
    }

    fn leaf_str(&self, id: Id, context: &'static str) -> Result<String, PickleError> {
        match &self.nodes[id] {
            Node::Leaf(Value::Str(text)) => Ok(text.clone()),
            _ => Err(self.wrong_target(context, "str", id)),
        }
    }

    /// Turns the arena into a tree. A node referenced once is moved (so large buffers are not
    /// copied); a node referenced several times (memo) is cloned for its earlier uses.
    fn into_value(self, root: Id) -> Result<Value, PickleError> {
        let mut remaining = vec![0usize; self.nodes.len()];
        remaining[root] += 1;
        for node in &self.nodes {
            for child in children(node) {
                remaining[child] += 1;
            }
        }
        let mut converter = Converter {
            nodes: self.nodes,
            remaining,
        };
        converter.convert(root, 0, true)
    }
}

fn children(node: &Node) -> Vec<Id> {
    match node {
        Node::List(items) | Node::Tuple(items) | Node::Set(items) => items.clone(),
        Node::Dict(pairs) => pairs.iter().flat_map(|&(k, v)| [k, v]).collect(),
        Node::Call(call) => {
            let mut ids = vec![call.callable, call.args];
            ids.extend(call.state);
            ids.extend(&call.list_items);
            ids.extend(call.dict_items.iter().flat_map(|&(k, v)| [k, v]));
            ids
        }
        Node::Leaf(_) | Node::Global { .. } | Node::Taken => Vec::new(),
    }
}

/// Depth and ownership of the children of the node being converted.
#[derive(Clone, Copy)]
struct Step {
    depth: usize,
    owned: bool,
}

struct Converter {
    nodes: Vec<Node>,
    remaining: Vec<usize>,
}

impl Converter {
    /// Converts node `id`. `owned`: this visit follows an arena edge whose parent was moved
    /// (not cloned); only such visits count down, so each edge is counted once.
    fn convert(&mut self, id: Id, depth: usize, owned: bool) -> Result<Value, PickleError> {
        let too_deep = PickleError {
            offset: 0,
            opcode: None,
            kind: PickleErrorKind::TooDeep(MAX_DEPTH),
        };
        if depth > MAX_DEPTH {
            return Err(too_deep);
        }
        if owned {
            self.remaining[id] = self.remaining[id].saturating_sub(1);
        }
        let take = owned && self.remaining[id] == 0;
        let node = if take {
            std::mem::replace(&mut self.nodes[id], Node::Taken)
        } else {
            self.shallow_clone(id)
        };
        let next = Step {
            depth: depth + 1,
            owned: take,
        };
        match node {
            Node::Leaf(value) => Ok(value),
            Node::List(items) => Ok(Value::List(self.convert_all(&items, next)?)),
            Node::Tuple(items) => Ok(Value::Tuple(self.convert_all(&items, next)?)),
            Node::Set(items) => Ok(Value::Set(self.convert_all(&items, next)?)),
            Node::Dict(pairs) => Ok(Value::Dict(self.convert_pairs(&pairs, next)?)),
            Node::Global { module, name } => Ok(Value::Global { module, name }),
            Node::Call(call) => self.convert_call(call, next),
            // Only a cycle leads back to a node that was already moved out.
            Node::Taken => Err(too_deep),
        }
    }

    fn shallow_clone(&self, id: Id) -> Node {
        match &self.nodes[id] {
            Node::Leaf(v) => Node::Leaf(v.clone()),
            Node::List(items) => Node::List(items.clone()),
            Node::Tuple(items) => Node::Tuple(items.clone()),
            Node::Set(items) => Node::Set(items.clone()),
            Node::Dict(pairs) => Node::Dict(pairs.clone()),
            Node::Global { module, name } => Node::Global {
                module: module.clone(),
                name: name.clone(),
            },
            Node::Call(call) => Node::Call(Call {
                callable: call.callable,
                args: call.args,
                state: call.state,
                list_items: call.list_items.clone(),
                dict_items: call.dict_items.clone(),
                offset: call.offset,
            }),
            Node::Taken => Node::Taken,
        }
    }

    fn convert_all(&mut self, ids: &[Id], step: Step) -> Result<Vec<Value>, PickleError> {
        ids.iter()
            .map(|&id| self.convert(id, step.depth, step.owned))
            .collect()
    }

    fn convert_pairs(
        &mut self,
        pairs: &[(Id, Id)],
        step: Step,
    ) -> Result<Vec<(Value, Value)>, PickleError> {
        pairs
            .iter()
            .map(|&(k, v)| {
                Ok((
                    self.convert(k, step.depth, step.owned)?,
                    self.convert(v, step.depth, step.owned)?,
                ))
            })
            .collect()
    }

    fn convert_call(&mut self, call: Call, step: Step) -> Result<Value, PickleError> {
        let callable = self.convert(call.callable, step.depth, step.owned)?;
        let args = self.convert(call.args, step.depth, step.owned)?;
        let state = match call.state {
            Some(id) => Some(self.convert(id, step.depth, step.owned)?),
            None => None,
        };
        let list_items = self.convert_all(&call.list_items, step)?;
        let dict_items = self.convert_pairs(&call.dict_items, step)?;
        let error = |kind| PickleError {
            offset: call.offset,
            opcode: Some(b'R'),
            kind,
        };
        let known = match &callable {
            Value::Global { module, name } => interpret_known_call(
                module,
                name,
                &args,
                state.as_ref(),
                &list_items,
                &dict_items,
            )
            .map_err(error)?,
            _ => None,
        };
        Ok(known.unwrap_or_else(|| Value::Object {
            callable: Box::new(callable),
            args: Box::new(args),
            state: state.map(Box::new),
            list_items,
            dict_items,
        }))
    }
}

/// The calls this reader understands; `Ok(None)` leaves the call as an [`Value::Object`].
fn interpret_known_call(
    module: &str,
    name: &str,
    args: &Value,
    state: Option<&Value>,
    list_items: &[Value],
    dict_items: &[(Value, Value)],
) -> Result<Option<Value>, PickleErrorKind> {
    let is_numpy_core = module.starts_with("numpy.core.") || module.starts_with("numpy._core.");
    let value = match (module, name) {
        (_, "_reconstruct") if is_numpy_core => Value::Array(array_from_state(state)?),
        ("numpy", "dtype") => Value::DType(dtype_from_call(args, state)?),
        (_, "scalar") if is_numpy_core => Value::Array(scalar_from_args(args)?),
        (_, "_frombuffer") if is_numpy_core => Value::Array(array_from_buffer(args)?),
        ("_codecs", "encode") => Value::Bytes(codecs_encode(args)?),
        ("builtins" | "__builtin__", "bytearray" | "bytes") => Value::Bytes(bytes_call(args)?),
        ("builtins" | "__builtin__", "set" | "frozenset") => {
            let mut items = match sequence_arg(args, 0) {
                Some(seq) => seq.to_vec(),
                None => Vec::new(),
            };
            items.extend_from_slice(list_items);
            Value::Set(items)
        }
        ("collections", "OrderedDict") => Value::Dict(ordered_dict(args, dict_items)),
        _ => return Ok(None),
    };
    Ok(Some(value))
}

fn wrong(context: &'static str, expected: &'static str, found: Option<&Value>) -> PickleErrorKind {
    PickleErrorKind::WrongType {
        context,
        expected,
        found: found.map_or("nothing", Value::type_name).to_string(),
    }
}

fn arg(args: &Value, index: usize) -> Option<&Value> {
    args.as_sequence().and_then(|items| items.get(index))
}

fn sequence_arg(args: &Value, index: usize) -> Option<&[Value]> {
    arg(args, index).and_then(|v| match v {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => Some(items.as_slice()),
        _ => None,
    })
}

fn shape_of(value: Option<&Value>, context: &'static str) -> Result<Vec<usize>, PickleErrorKind> {
    let items = value
        .and_then(Value::as_sequence)
        .ok_or_else(|| wrong(context, "tuple of ints", value))?;
    items
        .iter()
        .map(|dim| {
            dim.as_i64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| wrong(context, "non-negative int", Some(dim)))
        })
        .collect()
}

fn expect_dtype(value: Option<&Value>, context: &'static str) -> Result<DType, PickleErrorKind> {
    match value {
        Some(Value::DType(dtype)) => Ok(dtype.clone()),
        other => Err(wrong(context, "numpy.dtype", other)),
    }
}

/// `ndarray.__setstate__`: `(version, shape, dtype, is_fortran, data)` or the version-less
/// 4-tuple of old NumPy; `data` is bytes, a Python 2 `str`, or a list for object arrays.
fn array_from_state(state: Option<&Value>) -> Result<NdArray, PickleErrorKind> {
    let items = state
        .and_then(Value::as_sequence)
        .ok_or_else(|| wrong("ndarray state", "tuple", state))?;
    let fields = match items.len() {
        5 => &items[1..],
        4 => items,
        n => {
            return Err(PickleErrorKind::NumPy(format!(
                "ndarray state has {n} fields, expected 4 or 5"
            )));
        }
    };
    let shape = shape_of(Some(&fields[0]), "ndarray state shape")?;
    let dtype = expect_dtype(Some(&fields[1]), "ndarray state dtype")?;
    let fortran_order = match &fields[2] {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        other => return Err(wrong("ndarray state is_fortran", "bool", Some(other))),
    };
    let data = match (&fields[3], dtype.kind) {
        (Value::List(items), DTypeKind::Object) => ArrayData::Objects(items.clone()),
        (Value::Bytes(bytes), _) => ArrayData::Raw(bytes.clone()),
        (Value::Str(text), _) => ArrayData::Raw(latin1_bytes(text)?),
        (other, _) => return Err(wrong("ndarray state data", "bytes", Some(other))),
    };
    Ok(NdArray {
        dtype,
        shape,
        fortran_order,
        data,
    })
}

/// `numpy.dtype(typestr, align, copy)` with `BUILD (version, byteorder, ..., elsize, ...)`.
fn dtype_from_call(args: &Value, state: Option<&Value>) -> Result<DType, PickleErrorKind> {
    let typestr = match arg(args, 0) {
        Some(Value::Str(s)) => s.clone(),
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        other => return Err(wrong("numpy.dtype argument", "str", other)),
    };
    let mut dtype = DType::from_typestr(&typestr)
        .ok_or_else(|| PickleErrorKind::NumPy(format!("unknown dtype {typestr:?}")))?;
    if let Some(fields) = state.and_then(Value::as_sequence) {
        if let Some(order) = fields.get(1) {
            let order = match order {
                Value::Str(s) => s.as_bytes().first().copied(),
                Value::Bytes(b) => b.first().copied(),
                _ => None,
            };
            dtype.big_endian = order == Some(b'>');
        }
        // Flexible dtypes (S, U, V) record their item size in the state; -1 otherwise.
        let flexible_size = fields.get(5).and_then(Value::as_i64);
        if let Some(size) = flexible_size.and_then(|s| usize::try_from(s).ok()) {
            dtype.item_size = if size > 0 { size } else { dtype.item_size };
        }
        if fields
            .get(3)
            .is_some_and(|names| !matches!(names, Value::None))
        {
            return Err(PickleErrorKind::NumPy(
                "structured dtypes (with field names) are not supported".into(),
            ));
        }
    }
    Ok(dtype)
}

/// `multiarray.scalar(dtype, bytes)` (or `(dtype, object)` for object scalars): a 0-d array.
fn scalar_from_args(args: &Value) -> Result<NdArray, PickleErrorKind> {
    let dtype = expect_dtype(arg(args, 0), "numpy scalar dtype")?;
    let data = match (arg(args, 1), dtype.kind) {
        (Some(Value::Bytes(bytes)), kind) if kind != DTypeKind::Object => {
            ArrayData::Raw(bytes.clone())
        }
        (Some(Value::Str(text)), kind) if kind != DTypeKind::Object => {
            ArrayData::Raw(latin1_bytes(text)?)
        }
        (Some(object), DTypeKind::Object) => ArrayData::Objects(vec![object.clone()]),
        (other, _) => return Err(wrong("numpy scalar data", "bytes", other)),
    };
    Ok(NdArray {
        dtype,
        shape: Vec::new(),
        fortran_order: false,
        data,
    })
}

/// Protocol 5: `numeric._frombuffer(buffer, dtype, shape, order)`.
fn array_from_buffer(args: &Value) -> Result<NdArray, PickleErrorKind> {
    let data = match arg(args, 0) {
        Some(Value::Bytes(bytes)) => bytes.clone(),
        other => return Err(wrong("_frombuffer buffer", "in-band bytes buffer", other)),
    };
    let dtype = expect_dtype(arg(args, 1), "_frombuffer dtype")?;
    let shape = shape_of(arg(args, 2), "_frombuffer shape")?;
    let fortran_order = matches!(arg(args, 3), Some(Value::Str(order)) if order == "F");
    Ok(NdArray {
        dtype,
        shape,
        fortran_order,
        data: ArrayData::Raw(data),
    })
}

/// Protocol 2 pickles Python 3 bytes as `_codecs.encode(text, 'latin1')`.
fn codecs_encode(args: &Value) -> Result<Vec<u8>, PickleErrorKind> {
    let text = match arg(args, 0) {
        Some(Value::Str(text)) => text,
        other => return Err(wrong("_codecs.encode argument", "str", other)),
    };
    match arg(args, 1).and_then(Value::as_str) {
        Some("latin1" | "latin-1" | "iso-8859-1") => latin1_bytes(text),
        Some("utf-8" | "utf8") | None => Ok(text.as_bytes().to_vec()),
        Some(other) => Err(PickleErrorKind::NumPy(format!(
            "_codecs.encode with encoding {other:?} is not supported"
        ))),
    }
}

fn bytes_call(args: &Value) -> Result<Vec<u8>, PickleErrorKind> {
    match arg(args, 0) {
        None => Ok(Vec::new()),
        Some(Value::Bytes(bytes)) => Ok(bytes.clone()),
        Some(Value::Str(_)) => codecs_encode(args),
        other => Err(wrong("bytearray argument", "bytes", other)),
    }
}

fn ordered_dict(args: &Value, dict_items: &[(Value, Value)]) -> Vec<(Value, Value)> {
    let mut pairs: Vec<(Value, Value)> = sequence_arg(args, 0)
        .unwrap_or(&[])
        .iter()
        .filter_map(|pair| match pair.as_sequence() {
            Some([key, value]) => Some((key.clone(), value.clone())),
            _ => None,
        })
        .collect();
    pairs.extend_from_slice(dict_items);
    pairs
}

fn latin1_bytes(text: &str) -> Result<Vec<u8>, PickleErrorKind> {
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c)).map_err(|_| {
                PickleErrorKind::NumPy(format!("character {c:?} is not latin-1 (expected bytes)"))
            })
        })
        .collect()
}

fn long_from_le(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut full = if negative { [0xffu8; 8] } else { [0u8; 8] };
        full[..bytes.len()].copy_from_slice(bytes);
        return Value::Int(i64::from_le_bytes(full));
    }
    Value::BigInt(bytes.to_vec())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Decodes `raw-unicode-escape` (protocol 0 `UNICODE`): bytes are latin-1, `\uXXXX` and
/// `\UXXXXXXXX` escapes are code points.
fn raw_unicode_escape(line: &[u8]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let width = match (line[i], line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        let escaped = (width > 0)
            .then(|| line.get(i + 2..i + 2 + width))
            .flatten()
            .and_then(|hex| u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())
            .and_then(char::from_u32);
        match escaped {
            Some(c) => {
                out.push(c);
                i += 2 + width;
            }
            None => {
                out.push(char::from(line[i]));
                i += 1;
            }
        }
    }
    out
}

/// Decodes a protocol-0 `STRING` argument: a Python `repr` of a str, quoted, with escapes.
fn python_string_literal(line: &[u8]) -> Option<Vec<u8>> {
    let quote = *line.first()?;
    if !(quote == b'\'' || quote == b'"') || line.len() < 2 || line[line.len() - 1] != quote {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'\\' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let escape = *body.get(i + 1)?;
        i += 2;
        match escape {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'0'..=b'7' => {
                // Octal escape of up to three digits.
                let mut value = u32::from(escape - b'0');
                let mut digits = 1;
                while digits < 3 && i < body.len() && (b'0'..=b'7').contains(&body[i]) {
                    value = value * 8 + u32::from(body[i] - b'0');
                    i += 1;
                    digits += 1;
                }
                out.push(u8::try_from(value).ok()?);
            }
            b'x' => {
                let hex = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    //! Pickles below were produced by CPython 3.11 `pickle.dumps` (NumPy 2.4) and pasted here.
    use super::*;

    #[test]
    fn protocol_0_text_opcodes() {
        let bytes = b"(dp0\nVa\np1\n(lp2\nI1\naF2.5\naVx\xe9\np3\naI01\naNaI-7\naL1099511627776L\nasVb\np4\nc_codecs\nencode\np5\n(V\\u0000\x01\np6\nVlatin1\np7\ntp8\nRp9\ns.";
        let value = from_slice(bytes).unwrap();
        let expected_list = Value::List(vec![
            Value::Int(1),
            Value::Float(2.5),
            Value::Str("x\u{e9}".into()),
            Value::Bool(true),
            Value::None,
            Value::Int(-7),
            Value::Int(1 << 40),
        ]);
        assert_eq!(value.get("a"), Some(&expected_list));
        assert_eq!(value.get("b"), Some(&Value::Bytes(vec![0, 1])));
    }

    #[test]
    fn ordered_dict_and_set() {
        let bytes = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00kq\x02K\x01X\x01\x00\x00\x00jq\x03c__builtin__\nset\nq\x04]q\x05(K\x01K\x02e\x85q\x06Rq\x07u.";
        let value = from_slice(bytes).unwrap();
        assert_eq!(value.get("k"), Some(&Value::Int(1)));
        assert_eq!(
            value.get("j"),
            Some(&Value::Set(vec![Value::Int(1), Value::Int(2)]))
        );
    }

    #[test]
    fn big_endian_array_at_protocol_2() {
        let bytes = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02c_codecs\nencode\nq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\t(K\x01K\x02K\x02\x86q\ncnumpy\ndtype\nq\x0bX\x02\x00\x00\x00i4q\x0c\x89\x88\x87q\rRq\x0e(K\x03X\x01\x00\x00\x00>q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10b\x89h\x03X\x10\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04q\x11h\x05\x86q\x12Rq\x13tq\x14b.";
        let array = from_slice(bytes).unwrap();
        let array = array.as_array().unwrap();
        assert!(array.dtype.big_endian);
        assert_eq!(array.shape, vec![2, 2]);
        assert_eq!(array.to_f64_vec().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn out_of_band_buffers_are_a_clear_error() {
        let bytes = b"\x80\x05\x95k\x00\x00\x00\x00\x00\x00\x00\x8c\x13numpy._core.numeric\x94\x8c\x0b_frombuffer\x94\x93\x94(\x97\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02f8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bK\x03\x85\x94\x8c\x01C\x94t\x94R\x94.";
        let error = from_slice(bytes).unwrap_err();
        assert_eq!(error.kind, PickleErrorKind::OutOfBandBuffer);
        assert_eq!(error.offset, 50);
        assert!(error.to_string().contains("out-of-band"), "{error}");
    }

    #[test]
    fn self_referential_list_is_an_error_not_a_hang() {
        // l = []; l.append(l); pickle.dumps(l, 2)
        let bytes = b"\x80\x02]q\x00h\x00a.";
        let error = from_slice(bytes).unwrap_err();
        assert_eq!(error.kind, PickleErrorKind::TooDeep(MAX_DEPTH));
    }

    #[test]
    fn trailing_bytes_are_reported() {
        let error = from_slice(b"\x80\x02N.xx").unwrap_err();
        assert_eq!(error.kind, PickleErrorKind::TrailingData(2));
        assert_eq!(error.offset, 4);
    }
}
