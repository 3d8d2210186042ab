//! The agent on Windows: default paths under `%ProgramData%\sysmon`, the
//! machine id from the registry's `MachineGuid`, and the Windows service
//! (`sysmon-agent service install|uninstall|run`).
//!
//! The pure parts (paths, the service's command line) compile and are tested
//! on every OS; what talks to the service manager or the registry is
//! `cfg(windows)`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

/// The service's name in the service manager (`sc.exe query sysmon-agent`).
pub const SERVICE_NAME: &str = "sysmon-agent";
/// Its display name (services.msc).
pub const SERVICE_DISPLAY_NAME: &str = "sysmon agent";
/// Its description.
pub const SERVICE_DESCRIPTION: &str =
    "Samples this host (CPU, memory, disk, network, processes) and publishes to Kafka for the sysmon master. Connects out only.";

/// Where the agent keeps its files on Windows, under a `ProgramData` root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsPaths {
    /// `…\sysmon`
    pub root: PathBuf,
    /// `…\sysmon\agent.toml`: read when no `--config` is given.
    pub config: PathBuf,
    /// `…\sysmon\spool`: the service's spool of undelivered samples.
    pub spool: PathBuf,
    /// `…\sysmon\logs`: the service's log file `sysmon-agent.log`.
    pub logs: PathBuf,
}

impl WindowsPaths {
    /// The paths under `program_data` (the value of `%ProgramData%`).
    pub fn under(program_data: &Path) -> Self {
        let root = program_data.join("sysmon");
        WindowsPaths {
            config: root.join("agent.toml"),
            spool: root.join("spool"),
            logs: root.join("logs"),
            root,
        }
    }

    /// The paths under this machine's `%ProgramData%` (`C:\ProgramData` when unset).
    pub fn from_env() -> Self {
        let pd = std::env::var_os("ProgramData")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"));
        Self::under(&pd)
    }

    /// The service's log file.
    pub fn log_file(&self) -> PathBuf {
        self.logs.join("sysmon-agent.log")
    }
}

/// `sysmon-agent service …` (Windows).
#[derive(Debug, Clone, Subcommand)]
pub enum ServiceCommand {
    /// Install the agent as the Windows service `sysmon-agent` (automatic start,
    /// LocalSystem, restarts on failure) and start it. Run from an elevated
    /// PowerShell; the service runs this .exe where it is now.
    Install(InstallArgs),
    /// Stop the service (it delivers what it collected first) and remove it.
    Uninstall,
    /// Run as the service (the service manager starts this; not for a console).
    #[command(hide = true)]
    Run(InstallArgs),
}

/// What the service runs with: stored in the service's command line.
#[derive(Debug, Clone, Default, Args, PartialEq, Eq)]
pub struct InstallArgs {
    /// Kafka bootstrap brokers, `host:port[,host:port...]` (required unless the
    /// config file sets [kafka] brokers).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Configuration file: the global `--config` [default:
    /// %ProgramData%\sysmon\agent.toml when present].
    #[arg(skip)]
    pub config: Option<PathBuf>,
    /// Machine id [default: <computer name>-<hash of the MachineGuid>].
    #[arg(long)]
    pub machine_id: Option<String>,
    /// Spool directory for undelivered samples [default: %ProgramData%\sysmon\spool].
    #[arg(long)]
    pub spool_dir: Option<PathBuf>,
    /// Kafka topic [default: system_metrics].
    #[arg(long)]
    pub topic: Option<String>,
    /// Log filter: the global `--log-level` [default: info].
    #[arg(skip)]
    pub log_level: Option<String>,
}

impl InstallArgs {
    /// Takes the global `--config` and `--log-level` into these settings.
    pub fn with_common(mut self, common: &crate::cli::CommonArgs) -> Self {
        self.config = common.config.clone();
        self.log_level = Some(common.log_level.clone()).filter(|l| l != "info");
        self
    }

