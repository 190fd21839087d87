//! Finding the arm's serial adapter: listing serial ports, marking ROBOTIS U2D2 adapters
//! (FTDI FT232H, USB 0403:6014), finding aliases such as `/dev/ttyDXL`, and checking the FTDI
//! latency timer, which at the kernel default of 16 ms makes every bus transaction slow.
//!
//! `serialport` is built without libudev: on Linux it then scans `/sys/class/tty` itself and
//! does read USB vendor/product IDs from sysfs (the `idVendor`/`idProduct` files of the USB
//! device). [`usb_ids_from_sysfs`] reads the same files directly, as a fallback for ports it
//! reports without them.

use std::path::{Path, PathBuf};

/// USB vendor ID of FTDI.
pub const FTDI_VENDOR_ID: u16 = 0x0403;
/// USB product ID of the FT232H inside the ROBOTIS U2D2.
pub const U2D2_PRODUCT_ID: u16 = 0x6014;

/// USB identity of a serial port's adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbIds {
    pub vendor_id: u16,
    pub product_id: u16,
    pub serial_number: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
}

impl UsbIds {
    /// Whether this is a ROBOTIS U2D2 (or another FT232H, which looks the same on USB).
    pub fn is_u2d2(&self) -> bool {
        self.vendor_id == FTDI_VENDOR_ID && self.product_id == U2D2_PRODUCT_ID
    }
}

/// One serial port found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Device path, e.g. `/dev/ttyUSB0`.
    pub path: PathBuf,
    /// USB identity when the port is a USB adapter.
    pub usb: Option<UsbIds>,
    /// Symbolic links in `/dev` that point to this port, e.g. `/dev/ttyDXL`.
    pub aliases: Vec<PathBuf>,
}

impl PortInfo {
    pub fn is_u2d2(&self) -> bool {
        self.usb.as_ref().is_some_and(UsbIds::is_u2d2)
    }
}

impl std::fmt::Display for PortInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        for alias in &self.aliases {
            write!(f, " (alias {})", alias.display())?;
        }
        match &self.usb {
            Some(usb) => {
                write!(f, "  USB {:04x}:{:04x}", usb.vendor_id, usb.product_id)?;
                if let Some(product) = &usb.product {
                    write!(f, " {product}")?;
                }
                if let Some(serial) = &usb.serial_number {
                    write!(f, " serial {serial}")?;
                }
                if usb.is_u2d2() {
                    write!(f, "  <- U2D2")?;
                }
                Ok(())
            }
            None => write!(f, "  (not USB)"),
        }
    }
}

