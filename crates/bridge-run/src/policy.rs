//! The learned policy as the runtime sees it: a goal image, one action and one distance per
//! observation.
//!
//! [`GoalImage`] loads and checks the goal the operator gives; [`Policy`] is what the policy
//! thread calls (a trait, so tests can inject NaN or slow policies); [`MqePolicy`] runs an MQE
//! (or GCBC) checkpoint with candle. Observations and goals reach the model exactly as in
//! training: through the checkpoint's [`ModelView`] (the training cache's crop, if any, then
//! the squash to the input size), u8 HWC, scaled by 1/255 inside the mqe encoders.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bridge_data::StepKind;
use camera::preprocess::{Crop, ModelView};
use candle_core::{DType, Device, Tensor};
use mqe::{ActionNorm, Agent, Algo, CheckpointConfig, DataSource, MqeError, ObsKind};

/// Bridge action length: `[dx, dy, dz, droll, dpitch, dyaw, gripper]`.
pub const ACTION_DIM: usize = 7;
/// Colour channels of the model's images (RGB).
pub const CHANNELS: usize = 3;

/// Why a goal could not be loaded or a policy could not run.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The goal file could not be read at all (missing, permission).
    #[error("goal image {path}: cannot read: {source}")]
    GoalIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The goal file is not a PNG or JPEG, or is corrupt.
    #[error("goal image {path}: {reason}; expected a PNG or JPEG image")]
    GoalFormat { path: PathBuf, reason: String },
    /// The goal's frame size differs from the camera's.
    #[error(
        "goal image {path} is {width_px}x{height_px} px; expected {expected_width_px}x{expected_height_px} px \
         (the camera frame size), so that it is squashed to the model input like every observation"
    )]
    GoalSize {
        path: PathBuf,
        width_px: u32,
        height_px: u32,
        expected_width_px: u32,
        expected_height_px: u32,
    },
    /// The goal's pixel buffer does not match its stated size (or the resize failed).
    #[error("goal image {path}: {source}")]
    GoalPixels {
        path: PathBuf,
        #[source]
        source: camera::CameraError,
    },
    /// A goal prepared for one input size was given to a policy with another.
    #[error(
        "goal image {path} was prepared at {goal_px} px; this policy's input is {policy_px} px"
    )]
    GoalModelSize {
        path: PathBuf,
        goal_px: u32,
        policy_px: u32,
    },
    /// A goal prepared with one frame crop was given to a policy trained with another.
    #[error(
        "goal image {path} was made from {}; this policy was trained on {}",
        camera::preprocess::describe_crop(*goal),
        camera::preprocess::describe_crop(*policy)
    )]
    GoalCrop {
        path: PathBuf,
        goal: Option<Crop>,
        policy: Option<Crop>,
    },
    /// The checkpoint could not be read (missing files, corrupt, wrong tensor shapes).
    #[error("checkpoint {dir}: {source}")]
    Checkpoint {
        dir: PathBuf,
        // Boxed, like `Inference`, to keep this error (and the runtime's errors holding it) small.
        #[source]
        source: Box<MqeError>,
    },
    /// The checkpoint is valid but not a Bridge pixel policy.
    #[error("checkpoint {dir}: field `{field}` is {found}; bridge-run needs {expected}")]
    Incompatible {
        dir: PathBuf,
        field: &'static str,
        expected: &'static str,
        found: String,
    },
    /// A checkpoint parameter holds NaN or infinity (a diverged training run).
    #[error("checkpoint {dir}: parameter `{name}` holds NaN or infinite values")]
    NonFiniteParameter { dir: PathBuf, name: String },
    /// The observation buffer has the wrong length.
    #[error(
        "observation has {len} bytes; the policy expects {size_px}x{size_px}x3 = {expected} bytes"
    )]
    ObservationSize {
        len: usize,
        size_px: u32,
        expected: usize,
    },
    /// `act` was called before `set_goal`.
    #[error("no goal set: call set_goal before act")]
    NoGoal,
    /// The model failed while running.
    #[error("policy inference failed: {0}")]
    Inference(Box<MqeError>),
    /// A failure of another policy implementation (test policies, remote policies).
    #[error("policy failed: {0}")]
    Failed(String),
}

