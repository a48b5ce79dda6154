#!/usr/bin/env python3
"""Where a gRPC call's CPU goes: reads `perf script -F comm,tid,period,ip,sym,dso` output
(a `perf record --call-graph dwarf` profile of segd serve) on stdin and prints each
category's share of the samples, and its CPU microseconds per call when given the
measured server CPU per call (`--us-per-call`, from scripts/cpu-per-call.sh).

A sample belongs to the first *owner* found walking its stack from the leaf (the work a
layer asks for, allocations and copies included, is that layer's); a sample with no
owner belongs to the first *generic* frame from the leaf (the HTTP/2 stack, the runtime,
the kernel by system call). Inlined frames count (perf prints them).

    perf script -i perf.data -F comm,tid,period,ip,sym,dso | scripts/perf-breakdown.py --us-per-call 17.3
"""
import argparse
import re
import sys
from collections import Counter

# (category, pattern on a frame's symbol), checked leaf first over the whole stack.
OWNERS = [
    ("tracing: per-request span and events", r"\btracing(_core|_subscriber)?::|Instrumented<|instrument::"),
    ("metrics: histogram + counters", r"prometheus_client::|segd::metrics::"),
    ("segment lookup: app, plan cache, row test", r"segd::(app|plan_cache|query|store|engine|db)::"),
    ("protobuf decode / encode", r"\bprost::|SegdDecoder|::merge\b|encode_raw|encoded_len|merge_field"),
]
# Checked leaf first when no owner matched.
GENERIC = [
    ("allocation (malloc / free)", r"^(malloc|free|cfree|calloc|realloc|_int_malloc|_int_free|_int_realloc|"
     r"unlink_chunk|malloc_consolidate|tcache_|__libc_malloc|__libc_free|alloc::alloc::|__rust_(de)?alloc)"),
    ("memcpy / memcmp", r"^__(memmove|memcpy|memset|memcmp|memchr)"),
    ("clock reads", r"clock_gettime|__vdso|Instant::now"),
    ("HTTP/2 (h2: frames, HPACK, streams, flow control)", r"\bh2::"),
    ("hyper server glue", r"\bhyper(_util)?::"),
    ("tonic / tower service stack, http types", r"\btonic(_health)?::|\btower(_layer|_service)?::|\bhttp(_body)?::|"
     r"\baxum::|\bmatchit::|segd::grpc::|segd::server::|\bbytes::"),
    ("tokio runtime (scheduler, wakers, I/O driver)", r"\btokio::|\bmio::|parking_lot|std::sys::.*futex"),
]
SYSCALLS = [
    ("kernel: send (writev / sendto; loopback delivery to the client included)",
     r"do_writev|sock_write_iter|tcp_sendmsg|__dev_queue_xmit|tcp_write_xmit|ksys_write"),
    ("kernel: receive (recvfrom / read)", r"recvfrom|tcp_recvmsg|sock_read_iter|ksys_read"),
    ("kernel: epoll_wait (runtime parks)", r"epoll"),
    ("kernel: futex (thread wake-ups and parks)", r"futex|^syscall$"),
    ("kernel: scheduler / interrupts / other", r"."),
]


def categorise(frames):
    """frames: [(sym, dso)] leaf first."""
    for sym, _ in frames:
        for name, pat in OWNERS:
            if re.search(pat, sym):
                return name
    if frames and "kernel" in frames[0][1]:
        for name, pat in SYSCALLS:
            if any(re.search(pat, s) for s, _ in frames):
                return name
    for sym, dso in frames:
        if "kernel" in dso:
            continue
        for name, pat in GENERIC:
            if re.search(pat, sym):
                return name
    return "other"


def samples(lines):
    frames, period = None, 0
    frame = re.compile(r"^\s+[0-9a-f]+ (.*) \((.*)\)$")
    for line in lines:
        if not line.strip():
            if frames is not None:
                yield period, frames
            frames = None
            continue
        if not line[0].isspace():
            if frames is not None:
                yield period, frames
            parts = line.split()
            period = int(parts[-1]) if parts and parts[-1].isdigit() else 1
            frames = []
            continue
        m = frame.match(line)
        if m and frames is not None:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            frames.append((sym, m.group(2)))
    if frames is not None:
        yield period, frames


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--us-per-call", type=float, help="measured server CPU µs per call")
    ap.add_argument("--detail", type=int, default=0, metavar="N",
                    help="also list each category's N hottest leaf functions")
    args = ap.parse_args()
    by = Counter()
    leaves = {}
    total = 0
    for period, frames in samples(sys.stdin):
        cat = categorise(frames)
        by[cat] += period
        total += period
        # The leaf's outermost (non-inlined) function: the first frame with a path-like name.
        leaf = next((f for f, _ in frames if "::" in f or not f.endswith(")")), frames[0][0] if frames else "?")
        leaves.setdefault(cat, Counter())[leaf[:110]] += period
    if not total:
        sys.exit("no samples")
    head = "| category | share |" + (" CPU µs / call |" if args.us_per_call else "")
    print(head)
    print("|---|---|" + ("---|" if args.us_per_call else ""))
    for name, n in by.most_common():
        share = n / total
        row = f"| {name} | {share * 100:.1f}% |"
        if args.us_per_call:
            row += f" {share * args.us_per_call:.2f} |"
        print(row)
    if args.detail:
        for name, n in by.most_common():
            print(f"\n{name}:")
            for leaf, m in leaves[name].most_common(args.detail):
                print(f"  {m / total * 100:5.1f}%  {leaf}")


if __name__ == "__main__":
    main()
