//! The training loop: sample, step, log, validate, checkpoint, resume.
//!
//! Checkpoints: the output directory IS the checkpoint. At every checkpoint interval and at the
//! end, `model.safetensors`, `optimizer.safetensors` and `config.toml` in it are replaced (each
//! through a temporary file), so `--out DIR` can be loaded with `mqe::Agent::load(DIR)`, served
//! with `policy-server DIR` and continued with `--resume DIR`. `metrics.jsonl` beside them gets
//! one JSON object per log interval (`"split": "train"`), per validation pass
//! (`"split": "val"`) and, with [`FitOptions::env_eval`], per evaluation in an OGBench
//! environment (`"split": "env"`, an [`EnvEvalRecord`]). A resumed run first drops the records after its checkpoint's step (a run
//! stopped between checkpoints logged steps that are trained again), and its checkpoint records
//! the schedule it was extended to.
//!
//! Exact resume: the batch of step `s` is drawn by a sampler seeded with a hash of
//! (`train.seed`, `s`), so the sampling stream needs no saved state beyond the step counter and
//! the seed, which the checkpoint holds (with the parameters and the Adam moments). A run resumed
//! at step `s` therefore computes bit-identical batches and updates to an uninterrupted one.
//! Batches are drawn ahead on background threads ([`crate::loader`]), with the same per-step
//! seeds, so the number of loader threads changes the speed, never the result.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bridge_data::Dataset;
use bridge_data::{Sampler, SamplerConfig, SamplerError};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use mqe::{ActionNorm, Agent, CheckpointMeta, DataSource, Metrics, MqeError};
use serde::{Deserialize, Serialize};

use crate::config::{ArchConfig, RunConfig};
use crate::data::{BatchConverter, DataError, action_norm_for, obs_kind, sampler_config};
use crate::env_eval::{EnvEvalError, EnvEvalRecord, EnvEvaluator};
use crate::loader::{Loader, LoaderConfig, LoaderError};

/// Log file written beside the checkpoint.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Batches averaged in one validation pass (always the same batches: fixed seed).
pub const VALIDATION_BATCHES: usize = 4;
/// Seed of the validation sampler.
const VALIDATION_SEED: u64 = 0x7661_6c69_6461_7465;

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("model: {0}")]
    Model(#[from] MqeError),
    #[error("data: {0}")]
    Data(#[from] DataError),
    #[error("dataset: {0}")]
    Dataset(#[from] bridge_data::DatasetError),
    #[error("sampler: {0}")]
    Sampler(#[from] SamplerError),
    #[error("batch loader: {0}")]
    Loader(#[from] LoaderError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} already holds a checkpoint (config.toml): pass --resume {path} to continue it, or choose another --out"
    )]
    OutDirTaken { path: PathBuf },
    #[error(
        "cannot resume {path}: `{field}` is {checkpoint} in the checkpoint but {requested} was requested (only steps and the log/eval/checkpoint intervals may change on resume)"
    )]
    ResumeMismatch {
        path: PathBuf,
        field: String,
        checkpoint: String,
        requested: String,
    },
    #[error("validation data do not match the training data: {reason}")]
    ValidationShape { reason: String },
    #[error("training diverged at step {step}: non-finite loss ({metrics:?})")]
    Diverged { step: u64, metrics: Metrics },
    #[error("evaluating the checkpoint at step {step} (it is saved; --resume continues): {source}")]
    EnvEval {
        step: u64,
        #[source]
        source: EnvEvalError,
    },
}

/// Scores the checkpoint in an OGBench environment every `every_steps` steps and at the end.
#[derive(Debug, Clone)]
pub struct EnvEvalSchedule {
    pub every_steps: u64,
    pub evaluator: EnvEvaluator,
}

/// Where the run writes and what it continues.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// The checkpoint directory (see the module doc).
    pub out_dir: PathBuf,
    /// Checkpoint to continue exactly (may equal `out_dir`).
    pub resume: Option<PathBuf>,
    /// Recorded in the checkpoint's `data.dataset`.
    pub dataset_name: String,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// The action normalisation of a fresh run (a training cache records its own); None
    /// computes it from the training actions ([`action_norm_for`]). A resumed run keeps the
    /// checkpoint's.
    pub action_norm: Option<ActionNorm>,
    /// Background threads drawing batches ahead of the trainer; 0 draws each batch on the
    /// training thread. Either way the batches are the same.
    pub loader_threads: usize,
    /// The frame crop the training images were made with (the cache's `crop_px`), recorded in
    /// the checkpoint so that the runtime crops the same way.
    pub input_crop_px: Option<[u32; 4]>,
    /// Where the training data came from, recorded in the checkpoint (`data.data_source`).
    pub data_source: DataSource,
    /// Environment evaluations during training (`fit --eval-every`); None: none.
    pub env_eval: Option<EnvEvalSchedule>,
}

