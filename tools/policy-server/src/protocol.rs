//! The JSON-lines protocol: one request object per line in, one answer object per line out.
//!
//! Request: `{"obs": [...], "goal": [...]}`, optionally with `"id"` (any JSON value, echoed back).
//! - State checkpoints: `dim` numbers each (finite, read as f32).
//! - Pixel checkpoints: `H*W*C` integers in 0..=255 each, the image flattened in HWC row-major
//!   order (row by row, each pixel's channels together), exactly as the camera delivers it.
//!
//! Answer: `{"action": [...], "distance": d}`: the deployment action clip(mu, -1, 1) mapped back
//! to the data's units by the checkpoint's action normalisation, and the learned temporal
//! distance d(s, g) (`null` for a GCBC checkpoint, which has no critic).
//! Any bad line gets `{"error": "..."}` saying what was wrong; the server keeps going.

use candle_core::{Device, Tensor};
use mqe::{Agent, ObsKind};
use serde_json::{Map, Value, json};

/// Longest request line accepted, bytes (a 128x128x3 image as JSON is about 200 KB).
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// A loaded policy answering requests.
pub struct Policy {
    agent: Agent,
}

/// One observation decoded from JSON, ready for a tensor.
enum Decoded {
    State(Vec<f32>),
    Pixels(Vec<u8>),
}

impl Policy {
    /// Wraps a loaded agent.
    pub fn new(agent: Agent) -> Self {
        Self { agent }
    }

    /// The agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// Values expected in `obs` and in `goal`.
    pub fn obs_len(&self) -> usize {
        match self.agent.model_config().obs {
            ObsKind::State { dim } => dim,
            ObsKind::Pixels { size_px, channels } => size_px * size_px * channels,
        }
    }

    /// What one observation must look like, for error messages and `--help`.
    pub fn obs_description(&self) -> String {
        match self.agent.model_config().obs {
            ObsKind::State { dim } => format!("{dim} finite numbers (state)"),
            ObsKind::Pixels { size_px, channels } => format!(
                "{} integers 0..=255 ({size_px}x{size_px}x{channels} image, HWC row-major)",
                size_px * size_px * channels
            ),
        }
    }

    /// The answer line (without newline) to one request line.
    pub fn answer(&self, line: &str) -> String {
        let (id, result) = match serde_json::from_str::<Value>(line) {
            Ok(request) => {
                let id = request.get("id").cloned();
                (id, self.answer_request(request))
            }
            Err(e) => (None, Err(format!("invalid JSON: {e}"))),
        };
        let mut out = match result {
            Ok(answer) => answer,
            Err(message) => {
                let mut m = Map::new();
                m.insert("error".into(), Value::String(message));
                m
            }
        };
        if let Some(id) = id {
            out.insert("id".into(), id);
        }
        Value::Object(out).to_string()
    }

    fn answer_request(&self, request: Value) -> Result<Map<String, Value>, String> {
        let Value::Object(fields) = request else {
            return Err("expected a JSON object {\"obs\": [...], \"goal\": [...]}".into());
        };
        if let Some(unknown) = fields
            .keys()
            .find(|k| !["obs", "goal", "id"].contains(&k.as_str()))
        {
            return Err(format!(
                "unknown field `{unknown}`; expected `obs`, `goal` and optionally `id`"
            ));
        }
        let obs = self.decode(&fields, "obs")?;
        let goal = self.decode(&fields, "goal")?;
        let (action, distance) = self
            .infer(obs, goal)
            .map_err(|e| format!("inference failed: {e}"))?;
        let mut out = Map::new();
        out.insert("action".into(), json!(action));
        out.insert(
            "distance".into(),
            distance.map_or(Value::Null, |d| json!(d)),
        );
        Ok(out)
    }