    /// The arguments the service manager starts the agent with:
    /// `service run` followed by these settings, the spool directory
    /// defaulting to `paths.spool` and the config to `paths.config` when that
    /// file exists at install time. Relative paths are made absolute (the
    /// service starts in `C:\Windows\System32`).
    pub fn service_arguments(&self, paths: &WindowsPaths, cwd: &Path) -> Vec<OsString> {
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                cwd.join(p)
            }
        };
        let mut a: Vec<OsString> = vec!["service".into(), "run".into()];
        let mut push = |flag: &str, value: OsString| {
            a.push(flag.into());
            a.push(value);
        };
        if let Some(b) = &self.brokers {
            push("--brokers", b.into());
        }
        match &self.config {
            Some(c) => push("--config", abs(c).into()),
            None if paths.config.is_file() => push("--config", paths.config.clone().into()),
            None => {}
        }
        if let Some(m) = &self.machine_id {
            push("--machine-id", m.into());
        }
        let spool = self.spool_dir.as_deref().map(abs);
        push(
            "--spool-dir",
            spool.unwrap_or_else(|| paths.spool.clone()).into(),
        );
        if let Some(t) = &self.topic {
            push("--topic", t.into());
        }
        if let Some(l) = &self.log_level {
            push("--log-level", l.into());
        }
        a
    }

    /// Refuses an install that would have nowhere to publish.
    pub fn check(&self, paths: &WindowsPaths) -> anyhow::Result<()> {
        let has_config = self.config.is_some() || paths.config.is_file();
        if self.brokers.is_none() && !has_config {
            anyhow::bail!(
                "nowhere to publish: pass --brokers HOST:PORT (the master's Kafka), or a --config \
                 file with [kafka] brokers"
            );
        }
        Ok(())
    }
}

/// The machine id from the `MachineGuid` (`HKLM\SOFTWARE\Microsoft\Cryptography`)
/// and the computer name, hashed like `/etc/machine-id` on Linux.
#[cfg(windows)]
pub fn windows_machine_id() -> Option<String> {
    let guid = registry::machine_guid();
    let host = sysmon_core::identity::hostname();
    sysmon_core::identity::derive_machine_id(None, guid.as_deref(), host.as_deref())
}

