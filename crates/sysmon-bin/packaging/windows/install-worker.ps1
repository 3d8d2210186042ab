<#
.SYNOPSIS
  Installs the sysmon agent on this Windows worker as the service "sysmon-agent".

.DESCRIPTION
  One command per worker, from an elevated PowerShell in the unzipped folder:

    powershell -ExecutionPolicy Bypass -File .\install-worker.ps1 -Brokers 192.168.1.100:9092

  Copies sysmon-agent.exe to "$env:ProgramFiles\sysmon", the default config to
  "$env:ProgramData\sysmon\agent.toml" (kept if already there), checks that the
  master's Kafka answers, takes one test snapshot, then installs and starts the
  service (automatic start, restarts on failure). Logs:
  "$env:ProgramData\sysmon\logs\sysmon-agent.log".

  It opens nothing inbound: the agent only connects out to the brokers, so no
  firewall rule is added on the worker. (The master needs 9092 open inbound.)

  Run again to upgrade (the service is replaced, the config kept).
  Remove: .\install-worker.ps1 -Uninstall

.PARAMETER Brokers
  The master's Kafka, host:port[,host:port...].
.PARAMETER MachineId
  Optional fixed machine id (default: <computer name>-<hash of the MachineGuid>).
.PARAMETER InstallDir
  Where the .exe goes (default: $env:ProgramFiles\sysmon).
.PARAMETER Uninstall
  Stop (delivering what was collected) and remove the service and the .exe;
  the config and logs under $env:ProgramData\sysmon stay.
#>
#Requires -RunAsAdministrator
param(
    [string]$Brokers = "",
    [string]$MachineId = "",
    [string]$InstallDir = (Join-Path $env:ProgramFiles "sysmon"),
    [switch]$Uninstall
)
$ErrorActionPreference = "Stop"
$exe = Join-Path $InstallDir "sysmon-agent.exe"
$data = Join-Path $env:ProgramData "sysmon"

function Remove-AgentService {
    if (Get-Service -Name "sysmon-agent" -ErrorAction SilentlyContinue) {
        & $exe service uninstall
        if ($LASTEXITCODE -ne 0) { throw "sysmon-agent service uninstall failed ($LASTEXITCODE)" }
    }
}

if ($Uninstall) {
    Remove-AgentService
    Remove-Item -Force -ErrorAction SilentlyContinue $exe
    Write-Host "sysmon-agent removed (config and logs kept in $data)"
    exit 0
}
if (-not $Brokers) { throw "pass -Brokers MASTER_IP:9092 (the master's Kafka)" }

# Outbound check only: the first broker must accept a TCP connection.
$first = ($Brokers -split ",")[0]
$i = $first.LastIndexOf(":")
if ($i -lt 1) { throw "-Brokers must be host:port, not '$first'" }
$brokerHost = $first.Substring(0, $i)
$brokerPort = [int]$first.Substring($i + 1)
if (-not (Test-NetConnection -ComputerName $brokerHost -Port $brokerPort -InformationLevel Quiet)) {
    Write-Warning "cannot reach $first from here yet; the agent will keep retrying (and buffer meanwhile). Check the master's firewall allows 9092 inbound."
}

Remove-AgentService
New-Item -ItemType Directory -Force -Path $InstallDir, $data | Out-Null
Copy-Item -Force (Join-Path $PSScriptRoot "sysmon-agent.exe") $exe
$config = Join-Path $data "agent.toml"
if (-not (Test-Path $config)) { Copy-Item (Join-Path $PSScriptRoot "agent.toml") $config }

# One snapshot, so a collector problem shows here rather than in the log.
& $exe --config $config --once | Out-Null
if ($LASTEXITCODE -ne 0) { throw "sysmon-agent --once failed ($LASTEXITCODE)" }

$serviceArgs = @("--config", $config, "service", "install", "--brokers", $Brokers)
if ($MachineId) { $serviceArgs += @("--machine-id", $MachineId) }
& $exe @serviceArgs
if ($LASTEXITCODE -ne 0) { throw "sysmon-agent service install failed ($LASTEXITCODE)" }
Write-Host "sysmon-agent is running and publishes to $Brokers. Check: Get-Service sysmon-agent; Get-Content $data\logs\sysmon-agent.log -Tail 20"