impl FitOptions {
    /// Options writing to `out_dir` with the defaults: no resume, no progress bar, the
    /// normalisation computed from the data, one loader thread.
    pub fn new(out_dir: impl Into<PathBuf>, dataset_name: impl Into<String>) -> Self {
        Self {
            out_dir: out_dir.into(),
            resume: None,
            dataset_name: dataset_name.into(),
            progress: false,
            action_norm: None,
            loader_threads: 1,
            input_crop_px: None,
            data_source: DataSource::Unknown,
            env_eval: None,
        }
    }
}

/// Which data a log record was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Mean over the training batches of one log interval.
    Train,
    /// Mean over [`VALIDATION_BATCHES`] fixed validation batches.
    Val,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Train steps done when measured.
    pub step: u64,
    pub split: Split,
    /// Training speed over the interval (train records only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_per_s: Option<f64>,
    /// Seconds the trainer waited for its batches over the interval (train records only):
    /// near 0 when the loader keeps ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_wait_s: Option<f64>,
    pub total_loss: f32,
    pub loss_backup: f32,
    pub loss_inv: f32,
    pub q_loss: f32,
    pub bc_loss: f32,
    /// Mean learned distance on matching (s, g) pairs.
    pub dist_matching: f32,
    pub q_abs_mean: f32,
    pub actor_mse: f32,
    pub pair_accuracy: f32,
    /// Validation records of pixel MQE runs: the share of live units at the end of phi's image
    /// encoder on a validation batch (0: the encoder has died; see
    /// `mqe::Agent::critic_encoder_liveness`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phi_encoder_live: Option<f32>,
    /// The same for psi's encoder (phi's, when the two share one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi_encoder_live: Option<f32>,
}

impl LogRecord {
    fn new(step: u64, split: Split, steps_per_s: Option<f64>, m: &Metrics) -> Self {
        Self {
            step,
            split,
            steps_per_s,
            data_wait_s: None,
            total_loss: m.total_loss,
            loss_backup: m.loss_backup,
            loss_inv: m.loss_inv,
            q_loss: m.q_loss,
            bc_loss: m.bc_loss,
            dist_matching: m.dist_matching,
            q_abs_mean: m.q_abs_mean,
            actor_mse: m.actor_mse,
            pair_accuracy: m.pair_accuracy,
            phi_encoder_live: None,
            psi_encoder_live: None,
        }
    }

    /// One human-readable line of the health metrics.
    pub fn summary(&self) -> String {
        let live = match (self.phi_encoder_live, self.psi_encoder_live) {
            (Some(phi), Some(psi)) => format!(" live phi {phi:.2} psi {psi:.2}"),
            _ => String::new(),
        };
        format!(
            "backup {:.4} inv {:.4} dist {:.3} |q| {:.3} mse {:.4} acc {:.3}{live}",
            self.loss_backup,
            self.loss_inv,
            self.dist_matching,
            self.q_abs_mean,
            self.actor_mse,
            self.pair_accuracy
        )
    }
}

/// The trained agent and every record written to `metrics.jsonl` by this call.
pub struct FitOutcome {
    pub agent: Agent,
    pub records: Vec<LogRecord>,
    /// The environment evaluations (empty without [`FitOptions::env_eval`]).
    pub env_records: Vec<EnvEvalRecord>,
}

