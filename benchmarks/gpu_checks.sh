#!/usr/bin/env bash
# Every check of the project that needs a GPU, sized for a short device lease (steps 1-3 about 4½ minutes
# on one H100 with 16 cores, steps 4-5 about 7 more: two device calls), most important first; each step
# has its own time limit, so a slow step costs its own figures, not the others'. Results (JSON, Markdown,
# logs) go to $OUT (default /tmp/gpu_out).
#
#   bash benchmarks/gpu_checks.sh                 # from the source tree, on the GPU machine
#   GB=13 bash benchmarks/gpu_checks.sh           # the raw CSV size of the reference-scale run (default 24)
#   STEPS="1 2 3" bash benchmarks/gpu_checks.sh   # some steps only (a device call runs 10 minutes at most:
#                                                 # steps 1-3 take about 4½, step 4 about 4, step 5 about 3,
#                                                 # step 6 about 3 (4½ with ALT=30), step 7 about 2, step 8
#                                                 # about 1; with the build. On an H200 on 2026-11-28: step 1
#                                                 # 84 s, step 8 46 s, step 6 with ALT=30 250 s)
#
# 1. build and import; the GPU tests of the data path (tests/test_tiers.py: pinned ring, resident tier)
# 2. benchmarks/gpu_data_path.py: ceiling / reader / streamed / resident, batch 256-4096, float32 and float16,
#    the streamed path and the resident tier also alternated with the ceiling (4 s a figure), with
#    torch.profiler tables of the three paths at float16, batch 1024 and 4096 (in $OUT/profile; about 3
#    minutes in all; tar the folder: a device call brings back 8 files)
# 3. the reader alone on all cores against today's reader, and what reading ahead costs the training
#    thread (the CPU half, on the GPU machine's 16 cores)
# 4. benchmarks/reference_scale.py: raw CSV shards of 12,849 columns -> stats -> merge -> normalize ->
#    lesson 4 on the GPU, with the test R² reached
# 5. the first run (python -m wideann.accelerate_config, then lesson 1: no accelerate warning), wideann
#    predict on a GPU-trained lesson 4, and tests/gpu_resume_check.sh (kill -9 / --resume exactness in bf16)
# 6. the targets of issue 6 alone: gpu_data_path.py at float16, the streamed path and
#    the resident tier alternated with the ceiling 15 s each (ALT=30: 30 s each, about 4 minutes; a single
#    run's ratios of 0.25 s rounds vary by about +-10% with the host's speed; see benchmarks/README.md);
#    about 3 minutes with the build
# 7. benchmarks/gpu_host_time.py: where the training thread's time goes when it asks the streamed path and
#    the resident tier for a batch (by step position, garbage collector, syncs, torch.profiler with Python's
#    calls), and whether the streamed path's copies slow the step itself (in_the_step); about 2½ minutes,
#    estimated (batch 1024 alone took 26 s on an H100 on 2026-11-28, before in_the_step's 8 s; tables in
#    $OUT/host_time)
# 8. gpu_host_time.py's in_the_step alone: lesson 4's step beside a group's copy made as the streamed path
#    made it until commit 19ddd6a (side stream, record_stream), as it makes it since (memory of the training
#    stream), and into one kept block, alternated with the ceiling; about 1 minute
set -u
OUT=${OUT:-/tmp/gpu_out}
GB=${GB:-24}
STEPS=${STEPS:-1 2 3 4 5}  # (6 on its own: STEPS=6)
ALT=${ALT:-15}  # step 6: seconds of each alternated figure (30: about 4 minutes, intervals about 0.7 x as wide)
want() { [[ " $STEPS " == *" $1 "* ]]; }
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HOME=/tmp/hf_home
t0=$(date +%s)
say() { echo "== $(( $(date +%s) - t0 )) s: $*"; }

say "build"
python3 -m pip install -q --no-build-isolation --no-deps . > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
python3 - <<'EOF'
import os, platform, torch, accelerate, numpy, wideann
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"GPU {torch.cuda.get_device_name(0)}, CPU {cpu} x {os.cpu_count()}, Python {platform.python_version()}, "
      f"torch {torch.__version__}, accelerate {accelerate.__version__}, numpy {numpy.__version__}, wideann {wideann.__version__}")
