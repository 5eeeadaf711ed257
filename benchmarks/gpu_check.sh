#!/usr/bin/env bash
# Every GPU check in one call of at most about 9.5 minutes, for a machine with CUDA: the
# gpu-marked tests, training speed (3x512, by batch size) and bf16 against fp32 val loss,
# sampling speed (1, 32 and 256 streams, and the server's batcher), and `--preset auto`'s val
# loss on tiny-shakespeare (the copy inside the package) beside variants of its recipe, trained
# side by side. Runs with the machine's own python3 and torch, and charrnn from this working
# tree (not installed); nothing it runs imports the HTTP server (fastapi, uvicorn, pydantic):
#
#   bash benchmarks/gpu_check.sh                          # logs in $OUT (default /tmp/gpu-check)
#   DEVICE=cpu CHECK_SECONDS=120 bash benchmarks/gpu_check.sh   # a dry run: every stage starts
#
# Stages run in order of what they settle, each under its own time limit and all under one
# deadline (CHECK_SECONDS, default 540), so a failing or slow stage costs only its own share.
# Each stage's limit and the quality runs' budget are scaled by CHECK_SECONDS / 540.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
out=${OUT:-/tmp/gpu-check}
device=${DEVICE:-cuda}
total=${CHECK_SECONDS:-540}
deadline=$((SECONDS + total))
mkdir -p "$out"

stage() {  # stage LOG SECONDS COMMAND...: run under min(SECONDS scaled, time to the deadline)
    local log=$out/$1 limit=$(($2 * total / 540)) left=$((deadline - SECONDS)) t0=$SECONDS
    shift 2
    ((left < limit)) && limit=$left
    if ((limit < 10)); then
        echo "== skipped (deadline): $*" | tee -a "$log"
        return
    fi
    echo "== $* (limit ${limit} s)" | tee -a "$log"
    timeout "$limit" "$@" >>"$log" 2>&1
    echo "== exit $? after $((SECONDS - t0)) s" | tee -a "$log"
}

python3 - >"$out/env.log" 2>&1 <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(), torch.cuda.get_device_properties(0).total_memory // 2**30, "GiB")
else:
    print("no CUDA device: the gpu tests skip, and the benchmarks run only with DEVICE=cpu")
for name in ("fastapi", "uvicorn", "pydantic", "starlette"):
    try:
        __import__(name)
        print(name, "is installed")
    except ImportError:
        print(name, "is absent (nothing below needs it)")
EOF
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv >>"$out/env.log" 2>&1
fi
nproc >>"$out/env.log"
cat "$out/env.log"

# 1. the CUDA path works at all: bf16 training with loss scaling, a CUDA checkpoint that
#    samples and resumes on the CPU, the fast sampler and the server's batcher on CUDA
stage tests.log 75 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
# 2. training chars/s against plain fp32 nn.LSTM + AdamW at batch 128 x 128, charrnn's speed
#    by batch size, and val loss after 600 steps in fp32 and in charrnn's precision, same seed
stage train_speed.log 150 python3 benchmarks/train_speed.py --device "$device" --quality-steps 600 \
    --batch-sizes 64,128,256,512,1024
# 3. sampling chars/s, 1, 32 and 256 streams, and the same through the server's batcher
stage sample_speed.log 70 python3 benchmarks/sample_speed.py --device "$device" --streams 1,32,256 --batcher
# 4. quality: `--preset auto --time-limit B` as a user runs it (xl on CUDA), beside variants of
#    its recipe and medium with a horizon of 20 epochs (1.3667 on the CPU in 1200 s at about
#    that many steps), all trained at once (one small LSTM leaves most of the GPU idle). With
#    MPS the processes' kernels run side by side; without it they take turns.
if [[ $device == cuda ]] && command -v nvidia-cuda-mps-control >/dev/null; then
    nvidia-cuda-mps-control -d >>"$out/quality.log" 2>&1 &&
        if timeout 60 python3 -c "import torch; torch.ones(1, device='cuda').sum().item()" >>"$out/quality.log" 2>&1; then
            echo "MPS daemon started" | tee -a "$out/quality.log"
        else
            echo quit | nvidia-cuda-mps-control
            echo "MPS would not serve a client: the runs take turns on the GPU" | tee -a "$out/quality.log"
        fi
fi
budget=$((300 * total / 540))  # less where the stages above left less time
left=$((deadline - SECONDS - 45))
((left < budget)) && budget=$left
((budget < 10)) && budget=10
stage quality.log $(((budget + 45) * 540 / total)) python3 benchmarks/quality.py --presets auto --budgets "$budget" --no-baseline --jobs 4 \
    --variant "medium20: --preset medium --max-epochs 20 --eval-every 500" \
    --variant "d50: --dropout 0.5" \
    --variant "e90: --max-epochs 90" \
    -- --device "$device"
echo quit | nvidia-cuda-mps-control >/dev/null 2>&1
echo "total ${SECONDS} s; logs in $out"
