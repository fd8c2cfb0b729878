#!/usr/bin/env pwsh
# The build script: each task is one or a few plain dotnet/cmake commands (README.md shows them).
# PowerShell is a pinned .NET local tool (.config/dotnet-tools.json), so with only the .NET SDK:
#   dotnet tool restore
#   dotnet pwsh build.ps1 TASK [ARGS]
# Every task stops at the first failing command and exits non-zero; `dotnet pwsh build.ps1 help` lists the tasks.
# No param() block on purpose: every argument after the task reaches the runner verbatim (--config, -x, ...).

$ErrorActionPreference = 'Stop'
$PSNativeCommandUseErrorActionPreference = $false   # exit codes are checked by Invoke-Checked, with the command line
Set-StrictMode -Version 3.0
Set-Location $PSScriptRoot

$Tasks = [ordered]@{
    'build'       = 'native library (CMake) and managed projects, Release: dotnet build -c Release'
    'test'        = "README's test command: dotnet test (the NUnit suite and the native ctest cases)"
    'demo'        = 'the tour of configs/demo/: dotnet run --project src/Runner -c Release -- demo [ARGS]'
    'run'         = 'run -- VERB [ARGS]: any runner verb, e.g. run -- toy --config configs/paper/intro_n5_m2.json --out runs/intro'
    'bench'       = 'bench WORKLOAD [ARGS]: the runner''s bench verb, e.g. bench toy --seconds 10'
    'native-test' = 'configure and build build/native, then ctest --test-dir build/native --output-on-failure'
    'publish'     = 'self-contained linux-x64 runner and NUnit test app with the native libraries: out/publish/runner, out/publish/tests'
    'profile'     = 'Nsight Systems (nsys -t cuda,nvtx, domain "nativeengine") on a toy sweep and a factorize run; prints the ncu command for one kernel'
    'clean'       = 'remove build/, out/ and every bin/ and obj/ (runs/ is kept)'
    'help'        = 'this list'
}

function Show-Tasks {
    Write-Host 'usage: dotnet pwsh build.ps1 TASK [ARGS]   (after `dotnet tool restore`; or ./build.ps1 where pwsh is installed)'
    Write-Host 'tasks:'
    foreach ($name in $Tasks.Keys) { Write-Host ('  {0,-12} {1}' -f $name, $Tasks[$name]) }
}

# Runs a native command, echoing it first; a non-zero exit code stops the script with the command line.
function Invoke-Checked([string]$Command, [string[]]$Arguments = @()) {
    Write-Host "> $Command $($Arguments -join ' ')"
    & $Command @Arguments
    if ($LASTEXITCODE -ne 0) { throw "'$Command $($Arguments -join ' ')' exited with $LASTEXITCODE" }
}

function Stop-Usage([string]$Message) {
    [Console]::Error.WriteLine("build.ps1: $Message")
    exit 2
}

# NE_CUDA (AUTO|ON|OFF) as the Interop project passes it to CMake, so native-test reuses the same configuration.
function Get-NeCuda { if ($env:NE_CUDA) { $env:NE_CUDA } else { 'AUTO' } }

$RunnerProject = 'src/Runner/NativeEngine.Runner.csproj'
$TestProject = 'tests/NativeEngine.Tests/NativeEngine.Tests.csproj'
$RunnerExe = 'src/Runner/bin/Release/net10.0/nativeengine'

function Invoke-Runner([string[]]$Arguments) {
    Invoke-Checked dotnet (@('run', '--project', $RunnerProject, '-c', 'Release', '--') + $Arguments)
}

function Invoke-Publish {
    $targets = @(
        @{ Project = $RunnerProject; Out = 'out/publish/runner'; Exe = 'nativeengine' },
        @{ Project = $TestProject; Out = 'out/publish/tests'; Exe = 'NativeEngine.Tests' })
    foreach ($t in $targets) {
        if (Test-Path $t.Out) { Remove-Item -Recurse -Force $t.Out }
        Invoke-Checked dotnet @('publish', $t.Project, '-c', 'Release', '-r', 'linux-x64', '--self-contained', 'true', '-o', $t.Out)
        foreach ($file in @($t.Exe, 'libnativeengine.so')) {
            if (-not (Test-Path (Join-Path $t.Out $file))) { throw "publish: $($t.Out)/$file is missing" }
        }
    }
    $cuda = if (Test-Path 'out/publish/runner/libnativeengine_cuda.so') { 'with the CUDA backend (libnativeengine_cuda.so)' } else { 'CPU backend only (no libnativeengine_cuda.so: nvcc was not found at build time)' }
    Write-Host "published, $cuda; no .NET SDK needed to run them:"
    Write-Host '  out/publish/runner/nativeengine info'
    Write-Host '  out/publish/tests/NativeEngine.Tests                       # the NUnit suite (Microsoft.Testing.Platform; --help lists options)'
    Write-Host '  out/publish/tests/NativeEngine.Tests --filter "FullyQualifiedName~CliTests" --results-directory out/test-results'
    Write-Host 'The test app finds configs/ and build/native (ctest cases) from the checkout above it: keep out/publish inside the repository.'
}