EOF

if want 1; then
say "1. GPU tests of the data path"
# (120 s: test_tiers also launches lesson 4 four times, each starting accelerate: 18 s of the 21 s on 2 cores)
timeout 120 python3 -m pytest -q -p no:cacheprovider --durations=5 tests/test_tiers.py tests/test_native_reader.py 2>&1 | tail -22

fi
if want 2; then
say "2. gpu_data_path.py (GPU half)"
timeout 240 python3 benchmarks/gpu_data_path.py --json "$OUT/gpu_data_path.json" --profile "$OUT/profile" \
    --profile-batches 1024 4096 --alternated-seconds 4 2>&1 \
    | tee "$OUT/gpu_data_path.log" | tail -40

fi
if want 3; then
say "3. the reader alone on all cores (CPU half)"
timeout 80 python3 benchmarks/gpu_data_path.py --cpu --rounds 1 --idle-wait 0 --seconds 1 \
    --json "$OUT/reader_all_cores.json" 2>&1 | tail -20

fi
if want 4; then
say "4. reference_scale.py, ${GB} GB of raw CSV"
rm -rf benchmarks/work/gpu_data_path_*  # room on the disk
timeout 250 python3 benchmarks/reference_scale.py --gb "$GB" --shards 4 --cols 12849 --dtypes float16 --train-dtype float16 \
    --train-args "--quiet --checkpoint-every 1000000" --json "$OUT/reference_scale.json" \
    --markdown "$OUT/reference_scale.md" 2>&1 | tee "$OUT/reference_scale.log" | tail -60

fi
if want 5; then
say "5. first run, predict, resume"
H=$(mktemp -d)
timeout 90 env -u OMP_NUM_THREADS HOME="$H" HF_HOME="$H/hf" sh -c 'python3 -m wideann.accelerate_config && \
    accelerate launch scripts/1_first_ann.py --epochs 1 --quiet --output-dir /tmp/first_run' > "$OUT/first_run.log" 2>&1
echo "first run exit $?; accelerate warnings: $(grep -c 'had defaults used' "$OUT/first_run.log")"
timeout 60 accelerate launch --num_processes 1 scripts/4_multi_gpu_ann.py --epochs 2 --quiet --output-dir /tmp/l4 \
    > "$OUT/lesson4_example.log" 2>&1; echo "lesson 4 exit $?"; grep -E "^device|tier|test RMSE" "$OUT/lesson4_example.log"
timeout 60 python3 -m wideann predict /tmp/l4 data/example.csv -o /tmp/l4_pred.csv --row-numbers && head -3 /tmp/l4_pred.csv
grep -o '"layers": null' /tmp/l4/model.json || echo "model.json: layers present"
SKIP_BUILD=1 MPS=bf16 timeout 120 bash tests/gpu_resume_check.sh 2>&1 | tee "$OUT/resume_check.log" | tail -12
fi
if want 8; then  # (before 6: its minute of evidence first, should a lease run short)
say "8. the step beside a group's copy, three ways (gpu_host_time.py --only-in-the-step)"
timeout 120 python3 benchmarks/gpu_host_time.py --only-in-the-step --out "$OUT/in_the_step" 2>&1 | grep -v "^USDT" \
    | tee "$OUT/in_the_step.log" | tail -8
fi
if want 6; then
say "6. the targets of issue 6: float16, alternated figures of ${ALT} s"
timeout $(( 120 + 12 * ALT )) python3 benchmarks/gpu_data_path.py --dtypes float16 --alternated-seconds "$ALT" \
    --json "$OUT/gpu_data_path_targets.json" 2>&1 | tee "$OUT/gpu_data_path_targets.log" | tail -30
fi
if want 7; then
say "7. where the data paths' host time goes"
timeout 260 python3 benchmarks/gpu_host_time.py --seconds 2 --out "$OUT/host_time" 2>&1 | grep -v "^USDT" \
    | tee "$OUT/gpu_host_time.log" | tail -30
fi
say "done"
