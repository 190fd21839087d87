//! Conversion of the arena into a [`Value`] tree, moving nodes used once and interpreting the
//! calls it knows.

use super::calls::interpret_known_call;
use super::{Call, Id, MAX_DEPTH, Node, PickleError, PickleErrorKind};
use crate::pickle::Value;

/// Depth and ownership of the children of the node being converted.
#[derive(Clone, Copy)]
struct Step {
    depth: usize,
    owned: bool,
}

pub(super) struct Converter {
    pub(super) nodes: Vec<Node>,
    pub(super) remaining: Vec<usize>,
}

impl Converter {
    /// Converts node `id`. `owned`: this visit follows an arena edge whose parent was moved
    /// (not cloned); only such visits count down, so each edge is counted once.
    pub(super) fn convert(
        &mut self,
        id: Id,
        depth: usize,
        owned: bool,
    ) -> Result<Value, PickleError> {
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
