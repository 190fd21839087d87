//! `bridge-train browse`: a static HTML report of a recording directory or a training cache that
//! opens in a browser from disk, with no server: an episode grid (thumbnail, animation on hover,
//! plots of the actions and the gripper), counts per task and instruction, and the episodes
//! `prepare` skips or trims (aborted, intervened, unreadable).
//!
//! Written as `index.html` beside a `media/` folder of JPEG thumbnails and GIF animations.
//! Not for: statistics over large datasets: it reads sources until `max_episodes` episodes are
//! shown and says how many it left unread.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bridge_data::cache::{Cache, CacheSettings};
use bridge_data::{Outcome, StepKind, StoredFrame, Trajectory};
use image::RgbImage;

use crate::prepare::discover_inputs;

/// Width of a thumbnail and of the animation frames, px.
const THUMB_WIDTH_PX: u32 = 160;
/// Frames an animation holds at most (spread over the episode).
const MAX_ANIMATION_FRAMES: usize = 48;
/// The cards' border colour; the browser test finds the grid by it.
pub const CARD_BORDER_RGB: [u8; 3] = [31, 111, 235];

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding {path}: {source}")]
    Image {
        path: PathBuf,
        source: image::ImageError,
    },
}

/// One episode as the report shows it.
#[derive(Debug, Clone)]
pub struct EpisodeView {
    /// Where it came from (trajectory directory or cache provenance).
    pub name: String,
    pub language: Option<String>,
    /// Frames at thumbnail size, one per observation shown.
    pub frames: Vec<RgbImage>,
    pub actions: Vec<[f32; 7]>,
    /// How it ended, as recorded ("completed", "aborted: ..."); `None` when the source does not say.
    pub outcome: Option<String>,
    /// Steps per kind (policy, teleop, jog, paused), for flagged recordings.
    pub step_kinds: BTreeMap<&'static str, usize>,
    /// Steps `prepare` leaves out by default (the operator jogged or paused).
    pub intervened_steps: usize,
}

/// Something the report lists apart from the grid: an episode `prepare` skips, or a source
/// that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// What the report is made of.
#[derive(Debug, Clone, Default)]
pub struct DataView {
    /// "recordings" or "training cache".
    pub kind: String,
    pub source: PathBuf,
    pub episodes: Vec<EpisodeView>,
    pub skipped: Vec<Skipped>,
    /// Episodes found beyond `max_episodes` (counted, not shown).
    pub not_shown: usize,
    /// Sources (trajectory directories, shards) not read once `max_episodes` were shown.
    pub sources_not_read: usize,
    /// A training cache's count of intervened steps `prepare` left out (its episodes are
    /// already split around them).
    pub intervened_steps_left_out: u64,
}

/// Reads `input`: a training cache (its `manifest.json`) or anything `prepare` reads
/// (recordings in the raw layout, TFRecord shards, the NumPy release).
pub fn load(input: &Path, max_episodes: usize) -> Result<DataView, BrowseError> {
    if Cache::is_cache(input) {
        load_cache(input, max_episodes)
    } else {
        load_recordings(input, max_episodes)
    }
}