/// The goal, as given (for the record) and as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalImage {
    /// Where the goal came from (a file, or a label for goals made in memory).
    pub path: PathBuf,
    /// Side of the square model input.
    pub size_px: u32,
    /// The frame region the model input was made from (`None`: the whole frame).
    pub crop: Option<Crop>,
    /// `size_px * size_px * 3` bytes, RGB HWC, the goal frame as the model sees it.
    pub model_rgb: Vec<u8>,
    /// The goal frame as the camera sees it (for the run report; shared, not copied, per episode).
    pub frame: Arc<image::RgbImage>,
}

impl GoalImage {
    /// Loads a PNG or JPEG goal. When `expected_frame_px` (width, height) is given, the image must
    /// have exactly that size (the camera's frame size): a goal of another size would be squashed
    /// differently from the observations. Alpha is dropped, grey is expanded to RGB.
    pub fn load(
        path: &Path,
        view: impl Into<ModelView>,
        expected_frame_px: Option<(u32, u32)>,
    ) -> Result<Self, PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::GoalIo {
            path: path.to_path_buf(),
            source,
        })?;
        let rgb = decode_png_or_jpeg(path, &bytes)?;
        let (width_px, height_px) = rgb.dimensions();
        if let Some((expected_width_px, expected_height_px)) = expected_frame_px
            && (width_px, height_px) != (expected_width_px, expected_height_px)
        {
            return Err(PolicyError::GoalSize {
                path: path.to_path_buf(),
                width_px,
                height_px,
                expected_width_px,
                expected_height_px,
            });
        }
        Self::from_rgb(path, rgb.as_raw(), width_px, height_px, view)
    }

    /// A goal from an RGB frame in memory (`width_px * height_px * 3` bytes, HWC), e.g. a camera
    /// frame captured as the goal or a rendered goal scene; `path_label` names it in errors.
    pub fn from_rgb(
        path_label: &Path,
        rgb: &[u8],
        width_px: u32,
        height_px: u32,
        view: impl Into<ModelView>,
    ) -> Result<Self, PolicyError> {
        let view = view.into();
        let mut model_rgb = Vec::with_capacity(view.input_len());
        view.apply(rgb, width_px, height_px, &mut model_rgb)
            .map_err(|source| PolicyError::GoalPixels {
                path: path_label.to_path_buf(),
                source,
            })?;
        let frame =
            image::RgbImage::from_raw(width_px, height_px, rgb.to_vec()).ok_or_else(|| {
                PolicyError::GoalPixels {
                    path: path_label.to_path_buf(),
                    source: camera::CameraError::FrameSize {
                        len: rgb.len(),
                        width_px,
                        height_px,
                        expected: width_px as usize * height_px as usize * 3,
                    },
                }
            })?;
        Ok(Self {
            path: path_label.to_path_buf(),
            size_px: view.size_px,
            crop: view.crop,
            model_rgb,
            frame: Arc::new(frame),
        })
    }
}

impl From<MqeError> for PolicyError {
    fn from(e: MqeError) -> Self {
        PolicyError::Inference(Box::new(e))
    }
}

fn decode_png_or_jpeg(path: &Path, bytes: &[u8]) -> Result<image::RgbImage, PolicyError> {
    let format_error = |reason: String| PolicyError::GoalFormat {
        path: path.to_path_buf(),
        reason,
    };
    let format = image::guess_format(bytes)
        .map_err(|_| format_error("content is not a recognised image format".into()))?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
        return Err(format_error(format!("is a {format:?} image")));
    }
    let decoded = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| format_error(format!("corrupt {format:?} data: {e}")))?;
    Ok(decoded.into_rgb8())
}

fn model_len(size_px: u32) -> usize {
    size_px as usize * size_px as usize * CHANNELS
}

/// One policy step's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyOutput {
    /// Bridge action `[dx, dy, dz, droll, dpitch, dyaw, gripper]` in dataset units (metres,
    /// radians, gripper in [0, 1] before thresholding): clip(mu, -1, 1), then denormalised.
    pub action: [f32; ACTION_DIM],
    /// Learned distance d(s, g) to the goal (roughly: steps to go). NaN for a GCBC checkpoint,
    /// which has no critic.
    pub distance: f32,
    /// Wall time of the inference, seconds.
    pub inference_s: f64,
}

impl PolicyOutput {
    /// True when every action entry is finite, i.e. the action may be executed. The distance is
    /// informational and not part of this check (it is NaN for GCBC); see
    /// [`PolicyOutput::distance_is_finite`].
    pub fn is_finite(&self) -> bool {
        self.action.iter().all(|a| a.is_finite())
    }

    /// True when the learned distance is finite.
    pub fn distance_is_finite(&self) -> bool {
        self.distance.is_finite()
    }
}

