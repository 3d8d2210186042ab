//! Mounted filesystems and their usage, through sysinfo (`/proc/mounts` and
//! `statvfs`).
//!
//! Only real filesystems are reported: pseudo and virtual ones (proc, sysfs,
//! tmpfs, devtmpfs, overlay, squashfs, cgroup, ...) are skipped by type, and a
//! device mounted several times (bind mounts, btrfs subvolumes, a container's
//! `/etc/hosts`) is reported once, at its shortest mount point. Network
//! filesystems are skipped by default too: `statvfs` on a hung hard mount
//! would block the agent (sysinfo never examines nfs, cifs and autofs; the
//! default list adds ceph, glusterfs, sshfs, s3fs and the like).
//!
//! `used_bytes` is `total_bytes - available_bytes`, so blocks reserved for root
//! count as used: `used / total` is how close unprivileged writers are to a
//! full disk.
//!
//! On Windows the drive letters are listed instead (`GetLogicalDriveStringsW`;
//! fixed, removable and RAM drives, never network or optical ones, whose
//! queries can hang or spin up a disc), with `GetVolumeInformationW` for the
//! type and `GetDiskFreeSpaceExW` for the space: the same calls psutil makes,
//! and ones Wine implements (sysinfo's volume enumeration lists nothing there).

use std::borrow::Cow;

use serde::Deserialize;
use sysinfo::{DiskRefreshKind, Disks};
use sysmon_core::{Collector, CollectorError, Filesystem, Snapshot};

use crate::util::{check_patterns, matches_any};

/// Filesystem types skipped by default: pseudo, virtual, in-memory and
/// read-only image filesystems, and network filesystems (whose `statvfs` can
/// block for minutes when the server is unreachable).
pub const DEFAULT_EXCLUDED_FS_TYPES: &[&str] = &[
    "afs",
    "autofs",
    "binfmt_misc",
    "bpf",
    "ceph",
    "cgroup",
    "cgroup2",
    "cifs",
    "configfs",
    "davfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "erofs",
    "fuse.gcsfuse",
    "fuse.glusterfs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "fuse.rclone",
    "fuse.s3fs",
    "fuse.snapfuse",
    "fuse.sshfs",
    "fusectl",
    "glusterfs",
    "hugetlbfs",
    "iso9660",
    "lustre",
    "mqueue",
    "nfs",
    "nfs4",
    "nfsd",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "smb3",
    "smbfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Options of the `filesystems` collector (`[collectors.filesystems]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemOptions {
    /// Mount points not reported, exact or prefix patterns (`"/snap*"`).
    /// Default: none.
    pub exclude_mount_points: Vec<String>,
    /// Filesystem types not reported, exact or prefix patterns (`"fuse.*"`).
    /// Setting it replaces the default list ([`DEFAULT_EXCLUDED_FS_TYPES`]):
    /// keep the network filesystems in it unless they never hang.
    pub exclude_fs_types: Vec<String>,
}

impl Default for FilesystemOptions {
    fn default() -> Self {
        FilesystemOptions {
            exclude_mount_points: Vec::new(),
            exclude_fs_types: DEFAULT_EXCLUDED_FS_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// One mount as read from the system, before selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountUsage<'a> {
    /// The mounted device (`/dev/sda1`, `tmpfs`, `server:/export`).
    pub device: &'a str,
    /// Where it is mounted.
    pub mount_point: &'a str,
    /// Filesystem type, e.g. `ext4`.
    pub fs_type: &'a str,
    /// Size in bytes (0 when `statvfs` failed).
    pub total_bytes: u64,
    /// Bytes available to unprivileged users.
    pub available_bytes: u64,
}

/// Selects the filesystems to report from `mounts`: excluded types and mount
/// points dropped, filesystems without size dropped, one entry per device (at
/// its shortest mount point), sorted by mount point.
pub fn select_filesystems<'a>(
    mounts: impl IntoIterator<Item = MountUsage<'a>>,
    options: &FilesystemOptions,
) -> Vec<Filesystem> {
    let mut chosen: Vec<MountUsage<'a>> = Vec::new();
    for m in mounts {
        if m.total_bytes == 0
            || matches_any(&options.exclude_fs_types, m.fs_type)
            || matches_any(&options.exclude_mount_points, m.mount_point)
        {
            continue;
        }
        match chosen.iter_mut().find(|c| c.device == m.device) {
            Some(c) => {
                let shorter =
                    (m.mount_point.len(), m.mount_point) < (c.mount_point.len(), c.mount_point);
                if shorter {
                    *c = m;
                }
            }
            None => chosen.push(m),
        }
    }
    chosen.sort_unstable_by(|a, b| a.mount_point.cmp(b.mount_point));
    chosen
        .into_iter()
        .map(|m| {
            let available = m.available_bytes.min(m.total_bytes);
            Filesystem {
                mount_point: m.mount_point.to_string(),
                fs_type: m.fs_type.to_string(),
                total_bytes: m.total_bytes,
                used_bytes: m.total_bytes - available,
                available_bytes: available,
            }
        })
        .collect()
}

/// Fills `filesystems`. Keeps its own `sysinfo::Disks` and refreshes only the
/// mount list and each filesystem's space (no I/O counters, no disk kind).
pub struct FilesystemCollector {
    options: FilesystemOptions,
    disks: Disks,
}

impl FilesystemCollector {
    /// The registered name.
    pub const NAME: &'static str = "filesystems";

