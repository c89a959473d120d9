#!/usr/bin/env bash
# gpu_check.sh: the GPU measurements of issue 11 ("Speed") in one run of at most 8 minutes.
#
#   bash bench/gpu_check.sh        # from anywhere; it runs in the repository root
#
# Steps, each under its own `timeout` (cut to what is left of the 8-minute budget):
#   1. bench/train_step.py --quick --resolutions=256 --precisions=float32,mixed_float16, all schemes
#   2. the quick start, timed: bin/train_lapgan --flagfile=configs/quickstart.cfg
#      --precision=mixed_float16 --strategy=mirrored --train_steps=200
#   3. bench/torch_peer.py (the PyTorch DCGAN) at 256 px, float32 and float16 autocast, when torch imports
#   4. bin/synthesize: 2000 images from the quick start's export, timed
#   5. bench/steps_per_call.py: the quick start's step, mixed_float16, 4 and 16 steps per call against 1
# Output: one markdown table on stdout and in $OUT_DIR/gpu_check.md, one log per step beside it
# (OUT_DIR=${OUT:-bench_out/gpu_check}). The quick start's run folder and the 2000 PNGs go to a
# scratch folder (new under ${TMPDIR:-/tmp}, removed at the end unless KEEP_WORK=1), not under $OUT_DIR.
# Environment: PYTHON (default .venv/bin/python, else python3; relative to the repository root),
# OUT, KEEP_WORK, GPU_CHECK_BUDGET (seconds of the steps, default 470), GPU_CHECK_TF_TIMEOUT.
#
# Exit status: 0 all steps ran, or there is no GPU: one line "gpu_check: no GPU visible to
# TensorFlow (nvidia-smi: ...); nothing measured", no step run, no file written (TensorFlow is
# asked for GPU_CHECK_TF_TIMEOUT=90 s; when it does not answer and nvidia-smi lists no GPU, that is
# "no GPU" too); 1 a step failed or timed out (its row says which); 2 TensorFlow did not start;
# 3 nvidia-smi lists a GPU that TensorFlow does not see (a CPU-only TensorFlow?).