/// The runtime's view of whatever chooses the actions: a learned policy, and also the operator
/// teleoperating ([`crate::teleop`]), a recording replayed ([`crate::replay`]) or a drive to a
/// pose ([`crate::replay::PoseTarget`]), so that all of them go through the same supervisor,
/// recorder and report. A trait so tests can inject NaN or slow policies.
pub trait Policy: Send {
    /// Side of the square RGB input the policy expects.
    fn input_size_px(&self) -> u32;
    /// How a camera frame becomes this policy's input; default: the whole frame squashed to
    /// [`Policy::input_size_px`].
    fn input_view(&self) -> ModelView {
        ModelView::from(self.input_size_px())
    }
    /// Sets the goal for the following `act` calls.
    fn set_goal(&mut self, goal: &GoalImage) -> Result<(), PolicyError>;
    /// One step: `obs_model_rgb` is `size_px^2 * 3` bytes from `squash_rgb`. Non-finite outputs
    /// are returned as they are; the caller decides (see [`PolicyOutput::is_finite`]).
    fn act(&mut self, obs_model_rgb: &[u8]) -> Result<PolicyOutput, PolicyError>;
    /// The arm's measured Bridge state `[x, y, z, roll, pitch, yaw, gripper]` for this step,
    /// given just before [`Policy::act`]. A learned policy sees only pixels and ignores it.
    fn observe_state(&mut self, _bridge_state: &[f64; 7]) {}
    /// Whether the source has nothing more to do this episode (a replay's actions are used up,
    /// the operator ended a teleoperated episode, a pose is reached): the episode then ends as
    /// completed after this step. A learned policy runs to the episode's step limit.
    fn episode_done(&self) -> bool {
        false
    }
    /// How this source's steps are flagged in recordings.
    fn step_kind(&self) -> StepKind {
        StepKind::Policy
    }
}

/// An MQE (or GCBC) checkpoint with pixel observations and Bridge actions, run with candle.
pub struct MqePolicy {
    agent: Agent,
    norm: ActionNorm,
    device: Device,
    size_px: u32,
    /// The frame crop of the training data (`data.input_crop_px` of the checkpoint).
    crop: Option<Crop>,
    has_critic: bool,
    /// Where the checkpoint's training data came from (`data.data_source`).
    data_source: DataSource,
    /// The goal as a `[1, H, W, 3]` u8 tensor on the device, uploaded once per `set_goal`.
    goal: Option<Tensor>,
    /// psi(goal) per ensemble member (MQE only), encoded once per `set_goal`: the critic then
    /// encodes only the observation each step.
    goal_latent: Option<Tensor>,
}

impl MqePolicy {
    /// Loads `checkpoint_dir` onto `device`. Refuses, naming the field, a checkpoint whose
    /// observation is not pixels (`model.obs`), whose images are not RGB (`model.obs.channels`)
    /// or whose actions are not 7-dimensional (`model.action_dim`), and one with non-finite
    /// parameters.
    pub fn load(checkpoint_dir: &Path, device: &Device) -> Result<Self, PolicyError> {
        let checkpoint_error = |source| PolicyError::Checkpoint {
            dir: checkpoint_dir.to_path_buf(),
            source: Box::new(source),
        };
        let config = CheckpointConfig::read(checkpoint_dir).map_err(checkpoint_error)?;
        let size_px = check_runtime_model(checkpoint_dir, &config)?;
        let crop = config
            .data
            .input_crop_px
            .map(Crop::from_array)
            .transpose()
            .map_err(|e| PolicyError::Incompatible {
                dir: checkpoint_dir.to_path_buf(),
                field: "data.input_crop_px",
                expected: "[x, y, width, height] with width and height >= 1",
                found: e.to_string(),
            })?;
        let agent = Agent::load(checkpoint_dir, device).map_err(checkpoint_error)?;
        check_parameters_finite(checkpoint_dir, &agent)?;
        Ok(Self {
            norm: agent.action_norm().clone(),
            has_critic: agent.model_config().algo == Algo::Mqe,
            data_source: config.data.data_source,
            device: device.clone(),
            size_px,
            crop,
            goal: None,
            goal_latent: None,
            agent,
        })
    }

    /// Where the checkpoint's training data came from (simulator, robot, ...).
    pub fn data_source(&self) -> DataSource {
        self.data_source
    }

    /// The loaded agent (architecture, action map).
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// Whether `distance` is computed (MQE) or NaN (GCBC).
    pub fn has_distance(&self) -> bool {
        self.has_critic
    }