fn load_recordings(input: &Path, max_episodes: usize) -> Result<DataView, BrowseError> {
    let input_error = |reason: String| BrowseError::Input {
        path: input.to_path_buf(),
        reason,
    };
    let settings = CacheSettings::whole_frame(64);
    let sources = discover_inputs(&[input.to_path_buf()], &settings)
        .map_err(|e| input_error(e.to_string()))?;
    let mut view = DataView {
        kind: "recordings".into(),
        source: input.to_path_buf(),
        ..DataView::default()
    };
    let total_sources = sources.len();
    for (read, source) in sources.into_iter().enumerate() {
        if view.episodes.len() >= max_episodes {
            // A large dataset: stop reading, and say how much was left.
            view.sources_not_read = total_sources - read;
            break;
        }
        match source.read() {
            Ok(trajectories) => {
                for trajectory in trajectories {
                    if let Some(reason) = prepare_skips(&trajectory) {
                        view.skipped.push(Skipped {
                            path: relative(input, &trajectory.source),
                            reason,
                        });
                    }
                    if view.episodes.len() < max_episodes {
                        view.episodes
                            .push(episode_of_trajectory(input, &trajectory));
                    } else {
                        view.not_shown += 1;
                    }
                }
            }
            Err(reason) => view.skipped.push(Skipped {
                path: relative(input, source.path()),
                reason: format!("unreadable: {reason}"),
            }),
        }
    }
    if view.episodes.is_empty() && view.skipped.is_empty() {
        return Err(input_error(
            "holds no episode (expected recordings in the BridgeData V2 raw layout, TFRecord shards, or a training cache)".into(),
        ));
    }
    Ok(view)
}

/// Why `prepare` skips the whole episode by default, if it does.
fn prepare_skips(trajectory: &Trajectory) -> Option<String> {
    match &trajectory.outcome {
        Some(Outcome::Aborted { reason }) => Some(format!(
            "aborted ({reason}): prepare skips it unless --keep-aborted"
        )),
        _ => None,
    }
}