set -u
START=$SECONDS
BUDGET=${GPU_CHECK_BUDGET:-470}
OUT_DIR=${OUT:-bench_out/gpu_check}
case $OUT_DIR in /*) ;; *) [[ -n ${OUT:-} ]] && OUT_DIR=$PWD/$OUT_DIR ;; esac   # a relative OUT: from the caller's folder
cd "$(dirname "$0")/.." || exit 2
PYTHON=${PYTHON:-.venv/bin/python}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

# ------------------------------------------------------------------ is there a GPU?
SMI_GPUS=0 SMI="not installed"
if command -v nvidia-smi >/dev/null 2>&1; then
    SMI_OUT=$(timeout 20 nvidia-smi -L 2>&1)
    SMI_GPUS=$(grep -c '^GPU ' <<<"$SMI_OUT")
    SMI=$(head -n 4 <<<"${SMI_OUT:-no output}" | paste -sd ';' -)
fi
TF_LIMIT=${GPU_CHECK_TF_TIMEOUT:-90}
TF_LOG=$(mktemp) || exit 2
timeout -k 5 "$TF_LIMIT" "$PYTHON" -c 'import tensorflow as tf; print(len(tf.config.list_physical_devices("GPU")))' \
    >"$TF_LOG" 2>&1
TF_RC=$?
TF_GPUS=$(grep -E '^[0-9]+$' "$TF_LOG" | tail -n 1)
TF_ERR=$(grep -vE '^[0-9]+$' "$TF_LOG" | tail -n 1)
rm -f "$TF_LOG"
if [[ $TF_RC == 0 && -n $TF_GPUS ]]; then
    if (( TF_GPUS == 0 && SMI_GPUS == 0 )); then
        echo "gpu_check: no GPU visible to TensorFlow (nvidia-smi: $SMI); nothing measured"
        exit 0
    elif (( TF_GPUS == 0 )); then
        echo "gpu_check: nvidia-smi lists a GPU but TensorFlow sees none ($SMI); nothing measured"
        exit 3
    fi
elif [[ $TF_RC == 124 || $TF_RC == 137 ]] && (( SMI_GPUS == 0 )); then
    echo "gpu_check: no GPU visible to TensorFlow (it did not answer in $TF_LIMIT s; nvidia-smi: $SMI); nothing measured"
    exit 0
else
    echo "gpu_check: TensorFlow did not start with $PYTHON (exit $TF_RC: ${TF_ERR:-no output}); nothing measured"
    exit 2
fi

# ------------------------------------------------------------------ steps
mkdir -p "$OUT_DIR" || exit 2
rm -f "$OUT_DIR"/{train_step,quickstart,peer_float32,peer_float16,synthesize,steps_per_call}.log "$OUT_DIR/gpu_check.md"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 2
FAILED=0

# run_step NAME LIMIT CMD...: CMD under `timeout`, output to $OUT_DIR/NAME.log; sets RC, SECS, STATUS.
run_step() {
    local name=$1 limit=$2 left t0
    shift 2
    left=$(( START + BUDGET - SECONDS ))
    (( left < limit )) && limit=$left
    if (( limit < 15 )); then
        RC=skip SECS="" STATUS="skipped: the 8-minute budget is spent"
        echo "gpu_check: $name $STATUS"; FAILED=1; return
    fi
    echo "gpu_check: $name (timeout ${limit} s): $*"
    t0=$(date +%s.%N)
    timeout -k 5 "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
    RC=$?
    SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    case $RC in
        0) STATUS=ok ;;
        124|137) STATUS="timed out after ${limit} s"; FAILED=1 ;;
        *) STATUS="failed (exit $RC)"; FAILED=1 ;;
    esac
    echo "gpu_check: $name: $STATUS in $SECS s"
    [[ $RC == 0 ]] || tail -n 5 "$OUT_DIR/$name.log" | sed 's/^/    /'
}

ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a != "" && b > 0) printf "%.2fx", a / b }'; }
per_s() { awk -v n="$1" -v s="${2:-}" 'BEGIN { if (s > 0) printf "%.1f", n / s }'; }
# img/s of a train_step.py row (its progress lines: "  dcgan   256 px float32   12.34 img/s ...")
ours() { awk -v s="$1" -v q="$2" '$1 == s && $2 == "256" && $3 == "px" && $4 == q && $6 == "img/s" { v = $5 }
                                  END { if (v != "") print v }' "$OUT_DIR/train_step.log" 2>/dev/null; }
json_field() { grep -o "\"$1\": [0-9.e+-]*" "$2" 2>/dev/null | tail -n 1 | awk '{ print $2 }'; }

run_step train_step 200 "$PYTHON" bench/train_step.py --quick --schemes=dcgan,lapgan,mod --resolutions=256 \
    --precisions=float32,mixed_float16
S1_STATUS=$STATUS S1_SECS=$SECS

run_step quickstart 130 "$PYTHON" bin/train_lapgan --flagfile=configs/quickstart.cfg \
    --model_dir="$WORK/quickstart" --precision=mixed_float16 --strategy=mirrored --train_steps=200
S2_STATUS=$STATUS S2_SECS=$SECS
# img/s of the last logged interval ("step 200/200  d_loss ...  123.4 img/s  ETA ...")
S2_IMG=$(grep -o '[0-9.]* img/s' "$OUT_DIR/quickstart.log" 2>/dev/null | tail -n 1 | awk '{ print $1 }')

PEER_NOTE=""
LEFT=$(( START + BUDGET - SECONDS ))
if (( LEFT > 15 )) && timeout $(( LEFT < 60 ? LEFT : 60 )) "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    run_step peer_float32 40 "$PYTHON" bench/torch_peer.py --quick --json --resolution=256 --batch_size=16 \
        --precision=float32
    P32_STATUS=$STATUS P32_SECS=$SECS
    run_step peer_float16 40 "$PYTHON" bench/torch_peer.py --quick --json --resolution=256 --batch_size=16 \
        --precision=mixed_float16
    P16_STATUS=$STATUS P16_SECS=$SECS
    P32=$(json_field img_s "$OUT_DIR/peer_float32.log")
    P16=$(json_field img_s "$OUT_DIR/peer_float16.log")
    S3_STATUS="float32 $P32_STATUS, float16 $P16_STATUS"
    S3_SECS=$(awk -v a="${P32_SECS:-0}" -v b="${P16_SECS:-0}" 'BEGIN { printf "%.1f", a + b }')
    PEER_NOTE=" (G $(json_field g_params "$OUT_DIR/peer_float32.log") + D $(json_field d_params "$OUT_DIR/peer_float32.log") params)"
else
    P32="" P16="" S3_SECS=""
    S3_STATUS="skipped: torch is not importable (pip install torch; the CPU build: --index-url https://download.pytorch.org/whl/cpu)"
    (( LEFT > 15 )) || S3_STATUS="skipped: the 8-minute budget is spent"
    echo "gpu_check: peer $S3_STATUS"
fi

if [[ -d $WORK/quickstart/saved_model ]]; then
    run_step synthesize 45 "$PYTHON" bin/synthesize --model_dir="$WORK/quickstart" --num_images=2000 \
        --out="$WORK/synthetic"
    S4_STATUS=$STATUS S4_SECS=$SECS
else
    S4_STATUS="skipped: no export from step 2" S4_SECS=""; FAILED=1
fi

run_step steps_per_call 60 "$PYTHON" bench/steps_per_call.py --flagfile=configs/quickstart.cfg \
    --precision=mixed_float16 --n=4,16 --rounds=2 --steps=32
S5_STATUS=$STATUS S5_SECS=$SECS
# "| 16 | 123.4 | 1.23x |": img/s and the ratio to one step per call
spc() { awk -F'|' -v n="$1" -v f="$2" '$2 + 0 == n && $3 ~ /[0-9]/ { gsub(/ /, "", $f); v = $f } END { print v }' \
            "$OUT_DIR/steps_per_call.log" 2>/dev/null; }

# ------------------------------------------------------------------ table
{
    echo "# gpu_check $(date -u +%Y-%m-%dT%H:%MZ): $SMI; $($PYTHON --version 2>&1); $(( SECONDS - START )) s"
    echo
    echo "| step | measured | float32 | mixed_float16 | mixed_float16 / float32 | ours / peer (float32, float16) | seconds | status |"
    echo "|---|---|---:|---:|---:|---:|---:|---|"
    secs=$S1_SECS
    for s in dcgan lapgan mod; do
        f32=$(ours "$s" float32) f16=$(ours "$s" mixed_float16) vs=""
        [[ $s == dcgan && -n "$P32$P16" ]] && vs="$(ratio "$f32" "$P32") / $(ratio "$f16" "$P16")"
        echo "| 1 train_step.py | $s 256 px, batch 16: img/s | $f32 | $f16 | $(ratio "$f16" "$f32") | $vs | $secs | $S1_STATUS |"
        secs=""
    done
    echo "| 2 quick start | mod 64 px, batch 32, 200 steps, mirrored: img/s of the last 25 steps | | ${S2_IMG:-} | | | ${S2_SECS:-} | $S2_STATUS |"
    echo "| 3 torch peer | dcgan 256 px, batch 16: img/s$PEER_NOTE | ${P32:-} | ${P16:-} | $(ratio "${P16:-}" "${P32:-}") | | ${S3_SECS:-} | $S3_STATUS |"
    echo "| 4 synthesize | 2000 PNGs from step 2's export: img/s | | $(per_s 2000 "${S4_SECS:-}") | | | ${S4_SECS:-} | $S4_STATUS |"
    echo "| 5 steps_per_call.py | mod 64 px, batch 32: img/s at 1 / 16 steps per call (16 vs 1: $(spc 16 4)) | | $(spc 1 3) / $(spc 16 3) | | | ${S5_SECS:-} | $S5_STATUS |"
    echo
    echo "ours / peer: melano_tf's step also runs DiffAugment and updates the EMA generator; the peer"
    echo "(bench/torch_peer.py) has the same networks and losses without them."
    echo "Logs: $OUT_DIR/{train_step,quickstart,peer_float32,peer_float16,synthesize,steps_per_call}.log"
} | tee "$OUT_DIR/gpu_check.md"
[[ -n ${KEEP_WORK:-} ]] && echo "gpu_check: the quick start's run and the PNGs are in $WORK" || rm -rf "$WORK"
exit $FAILED