    fn image_tensor(&self, rgb: &[u8]) -> Result<Tensor, MqeError> {
        let side = self.size_px as usize;
        Ok(Tensor::from_slice(
            rgb,
            (1, side, side, CHANNELS),
            &self.device,
        )?)
    }

    fn infer(&self, obs: &Tensor, goal: &Tensor) -> Result<([f32; ACTION_DIM], f32), MqeError> {
        let mu = self.agent.act(obs, goal)?.flatten_all()?.to_vec1::<f32>()?;
        let denormalised = self.norm.denormalise(&mu)?;
        let mut action = [0f32; ACTION_DIM];
        action.copy_from_slice(&denormalised);
        let distance = match &self.goal_latent {
            Some(goal_latent) => {
                let d = self.agent.distance_to_latent(obs, goal_latent)?;
                d.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?[0]
            }
            None => f32::NAN,
        };
        Ok((action, distance))
    }
}

/// Checks what bridge-run relies on; returns the input size.
fn check_runtime_model(dir: &Path, config: &CheckpointConfig) -> Result<u32, PolicyError> {
    let incompatible =
        |field: &'static str, expected: &'static str, found: String| PolicyError::Incompatible {
            dir: dir.to_path_buf(),
            field,
            expected,
            found,
        };
    let (size_px, channels) = match config.model.obs {
        ObsKind::Pixels { size_px, channels } => (size_px, channels),
        ObsKind::State { dim } => {
            return Err(incompatible(
                "model.obs",
                "pixels (a camera policy)",
                format!("state (dim {dim})"),
            ));
        }
    };
    if channels != CHANNELS {
        return Err(incompatible(
            "model.obs.channels",
            "3 (RGB)",
            channels.to_string(),
        ));
    }
    if config.model.action_dim != ACTION_DIM {
        return Err(incompatible(
            "model.action_dim",
            "7 (Bridge actions)",
            config.model.action_dim.to_string(),
        ));
    }
    u32::try_from(size_px).map_err(|_| {
        incompatible(
            "model.obs.size_px",
            "at most 4294967295",
            size_px.to_string(),
        )
    })
}

fn check_parameters_finite(dir: &Path, agent: &Agent) -> Result<(), PolicyError> {
    for (name, var) in agent.parameters() {
        let non_finite = var
            .as_tensor()
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| PolicyError::Checkpoint {
                dir: dir.to_path_buf(),
                source: Box::new(e.into()),
            })?
            .iter()
            .any(|v| !v.is_finite());
        if non_finite {
            return Err(PolicyError::NonFiniteParameter {
                dir: dir.to_path_buf(),
                name,
            });
        }
    }
    Ok(())
}

impl Policy for MqePolicy {
    fn input_size_px(&self) -> u32 {
        self.size_px
    }

    fn input_view(&self) -> ModelView {
        ModelView {
            size_px: self.size_px,
            crop: self.crop,
        }
    }

    fn set_goal(&mut self, goal: &GoalImage) -> Result<(), PolicyError> {
        if goal.size_px != self.size_px || goal.model_rgb.len() != model_len(self.size_px) {
            return Err(PolicyError::GoalModelSize {
                path: goal.path.clone(),
                goal_px: goal.size_px,
                policy_px: self.size_px,
            });
        }
        if goal.crop != self.crop {
            return Err(PolicyError::GoalCrop {
                path: goal.path.clone(),
                goal: goal.crop,
                policy: self.crop,
            });
        }
        let goal_tensor = self.image_tensor(&goal.model_rgb)?;
        self.goal_latent = if self.has_critic {
            Some(self.agent.goal_latent(&goal_tensor)?)
        } else {
            None
        };
        self.goal = Some(goal_tensor);
        Ok(())
    }

    fn act(&mut self, obs_model_rgb: &[u8]) -> Result<PolicyOutput, PolicyError> {
        let expected = model_len(self.size_px);
        if obs_model_rgb.len() != expected {
            return Err(PolicyError::ObservationSize {
                len: obs_model_rgb.len(),
                size_px: self.size_px,
                expected,
            });
        }
        let goal = self.goal.as_ref().ok_or(PolicyError::NoGoal)?;
        let started = Instant::now();
        let obs = self.image_tensor(obs_model_rgb)?;
        let (action, distance) = self.infer(&obs, goal)?;
        Ok(PolicyOutput {
            action,
            distance,
            inference_s: started.elapsed().as_secs_f64(),
        })
    }
}