# What profile needs and this machine lacks, one line each; empty when it has everything.
function Get-ProfileMissing {
    $missing = @()
    $smi = Get-Command nvidia-smi -CommandType Application -ErrorAction SilentlyContinue
    if (-not $smi) {
        $missing += 'no NVIDIA GPU: nvidia-smi is not on PATH (no NVIDIA driver on this machine)'
    } else {
        $list = & $smi.Source -L 2>&1 | Out-String
        if ($LASTEXITCODE -ne 0 -or $list -notmatch 'GPU \d+:') {
            $missing += "no NVIDIA GPU: 'nvidia-smi -L' lists none ($($list.Trim()))"
        }
    }
    if (-not (Get-Command nsys -CommandType Application -ErrorAction SilentlyContinue)) {
        $missing += 'no Nsight Systems: nsys is not on PATH (install Nsight Systems, or add its bin folder to PATH)'
    }
    if (-not (Get-Command ncu -CommandType Application -ErrorAction SilentlyContinue)) {
        $missing += 'no Nsight Compute: ncu is not on PATH (install Nsight Compute, or add its folder to PATH)'
    }
    return , $missing
}

function Invoke-Profile {
    $missing = Get-ProfileMissing
    if ($missing.Count -gt 0) {
        [Console]::Error.WriteLine('build.ps1 profile: cannot profile on this machine:')
        foreach ($line in $missing) { [Console]::Error.WriteLine("  $line") }
        exit 1
    }
    # The CUDA backend is required (-p:NeCuda=ON: configuring fails loudly without nvcc).
    Invoke-Checked dotnet @('build', $RunnerProject, '-c', 'Release', '-p:NeCuda=ON')
    New-Item -ItemType Directory -Force out/profile | Out-Null
    $nsys = @('profile', '-t', 'cuda,nvtx', '--nvtx-domain-include=nativeengine', '--force-overwrite', 'true')
    Invoke-Checked nsys ($nsys + @('-o', 'out/profile/toy_sweep', $RunnerExe, 'toy', '--config', 'configs/paper/intro_n5_m2.json',
            '--out', 'out/profile/toy_sweep-run', '--backend', 'cuda', '--steps', '2000'))
    Invoke-Checked nsys ($nsys + @('-o', 'out/profile/factorize', $RunnerExe, 'factorize', '--config', 'configs/factorize/synthetic_d256.json',
            '--out', 'out/profile/factorize-run', '--backend', 'cuda'))
    foreach ($report in @('toy_sweep', 'factorize')) {
        Invoke-Checked nsys @('stats', '--report', 'nvtx_sum,cuda_gpu_kern_sum', '--format', 'table', "out/profile/$report.nsys-rep")
    }
    Write-Host 'Nsight Systems reports: out/profile/toy_sweep.nsys-rep, out/profile/factorize.nsys-rep (open in nsys-ui)'
    Write-Host 'One kernel under Nsight Compute (the toy trainer; the SAE kernels are in cuda/src/cuda/sae_cuda.cu):'
    Write-Host "  ncu -k toy_steps_kernel -c 1 --set full -o out/profile/toy_steps_kernel $RunnerExe toy --config configs/paper/intro_n5_m2.json --out out/profile/ncu-run --backend cuda --steps 100"
}

function Invoke-Clean {
    $paths = @('build', 'out') + @(Get-Item -Path 'src/*/bin', 'src/*/obj', 'tests/*/bin', 'tests/*/obj' -ErrorAction SilentlyContinue | ForEach-Object FullName)
    foreach ($path in $paths) {
        if (Test-Path $path) {
            Write-Host "removing $path"
            Remove-Item -Recurse -Force $path
        }
    }
}

# The task, then its arguments; one leading `--` before them is dropped (run -- VERB ARGS).
$Task = if ($args.Count -gt 0) { [string]$args[0] } else { 'build' }
$Rest = @(if ($args.Count -gt 1) { $args[1..($args.Count - 1)] | ForEach-Object { [string]$_ } })
if ($Rest.Count -gt 0 -and $Rest[0] -eq '--') { $Rest = @($Rest | Select-Object -Skip 1) }

if ($Task -in @('help', '-h', '--help', '-?', '/?')) { Show-Tasks; exit 0 }
if (-not $Tasks.Contains($Task)) {
    [Console]::Error.WriteLine("build.ps1: unknown task '$Task'")
    Show-Tasks
    exit 2
}
if ($Rest.Count -gt 0 -and $Task -notin @('run', 'bench', 'demo')) {
    Stop-Usage "task '$Task' takes no arguments (got: $($Rest -join ' '))"
}

try {
    switch ($Task) {
        'build' { Invoke-Checked dotnet @('build', '-c', 'Release') }
        'test' { Invoke-Checked dotnet @('test') }
        'demo' { Invoke-Runner (@('demo') + $Rest) }
        'run' {
            if ($Rest.Count -eq 0) { Stop-Usage 'run needs a runner verb: dotnet pwsh build.ps1 run -- VERB [ARGS] (e.g. run -- info)' }
            Invoke-Runner $Rest
        }
        'bench' {
            if ($Rest.Count -eq 0) { Stop-Usage 'bench needs a workload: dotnet pwsh build.ps1 bench toy|moe|factorize|dictionary|peak|all [ARGS]' }
            Invoke-Runner (@('bench') + $Rest)
        }
        'native-test' {
            Invoke-Checked cmake @('-S', '.', '-B', 'build/native', '-DCMAKE_BUILD_TYPE=Release', "-DNE_CUDA=$(Get-NeCuda)")
            Invoke-Checked cmake @('--build', 'build/native', '--parallel')
            Invoke-Checked ctest @('--test-dir', 'build/native', '--output-on-failure')
        }
        'publish' { Invoke-Publish }
        'profile' { Invoke-Profile }
        'clean' { Invoke-Clean }
    }
} catch {
    [Console]::Error.WriteLine("build.ps1 ${Task}: failed: $($_.Exception.Message)")
    exit 1
}
