"""Fuzzes the video readers with thousands of mutated real MP4 files.

Mutations of the clips in `--videos` (see tests/video_fuzz.py: truncations, bit flips in
the index and the payload, garbage atoms, absurd box sizes, huge declared durations and
counts, zero-sample tracks, an audio-only file, files growing while read) go to the
readers, the Kinetics dataset (skip and raise), `classify_video` with a narrow model and
the TFRecord writer, each case in a worker process under a hard wall-clock limit.

Prints the counts: cases, clean errors, counted skips, crashes, hangs, and the longest
case; exits 1 if any case crashed or hung (the first ones are printed).

Usage:

    python benchmarks/fuzz_videos.py --videos path/to/videos --cases 3000 --workers 2
"""

import argparse
import collections
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import video_fuzz  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", required=True, help="folder of real .mp4 clips")
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0, help="reader timeout, seconds")
    parser.add_argument("--case-limit", type=float, default=60.0, help="hard limit per case")
    parser.add_argument(
        "--short-only", action="store_true", help="only the 2 s cuts, not the whole clips"
    )
    parser.add_argument("--json", help="write every case's result to this file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as work:
        sources = video_fuzz.prepare_sources(
            args.videos, os.path.join(work, "sources"), full_clips=not args.short_only
        )
        cases = video_fuzz.make_cases(sources, args.cases, seed=args.seed)
        start = time.monotonic()

        def progress(result, done):
            if done % 250 == 0:
                print(f"  {done}/{len(cases)} cases, {time.monotonic() - start:.0f} s", flush=True)

        results = video_fuzz.run_cases(
            cases,
            sources,
            os.path.join(work, "cases"),
            workers=args.workers,
            timeout=args.timeout,
            case_limit=args.case_limit,
            progress=progress,
        )
    wall = time.monotonic() - start
    summary = video_fuzz.summarize(results)
    print(f"sources: {len(sources)} files; {summary['cases']} cases in {wall:.0f} s")
    print(
        f"cases={summary['cases']} clean_errors={summary['error']} counted_skips="
        f"{summary['skip']} ok={summary['ok']} crashes={summary['crash']} "
        f"hangs={summary['hang']} max_seconds_per_case={summary['max_seconds']:.2f}"
    )
    table = collections.Counter((r["target"], r["outcome"]) for r in results)
    for target in video_fuzz.TARGETS:
        row = " ".join(f"{o}={table[(target, o)]}" for o in video_fuzz.OUTCOMES)
        worst = max((r["seconds"] for r in results if r["target"] == target), default=0.0)
        print(f"  {target:17s} {row} max_s={worst:.2f}")
    by_mutator = collections.Counter((r["mutator"], r["outcome"]) for r in results)
    for mutator in sorted(video_fuzz.MUTATORS):
        row = " ".join(f"{o}={by_mutator[(mutator, o)]}" for o in video_fuzz.OUTCOMES)
        print(f"  {mutator:17s} {row}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    bad = [r for r in results if r["outcome"] in ("crash", "hang")]
    for r in bad[:10]:
        print(f"{r['outcome']}: {r['source']} {r['mutator']} seed={r.get('seed')} -> {r['target']}")
        print(r["detail"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
