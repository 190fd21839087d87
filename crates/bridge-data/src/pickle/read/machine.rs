//! The opcode machine: executes a pickle's opcodes into an arena of nodes, with its stack,
//! marks and memo.

use std::collections::HashMap;

use super::convert::Converter;
use super::literals::{long_from_le, lossy, python_string_literal, raw_unicode_escape};
use super::{Call, Id, Node, PickleError, PickleErrorKind, children};
use crate::pickle::Value;

pub(super) struct Machine<'a> {
    bytes: &'a [u8],
    pub(super) pos: usize,
    /// Start of the opcode being executed, for errors.
    op_start: usize,
    opcode: u8,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

impl<'a> Machine<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
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

    pub(super) fn run(&mut self) -> Result<Id, PickleError> {
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
    pub(super) fn into_value(self, root: Id) -> Result<Value, PickleError> {
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
