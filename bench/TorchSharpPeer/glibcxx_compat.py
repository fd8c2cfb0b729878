#!/usr/bin/env python3
"""Lets TorchSharp's native glue (libLibTorchSharp.so, built with GCC 13) load on a system whose libstdc++ is older
(Debian 12: GCC 12). The glue needs one function from GCC 13's library, std::ios_base_library_init (GLIBCXX_3.4.32),
which GCC 13's <iostream> calls during static initialisation; libtorch itself needs nothing newer. So, when the
system library lacks that version:
  - build libne_glibcxx_shim.so beside the glue, defining that function as the older library's way of doing the
    same (constructing a std::ios_base::Init);
  - mark the glue's requirement of GLIBCXX_3.4.32 weak (VER_FLG_WEAK in .gnu.version_r), so the loader accepts a
    libstdc++ without it and binds the function to the shim, which the peer's launcher preloads (LD_PRELOAD).
Usage: glibcxx_compat.py OUTPUT_DIR (the peer's build output). Prints what it did; exit 0 when the glue can load."""
import ctypes
import os
import struct
import subprocess
import sys

NEEDED_VERSION = b"GLIBCXX_3.4.32"
SHIM = "libne_glibcxx_shim.so"
SHIM_SOURCE = """#include <ios>
namespace std { __attribute__((visibility("default"))) void ios_base_library_init() { static ios_base::Init init; } }
"""


def system_has_version():
    for path in ("/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"):
        if os.path.exists(path):
            with open(path, "rb") as f:
                return NEEDED_VERSION in f.read()
    return False


def mark_weak(path, version):
    """Sets VER_FLG_WEAK on the Vernaux entries named `version` of an ELF64 little-endian file. Returns how many."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise ValueError(f"{path}: not a little-endian ELF64 file")
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        SHT_GNU_VERNEED = 0x6FFFFFFE
        changed = 0
        for sh in sections:
            if sh[1] != SHT_GNU_VERNEED:
                continue
            strtab = sections[sh[6]]  # sh_link: the string table
            def name(offset):
                start = strtab[4] + offset
                return bytes(data[start:data.index(0, start)])
            entry = sh[4]
            for _ in range(sh[8] if sh[8] else 1 << 16):  # sh_info: number of Verneed entries
                _, count, _, aux, next_entry = struct.unpack_from("<HHIII", data, entry)
                at = entry + aux
                for _ in range(count):
                    _, flags, _, vname, next_aux = struct.unpack_from("<IHHII", data, at)
                    if name(vname) == version and not flags & 0x2:
                        struct.pack_into("<H", data, at + 4, flags | 0x2)
                        changed += 1
                    if not next_aux:
                        break
                    at += next_aux
                if not next_entry:
                    break
                entry += next_entry
        if changed:
            f.seek(0)
            f.write(data)
        return changed


def main():
    out = sys.argv[1]
    glue = os.path.join(out, "libLibTorchSharp.so")
    if not os.path.exists(glue):
        sys.exit(f"{glue} not found: build bench/TorchSharpPeer first")
    if system_has_version():
        print(f"system libstdc++ has {NEEDED_VERSION.decode()}: nothing to do")
        return
    shim = os.path.join(out, SHIM)
    subprocess.run(["g++", "-shared", "-fPIC", "-O2", "-x", "c++", "-", "-o", shim], input=SHIM_SOURCE.encode(),
                   check=True)
    changed = mark_weak(glue, NEEDED_VERSION)
    print(f"built {shim}; {glue}: {changed} requirement(s) of {NEEDED_VERSION.decode()} marked weak")
    ctypes.CDLL(shim, mode=ctypes.RTLD_GLOBAL)
    ctypes.CDLL(glue)
    print("libLibTorchSharp.so loads with the shim preloaded")


if __name__ == "__main__":
    main()
