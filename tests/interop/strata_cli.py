"""Runs the `strata` command and reads what it writes (raw little-endian files)."""
import json
import os
import subprocess
import tempfile

import numpy as np

EXE = os.environ.get("STRATA_EXE", "build/tools/strata")


def run(*args, input=None, check=True):
    """Runs `strata ARGS`; on failure the assertion names the command and its stderr."""
    p = subprocess.run([EXE, *map(str, args)], input=input, capture_output=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"strata {' '.join(map(str, args))} exited {p.returncode}:\n"
                             f"{p.stderr.decode(errors='replace')[-3000:]}")
    return p


def convert(src, dst, *options):
    run("convert", src, dst, "--quiet", "--force", *options)


def dequantize(model, tensor):
    """The exact f32 dequantization of one stored weight, flattened."""
    with tempfile.NamedTemporaryFile(suffix=".f32") as out:
        run("dequantize", model, tensor, "--out", out.name)
        return np.fromfile(out.name, dtype="<f4")


def logits(model, tokens, prefill=None, indices=False):
    """Logits [T, V] of one sequence (and the adapter indices when asked)."""
    with tempfile.TemporaryDirectory() as d:
        args = ["logits", "--model", model, "--tokens", ",".join(map(str, tokens)),
                "--out", f"{d}/l.f32"]
        if prefill is not None:
            args += ["--prefill", prefill]
        if indices:
            args += ["--indices", f"{d}/i.i32"]
        run(*args)
        out = np.fromfile(f"{d}/l.f32", dtype="<f4").reshape(len(tokens), -1)
        if indices:
            return out, np.fromfile(f"{d}/i.i32", dtype="<i4")
        return out


def tokenize(tokenizer_file, data: bytes, special=True):
    """Ids of the bytes `data` (given on stdin, so any byte goes through)."""
    args = ["tokenize", "--tokenizer", tokenizer_file, "--json"]
    if not special:
        args.append("--no-special")
    return json.loads(run(*args, "-", input=data).stdout)["ids"]


def help_text(command):
    p = run(command, "--help", check=False)
    return (p.stdout + p.stderr).decode(errors="replace")
