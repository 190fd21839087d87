//! USB cameras (the Logitech C920 of the Bridge setup) through nokhwa's V4L2 backend.
//!
//! Built only with the `v4l2` feature: nokhwa's V4L2 bindings are generated with bindgen, which
//! needs libclang at build time (`apt install libclang-dev`). The capture runs on its own thread
//! (nokhwa's camera is not `Send`); [`V4l2Camera::next_frame`](FrameSource::next_frame) returns
//! the newest frame not yet handed out, waiting for one if there is none, so the policy never
//! works through a backlog. Frames are decoded here (MJPEG with `image`, YUYV converted), each
//! stamped when the driver handed it over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nokhwa::Camera;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};

use crate::{CameraError, Frame, FrameSource};

/// Which camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V4l2Device {
    /// `/dev/video<N>`.
    Index(u32),
    /// The first camera whose name contains this text (case-insensitive), e.g. "C920".
    Name(String),
}

/// What the camera sends over USB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Motion JPEG: full frame rate at 640x480 and above on USB 2.
    Mjpeg,
    /// Uncompressed 4:2:2: no compression artefacts, lower frame rates at high resolutions.
    Yuyv,
}

/// How to open the camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4l2Config {
    pub device: V4l2Device,
    pub width_px: u32,
    pub height_px: u32,
    pub fps: u32,
    pub format: PixelFormat,
}

impl Default for V4l2Config {
    /// `/dev/video0`, 640x480 MJPEG at 30 fps (the Bridge capture settings).
    fn default() -> Self {
        V4l2Config {
            device: V4l2Device::Index(0),
            width_px: 640,
            height_px: 480,
            fps: 30,
            format: PixelFormat::Mjpeg,
        }
    }
}

/// Longest wait for the first frame or the next one before the camera counts as stalled.
const FRAME_TIMEOUT: Duration = Duration::from_secs(2);

/// The newest captured frame (or the capture thread's error), handed from thread to caller.
#[derive(Debug, Default)]
struct Latest {
    slot: Mutex<Option<Result<Frame, CameraError>>>,
    ready: Condvar,
}

/// A USB camera captured on a background thread.
#[derive(Debug)]
pub struct V4l2Camera {
    latest: Arc<Latest>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    description: String,
    /// The capture thread reported an error and ended.
    failed: bool,
}