    /// A collector with `options`.
    pub fn new(options: FilesystemOptions) -> Result<Self, CollectorError> {
        check_patterns(
            Self::NAME,
            "exclude_mount_points",
            &options.exclude_mount_points,
        )?;
        check_patterns(Self::NAME, "exclude_fs_types", &options.exclude_fs_types)?;
        Ok(FilesystemCollector {
            options,
            disks: Disks::new(),
        })
    }
}

impl Collector for FilesystemCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        #[cfg(windows)]
        {
            let drives = drives::list();
            if drives.is_empty() {
                // Windows always has a system drive: none means none could be read.
                return Err(CollectorError::Failed(
                    "no drive could be read (GetLogicalDriveStringsW)".into(),
                ));
            }
            let mounts = drives.iter().map(|d| MountUsage {
                device: &d.root,
                mount_point: &d.root,
                fs_type: &d.fs_type,
                total_bytes: d.total_bytes,
                available_bytes: d.available_bytes,
            });
            snapshot.filesystems = select_filesystems(mounts, &self.options);
            Ok(())
        }
        #[cfg(not(windows))]
        self.collect_sysinfo(snapshot)
    }
}

impl FilesystemCollector {
    #[cfg_attr(windows, allow(dead_code))]
    fn collect_sysinfo(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        // Names are UTF-8 in practice; anything else is shown lossily, not dropped.
        let names: Vec<[Cow<'_, str>; 3]> = self
            .disks
            .list()
            .iter()
            .map(|d| {
                [
                    d.name().to_string_lossy(),
                    d.mount_point().to_string_lossy(),
                    d.file_system().to_string_lossy(),
                ]
            })
            .collect();
        let mounts =
            self.disks
                .list()
                .iter()
                .zip(&names)
                .map(|(d, [device, mount_point, fs_type])| MountUsage {
                    device,
                    mount_point,
                    fs_type,
                    total_bytes: d.total_space(),
                    available_bytes: d.available_space(),
                });
        snapshot.filesystems = select_filesystems(mounts, &self.options);
        Ok(())
    }
}

/// Windows drive letters and their space.
#[cfg(windows)]
mod drives {
    use windows_sys::Win32::Storage::FileSystem::{
        GetDiskFreeSpaceExW, GetDriveTypeW, GetLogicalDriveStringsW, GetVolumeInformationW,
    };

    const DRIVE_REMOVABLE: u32 = 2;
    const DRIVE_FIXED: u32 = 3;
    const DRIVE_RAMDISK: u32 = 6;

    /// One drive: `C:\`, its filesystem (`NTFS`), total and available bytes.
    pub struct Drive {
        pub root: String,
        pub fs_type: String,
        pub total_bytes: u64,
        pub available_bytes: u64,
    }

