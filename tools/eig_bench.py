"""Time the spectra's eigenvalue work as recommend does it on small-llama (42 modules: 30 Gram
matrices of 512 x 512 and 12 of 128 x 128, each with 1 full + 3 split noise spectra), by strategy:
one call per matrix, one batched call per module, one batched call per shape; GPU and CPU; fp64 and
fp32. Prints a table of wall seconds (median of 3) per strategy."""
import time
import torch


def grams(device, dtype):
    out = []
    for shape, n in (((1536, 512), 18), ((512, 512), 12), ((128, 512), 12)):
        for _ in range(n):
            g = torch.randn(4, *shape, dtype=torch.float64, device=device)  # 4 matrices per module
            m = g.transpose(-1, -2) @ g if g.shape[-2] >= g.shape[-1] else g @ g.transpose(-1, -2)
            out.append(m.to(dtype))
    return out


def timed(fn, device):
    times = []
    for _ in range(3):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[1]


def main():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("device dtype   per-matrix  per-module  per-shape  (168 eigvalsh)")
    for device in devices:
        for dtype in (torch.float64, torch.float32):
            ms = grams(device, dtype)
            torch.linalg.eigvalsh(ms[0])  # warm-up: library load, handles
            per_matrix = timed(lambda: [torch.linalg.eigvalsh(m[i]).cpu() for m in ms for i in range(4)], device)
            per_module = timed(lambda: [torch.linalg.eigvalsh(m).cpu() for m in ms], device)
            by_shape = {}
            for m in ms:
                by_shape.setdefault(m.shape[-1], []).append(m)
            stacks = [torch.cat(v) for v in by_shape.values()]
            per_shape = timed(lambda: [torch.linalg.eigvalsh(s).cpu() for s in stacks], device)
            print(f"{device:6} {str(dtype)[6:]:8} {per_matrix:9.3f}s {per_module:10.3f}s {per_shape:9.3f}s")


if __name__ == "__main__":
    main()
