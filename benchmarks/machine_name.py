"""The asv machine name of this host, from what changes the numbers: CPU family, ISA level and cores.

``python benchmarks/machine_name.py`` prints e.g. ``xeon-avx512-2c`` or ``zen3-avx2-2c``;
``--describe`` prints the asv ``machine`` fields (``cpu``, ``arch``, ``num_cpu``, ``os``, ``ram``) as JSON;
``--register`` stores them all in ``~/.asv-machine.json`` under the name (asv's own file, through asv), so that
``benchmarks/record.sh`` records the machine with its CPU model written down. ``asv machine --yes --cpu ...``
is not used for this: on a host with no ``~/.asv-machine.json`` it stores only the options that differ from
what it detects itself, so the CPU, architecture, core count and OS went missing from the results.

asv compares only results of one machine name, so a name must mean one kind of CPU: OpenBLAS and numba pick
different kernels on AVX2 and AVX-512 hosts, and a Zen 3 and a Xeon of the same core count differ by more
than any one commit does. The core count is the number of cores this process may run on.
"""

from __future__ import annotations

import json
import os
import platform
import sys


def cpuinfo(text: str) -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def family(info: dict[str, str]) -> str:
    """A short name of the CPU family: ``zen``..``zen5`` for AMD (by family and model), ``xeon``, ``core``
    or ``intel`` for Intel, the lowercased vendor otherwise."""
    vendor, model_name = info.get("vendor_id", ""), info.get("model name", "")
    try:
        fam, model = int(info.get("cpu family", "-1")), int(info.get("model", "-1"))
    except ValueError:
        fam, model = -1, -1
    if vendor == "AuthenticAMD":
        if fam == 0x17:
            return "zen2" if model >= 0x30 else "zen"
        if fam == 0x19:
            return "zen4" if 0x10 <= model <= 0x1F or 0x60 <= model <= 0xAF else "zen3"
        if fam == 0x1A:
            return "zen5"
        return "amd"
    if vendor == "GenuineIntel":
        return "xeon" if "Xeon" in model_name else "core" if "Core" in model_name else "intel"
    return (vendor or platform.machine() or "cpu").lower()


def isa(info: dict[str, str]) -> str:
    """The widest vector ISA the kernels can use: ``avx512``, ``avx2``, ``sse`` (x86), else the architecture."""
    flags = set(info.get("flags", "").split())
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    if flags:
        return "sse"
    return platform.machine().lower() or "unknown"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def name(info: dict[str, str]) -> str:
    return f"{family(info)}-{isa(info)}-{cores()}c"


def describe(info: dict[str, str]) -> dict[str, str]:
    """asv's machine fields for this host, each stable across rebuilds of the same kind of host: asv draws one
    series per combination of them, so a value that changes between recordings on one machine name (the kernel's
    build suffix, a few MB of RAM) would cut its history in two. The OS is the kernel's major.minor release and
    the RAM whole GiB."""
    ram = ""
    try:
        with open("/proc/meminfo") as f:
            ram = f"{round(int(f.readline().split()[1]) / 2**20)} GiB"  # MemTotal, kB
    except (OSError, IndexError, ValueError):
        pass
    return {"machine": name(info), "cpu": info.get("model name", platform.processor()), "arch": platform.machine(),
            "num_cpu": str(cores()), "os": stable_os(platform.system(), platform.release()), "ram": ram}


def stable_os(system: str, release: str) -> str:
    """``system`` and the major.minor of ``release``: ``Linux 6.18`` for ``Linux``, ``6.18.44-fc-v657``."""
    return " ".join([system, ".".join(release.split("-")[0].split(".")[:2])]).strip()


def register(fields: dict[str, str], path: str | None = None) -> None:
    """Store ``fields`` (:func:`describe`'s) whole as asv's record of the machine ``fields["machine"]``, in
    ``path`` (default ``~/.asv-machine.json``), keeping the other machines there."""
    from asv.machine import MachineCollection  # asv is needed only to record, not to name the machine

    MachineCollection.save(fields["machine"], fields, _path=path)


def main() -> None:
    try:
        with open("/proc/cpuinfo") as f:
            info = cpuinfo(f.read())
    except OSError:
        info = {}
    if "--describe" in sys.argv[1:]:
        print(json.dumps(describe(info)))
    elif "--register" in sys.argv[1:]:
        register(describe(info))
    else:
        print(name(info))


if __name__ == "__main__":
    main()