    /// The local drives whose space could be read.
    pub fn list() -> Vec<Drive> {
        let mut buf = [0u16; 512];
        // SAFETY: `buf` is writable for its length in u16s.
        let n = unsafe { GetLogicalDriveStringsW(buf.len() as u32, buf.as_mut_ptr()) } as usize;
        if n == 0 || n > buf.len() {
            return Vec::new();
        }
        buf[..n]
            .split(|c| *c == 0)
            .filter(|r| !r.is_empty())
            .filter_map(|root| {
                let mut z: Vec<u16> = root.to_vec();
                z.push(0);
                // SAFETY: `z` is a NUL-terminated path.
                let kind = unsafe { GetDriveTypeW(z.as_ptr()) };
                if !matches!(kind, DRIVE_FIXED | DRIVE_REMOVABLE | DRIVE_RAMDISK) {
                    return None;
                }
                let (mut avail, mut total, mut free) = (0u64, 0u64, 0u64);
                // SAFETY: NUL-terminated path and three valid out-pointers.
                let ok =
                    unsafe { GetDiskFreeSpaceExW(z.as_ptr(), &mut avail, &mut total, &mut free) };
                if ok == 0 || total == 0 {
                    return None; // an empty card reader, a locked BitLocker drive
                }
                let mut fs = [0u16; 64];
                // SAFETY: NUL-terminated path; `fs` writable for its length; the
                // other out-parameters may be null.
                let ok = unsafe {
                    GetVolumeInformationW(
                        z.as_ptr(),
                        std::ptr::null_mut(),
                        0,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        fs.as_mut_ptr(),
                        fs.len() as u32,
                    )
                };
                let fs_len = fs.iter().position(|c| *c == 0).unwrap_or(fs.len());
                let fs_type = if ok != 0 && fs_len > 0 {
                    String::from_utf16_lossy(&fs[..fs_len])
                } else {
                    "unknown".to_string()
                };
                Some(Drive {
                    root: String::from_utf16_lossy(root),
                    fs_type,
                    total_bytes: total,
                    available_bytes: avail,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m<'a>(
        device: &'a str,
        mount_point: &'a str,
        fs_type: &'a str,
        total: u64,
        avail: u64,
    ) -> MountUsage<'a> {
        MountUsage {
            device,
            mount_point,
            fs_type,
            total_bytes: total,
            available_bytes: avail,
        }
    }

    #[test]
    fn keeps_real_filesystems_once_per_device() {
        let mounts = [
            m("/dev/sda1", "/etc/hosts", "ext4", 1000, 400),
            m("/dev/sda1", "/", "ext4", 1000, 400),
            m("/dev/sda1", "/var/lib/docker", "ext4", 1000, 400),
            m(
                "overlay",
                "/var/lib/docker/overlay2/x/merged",
                "overlay",
                1000,
                400,
            ),
            m("proc", "/proc", "proc", 0, 0),
            m("tmpfs", "/dev/shm", "tmpfs", 500, 500),
            m("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, 0),
            m("/dev/loop3", "/snap/core/1", "squashfs", 100, 0),
            m("/dev/sdb1", "/data", "xfs", 2000, 1500),
            m("/dev/sdc1", "/mnt/broken", "ext4", 0, 0),
        ];
        let fs = select_filesystems(mounts, &FilesystemOptions::default());
        let points: Vec<_> = fs.iter().map(|f| f.mount_point.as_str()).collect();
        assert_eq!(points, vec!["/", "/data"]);
        assert_eq!(fs[0].fs_type, "ext4");
        assert_eq!(
            (fs[0].total_bytes, fs[0].used_bytes, fs[0].available_bytes),
            (1000, 600, 400)
        );
        assert_eq!(fs[1].used_bytes, 500);
    }

    #[test]
    fn options_exclude_mount_points_and_replace_types() {
        let mounts = [
            m("/dev/sda1", "/", "ext4", 1000, 400),
            m("/dev/sdb1", "/backup", "ext4", 1000, 400),
            m("tmpfs", "/run/user/1000", "tmpfs", 10, 5),
        ];
        let opts = FilesystemOptions {
            exclude_mount_points: vec!["/back*".into()],
            exclude_fs_types: vec!["proc".into()],
        };
        let fs = select_filesystems(mounts, &opts);
        let points: Vec<_> = fs.iter().map(|f| f.mount_point.as_str()).collect();
        assert_eq!(points, vec!["/", "/run/user/1000"]);
    }

    #[test]
    fn available_above_total_is_clamped() {
        let fs = select_filesystems(
            [m("/dev/x", "/x", "ext4", 10, 20)],
            &FilesystemOptions::default(),
        );
        assert_eq!((fs[0].used_bytes, fs[0].available_bytes), (0, 10));
    }

    #[test]
    fn bad_patterns_are_rejected() {
        let opts = FilesystemOptions {
            exclude_mount_points: vec!["/a*b".into()],
            ..Default::default()
        };
        assert!(FilesystemCollector::new(opts).is_err());
    }
}
