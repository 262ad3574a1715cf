#!/usr/bin/env python3
"""Replace the CUDA libraries of torch's PyPI build with stubs, for a CPU-only venv.

    cuda_stubs.py VENV

torch on PyPI is the CUDA build: libtorch_cuda.so is linked against cuBLAS,
cuDNN, cuSPARSE, NCCL, ... (3.7 GB once installed), and `import torch`
fails if the dynamic linker cannot find them, although a CPU run never calls
them.  The interop suite runs on the CPU, so tests/interop/requirements.txt
leaves those wheels out and this script builds, for each, a small stub library
with the same soname, the same symbol versions and every symbol torch's
libraries import from it.  Each stub function aborts with its name: should a
CPU run ever reach one, the test dies loudly instead of computing anything.

The CUDA runtime (cudart), CUPTI and cuFile stay real (a few MB): torch calls
cudart at import and in torch.cuda.is_available(), which must answer False.

Needs binutils (nm, readelf) and a C compiler (cc); both come with the build.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

# soname -> the directory under site-packages/ where torch's RPATH looks for it.
STUBS = {
    "libcublas.so.12": "nvidia/cublas/lib",
    "libcublasLt.so.12": "nvidia/cublas/lib",
    "libcudnn.so.9": "nvidia/cudnn/lib",
    "libcufft.so.11": "nvidia/cufft/lib",
    "libcurand.so.10": "nvidia/curand/lib",
    "libcusparse.so.12": "nvidia/cusparse/lib",
    "libcusparseLt.so.0": "nvidia/cusparselt/lib",
    "libnccl.so.2": "nvidia/nccl/lib",
    "libnvshmem_host.so.3": "nvidia/nvshmem/lib",
}
# Unversioned imports are assigned to a library by their prefix (the longest
# that matches: cublasLt before cublas, cusparseLt before cusparse).
PREFIX = {
    "libnccl.so.2": "nccl",
    "libcusparseLt.so.0": "cusparseLt",
    "libnvshmem_host.so.3": "nvshmem",
    "libcurand.so.10": "curand",
    "libcufft.so.11": "cufft",
    "libcudnn.so.9": "cudnn",
    "libcublasLt.so.12": "cublasLt",
    "libcublas.so.12": "cublas",
    "libcusparse.so.12": "cusparse",
}


def run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def needed(path):
    return re.findall(r"\(NEEDED\).*\[(.+?)\]", run("readelf", "-d", "-W", path))


def version_files(path):
    """Version name -> the file (soname) that must define it, from VERNEED."""
    out, cur = {}, None
    for line in run("readelf", "-V", "-W", path).splitlines():
        m = re.search(r"File: (\S+)", line)
        if m:
            cur = m.group(1)
            continue
        m = re.search(r"Name: (\S+)\s+Flags", line)
        if m and cur:
            out[m.group(1)] = cur
    return out


def imports(path):
    """(symbol, version or None) of every strong undefined dynamic symbol."""
    out = []
    for line in run("nm", "-D", "--undefined-only", path).splitlines():
        parts = line.split()
        if len(parts) != 2 or parts[0] != "U":
            continue  # weak imports ('w') may stay undefined
        sym, _, ver = parts[1].partition("@")
        out.append((sym, ver or None))
    return out


def owner(sym):
    libs = [lib for lib, p in PREFIX.items() if sym.startswith(p)]
    return max(libs, key=lambda lib: len(PREFIX[lib])) if libs else None


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: cuda_stubs.py VENV")
    sites = glob.glob(os.path.join(sys.argv[1], "lib", "python3*", "site-packages"))
    if len(sites) != 1:
        sys.exit(f"cuda_stubs: no single site-packages under {sys.argv[1]}")
    site = sites[0]
    torch_lib = os.path.join(site, "torch", "lib")
    binaries = sorted(glob.glob(os.path.join(torch_lib, "*.so*")) +
                      glob.glob(os.path.join(site, "torch", "_C*.so")))
    if not binaries:
        sys.exit(f"cuda_stubs: no torch libraries in {torch_lib}")

    # lib -> {version name: set of symbols}; None is the unversioned node.
    wanted = {lib: {} for lib in STUBS}
    for b in binaries:
        deps = [d for d in needed(b) if d in STUBS]
        if not deps:
            continue
        vfile = version_files(b)
        for sym, ver in imports(b):
            lib = vfile.get(ver) if ver else owner(sym)
            if lib in STUBS and lib in deps:
                wanted[lib].setdefault(ver, set()).add(sym)

    with tempfile.TemporaryDirectory() as tmp:
        for lib, nodes in sorted(wanted.items()):
            src = os.path.join(tmp, lib + ".c")
            vs = os.path.join(tmp, lib + ".map")
            syms = sorted(set().union(*nodes.values())) if nodes else []
            with open(src, "w") as f:
                f.write("#include <stdio.h>\n#include <stdlib.h>\n"
                        "static void stub(const char *name) {\n"
                        f'    fprintf(stderr, "interop: {lib} is a CPU-only stub; %s was called\\n", name);\n'
                        "    abort();\n}\n")
                for s in syms:
                    f.write(f'void {s}(void) {{ stub("{s}"); }}\n')
            # Versioned symbols go into their version node, unversioned ones
            # into the first node (anonymous when there is no version).
            names = sorted(v for v in nodes if v) or [None]
            with open(vs, "w") as f:
                for i, v in enumerate(names):
                    s = nodes.get(v, set()) | (nodes.get(None, set()) if i == 0 else set())
                    body = "".join(f"{x}; " for x in sorted(s))
                    f.write(f"{v or ''} {{ {'global: ' + body if body else ''}"
                            f"{'local: *; ' if i == 0 else ''}}};\n")
            dest_dir = os.path.join(site, STUBS[lib])
            os.makedirs(dest_dir, exist_ok=True)
            dest = os.path.join(dest_dir, lib)
            subprocess.run(["cc", "-shared", "-fPIC", "-O0", "-o", dest, src,
                            f"-Wl,-soname,{lib}", f"-Wl,--version-script,{vs}"], check=True)
            print(f"cuda_stubs: {STUBS[lib]}/{lib}: {len(syms)} symbols", file=sys.stderr)


if __name__ == "__main__":
    main()