/// Errors of port discovery.
#[derive(Debug, thiserror::Error)]
pub enum PortsError {
    #[error("cannot list serial ports: {0}")]
    List(#[from] serialport::Error),
}

/// Every serial port of this machine, U2D2 adapters first.
pub fn list_ports() -> Result<Vec<PortInfo>, PortsError> {
    // serialport panics when /sys/class/tty is missing (some containers); no ports then.
    if !Path::new("/sys/class/tty").is_dir() {
        return Ok(Vec::new());
    }
    let found = serialport::available_ports()?;
    let mut ports: Vec<PortInfo> = found
        .into_iter()
        .map(|info| {
            let path = PathBuf::from(&info.port_name);
            let usb = match info.port_type {
                serialport::SerialPortType::UsbPort(usb) => Some(UsbIds {
                    vendor_id: usb.vid,
                    product_id: usb.pid,
                    serial_number: usb.serial_number,
                    manufacturer: usb.manufacturer,
                    product: usb.product,
                }),
                _ => tty_name(&path).and_then(|name| usb_ids_from_sysfs(Path::new("/sys"), &name)),
            };
            let aliases = find_aliases(Path::new("/dev"), &path);
            PortInfo { path, usb, aliases }
        })
        .collect();
    ports.sort_by_key(|p| (!p.is_u2d2(), p.path.clone()));
    Ok(ports)
}

/// The USB identity of tty `name` read from `<sysfs_root>/class/tty/<name>/device/..`: the USB
/// device directory holding `idVendor` is one level above the interface for ttyACM* and two
/// for usb-serial ports (ttyUSB*), so up to three parents are searched.
pub fn usb_ids_from_sysfs(sysfs_root: &Path, name: &str) -> Option<UsbIds> {
    let device = sysfs_root.join("class/tty").join(name).join("device");
    let device = device.canonicalize().ok()?;
    let usb_dir = device
        .ancestors()
        .take(4)
        .find(|dir| dir.join("idVendor").is_file())?;
    let read = |file: &str| {
        std::fs::read_to_string(usb_dir.join(file))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let hex = |file: &str| read(file).and_then(|s| u16::from_str_radix(&s, 16).ok());
    Some(UsbIds {
        vendor_id: hex("idVendor")?,
        product_id: hex("idProduct")?,
        serial_number: read("serial"),
        manufacturer: read("manufacturer"),
        product: read("product"),
    })
}

/// Symbolic links directly in `dev_dir` that resolve to `port` (e.g. `ttyDXL -> ttyUSB0`).
pub fn find_aliases(dev_dir: &Path, port: &Path) -> Vec<PathBuf> {
    let Ok(target) = port.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dev_dir) else {
        return Vec::new();
    };
    let mut aliases: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .map(|e| e.path())
        .filter(|p| p.canonicalize().is_ok_and(|c| c == target))
        .collect();
    aliases.sort();
    aliases
}

/// The kernel name of a port after following symlinks: `/dev/ttyDXL` -> `ttyUSB0`.
pub fn tty_name(port: &Path) -> Option<String> {
    let resolved = port.canonicalize().ok()?;
    Some(resolved.file_name()?.to_string_lossy().into_owned())
}

/// What the FTDI latency timer of a port is set to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatencyTimer {
    /// Not an FTDI usb-serial port (no latency_timer file): nothing to check.
    NotFtdi,
    /// At or below the limit.
    Ok { tty: String, latency_ms: u32 },
    /// Above the limit: every bus transaction waits up to this long.
    TooHigh {
        tty: String,
        latency_ms: u32,
        sysfs_path: PathBuf,
    },
}

/// Reads `<sysfs_root>/bus/usb-serial/devices/<tty>/latency_timer` for `port` (symlinks such
/// as /dev/ttyDXL resolved) and compares it with `max_ms`.
pub fn check_latency_timer(sysfs_root: &Path, port: &Path, max_ms: u32) -> LatencyTimer {
    let Some(tty) = tty_name(port) else {
        return LatencyTimer::NotFtdi;
    };
    let sysfs_path = sysfs_root
        .join("bus/usb-serial/devices")
        .join(&tty)
        .join("latency_timer");
    let Some(latency_ms) = std::fs::read_to_string(&sysfs_path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return LatencyTimer::NotFtdi;
    };
    if latency_ms > max_ms {
        LatencyTimer::TooHigh {
            tty,
            latency_ms,
            sysfs_path,
        }
    } else {
        LatencyTimer::Ok { tty, latency_ms }
    }
}