/// Trains on `train` (validating on `val` when given) until `config.train.steps`, writing the
/// checkpoint and metrics into `options.out_dir`.
pub fn fit(
    train: &Dataset,
    val: Option<&Dataset>,
    config: &RunConfig,
    options: &FitOptions,
    device: &Device,
) -> Result<FitOutcome, FitError> {
    let mut agent = start_agent(train, config, options, device)?;
    let sampler_cfg = sampler_config(&config.train);
    // Validates the sampler settings before any work.
    Sampler::new(sampler_cfg.clone(), config.train.seed)?;
    let mut validator = val
        .map(|v| Validator::new(v, train, &sampler_cfg, agent.action_norm(), device))
        .transpose()?;
    std::fs::create_dir_all(&options.out_dir).map_err(|source| FitError::Io {
        path: options.out_dir.clone(),
        source,
    })?;
    let resumed_at = options.resume.is_some().then(|| agent.step());
    let mut log = MetricsLog::open(&options.out_dir, resumed_at)?;
    let meta = CheckpointMeta {
        dataset: options.dataset_name.clone(),
        episodes: train.num_episodes() as u64,
        rows: train.len() as u64,
        input_crop_px: options.input_crop_px,
        data_source: options.data_source,
    };
    let train_cfg = &config.train;
    let bar = progress_bar(options.progress, agent.step(), train_cfg.steps);
    let loader_cfg = LoaderConfig {
        sampler: sampler_cfg.clone(),
        seed: train_cfg.seed,
        threads: options.loader_threads,
        depth: 0,
    };
    let first_step = agent.step();
    let mut loader = Loader::start(
        train,
        &loader_cfg,
        first_step,
        train_cfg.steps.max(first_step),
    )?;
    let mut converter = BatchConverter::new(device, agent.action_norm().clone());
    let mut interval = Interval::start();
    let mut trained_any = false;
    // The latest environment score, shown before the loss summary on the progress bar.
    let mut env_summary = String::new();
    while agent.step() < train_cfg.steps {
        let step = agent.step();
        debug_assert_eq!(loader.next_step(), step);
        let waiting = Instant::now();
        let buffers = loader.next_batch()?;
        interval.data_wait_s += waiting.elapsed().as_secs_f64();
        let metrics = agent.train_step(&converter.convert(buffers)?)?;
        if !metrics.total_loss.is_finite() {
            return Err(FitError::Diverged { step, metrics });
        }
        interval.add(&metrics);
        trained_any = true;
        bar.inc(1);
        let done = agent.step();
        let last = done == train_cfg.steps;
        if done.is_multiple_of(train_cfg.log_interval_steps.max(1)) || last {
            let record = interval.finish(done);
            bar.set_message(format!("{env_summary}{}", record.summary()));
            log.write(record)?;
        }
        if let Some(v) = validator
            .as_mut()
            .filter(|_| every(done, train_cfg.eval_interval_steps) || last)
        {
            let mut record = LogRecord::new(done, Split::Val, None, &v.evaluate(&agent)?);
            if let Some((phi, psi)) = v.encoder_liveness(&agent)? {
                (record.phi_encoder_live, record.psi_encoder_live) = (Some(phi), Some(psi));
            }
            bar.println(format!("step {done} val: {}", record.summary()));
            log.write(record)?;
        }
        let env_eval_due = options
            .env_eval
            .as_ref()
            .filter(|e| every(done, e.every_steps) || last);
        if every(done, train_cfg.checkpoint_interval_steps) || last || env_eval_due.is_some() {
            agent.save(&options.out_dir, &meta)?;
        }
        if let Some(schedule) = env_eval_due {
            let record = schedule
                .evaluator
                .evaluate(&options.out_dir, done)
                .map_err(|source| FitError::EnvEval { step: done, source })?;
            env_summary = format!("{} | ", record.summary());
            // Logged, not only printed on the bar: it is worth seeing with --no-progress too.
            bar.suspend(|| tracing::info!("step {done} {}: {}", record.env, record.summary()));
            log.write_env(record)?;
        }
    }
    if !trained_any {
        // Nothing to train (0 steps, or resumed at the end): still leave a loadable
        // checkpoint in `out_dir`.
        agent.save(&options.out_dir, &meta)?;
    }
    bar.finish();
    Ok(FitOutcome {
        agent,
        records: log.records,
        env_records: log.env_records,
    })
}

fn every(step: u64, interval: u64) -> bool {
    interval > 0 && step.is_multiple_of(interval)
}