#[cfg(windows)]
mod registry {
    use windows_sys::Win32::System::Registry::{RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ};

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    /// `HKLM\SOFTWARE\Microsoft\Cryptography\MachineGuid`, unique per Windows install.
    pub fn machine_guid() -> Option<String> {
        let key = wide(r"SOFTWARE\Microsoft\Cryptography");
        let value = wide("MachineGuid");
        let mut buf = [0u16; 128];
        let mut len = std::mem::size_of_val(&buf) as u32;
        // SAFETY: valid NUL-terminated strings; `buf` is writable for `len` bytes.
        let rc = unsafe {
            RegGetValueW(
                HKEY_LOCAL_MACHINE,
                key.as_ptr(),
                value.as_ptr(),
                RRF_RT_REG_SZ,
                std::ptr::null_mut(),
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return None;
        }
        let n = (len as usize / 2).min(buf.len());
        let s = String::from_utf16_lossy(&buf[..n]);
        let s = s.trim_end_matches('\0').trim();
        (!s.is_empty()).then(|| s.to_string())
    }
}

/// `sysmon-agent service …`, with the global flags.
#[cfg(windows)]
pub fn run(command: ServiceCommand, common: &crate::cli::CommonArgs) -> anyhow::Result<()> {
    match command {
        ServiceCommand::Install(args) => scm::install(&args.with_common(common)),
        ServiceCommand::Uninstall => scm::uninstall(),
        ServiceCommand::Run(args) => scm::run_as_service(args.with_common(common)),
    }
}

#[cfg(windows)]
mod scm {
    use std::ffi::OsString;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use tokio_util::sync::CancellationToken;
    use windows_service::service::{
        ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
        ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
        ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
    use windows_service::{define_windows_service, service_dispatcher};

    use super::{
        InstallArgs, WindowsPaths, SERVICE_DESCRIPTION, SERVICE_DISPLAY_NAME, SERVICE_NAME,
    };

    pub fn install(args: &InstallArgs) -> anyhow::Result<()> {
        let paths = WindowsPaths::from_env();
        args.check(&paths)?;
        for dir in [&paths.root, &paths.spool, &paths.logs] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let exe = std::env::current_exe().context("locating sysmon-agent.exe")?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| paths.root.clone());
        let manager = ServiceManager::local_computer(
            None::<&str>,
            ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
        )
        .context("opening the service manager (run from an elevated PowerShell)")?;
        let info = ServiceInfo {
            name: OsString::from(SERVICE_NAME),
            display_name: OsString::from(SERVICE_DISPLAY_NAME),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: exe.clone(),
            launch_arguments: args.service_arguments(&paths, &cwd),
            dependencies: vec![],
            account_name: None, // LocalSystem: reads every process, like psutil as admin
            account_password: None,
        };
        let service = manager
            .create_service(
                &info,
                ServiceAccess::CHANGE_CONFIG | ServiceAccess::START | ServiceAccess::QUERY_STATUS,
            )
            .context("creating the service (already installed? run `service uninstall` first)")?;
        service.set_description(SERVICE_DESCRIPTION)?;
        // Restart after a crash: 10 s, 10 s, then 60 s; the count resets after a day.
        service.update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![
                ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay: Duration::from_secs(10),
                },
                ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay: Duration::from_secs(10),
                },
                ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay: Duration::from_secs(60),
                },
            ]),
        })?;
        service
            .start::<&str>(&[])
            .context("starting the service (see the log under %ProgramData%\\sysmon\\logs)")?;
        println!(
            "installed and started service {SERVICE_NAME} ({}); log: {}",
            exe.display(),
            paths.log_file().display()
        );
        Ok(())
    }

    pub fn uninstall() -> anyhow::Result<()> {
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
            .context("opening the service manager (run from an elevated PowerShell)")?;
        let service = manager
            .open_service(
                SERVICE_NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
            )
            .with_context(|| format!("opening service {SERVICE_NAME} (is it installed?)"))?;
        if service.query_status()?.current_state != ServiceState::Stopped {
            service.stop().context("stopping the service")?;
            // The agent delivers what it collected (up to [agent] shutdown_timeout).
            let deadline = Instant::now() + Duration::from_secs(60);
            while service.query_status()?.current_state != ServiceState::Stopped {
                if Instant::now() > deadline {
                    anyhow::bail!("the service did not stop within 60 s; try again later");
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        service.delete().context("removing the service")?;
        println!("stopped and removed service {SERVICE_NAME}");
        Ok(())
    }

    static ARGS: OnceLock<InstallArgs> = OnceLock::new();

    pub fn run_as_service(args: InstallArgs) -> anyhow::Result<()> {
        let _ = ARGS.set(args);
        service_dispatcher::start(SERVICE_NAME, ffi_service_main).context(
            "`service run` is started by the Windows service manager; \
             to run in a console use `sysmon-agent --brokers HOST:PORT`",
        )?;
        Ok(())
    }

    define_windows_service!(ffi_service_main, service_main);

    fn service_main(_arguments: Vec<OsString>) {
        let args = ARGS.get().cloned().unwrap_or_default();
        let paths = WindowsPaths::from_env();
        crate::init_file_logging(
            &paths.log_file(),
            args.log_level.as_deref().unwrap_or("info"),
        );
        if let Err(e) = serve(args) {
            tracing::error!("service failed: {e:#}");
        }
    }

    fn status(state: ServiceState, exit: u32, wait: Duration) -> ServiceStatus {
        ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: if state == ServiceState::Running {
                ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
            } else {
                ServiceControlAccept::empty()
            },
            exit_code: ServiceExitCode::Win32(exit),
            checkpoint: 0,
            wait_hint: wait,
            process_id: None,
        }
    }

    fn serve(args: InstallArgs) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let on_stop = stop.clone();
        let handle = service_control_handler::register(SERVICE_NAME, move |event| match event {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                tracing::info!(
                    "stop requested by the service manager: delivering what was collected"
                );
                on_stop.cancel();
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        })?;
        handle.set_service_status(status(ServiceState::Running, 0, Duration::ZERO))?;
        let (agent, common) = crate::cmd::agent::AgentArgs::for_service(&args);
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(2)
            .build()
            .context("starting the async runtime")
            .and_then(|rt| {
                let stopping = stop.clone();
                let status_handle = handle;
                rt.block_on(async move {
                    let watcher = tokio::spawn(async move {
                        stopping.cancelled().await;
                        // Tell the manager how long delivering may take.
                        let _ = status_handle.set_service_status(status(
                            ServiceState::StopPending,
                            0,
                            Duration::from_secs(30),
                        ));
                    });
                    let r = crate::cmd::agent::run_until(agent, &common, Some(stop)).await;
                    watcher.abort();
                    r
                })
            });
        let exit = match &result {
            Ok(()) => {
                tracing::info!("service stopped");
                0
            }
            Err(e) => {
                tracing::error!("agent failed: {e:#}");
                1
            }
        };
        handle.set_service_status(status(ServiceState::Stopped, exit, Duration::ZERO))?;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_zips_default_config_is_one_the_agent_accepts() {
        // build-windows.sh --zip ships it and install-worker.ps1 installs it:
        // an unknown key there would stop the service at its first start.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, include_str!("../packaging/windows/agent.toml")).unwrap();
        let config = crate::load_config(Some(&path)).unwrap();
        assert_eq!(config.kafka.topic, "system_metrics");
        assert_eq!(config.agent.interval, std::time::Duration::from_secs(1));
    }

    #[test]
    fn paths_live_under_program_data() {
        let p = WindowsPaths::under(Path::new("/pd"));
        assert_eq!(p.root, Path::new("/pd/sysmon"));
        assert_eq!(p.config, Path::new("/pd/sysmon/agent.toml"));
        assert_eq!(p.spool, Path::new("/pd/sysmon/spool"));
        assert_eq!(p.log_file(), Path::new("/pd/sysmon/logs/sysmon-agent.log"));
    }

    #[test]
    fn service_arguments_carry_the_settings_with_absolute_paths() {
        let dir = tempfile::tempdir().unwrap();
        let paths = WindowsPaths::under(dir.path());
        let args = InstallArgs {
            brokers: Some("10.0.0.5:9092".into()),
            config: Some("agent.toml".into()),
            topic: Some("t".into()),
            ..Default::default()
        };
        let a = args.service_arguments(&paths, Path::new("/work"));
        let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(
            a,
            [
                "service",
                "run",
                "--brokers",
                "10.0.0.5:9092",
                "--config",
                "/work/agent.toml",
                "--spool-dir",
                &paths.spool.display().to_string(),
                "--topic",
                "t",
            ]
        );
    }

    #[test]
    fn default_config_is_used_only_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let paths = WindowsPaths::under(dir.path());
        let args = InstallArgs::default();
        let no_config = args.service_arguments(&paths, Path::new("/"));
        assert!(!no_config.iter().any(|s| s == "--config"));
        // Nowhere to publish: refused with the fix in the message.
        let e = args.check(&paths).unwrap_err().to_string();
        assert!(e.contains("--brokers"), "{e}");
        std::fs::create_dir_all(&paths.root).unwrap();
        std::fs::write(&paths.config, "[kafka]\nbrokers = \"m:9092\"\n").unwrap();
        args.check(&paths).unwrap();
        let with_config = args.service_arguments(&paths, Path::new("/"));
        let i = with_config.iter().position(|s| s == "--config").unwrap();
        assert_eq!(with_config[i + 1], paths.config.as_os_str());
    }

    #[test]
    fn service_run_parses_what_install_writes() {
        // The shape of sysmon-agent's command line on Windows.
        #[derive(Debug, clap::Subcommand)]
        enum Top {
            #[command(subcommand)]
            Service(ServiceCommand),
        }
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            common: crate::cli::CommonArgs,
            #[command(subcommand)]
            command: Top,
        }
        let dir = tempfile::tempdir().unwrap();
        let paths = WindowsPaths::under(dir.path());
        let args = InstallArgs {
            brokers: Some("m:9092".into()),
            machine_id: Some("pc-7".into()),
            log_level: Some("debug".into()),
            ..Default::default()
        };
        let argv = std::iter::once(OsString::from("sysmon-agent"))
            .chain(args.service_arguments(&paths, Path::new("/")));
        let parsed = <Cli as clap::Parser>::try_parse_from(argv).unwrap();
        assert_eq!(parsed.common.log_level, "debug");
        let Top::Service(service) = parsed.command;
        match service {
            ServiceCommand::Run(r) => assert_eq!(
                r.with_common(&parsed.common),
                InstallArgs {
                    spool_dir: Some(paths.spool.clone()),
                    ..args
                }
            ),
            other => panic!("expected run, got {other:?}"),
        }
    }
}