impl LatencyTimer {
    /// The warning to log, if any.
    pub fn warning(&self) -> Option<String> {
        match self {
            LatencyTimer::TooHigh {
                tty,
                latency_ms,
                sysfs_path,
            } => Some(format!(
                "FTDI latency timer of {tty} is {latency_ms} ms: every bus transaction will wait that long; \
                 set it to 1 ms (echo 1 > {}, or the udev rule shipped with the Interbotix stack)",
                sysfs_path.display()
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fake_sysfs() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let usb_dev = root.path().join("devices/pci0000:00/usb1/1-1");
        let interface = usb_dev.join("1-1:1.0");
        let tty_dev = interface.join("ttyUSB0");
        std::fs::create_dir_all(tty_dev.join("tty")).unwrap();
        std::fs::write(usb_dev.join("idVendor"), "0403\n").unwrap();
        std::fs::write(usb_dev.join("idProduct"), "6014\n").unwrap();
        std::fs::write(usb_dev.join("serial"), "FT6RW6QQ\n").unwrap();
        std::fs::write(usb_dev.join("product"), "USB <-> Serial Converter\n").unwrap();
        std::fs::create_dir_all(root.path().join("class/tty/ttyUSB0")).unwrap();
        symlink(&tty_dev, root.path().join("class/tty/ttyUSB0/device")).unwrap();
        let serial_devices = root.path().join("bus/usb-serial/devices");
        std::fs::create_dir_all(&serial_devices).unwrap();
        symlink(&tty_dev, serial_devices.join("ttyUSB0")).unwrap();
        std::fs::write(tty_dev.join("latency_timer"), "16\n").unwrap();
        root
    }

    fn fake_dev(root: &Path) -> PathBuf {
        let dev = root.join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("ttyUSB0"), "").unwrap();
        symlink("ttyUSB0", dev.join("ttyDXL")).unwrap();
        symlink("ttyUSB0", dev.join("ttyOTHER")).unwrap();
        dev
    }

    #[test]
    fn reads_usb_ids_of_a_usb_serial_port() {
        let sysfs = fake_sysfs();
        let ids = usb_ids_from_sysfs(sysfs.path(), "ttyUSB0").unwrap();
        assert_eq!((ids.vendor_id, ids.product_id), (0x0403, 0x6014));
        assert!(ids.is_u2d2());
        assert_eq!(ids.serial_number.as_deref(), Some("FT6RW6QQ"));
        assert_eq!(usb_ids_from_sysfs(sysfs.path(), "ttyS0"), None);
    }

    #[test]
    fn latency_timer_resolves_symlinks_and_warns_above_limit() {
        let sysfs = fake_sysfs();
        let dev = fake_dev(sysfs.path());
        let check = check_latency_timer(sysfs.path(), &dev.join("ttyDXL"), 1);
        assert!(
            matches!(&check, LatencyTimer::TooHigh { tty, latency_ms: 16, .. } if tty == "ttyUSB0"),
            "{check:?}"
        );
        assert!(check.warning().unwrap().contains("16 ms"));
        let latency = sysfs
            .path()
            .join("bus/usb-serial/devices/ttyUSB0/latency_timer");
        std::fs::write(&latency, "1\n").unwrap();
        let check = check_latency_timer(sysfs.path(), &dev.join("ttyDXL"), 1);
        assert_eq!(
            check,
            LatencyTimer::Ok {
                tty: "ttyUSB0".into(),
                latency_ms: 1
            }
        );
        assert_eq!(check.warning(), None);
    }

    #[test]
    fn non_ftdi_ports_are_not_checked() {
        let sysfs = fake_sysfs();
        let dev = fake_dev(sysfs.path());
        std::fs::write(dev.join("pts7"), "").unwrap();
        assert_eq!(
            check_latency_timer(sysfs.path(), &dev.join("pts7"), 1),
            LatencyTimer::NotFtdi
        );
        assert_eq!(
            check_latency_timer(sysfs.path(), &dev.join("missing"), 1),
            LatencyTimer::NotFtdi
        );
    }

    #[test]
    fn aliases_are_symlinks_to_the_same_device() {
        let root = tempfile::tempdir().unwrap();
        let dev = fake_dev(root.path());
        let aliases = find_aliases(&dev, &dev.join("ttyUSB0"));
        assert_eq!(aliases, vec![dev.join("ttyDXL"), dev.join("ttyOTHER")]);
        assert_eq!(tty_name(&dev.join("ttyDXL")).as_deref(), Some("ttyUSB0"));
    }

    #[test]
    fn u2d2_is_marked_in_the_listing_line() {
        let port = PortInfo {
            path: "/dev/ttyUSB0".into(),
            usb: Some(UsbIds {
                vendor_id: 0x0403,
                product_id: 0x6014,
                serial_number: None,
                manufacturer: None,
                product: None,
            }),
            aliases: vec!["/dev/ttyDXL".into()],
        };
        assert!(port.is_u2d2());
        assert_eq!(
            port.to_string(),
            "/dev/ttyUSB0 (alias /dev/ttyDXL)  USB 0403:6014  <- U2D2"
        );
    }

    #[test]
    fn listing_ports_does_not_fail_here() {
        // Whatever this machine has, listing must succeed and every path must exist.
        for port in list_ports().unwrap() {
            assert!(port.path.exists(), "{}", port.path.display());
        }
    }
}
