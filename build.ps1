#!/usr/bin/env pwsh
# Convenience wrapper for PowerShell users; every task is one plain dotnet/cmake command (see README.md).
#   ./build.ps1 [build|test|demo|bench|native-test|clean]
param([ValidateSet('build', 'test', 'demo', 'bench', 'native-test', 'clean')][string]$Task = 'build')
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot

function Invoke-Checked([string]$Command, [string[]]$Arguments) {
    & $Command @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$Command $($Arguments -join ' ') exited with $LASTEXITCODE" }
}

switch ($Task) {
    'build' { Invoke-Checked dotnet @('build', '-c', 'Release') }
    'test' { Invoke-Checked dotnet @('test') }
    'demo' { Invoke-Checked dotnet @('run', '--project', 'src/Runner', '-c', 'Release', '--', 'demo') }
    'bench' { Invoke-Checked dotnet @('run', '--project', 'src/Runner', '-c', 'Release', '--', 'bench', 'toy') }
    'native-test' {
        Invoke-Checked cmake @('-S', '.', '-B', 'build/native', '-DCMAKE_BUILD_TYPE=Release')
        Invoke-Checked cmake @('--build', 'build/native', '--parallel')
        Invoke-Checked ctest @('--test-dir', 'build/native', '--output-on-failure')
    }
    'clean' { Remove-Item -Recurse -Force -ErrorAction SilentlyContinue build, src/*/bin, src/*/obj, tests/*/bin, tests/*/obj }
}
