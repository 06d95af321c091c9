#!/usr/bin/env python3
"""Fuzz the kvstore binary: mutated snapshots through ingest, damaged blobs through fetch.

Properties checked (any violation makes the run fail):
- no crash: every exit code is one of the documented 0..4 (a signal or another code is a crash);
- no accepted-but-unreadable entry: after ingest exits 0, fetch in the input's dtype and
  verify of that entry exit 0;
- no wrong bytes served: a fetch of a damaged blob either fails or returns exactly the bytes
  the intact blob gave.
Prints a summary by step and exit code. Usage: fuzz.py KVSTORE_BIN CASES SEED WORKDIR
"""
import collections, json, os, random, shutil, struct, subprocess, sys

binary, cases, seed, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = random.Random(seed)
store = os.path.join(work, "store")
policies = ["none", "lightkv", "int8", "int4", "lightkv+int8", "lightkv+int4g128m0t0", "uniform55+int2", "tome35+int4", "none+lz4"]
summary = collections.Counter()
violations = []


def run(*args, out=None):
    p = subprocess.run([binary, *args, "--store", store] if args[0] != "synth" else [binary, *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def record(step, code, what):
    summary[(step, code)] += 1
    if code not in (0, 1, 2, 3, 4):
        violations.append(f"{step} crashed with {code}: {what}")


bases = {}
for dtype in ["f16", "bf16", "f32"]:
    path = os.path.join(work, f"base-{dtype}.safetensors")
    code, _, err = run("synth", "--preset", "tiny", "--dtype", dtype, "--seed", str(seed), "-o", path)
    assert code == 0, err
    bases[dtype] = open(path, "rb").read()


def mutate(b: bytes):
    b = bytearray(b)
    n = struct.unpack("<Q", b[:8])[0]
    end = 8 + n
    kind = rng.randrange(7)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(8, end)] = rng.randrange(256)
        return bytes(b), "header bytes"
    if kind == 1:
        for _ in range(rng.randint(1, 16)):
            b[rng.randrange(end, len(b))] ^= rng.randrange(1, 256)
        return bytes(b), "data bytes"
    if kind == 2:
        return bytes(b[: rng.randrange(len(b))]), "truncated"
    if kind == 3:
        b[:8] = struct.pack("<Q", rng.choice([0, 1, n - 1, n + 1, len(b), 2**63, 2**64 - 1]))
        return bytes(b), "header length"
    if kind == 4:
        i = rng.randrange(end, len(b) - 4) & ~3
        b[i:i + 4] = rng.choice([b"\x00\x50\xc3\x47", b"\xff\x7b\xff\x7b", b"\x7f\x7f\x7f\x7f", b"\x00\x00\x80\x7f"])
        return bytes(b), "extreme value"
    header = json.loads(b[8:end])
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    field = rng.choice(["shape", "data_offsets", "dtype", "metadata"])
    if field == "shape":
        header[name]["shape"] = [rng.choice([0, 1, 3, 2**31, -1]) for _ in header[name]["shape"]]
    elif field == "data_offsets":
        header[name]["data_offsets"] = [rng.randrange(0, len(b)), rng.randrange(0, len(b))]
    elif field == "dtype":
        header[name]["dtype"] = rng.choice(["F16", "BF16", "F32", "I32", "F64", "U8"])
    else:
        meta = header.setdefault("__metadata__", {})
        key = rng.choice(list(meta) + ["kvsnap.spans", "kvsnap.next_position", "x" * 300])
        meta[key] = rng.choice(["", "[]", "[{\"kind\":\"image\",\"start\":0,\"end\":9999999}]", "-1", "z" * 70000, "\n" * 10])
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + bytes(b[end:]), f"header {field} of {name[:40]}"


accepted = []
for n in range(cases):
    dtype = rng.choice(list(bases))
    data, what = mutate(bases[dtype])
    path = os.path.join(work, "case.safetensors")
    with open(path, "wb") as f:
        f.write(data)
    policy = rng.choice(policies)
    code, out, err = run("ingest", "--policy", policy, path)
    record("ingest", code, f"case {n} {what} {policy}: {err[-300:]}")
    if code != 0:
        continue
    entry = out.decode().strip()
    stored_dtype = json.loads(run("show", entry, "--json")[1])["input_dtype"].lower()
    fcode, _, ferr = run("fetch", entry, "--dtype", stored_dtype, "-o", os.path.join(work, "out.safetensors"))
    record("fetch-accepted", fcode, f"case {n}: {ferr[-300:]}")
    vcode, vout, _ = run("verify", entry)
    record("verify-accepted", vcode, f"case {n}")
    if fcode != 0 or vcode != 0:
        violations.append(f"case {n} ({what}, {policy}): accepted but fetch exits {fcode}, verify {vcode}: {ferr[-300:]} {vout[-300:]}")
    else:
        accepted.append(entry)

# Damaged blobs: each damage either fails or serves the intact bytes.
for entry in accepted[: max(1, cases // 50)]:
    path = json.loads(run("show", entry, "--json")[1])["blob_path"]
    intact = open(path, "rb").read()
    good_raw, good = run("fetch", entry, "--raw", "-o", "-")[1], run("fetch", entry, "--dtype", "f32", "-o", "-")[1]
    for k in range(20):
        b = bytearray(intact)
        kind = k % 3
        if kind == 0:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            b = b[: rng.randrange(len(b))]
        else:
            i = rng.randrange(len(b)); b[i:i + 64] = bytes(len(b[i:i + 64]))
        with open(path, "wb") as f:
            f.write(b)
        for step, args, expected in [("fetch-raw-damaged", ["--raw"], good_raw), ("fetch-damaged", ["--dtype", "f32"], good)]:
            code, out, _ = run("fetch", entry, *args, "-o", "-")
            record(step, code, f"{entry} damage {k}")
            if code == 0 and out != expected:
                violations.append(f"{step}: {entry} damage {k} served other bytes with exit 0")
    with open(path, "wb") as f:
        f.write(intact)

print(f"{'step':<20} {'exit':>4} {'count':>6}")
for (step, code), count in sorted(summary.items()):
    print(f"{step:<20} {code:>4} {count:>6}")
print(f"{len(violations)} violations")
for v in violations[:20]:
    print("VIOLATION", v)
sys.exit(1 if violations else 0)
