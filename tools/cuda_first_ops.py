"""Where a fresh CUDA process's first milliseconds go: context, cuBLAS's first GEMM per dtype, and the
first forward and backward of a Llama model in transformers against its second. Run on the GPU
machine: python3 tools/cuda_first_ops.py MODEL_DIR. Compares with `LORANK_TRACE=1 lorank recommend`'s
first probe batch (the same kernels' first loads)."""
import sys
import time

t0 = time.perf_counter()
import torch  # noqa: E402

def lap(what, t=[t0]):
    torch.cuda.synchronize() if torch.cuda.is_initialized() else None
    now = time.perf_counter()
    print(f"{what:40s} {1e3 * (now - t[0]):8.1f} ms")
    t[0] = now

lap("import torch")
torch.cuda.init()
lap("cuda init")
torch.zeros(1, device="cuda")
lap("context and first kernel")
for dtype in (torch.bfloat16, torch.float32, torch.float64):
    a = torch.randn(512, 1536, device="cuda", dtype=dtype)
    lap(f"randn {dtype}")
    for i in range(2):
        a.T @ a
        lap(f"  GEMM {dtype} #{i + 1}")
from transformers import AutoModelForCausalLM  # noqa: E402
lap("import transformers")
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.bfloat16).cuda()
model.requires_grad_(False)
model.get_input_embeddings().weight.requires_grad_(True)  # something to differentiate
lap("load model")
ids = torch.randint(0, model.config.vocab_size, (8, 448), device="cuda")
for i in range(3):
    out = model(input_ids=ids, labels=ids)
    lap(f"forward #{i + 1}")
    out.loss.backward()
    lap(f"backward #{i + 1}")
