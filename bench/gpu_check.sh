#!/usr/bin/env bash
# The GPU checks, in one run (a GPU machine is scarce; see docs/weights.md and docs/synthesis.md):
#   1. the golden-reference suites with the networks on CUDA (fp32, TF32 off), model and TangoFlux;
#   2. `bench model` on CUDA: embeddings/s in fp32 and bf16 at batch 1, 16 and 128 against the GEMM peak;
#   3. `bench synthesis` on CUDA: per-step and decode times (fp32, TF32, bf16) and whole 10-s, 50-step
#      synthesize() calls on random weights of the released size.
# Usage: SAT2SOUND_REFERENCE=/path/to/reference [SKIP_MODEL_BENCH=1] bash bench/gpu_check.sh [OUT_DIR]
# Python packages missing on the GPU machine may be put as wheels in ./.whl (installed into /tmp/site).
set -u
out=${1:-${OUT:-bench/results/gpu}}
mkdir -p "$out"
ref=${SAT2SOUND_REFERENCE:?set SAT2SOUND_REFERENCE to the reference folder}
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi -L
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__,
'transformers', transformers.__version__, torch.cuda.get_device_name())"

echo "=== fidelity suites on CUDA"
SAT2SOUND_TEST_DEVICE=cuda timeout 240 python3 -m pytest -q -p no:cacheprovider \
  tests/sat2sound_core/model/test_fidelity_e2e.py tests/sat2sound_core/synthesis/test_golden.py \
  tests/sat2sound_core/synthesis/test_decode.py \
  -k "not converted_safetensors and not nometa and not full_golden and not receptive_field" 2>&1 \
  | tee "$out/pytest_cuda.log"
echo "=== TangoFlux golden suite on CUDA without CUDA graphs"
SAT2SOUND_TEST_DEVICE=cuda SAT2SOUND_CUDA_GRAPHS=0 timeout 120 python3 -m pytest -q -p no:cacheprovider \
  tests/sat2sound_core/synthesis/test_golden.py -k "not full_golden" 2>&1 | tee -a "$out/pytest_cuda.log"

if [ -z "${SKIP_MODEL_BENCH:-}" ]; then
  echo "=== bench model on CUDA"
  timeout 200 python3 -m bench model --device=cuda --batches=1,16,128 2>&1 | tee "$out/bench_model_cuda.log"
  cp bench/results/bench_model.json "$out/bench_model_cuda.json" 2>/dev/null
fi

echo "=== bench synthesis on CUDA"
timeout 300 python3 -m bench synthesis --device=cuda --steps=50 --t5 --full-decode \
  --load="$ref/tangoflux/tiny/vocab.json" --clip 2>&1 | grep -v "should be kept in float32" | tee "$out/bench_synthesis_cuda.log"
cp bench/results/bench_synthesis.json "$out/bench_synthesis_cuda.json" 2>/dev/null
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
