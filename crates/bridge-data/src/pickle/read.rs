//! The pickle machine: opcodes to an arena of nodes, then nodes to a [`Value`] tree.
//!
//! Containers live in an arena and the stack and memo hold indices, so that a list memoised
//! before its items are appended (what Python always does) is the same list when fetched again.
//! NumPy calls are interpreted only at the end, once every `BUILD` state is known.

mod calls;
mod convert;
mod literals;
mod machine;
#[cfg(test)]
mod tests;

use super::Value;
use machine::Machine;

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
