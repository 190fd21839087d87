//! The `bridge-run` binary's `--sim` glue (declared in main.rs, not part of the library): the
//! virtual rig, the checkpoint's tasks, and the simulator's judgement of each episode. Built
//! with the default `sim` feature; without it, `--sim` is refused with a message that says how
//! to get it.

#[cfg(feature = "sim")]
pub use with_sim::*;
#[cfg(not(feature = "sim"))]
pub use without_sim::*;

#[cfg(feature = "sim")]
mod with_sim {
    use std::path::{Path, PathBuf};

    use anyhow::{Context, Result};
    use bridge_run::sim::SimRig;
    use camera::FrameSource;
    use widowx_driver::Arm;
    use widowx_sim::SceneHandle;
    use widowx_sim::tasks::{TaskFile, TaskSpec};

    /// `--sim` can run.
    pub fn available() -> Result<()> {
        Ok(())
    }

    /// The virtual arm on its tabletop; dropping it stops the arm.
    pub struct SimHandle(SimRig);

    impl SimHandle {
        pub fn spawn(seed: u64) -> Result<SimHandle> {
            Ok(SimHandle(
                SimRig::spawn(seed).context("starting the virtual arm")?,
            ))
        }

        pub fn connect(&self) -> Result<Arm> {
            self.0.connect().context("connecting to the virtual arm")
        }

        /// The rendered camera at `fps` and its frame size.
        pub fn camera(&self, fps: f64) -> Result<(Box<dyn FrameSource>, (u32, u32))> {
            let camera = self.0.camera(fps)?;
            let px = (camera.renderer().width_px(), camera.renderer().height_px());
            Ok((Box::new(camera), px))
        }
    }

    /// `<checkpoint>/tasks.toml`, when there is one.
    fn checkpoint_tasks(checkpoint: &Path) -> Result<Option<TaskFile>> {
        let path = checkpoint.join("tasks.toml");
        if !path.exists() {
            return Ok(None);
        }
        let tasks =
            TaskFile::load(&path).with_context(|| format!("task file {}", path.display()))?;
        Ok(Some(tasks))
    }

    /// The goal image of the checkpoint's `default_task`, when its tasks.toml names one.
    pub fn default_goal(checkpoint: &Path) -> Result<Option<PathBuf>> {
        let Some(name) = checkpoint_tasks(checkpoint)?.and_then(|t| t.default_task) else {
            return Ok(None);
        };
        let path = checkpoint.join("goals").join(format!("{name}-goal.png"));
        if !path.is_file() {
            anyhow::bail!(
                "default_task `{name}` of {}: its goal image {} is missing",
                checkpoint.join("tasks.toml").display(),
                path.display()
            );
        }
        Ok(Some(path))
    }

    /// With --sim, the task whose goal image is run: the simulator judges each episode by it.
    pub struct SimTask {
        task: TaskSpec,
        /// Block start positions (the task file's block order).
        start_m: Vec<[f64; 2]>,
        scene: SceneHandle,
    }

    impl SimTask {
        /// For a goal named `<task>-goal.png` whose task is in `<checkpoint>/tasks.toml` (as the
        /// shipped demo's are): places the blocks where that task starts, so that the goal is
        /// reachable, and returns the task with a line saying so. Otherwise the blocks stay
        /// where `--sim-seed` put them.
        pub fn place(
            checkpoint: &Path,
            goal_file: &Path,
            sim: &SimHandle,
        ) -> Result<Option<(SimTask, String)>> {
            let Some(task_name) = goal_file
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.strip_suffix("-goal"))
            else {
                return Ok(None);
            };
            let Some(tasks) = checkpoint_tasks(checkpoint)? else {
                return Ok(None);
            };
            let Some(task) = tasks.task(task_name).cloned() else {
                return Ok(None);
            };
            let placed = SimTask {
                start_m: task.start_positions(&tasks.blocks),
                scene: sim.0.scene().clone(),
                task,
            };
            placed.reset_blocks()?;
            let line = format!(
                "bridge-run: blocks placed at the start of task `{task_name}` ({}, {})",
                checkpoint.join("tasks.toml").display(),
                placed.task.tier().label()
            );
            Ok(Some((placed, line)))
        }

        /// Puts the blocks back at the task's start (before every episode after the first).
        pub fn reset_blocks(&self) -> Result<()> {
            self.scene
                .set_block_positions(&self.start_m)
                .with_context(|| format!("placing the blocks of task `{}`", self.task.name))
        }

        /// Whether the scene now meets the goal, and the line that says so.
        pub fn judge(&self) -> (bool, String) {
            let outcome = self.task.outcome(&self.scene.scene());
            let line = format!(
                "bridge-run: goal {}reached (the simulator's judgement of task `{}`): {}",
                if outcome.success { "" } else { "NOT " },
                self.task.name,
                outcome.describe()
            );
            (outcome.success, line)
        }
    }
}

#[cfg(not(feature = "sim"))]
mod without_sim {
    use std::path::{Path, PathBuf};

    use anyhow::{Result, bail};
    use camera::FrameSource;
    use widowx_driver::Arm;

    const NO_SIM: &str = "this bridge-run is built without the simulator: rebuild with the \
        default features (`cargo build --release -p bridge-run`) to use --sim";

    /// Refuses `--sim`: this build has no simulator.
    pub fn available() -> Result<()> {
        bail!(NO_SIM)
    }

    /// No virtual arm in this build: the type has no values.
    pub enum SimHandle {}

    impl SimHandle {
        pub fn spawn(_seed: u64) -> Result<SimHandle> {
            bail!(NO_SIM)
        }

        pub fn connect(&self) -> Result<Arm> {
            match *self {}
        }

        pub fn camera(&self, _fps: f64) -> Result<(Box<dyn FrameSource>, (u32, u32))> {
            match *self {}
        }
    }

    pub fn default_goal(_checkpoint: &Path) -> Result<Option<PathBuf>> {
        Ok(None)
    }

    /// No simulator, so no task to judge: the type has no values.
    pub enum SimTask {}

    impl SimTask {
        pub fn place(
            _checkpoint: &Path,
            _goal_file: &Path,
            sim: &SimHandle,
        ) -> Result<Option<(SimTask, String)>> {
            match *sim {}
        }

        pub fn reset_blocks(&self) -> Result<()> {
            match *self {}
        }

        pub fn judge(&self) -> (bool, String) {
            match *self {}
        }
    }
}
