#!/bin/bash
# The resume and error paths of lessons 3 and 4 on a GPU, where pytest's CPU tests cannot go: each lesson
# killed (kill -9) at chosen moments through the WIDEANN_TEST_PAUSE hook, resumed, and compared with an
# uninterrupted run (metrics, best_model.pt, predictions.csv); lesson 4 in bf16 and in fp16 (GradScaler
# state in the checkpoint, loaded weights-only). Prints SAME or DIFFERENT per run, then two one-line errors.
#   From the repository root on a GPU machine:  bash tests/gpu_resume_check.sh
#   (builds and installs the package first; SKIP_BUILD=1 to use the one installed; MPS="bf16" for one
#   precision; W=folder for the work folder, default /tmp/w, emptied first)
set -u
S=$PWD/scripts
python3 -c "import torch, accelerate, numpy; print('torch', torch.__version__, 'accelerate', accelerate.__version__, 'numpy', numpy.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
t0=$(date +%s)
[ -n "${SKIP_BUILD:-}" ] || pip install --no-build-isolation --no-deps -q . > /tmp/build.log 2>&1 || { tail -20 /tmp/build.log; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
W=${W:-/tmp/w}; rm -rf $W; mkdir -p $W; cd $W
export OMP_NUM_THREADS=4 HF_HOME=$W/hf PYTHONUNBUFFERED=1
wideann make-data -o t.csv --rows 4000 --cols 50 --seed 1 --noise 0.5 >/dev/null
wideann normalize t.csv -o t.npy >/dev/null

pause_kill() {  # point, then the lesson command: run until it pauses there, then kill -9
  local point=$1; shift
  rm -f pf
  WIDEANN_TEST_PAUSE=$point WIDEANN_TEST_PAUSE_FILE=$W/pf "$@" > pk.log 2>&1 &
  local bg=$!
  for i in $(seq 1 600); do [ -f pf ] && break; sleep 0.1; done
  if [ ! -f pf ]; then echo "NEVER REACHED $point"; tail -5 pk.log; return; fi
  kill -9 $(cat pf); wait $bg 2>/dev/null
  grep "resumed from" pk.log
  echo "killed at $point"
}
compare() {
python3 - "$1" "$2" <<'EOF'
import json, sys, torch
a, b = sys.argv[1:3]
ma, mb = (json.load(open(f"{r}/metrics.json")) for r in (a, b))
keys = ("test_rmse", "test_r2", "best_epoch", "best_val_loss", "epochs")
wa, wb = (torch.load(f"{r}/best_model.pt", weights_only=True) for r in (a, b))
same_w = all(torch.equal(wa[k], wb[k]) for k in wa)
same_p = open(f"{a}/predictions.csv", "rb").read() == open(f"{b}/predictions.csv", "rb").read()
print("SAME" if all(ma[k] == mb[k] for k in keys) and same_w and same_p else "DIFFERENT",
      {k: (ma[k], mb[k]) for k in keys}, "weights equal:", same_w, "predictions equal:", same_p,
      "mixed precision:", ma.get("mixed_precision"))
EOF
}

A3="--data t.npy --epochs 4 --hidden 64 64 --dropout 0.1 --batch-size 32 --checkpoint-every 20 --patience 100"
python3 $S/3_out_of_core_ann.py $A3 --output-dir full3 > full3.log 2>&1 || tail -5 full3.log
grep "^device" full3.log
pause_kill checkpoint-written:3 python3 $S/3_out_of_core_ann.py $A3 --output-dir cut3
pause_kill model-saved:2 python3 $S/3_out_of_core_ann.py $A3 --output-dir cut3 --resume
python3 $S/3_out_of_core_ann.py $A3 --output-dir cut3 --resume > r3.log 2>&1 || tail -5 r3.log
echo "lesson 3 on the GPU:"; compare full3 cut3

for mp in ${MPS:-bf16 fp16}; do
  A4="--data t.npy --epochs 4 --max-steps 60 --hidden 256 64 --dropout 0.1 --batch-size 64 --grad-accum 2 --checkpoint-every 7 --patience 100 --mixed-precision $mp"
  python3 $S/4_multi_gpu_ann.py $A4 --output-dir full4$mp > full4.log 2>&1 || tail -5 full4.log
  grep "^device" full4.log
  pause_kill checkpoint-written:2 python3 $S/4_multi_gpu_ann.py $A4 --output-dir cut4$mp
  pause_kill predictions-begin:1 python3 $S/4_multi_gpu_ann.py $A4 --output-dir cut4$mp --resume
  python3 $S/4_multi_gpu_ann.py $A4 --output-dir cut4$mp --resume > r4.log 2>&1 || tail -5 r4.log
  ls cut4$mp/checkpoints/*/ | sort -u | tr '\n' ' '; echo
  echo "lesson 4 on the GPU, $mp:"; compare full4$mp cut4$mp
done

python3 $S/4_multi_gpu_ann.py --data nope.npy --output-dir e4 > /dev/null 2> e4.err; echo "exit $?: $(cat e4.err)"
python3 $S/4_multi_gpu_ann.py --data t.npy --epochs 0 > /dev/null 2> e4.err; echo "exit $?: $(cat e4.err)"
echo "total $(( $(date +%s) - t0 )) s"