    fn decode(&self, fields: &Map<String, Value>, name: &str) -> Result<Decoded, String> {
        let value = fields
            .get(name)
            .ok_or_else(|| format!("missing field `{name}`"))?;
        let items = value
            .as_array()
            .ok_or_else(|| format!("`{name}` must be an array of {}", self.obs_description()))?;
        if items.len() != self.obs_len() {
            return Err(format!(
                "`{name}` has {} values; this checkpoint expects {}",
                items.len(),
                self.obs_description()
            ));
        }
        let pixels = matches!(self.agent.model_config().obs, ObsKind::Pixels { .. });
        if pixels {
            let bytes = items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_u64()
                        .and_then(|x| u8::try_from(x).ok())
                        .ok_or_else(|| {
                            format!("`{name}`[{i}] is {v}; pixels must be integers in 0..=255")
                        })
                })
                .collect::<Result<_, _>>()?;
            return Ok(Decoded::Pixels(bytes));
        }
        let values = items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64()
                    .map(|x| x as f32)
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("`{name}`[{i}] is {v}; expected a finite number"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Decoded::State(values))
    }

    /// Action in data units, and the learned distance when the model has a critic.
    fn infer(&self, obs: Decoded, goal: Decoded) -> Result<(Vec<f32>, Option<f32>), mqe::MqeError> {
        let dev = self.agent.device();
        let obs = self.tensor(obs, dev)?;
        let goal = self.tensor(goal, dev)?;
        let normalised: Vec<f32> = self.agent.act(&obs, &goal)?.flatten_all()?.to_vec1()?;
        let action = self.agent.action_norm().denormalise(&normalised)?;
        let distance = match self.agent.model_config().algo {
            mqe::Algo::Mqe => Some(self.agent.distance(&obs, &goal)?.to_vec1::<f32>()?[0]),
            mqe::Algo::Gcbc => None,
        };
        Ok((action, distance))
    }

    fn tensor(&self, obs: Decoded, dev: &Device) -> Result<Tensor, candle_core::Error> {
        match (obs, self.agent.model_config().obs) {
            (Decoded::State(v), ObsKind::State { dim }) => Tensor::from_vec(v, (1, dim), dev),
            (Decoded::Pixels(v), ObsKind::Pixels { size_px, channels }) => {
                Tensor::from_vec(v, (1, size_px, size_px, channels), dev)
            }
            // `decode` reads the kind from the same model config.
            _ => Err(candle_core::Error::Msg(
                "observation kind does not match the model".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqe::{ModelConfig, TrainConfig};

    fn policy(model: ModelConfig) -> Policy {
        let mut model = model;
        (
            model.latent_dim,
            model.mlp_hidden,
            model.actor_hidden,
            model.encoder_dim,
        ) = (16, vec![16], vec![16], 16);
        let train = TrainConfig {
            batch_size: 2,
            ..TrainConfig::default()
        };
        Policy::new(Agent::new(model, train, &Device::Cpu).unwrap())
    }

    fn error_of(answer: &str) -> String {
        let v: Value = serde_json::from_str(answer).unwrap();
        v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {answer}"))
            .to_string()
    }

    #[test]
    fn state_requests_get_an_action_and_a_distance() {
        let p = policy(ModelConfig::state(3, 2));
        let v: Value =
            serde_json::from_str(&p.answer(r#"{"obs": [0, 1, 2], "goal": [1, 1, 1], "id": 7}"#))
                .unwrap();
        assert_eq!(v["action"].as_array().unwrap().len(), 2);
        assert!(v["distance"].as_f64().unwrap() >= 0.0);
        assert_eq!(v["id"], 7);
    }

    #[test]
    fn malformed_requests_are_named() {
        let p = policy(ModelConfig::state(3, 2));
        assert!(error_of(&p.answer("{not json")).contains("invalid JSON"));
        assert!(error_of(&p.answer("[1, 2]")).contains("JSON object"));
        assert!(error_of(&p.answer(r#"{"obs": [1, 2, 3]}"#)).contains("missing field `goal`"));
        let short = error_of(&p.answer(r#"{"obs": [1, 2], "goal": [1, 2, 3]}"#));
        assert!(
            short.contains("`obs` has 2 values") && short.contains("3 finite numbers"),
            "{short}"
        );
        assert!(
            error_of(&p.answer(r#"{"obs": [1, "x", 3], "goal": [1, 2, 3]}"#)).contains("`obs`[1]")
        );
        assert!(
            error_of(&p.answer(r#"{"obs": [1, 2, 3], "goal": [1, 2, 1e39]}"#))
                .contains("`goal`[2]")
        );
        assert!(
            error_of(&p.answer(r#"{"obs": [1, 2, 3], "goal": [1, 2, 3], "x": 1}"#)).contains("`x`")
        );
    }

    #[test]
    fn pixel_requests_take_flat_bytes_and_gcbc_has_no_distance() {
        let mut model = ModelConfig::pixels(8, 3, 2);
        model.algo = mqe::Algo::Gcbc;
        let p = policy(model);
        let image = vec!["255"; 8 * 8 * 3].join(",");
        let v: Value =
            serde_json::from_str(&p.answer(&format!(r#"{{"obs": [{image}], "goal": [{image}]}}"#)))
                .unwrap();
        assert_eq!(v["action"].as_array().unwrap().len(), 2, "{v}");
        assert!(v["distance"].is_null());
        let bad = vec!["256"; 8 * 8 * 3].join(",");
        let e = error_of(&p.answer(&format!(r#"{{"obs": [{bad}], "goal": [{image}]}}"#)));
        assert!(e.contains("0..=255"), "{e}");
    }
}