fn relative(root: &Path, path: &Path) -> String {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn episode_of_trajectory(root: &Path, trajectory: &Trajectory) -> EpisodeView {
    let shown = sample_indices(trajectory.frames.len(), MAX_ANIMATION_FRAMES);
    let frames = shown
        .into_iter()
        .filter_map(|t| decode_thumbnail(&trajectory.frames[t]))
        .collect();
    let mut step_kinds = BTreeMap::new();
    for kind in &trajectory.step_kinds {
        *step_kinds.entry(kind.as_str()).or_insert(0) += 1;
    }
    EpisodeView {
        name: relative(root, &trajectory.source),
        language: trajectory.language.clone(),
        frames,
        actions: trajectory.actions.clone(),
        outcome: trajectory.outcome.as_ref().map(|o| match o {
            Outcome::Completed => "completed".to_string(),
            Outcome::Aborted { reason } => format!("aborted: {reason}"),
        }),
        intervened_steps: trajectory
            .step_kinds
            .iter()
            .filter(|k| StepKind::intervened(**k))
            .count(),
        step_kinds,
    }
}

/// Up to `max` indices spread evenly over `0..len`, first and last included.
fn sample_indices(len: usize, max: usize) -> Vec<usize> {
    if len <= max {
        return (0..len).collect();
    }
    (0..max).map(|i| i * (len - 1) / (max - 1)).collect()
}

fn decode_thumbnail(frame: &StoredFrame) -> Option<RgbImage> {
    let rgb = match frame {
        StoredFrame::Jpeg(bytes) => image::load_from_memory(bytes).ok()?.into_rgb8(),
        StoredFrame::Rgb {
            width_px,
            height_px,
            data,
        } => RgbImage::from_raw(*width_px, *height_px, data.clone())?,
    };
    Some(thumbnail(&rgb))
}

fn thumbnail(rgb: &RgbImage) -> RgbImage {
    let (width, height) = rgb.dimensions();
    if width <= THUMB_WIDTH_PX {
        return rgb.clone();
    }
    let thumb_height = (height * THUMB_WIDTH_PX / width.max(1)).max(1);
    image::imageops::thumbnail(rgb, THUMB_WIDTH_PX, thumb_height)
}

fn load_cache(input: &Path, max_episodes: usize) -> Result<DataView, BrowseError> {
    let cache = Cache::open(input).map_err(|e| BrowseError::Input {
        path: input.to_path_buf(),
        reason: e.to_string(),
    })?;
    let side = cache.manifest().frame_shape[0];
    let frame_len = side * side * 3;
    let mut view = DataView {
        kind: "training cache".into(),
        source: input.to_path_buf(),
        intervened_steps_left_out: cache.manifest().counts.intervened_steps_left_out,
        skipped: cache
            .manifest()
            .skipped
            .iter()
            .map(|s| Skipped {
                path: s.path.clone(),
                reason: s.reason.clone(),
            })
            .collect(),
        ..DataView::default()
    };
    for entry in cache.trajectories() {
        if view.episodes.len() >= max_episodes {
            view.not_shown += 1;
            continue;
        }
        let first = entry.first_row as usize;
        let rows = entry.rows as usize;
        let frames = sample_indices(rows, MAX_ANIMATION_FRAMES)
            .into_iter()
            .filter_map(|t| {
                let at = (first + t) * frame_len;
                let bytes = cache.frames().get(at..at + frame_len)?;
                RgbImage::from_raw(side as u32, side as u32, bytes.to_vec())
            })
            .collect();
        // The last row of an episode is a zero pad, not an action.
        let actions = cache.actions()[first * 7..(first + rows.saturating_sub(1)) * 7]
            .chunks_exact(7)
            .map(|a| std::array::from_fn(|i| a[i]))
            .collect();
        view.episodes.push(EpisodeView {
            name: entry.provenance.clone(),
            language: entry.language.clone(),
            frames,
            actions,
            outcome: None,
            step_kinds: BTreeMap::new(),
            intervened_steps: 0,
        });
    }
    Ok(view)
}

/// Writes `index.html` and `media/` into `out` (created); returns the page's path.
pub fn write_report(view: &DataView, out: &Path) -> Result<PathBuf, BrowseError> {
    let media = out.join("media");
    std::fs::create_dir_all(&media).map_err(|source| BrowseError::Write {
        path: media.clone(),
        source,
    })?;
    for (i, episode) in view.episodes.iter().enumerate() {
        write_media(episode, &media, i)?;
    }
    let page = out.join("index.html");
    std::fs::write(&page, html(view)).map_err(|source| BrowseError::Write {
        path: page.clone(),
        source,
    })?;
    Ok(page)
}

fn write_media(episode: &EpisodeView, media: &Path, index: usize) -> Result<(), BrowseError> {
    let Some(first) = episode.frames.first() else {
        return Ok(());
    };
    let thumb = media.join(format!("ep{index}.jpg"));
    first.save(&thumb).map_err(|source| BrowseError::Image {
        path: thumb.clone(),
        source,
    })?;
    let gif = media.join(format!("ep{index}.gif"));
    let file = std::fs::File::create(&gif).map_err(|source| BrowseError::Write {
        path: gif.clone(),
        source,
    })?;
    let mut encoder = image::codecs::gif::GifEncoder::new_with_speed(file, 10);
    let encoded = encoder
        .set_repeat(image::codecs::gif::Repeat::Infinite)
        .and_then(|()| {
            encoder.encode_frames(episode.frames.iter().map(|frame| {
                let rgba = image::DynamicImage::ImageRgb8(frame.clone()).into_rgba8();
                image::Frame::from_parts(rgba, 0, 0, image::Delay::from_numer_denom_ms(200, 1))
            }))
        });
    encoded.map_err(|source| BrowseError::Image { path: gif, source })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(view: &DataView) -> String {
    let [r, g, b] = CARD_BORDER_RGB;
    let steps: usize = view.episodes.iter().map(|e| e.actions.len()).sum();
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>\n\
         body{{font-family:sans-serif;margin:16px;background:#fafafa;color:#222}}\n\
         .grid{{display:flex;flex-wrap:wrap;gap:12px}}\n\
         .card{{border:4px solid rgb({r},{g},{b});background:#fff;padding:6px;width:260px}}\n\
         .card img{{width:240px;image-rendering:pixelated;display:block}}\n\
         .card p{{margin:4px 0;font-size:12px}}\n\
         table{{border-collapse:collapse;margin:8px 0}} td,th{{border:1px solid #ccc;padding:2px 8px;font-size:13px}}\n\
         .warn{{color:#a40}}\n</style></head><body>\n\
         <h1>{title}</h1>\n<p>{kind}: {episodes} episode(s), {steps} step(s){not_shown}</p>\n",
        title = escape(&format!("Data: {}", view.source.display())),
        kind = escape(&view.kind),
        episodes = view.episodes.len() + view.not_shown,
        not_shown = match (view.not_shown, view.sources_not_read) {
            (0, 0) => String::new(),
            (_, 0) => format!("; the first {} shown", view.episodes.len()),
            (_, unread) => format!(
                "; the first {} shown, {unread} more source(s) not read (--max-episodes)",
                view.episodes.len()
            ),
        },
    );
    page += &task_table(view);
    page += &skipped_table(view);
    page += "<h2>Episodes</h2>\n<div class=\"grid\">\n";
    for (i, episode) in view.episodes.iter().enumerate() {
        page += &card(episode, i);
    }
    page += "</div>\n</body></html>\n";
    page
}

fn task_table(view: &DataView) -> String {
    let mut tasks: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for episode in &view.episodes {
        let task = episode.language.as_deref().unwrap_or("(no instruction)");
        let entry = tasks.entry(task).or_default();
        entry.0 += 1;
        entry.1 += episode.actions.len();
    }
    let mut out = String::from(
        "<h2>Tasks</h2>\n<table id=\"tasks\"><tr><th>instruction</th><th>episodes</th><th>steps</th></tr>\n",
    );
    for (task, (episodes, steps)) in tasks {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{episodes}</td><td>{steps}</td></tr>",
            escape(task)
        );
    }
    out + "</table>\n"
}

fn skipped_table(view: &DataView) -> String {
    let intervened: Vec<&EpisodeView> = view
        .episodes
        .iter()
        .filter(|e| e.intervened_steps > 0)
        .collect();
    let left_out = match view.intervened_steps_left_out {
        0 => String::new(),
        n => {
            format!("; {n} intervened step(s) left out by prepare, the episodes split around them")
        }
    };
    let mut out = format!(
        "<h2>Skipped and intervened</h2>\n<p>{} skipped or unreadable, {} with intervened steps{left_out}</p>\n\
         <table id=\"skipped\"><tr><th>episode</th><th>why</th></tr>\n",
        view.skipped.len(),
        intervened.len()
    );
    for skipped in &view.skipped {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"warn\">{}</td></tr>",
            escape(&skipped.path),
            escape(&skipped.reason)
        );
    }
    for episode in intervened {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{} intervened step(s) (jog or pause): prepare leaves them out unless --keep-intervened</td></tr>",
            escape(&episode.name),
            episode.intervened_steps
        );
    }
    out + "</table>\n"
}

fn card(episode: &EpisodeView, index: usize) -> String {
    let image = if episode.frames.is_empty() {
        "<p class=\"warn\">no frame could be decoded</p>".to_string()
    } else {
        format!(
            "<img src=\"media/ep{index}.jpg\" data-still=\"media/ep{index}.jpg\" data-anim=\"media/ep{index}.gif\" \
             onmouseover=\"this.src=this.dataset.anim\" onmouseout=\"this.src=this.dataset.still\" alt=\"episode {index}\">"
        )
    };
    let kinds: Vec<String> = episode
        .step_kinds
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    format!(
        "<div class=\"card\" id=\"episode-{index}\">{image}\n<p><b>{name}</b></p>\n<p>{language}</p>\n\
         <p>{steps} steps{kinds}{outcome}</p>\n{plot}</div>\n",
        name = escape(&episode.name),
        language = escape(episode.language.as_deref().unwrap_or("(no instruction)")),
        steps = episode.actions.len(),
        kinds = if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        },
        outcome = episode
            .outcome
            .as_ref()
            .map_or(String::new(), |o| format!("; {}", escape(o))),
        plot = action_plots(&episode.actions),
    )
}

/// Two inline SVG plots: the six motion deltas (x y z solid, roll pitch yaw dashed), each
/// scaled to the largest magnitude, and the gripper in 0..1.
fn action_plots(actions: &[[f32; 7]]) -> String {
    const WIDTH: f32 = 240.0;
    const HEIGHT: f32 = 70.0;
    const GRIPPER_HEIGHT: f32 = 24.0;
    if actions.is_empty() {
        return String::new();
    }
    let scale = actions
        .iter()
        .flat_map(|a| a[..6].iter().map(|v| v.abs()))
        .fold(1e-6f32, f32::max);
    let x_of = |t: usize| t as f32 * WIDTH / (actions.len().max(2) - 1) as f32;
    let polyline = |entry: usize, y_of: &dyn Fn(f32) -> f32| -> String {
        actions
            .iter()
            .enumerate()
            .map(|(t, a)| format!("{:.1},{:.1}", x_of(t), y_of(a[entry])))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let colours = ["#d62728", "#2ca02c", "#1f77b4"];
    let mut svg = format!(
        "<svg class=\"actions\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\">\
         <title>actions: x y z (solid), roll pitch yaw (dashed); full height = {scale:.4}</title>\
         <line x1=\"0\" y1=\"{mid}\" x2=\"{WIDTH}\" y2=\"{mid}\" stroke=\"#bbb\"/>",
        mid = HEIGHT / 2.0
    );
    let motion_y = |v: f32| HEIGHT / 2.0 - v / scale * (HEIGHT / 2.0 - 2.0);
    for entry in 0..6 {
        let dash = if entry >= 3 {
            " stroke-dasharray=\"3,2\""
        } else {
            ""
        };
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\"{dash} points=\"{}\"/>",
            colours[entry % 3],
            polyline(entry, &motion_y)
        );
    }
    svg += "</svg>";
    let gripper_y = |v: f32| GRIPPER_HEIGHT - 2.0 - v.clamp(0.0, 1.0) * (GRIPPER_HEIGHT - 4.0);
    let _ = write!(
        svg,
        "<svg class=\"gripper\" width=\"{WIDTH}\" height=\"{GRIPPER_HEIGHT}\"><title>gripper (1 open, 0 closed)</title>\
         <polyline fill=\"none\" stroke=\"#555\" points=\"{}\"/></svg>",
        polyline(6, &gripper_y)
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_spread_over_the_episode_with_both_ends() {
        assert_eq!(sample_indices(3, 48), vec![0, 1, 2]);
        let picked = sample_indices(100, 5);
        assert_eq!(picked, vec![0, 24, 49, 74, 99]);
    }

    #[test]
    fn text_is_escaped_in_the_page() {
        let view = DataView {
            kind: "recordings".into(),
            source: PathBuf::from("/data"),
            episodes: vec![EpisodeView {
                name: "traj0".into(),
                language: Some("put <b>it</b> & go".into()),
                frames: Vec::new(),
                actions: vec![[0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]; 3],
                outcome: Some("completed".into()),
                step_kinds: BTreeMap::from([("teleop", 3)]),
                intervened_steps: 0,
            }],
            skipped: vec![Skipped {
                path: "traj1".into(),
                reason: "aborted (q)".into(),
            }],
            not_shown: 0,
            sources_not_read: 0,
            intervened_steps_left_out: 0,
        };
        let page = html(&view);
        assert!(page.contains("put &lt;b&gt;it&lt;/b&gt; &amp; go"));
        assert!(!page.contains("<b>it</b>"));
        assert!(page.contains("3 steps (teleop 3); completed"));
        assert!(page.contains("<td>traj1</td>"));
        assert_eq!(page.matches("class=\"card\"").count(), 1);
        assert_eq!(page.matches("<polyline").count(), 7);
    }
}
