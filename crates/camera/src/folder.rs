//! Replays images as a camera: a folder of JPEG/PNG files, or a recording in the BridgeData V2
//! raw layout (a trajectory directory; its `images0/im_<t>.jpg` are used), in numeric order of
//! the number in each file name (`im_2` before `im_10`), at a given frame rate, optionally
//! looping.

use std::path::{Path, PathBuf};

use crate::{CameraError, Frame, FrameSource, Pacer};

/// Replay settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FolderOptions {
    /// Frames per second (> 0). Default 5, the Bridge control rate at which recordings are taken.
    pub fps: f64,
    /// Start again from the first image after the last; otherwise the source ends
    /// ([`CameraError::Ended`]).
    pub looping: bool,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions {
            fps: 5.0,
            looping: false,
        }
    }
}

/// Image files played back as frames.
#[derive(Debug)]
pub struct FolderSource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    next_index: usize,
    options: FolderOptions,
    pacer: Pacer,
}

/// The camera folder of a raw Bridge trajectory.
const RAW_CAMERA_DIR: &str = "images0";

impl FolderSource {
    /// Lists the images of `path` (or of `path/images0` when that exists).
    pub fn open(path: &Path, options: FolderOptions) -> Result<FolderSource, CameraError> {
        let pacer = Pacer::at_rate(options.fps, &format!("folder {}", path.display()))?;
        let raw_camera = path.join(RAW_CAMERA_DIR);
        let dir = if raw_camera.is_dir() {
            raw_camera
        } else {
            path.to_path_buf()
        };
        let files = list_images(&dir)?;
        Ok(FolderSource {
            dir,
            files,
            next_index: 0,
            options,
            pacer,
        })
    }

    /// The images in playback order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn decode(&self, path: &Path) -> Result<(Vec<u8>, u32, u32), CameraError> {
        let image = image::open(path)
            .map_err(|e| CameraError::File {
                path: path.display().to_string(),
                reason: format!("cannot decode the image: {e}"),
            })?
            .into_rgb8();
        let (width_px, height_px) = image.dimensions();
        Ok((image.into_raw(), width_px, height_px))
    }
}

impl FrameSource for FolderSource {
    fn next_frame(&mut self) -> Result<Frame, CameraError> {
        if self.next_index == self.files.len() {
            if !self.options.looping {
                return Err(CameraError::Ended {
                    source_name: self.describe(),
                });
            }
            self.next_index = 0;
        }
        let path = self.files[self.next_index].clone();
        self.next_index += 1;
        let (captured_at, sequence) = self.pacer.wait_next();
        let (rgb, width_px, height_px) = self.decode(&path)?;
        Ok(Frame {
            rgb,
            width_px,
            height_px,
            captured_at,
            sequence,
        })
    }

    fn describe(&self) -> String {
        format!(
            "folder {} ({} images) @{}{}",
            self.dir.display(),
            self.files.len(),
            self.options.fps,
            if self.options.looping {
                ", looping"
            } else {
                ""
            }
        )
    }
}

/// JPEG and PNG files of `dir`, sorted by the last number in their names, then by name.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>, CameraError> {
    let fail = |reason: String| CameraError::File {
        path: dir.display().to_string(),
        reason,
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| fail(format!("cannot list the folder: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| fail(format!("cannot list the folder: {e}")))?
            .path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"));
        if is_image && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(fail(
            "no .jpg, .jpeg or .png images (nor an images0/ folder of them)".into(),
        ));
    }
    files.sort_by_cached_key(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (last_number(&name), name)
    });
    Ok(files)
}

/// The last run of ASCII digits in `name` as a number (`im_12.jpg` -> 12); none sorts first.
fn last_number(name: &str) -> Option<u64> {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let digits: String = stem
        .chars()
        .rev()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_numerically() {
        assert_eq!(last_number("im_12.jpg"), Some(12));
        assert_eq!(last_number("cam2_frame_007.png"), Some(7));
        assert_eq!(last_number("cover.jpg"), None);
    }
}

#[cfg(test)]
mod replay_tests {
    use std::time::Duration;

    use super::*;

    /// Writes 2x2 PNGs whose red channel is the frame number, into `dir/images0`.
    fn recording(numbers: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images0");
        std::fs::create_dir(&images).unwrap();
        for &n in numbers {
            image::RgbImage::from_pixel(2, 2, image::Rgb([n, 0, 0]))
                .save(images.join(format!("im_{n}.png")))
                .unwrap();
        }
        std::fs::write(images.join("notes.txt"), "not an image").unwrap();
        dir
    }

    #[test]
    fn plays_a_recording_in_numeric_order_then_ends() {
        let dir = recording(&[10, 0, 2, 1]);
        let options = FolderOptions {
            fps: 100.0,
            looping: false,
        };
        let mut source = FolderSource::open(dir.path(), options).unwrap();
        let frames: Vec<Frame> = (0..4).map(|_| source.next_frame().unwrap()).collect();
        let reds: Vec<u8> = frames.iter().map(|f| f.rgb[0]).collect();
        assert_eq!(reds, vec![0, 1, 2, 10]);
        assert_eq!((frames[0].width_px, frames[0].height_px), (2, 2));
        let span = frames[3].captured_at - frames[0].captured_at;
        assert!(
            span >= Duration::from_millis(25),
            "paced at 100 fps: {span:?}"
        );
        assert!(matches!(
            source.next_frame(),
            Err(CameraError::Ended { .. })
        ));
    }

    #[test]
    fn loops_when_asked() {
        let dir = recording(&[5, 6]);
        let options = FolderOptions {
            fps: 200.0,
            looping: true,
        };
        let mut source = FolderSource::open(&dir.path().join("images0"), options).unwrap();
        let reds: Vec<u8> = (0..5)
            .map(|_| source.next_frame().unwrap().rgb[0])
            .collect();
        assert_eq!(reds, vec![5, 6, 5, 6, 5]);
    }

    #[test]
    fn an_empty_folder_or_a_bad_image_is_named() {
        let empty = tempfile::tempdir().unwrap();
        let error = FolderSource::open(empty.path(), FolderOptions::default()).unwrap_err();
        assert!(error.to_string().contains("no .jpg"), "{error}");
        std::fs::write(empty.path().join("im_0.jpg"), b"not a jpeg").unwrap();
        let mut source = FolderSource::open(empty.path(), FolderOptions::default()).unwrap();
        let error = source.next_frame().unwrap_err().to_string();
        assert!(
            error.contains("im_0.jpg") && error.contains("decode"),
            "{error}"
        );
    }
}