impl V4l2Camera {
    /// Opens the camera and starts streaming; errors name the device and what it offered.
    pub fn open(config: V4l2Config) -> Result<V4l2Camera, CameraError> {
        let index = resolve_device(&config.device)?;
        let description = format!(
            "v4l2 /dev/video{} {}x{} {:?} @{}",
            index, config.width_px, config.height_px, config.format, config.fps
        );
        let latest = Arc::new(Latest::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let thread = {
            let (latest, stop, config, name) = (
                Arc::clone(&latest),
                Arc::clone(&stop),
                config.clone(),
                description.clone(),
            );
            std::thread::Builder::new()
                .name("camera-v4l2".into())
                .spawn(move || capture(index, &config, &name, &latest, &stop, opened_tx))
                .map_err(|e| CameraError::Source {
                    source_name: description.clone(),
                    reason: format!("cannot start the capture thread: {e}"),
                })?
        };
        let opened = opened_rx.recv().unwrap_or_else(|_| {
            Err(CameraError::Source {
                source_name: description.clone(),
                reason: "the capture thread ended before opening the camera".into(),
            })
        });
        let camera = V4l2Camera {
            latest,
            stop,
            thread: Some(thread),
            description,
            failed: false,
        };
        opened.map(|()| camera)
    }

    /// Names and indices of the cameras present, for `--list-cameras` style help.
    pub fn list() -> Result<Vec<(String, String)>, CameraError> {
        let cameras = nokhwa::query(ApiBackend::Auto).map_err(|e| CameraError::Source {
            source_name: "v4l2".into(),
            reason: format!("cannot list cameras: {e}"),
        })?;
        Ok(cameras
            .iter()
            .map(|c| (c.index().to_string(), c.human_name()))
            .collect())
    }
}

fn resolve_device(device: &V4l2Device) -> Result<u32, CameraError> {
    match device {
        V4l2Device::Index(index) => Ok(*index),
        V4l2Device::Name(name) => {
            let cameras = V4l2Camera::list()?;
            let wanted = name.to_lowercase();
            cameras
                .iter()
                .find(|(_, human)| human.to_lowercase().contains(&wanted))
                .and_then(|(index, _)| index.parse().ok())
                .ok_or_else(|| CameraError::Source {
                    source_name: format!("v4l2 camera named `{name}`"),
                    reason: format!(
                        "no such camera; present: {}",
                        if cameras.is_empty() {
                            "none".to_string()
                        } else {
                            cameras
                                .iter()
                                .map(|(i, n)| format!("{i}: {n}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                })
        }
    }
}

/// The capture thread: opens the camera, reports the outcome, then publishes frames until told
/// to stop or the camera fails.
fn capture(
    index: u32,
    config: &V4l2Config,
    name: &str,
    latest: &Latest,
    stop: &AtomicBool,
    opened: std::sync::mpsc::Sender<Result<(), CameraError>>,
) {
    let fail = |reason: String| CameraError::Source {
        source_name: name.to_string(),
        reason,
    };
    let frame_format = match config.format {
        PixelFormat::Mjpeg => FrameFormat::MJPEG,
        PixelFormat::Yuyv => FrameFormat::YUYV,
    };
    let requested =
        RequestedFormat::new::<RgbFormat>(RequestedFormatType::Exact(CameraFormat::new(
            Resolution::new(config.width_px, config.height_px),
            frame_format,
            config.fps,
        )));
    let mut camera = match Camera::new(CameraIndex::Index(index), requested)
        .and_then(|mut camera| camera.open_stream().map(|()| camera))
    {
        Ok(camera) => camera,
        Err(e) => {
            let _ = opened.send(Err(fail(format!("cannot open the stream: {e}"))));
            return;
        }
    };
    let _ = opened.send(Ok(()));
    let mut sequence = 0;
    while !stop.load(Ordering::Relaxed) {
        let result = camera
            .frame()
            .map_err(|e| fail(format!("capture failed: {e}")))
            .and_then(|buffer| {
                let captured_at = Instant::now();
                let resolution = buffer.resolution();
                let (width_px, height_px) = (resolution.width(), resolution.height());
                let rgb = decode(
                    buffer.buffer(),
                    buffer.source_frame_format(),
                    width_px,
                    height_px,
                )
                .map_err(&fail)?;
                Ok(Frame {
                    rgb,
                    width_px,
                    height_px,
                    captured_at,
                    sequence,
                })
            });
        sequence += 1;
        let failed = result.is_err();
        *latest.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        latest.ready.notify_all();
        if failed {
            break;
        }
    }
    let _ = camera.stop_stream();
}

/// RGB bytes of one camera buffer.
fn decode(
    bytes: &[u8],
    format: FrameFormat,
    width_px: u32,
    height_px: u32,
) -> Result<Vec<u8>, String> {
    match format {
        FrameFormat::MJPEG => image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
            .map(|image| image.into_rgb8().into_raw())
            .map_err(|e| format!("cannot decode an MJPEG frame: {e}")),
        FrameFormat::YUYV => yuyv_to_rgb(bytes, width_px, height_px),
        other => Err(format!("the camera sent {other:?}; expected MJPEG or YUYV")),
    }
}

/// YUYV 4:2:2 (Y0 U Y1 V per two pixels, BT.601 limited range) to RGB.
fn yuyv_to_rgb(bytes: &[u8], width_px: u32, height_px: u32) -> Result<Vec<u8>, String> {
    let pixels = width_px as usize * height_px as usize;
    if bytes.len() < pixels * 2 {
        return Err(format!(
            "YUYV frame of {} bytes; expected {width_px}x{height_px}x2 = {}",
            bytes.len(),
            pixels * 2
        ));
    }
    let mut rgb = Vec::with_capacity(pixels * 3);
    for quad in bytes[..pixels * 2].chunks_exact(4) {
        let (u, v) = (f32::from(quad[1]) - 128.0, f32::from(quad[3]) - 128.0);
        for y in [quad[0], quad[2]] {
            let y = 1.164 * (f32::from(y) - 16.0);
            rgb.push((y + 1.596 * v).round().clamp(0.0, 255.0) as u8);
            rgb.push((y - 0.392 * u - 0.813 * v).round().clamp(0.0, 255.0) as u8);
            rgb.push((y + 2.017 * u).round().clamp(0.0, 255.0) as u8);
        }
    }
    Ok(rgb)
}

impl FrameSource for V4l2Camera {
    fn next_frame(&mut self) -> Result<Frame, CameraError> {
        if self.failed {
            return Err(CameraError::Source {
                source_name: self.description.clone(),
                reason: "capture stopped after an earlier error".into(),
            });
        }
        let slot = self
            .latest
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (mut slot, timeout) = self
            .latest
            .ready
            .wait_timeout_while(slot, FRAME_TIMEOUT, |s| s.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        if timeout.timed_out() {
            return Err(CameraError::Source {
                source_name: self.description.clone(),
                reason: format!("no frame for {} s", FRAME_TIMEOUT.as_secs_f64()),
            });
        }
        let frame = slot.take().unwrap_or_else(|| {
            Err(CameraError::Source {
                source_name: self.description.clone(),
                reason: "no frame".into(),
            })
        });
        self.failed = frame.is_err();
        frame
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for V4l2Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_grey_and_size_check() {
        let grey = yuyv_to_rgb(&[128, 128, 128, 128], 2, 1).unwrap();
        assert!(grey.iter().all(|&c| c.abs_diff(130) <= 1), "{grey:?}");
        assert!(yuyv_to_rgb(&[0; 6], 2, 2).unwrap_err().contains("2x2x2"));
    }

    #[test]
    fn a_missing_device_is_named() {
        let config = V4l2Config {
            device: V4l2Device::Index(99),
            ..V4l2Config::default()
        };
        let error = V4l2Camera::open(config).unwrap_err().to_string();
        assert!(error.contains("/dev/video99"), "{error}");
    }
}