/// The seed of step `step`'s sampler: splitmix64 of the run seed and the step.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    splitmix64(seed ^ splitmix64(step))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fresh agent (refusing to overwrite a checkpoint) or the resumed one (refusing a changed
/// configuration).
fn start_agent(
    train: &Dataset,
    config: &RunConfig,
    options: &FitOptions,
    device: &Device,
) -> Result<Agent, FitError> {
    let model = config
        .model
        .model_config(obs_kind(train)?, train.action_dim());
    // Never overwrite a checkpoint other than the one being continued.
    let holds_checkpoint = options.out_dir.join(mqe::checkpoint::CONFIG_FILE).exists();
    let continues_out_dir = options
        .resume
        .as_deref()
        .is_some_and(|dir| same_dir(dir, &options.out_dir));
    if holds_checkpoint && !continues_out_dir {
        return Err(FitError::OutDirTaken {
            path: options.out_dir.clone(),
        });
    }
    let Some(dir) = &options.resume else {
        let mut agent = Agent::new(model, config.train.clone(), device)?;
        let norm = match &options.action_norm {
            Some(norm) => norm.clone(),
            None => action_norm_for(train)?,
        };
        agent.set_action_norm(norm)?;
        return Ok(agent);
    };
    let mut agent = Agent::load_expecting(dir, &model, device)?;
    if let Some(norm) = options
        .action_norm
        .as_ref()
        .filter(|&n| n != agent.action_norm())
    {
        // The data grew (an incremental prepare) since the run started: keep the map the
        // network was trained with, so the resumed run stays exact.
        tracing::warn!(
            "the data's action normalisation changed since {} was started ({:?} now, {:?} in the checkpoint); keeping the checkpoint's",
            dir.display(),
            norm,
            agent.action_norm()
        );
    }
    check_resume(dir, &ArchConfig::of(agent.model_config()), &config.model)?;
    check_resume(dir, agent.train_config(), &config.train)?;
    // The checkpoint then records the schedule it is trained to (e.g. the extended steps).
    agent.set_schedule(&config.train);
    Ok(agent)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Names the first setting (other than the schedule) that differs between the checkpoint and
/// the requested configuration.
fn check_resume<T: Serialize>(dir: &Path, checkpoint: &T, requested: &T) -> Result<(), FitError> {
    let table = |v: &T| toml::Table::try_from(v).unwrap_or_default();
    let (saved, wanted) = (table(checkpoint), table(requested));
    for (key, value) in &wanted {
        if mqe::TrainConfig::SCHEDULE_FIELDS.contains(&key.as_str()) {
            continue;
        }
        let old = saved.get(key);
        if old != Some(value) {
            return Err(FitError::ResumeMismatch {
                path: dir.to_path_buf(),
                field: key.clone(),
                checkpoint: old.map_or("absent".into(), ToString::to_string),
                requested: value.to_string(),
            });
        }
    }
    Ok(())
}

/// Fixed validation batches, converted once and reused at every evaluation.
struct Validator {
    batches: Vec<mqe::Batch>,
}

impl Validator {
    fn new(
        val: &Dataset,
        train: &Dataset,
        sampler_cfg: &SamplerConfig,
        norm: &mqe::ActionNorm,
        device: &Device,
    ) -> Result<Self, FitError> {
        let (val_kind, train_kind) = (obs_kind(val)?, obs_kind(train)?);
        if val_kind != train_kind || val.action_dim() != train.action_dim() {
            return Err(FitError::ValidationShape {
                reason: format!(
                    "validation {val_kind:?} with {} action dims, training {train_kind:?} with {}",
                    val.action_dim(),
                    train.action_dim()
                ),
            });
        }
        let mut sampler = Sampler::new(sampler_cfg.clone(), VALIDATION_SEED)?;
        let mut buffers = sampler.buffers(val);
        let mut converter = BatchConverter::new(device, norm.clone());
        let mut batches = Vec::with_capacity(VALIDATION_BATCHES);
        for _ in 0..VALIDATION_BATCHES {
            sampler.sample(val, &mut buffers)?;
            batches.push(converter.convert(&buffers)?);
        }
        Ok(Self { batches })
    }

    /// Live units of the critic's image encoders on the first validation batch's observations.
    fn encoder_liveness(&self, agent: &Agent) -> Result<Option<(f32, f32)>, FitError> {
        match self.batches.first() {
            Some(batch) => Ok(agent.critic_encoder_liveness(&batch.obs)?),
            None => Ok(None),
        }
    }

    fn evaluate(&mut self, agent: &Agent) -> Result<Metrics, FitError> {
        let mut sum = Interval::start();
        for batch in &self.batches {
            sum.add(&agent.evaluate(batch)?);
        }
        Ok(sum.mean())
    }
}

/// Running sums of the metrics over one log interval.
struct Interval {
    started: Instant,
    steps: u32,
    sum: [f64; 9],
    /// Seconds spent waiting for batches.
    data_wait_s: f64,
}

impl Interval {
    fn start() -> Self {
        Self {
            started: Instant::now(),
            steps: 0,
            sum: [0.0; 9],
            data_wait_s: 0.0,
        }
    }

    fn fields(m: &Metrics) -> [f32; 9] {
        [
            m.total_loss,
            m.loss_backup,
            m.loss_inv,
            m.q_loss,
            m.bc_loss,
            m.dist_matching,
            m.q_abs_mean,
            m.actor_mse,
            m.pair_accuracy,
        ]
    }

    fn add(&mut self, m: &Metrics) {
        for (s, v) in self.sum.iter_mut().zip(Self::fields(m)) {
            *s += f64::from(v);
        }
        self.steps += 1;
    }

    fn mean(&self) -> Metrics {
        let n = f64::from(self.steps.max(1));
        let f = self.sum.map(|s| (s / n) as f32);
        Metrics {
            total_loss: f[0],
            loss_backup: f[1],
            loss_inv: f[2],
            q_loss: f[3],
            bc_loss: f[4],
            dist_matching: f[5],
            q_abs_mean: f[6],
            actor_mse: f[7],
            pair_accuracy: f[8],
        }
    }

    /// The train record of this interval; starts the next interval.
    fn finish(&mut self, step: u64) -> LogRecord {
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = (seconds > 0.0).then(|| f64::from(self.steps) / seconds);
        let mut record = LogRecord::new(step, Split::Train, rate, &self.mean());
        record.data_wait_s = Some(self.data_wait_s);
        *self = Self::start();
        record
    }
}

/// `metrics.jsonl`, flushed after every line so a crash loses nothing logged.
struct MetricsLog {
    path: PathBuf,
    file: BufWriter<File>,
    records: Vec<LogRecord>,
    env_records: Vec<EnvEvalRecord>,
}

impl MetricsLog {
    /// Starts the log afresh, or, for a run resumed at step `resumed_at`, continues it without
    /// the records after that step: a run stopped after its last checkpoint logged steps that
    /// the resumed run trains (and logs) again.
    fn open(dir: &Path, resumed_at: Option<u64>) -> Result<Self, FitError> {
        let path = dir.join(METRICS_FILE);
        let io = |source| FitError::Io {
            path: path.clone(),
            source,
        };
        if let Some(step) = resumed_at {
            drop_records_after(&path, step).map_err(io)?;
        }
        let file = File::options()
            .create(true)
            .append(resumed_at.is_some())
            .write(true)
            .truncate(resumed_at.is_none())
            .open(&path)
            .map_err(io)?;
        Ok(Self {
            path,
            file: BufWriter::new(file),
            records: Vec::new(),
            env_records: Vec::new(),
        })
    }

    fn write(&mut self, record: LogRecord) -> Result<(), FitError> {
        self.write_line(&record)?;
        self.records.push(record);
        Ok(())
    }

    fn write_env(&mut self, record: EnvEvalRecord) -> Result<(), FitError> {
        self.write_line(&record)?;
        self.env_records.push(record);
        Ok(())
    }

    fn write_line(&mut self, record: &impl Serialize) -> Result<(), FitError> {
        let io = |source| FitError::Io {
            path: self.path.clone(),
            source,
        };
        let line = serde_json::to_string(record).map_err(|e| io(e.into()))?;
        writeln!(self.file, "{line}").map_err(io)?;
        self.file.flush().map_err(io)
    }
}

/// The step of any record of `metrics.jsonl` (losses or an environment evaluation).
#[derive(Deserialize)]
struct StepOf {
    step: u64,
}

/// Rewrites `path` (if it exists) without the records of steps after `step`, through a
/// temporary file. A line that is not a record is kept: nothing but the superseded records is
/// lost.
fn drop_records_after(path: &Path, step: u64) -> std::io::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<StepOf>(line).map_or(true, |record| record.step <= step)
        })
        .collect();
    if kept.len() == text.lines().count() {
        return Ok(());
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(
        &tmp,
        kept.iter()
            .flat_map(|line| [*line, "\n"])
            .collect::<String>(),
    )?;
    std::fs::rename(&tmp, path)
}

fn progress_bar(show: bool, start: u64, total: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template = "{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(start);
    bar.reset_eta();
    bar
}

/// The configuration recorded in checkpoint `dir`: the base that `--resume` overrides apply to.
pub fn resume_base(dir: &Path) -> Result<RunConfig, FitError> {
    let saved = mqe::CheckpointConfig::read(dir)?;
    Ok(RunConfig {
        model: ArchConfig::of(&saved.model),
        train: saved.train,
    })
}
