// Forward-pass throughput of lorank's model: prints one JSON line per configuration.
// Usage: bench_forward MODEL_DIR DEVICE DTYPE BATCH SEQ_LEN ITERS
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "model.h"
#include "runtime.h"

namespace {

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: bench_forward MODEL_DIR DEVICE DTYPE BATCH SEQ_LEN ITERS\n");
    return 2;
  }
  try {
    std::string dir = argv[1];
    torch::Device device = lorank::resolve_device(argv[2]);
    torch::ScalarType dtype = lorank::resolve_dtype(argv[3], device);
    int64_t B = std::stoll(argv[4]), T = std::stoll(argv[5]), iters = std::stoll(argv[6]);
    lorank::LoadOptions lo;
    lo.device = device;
    lo.dtype = dtype;
    auto model = lorank::Model::load(dir, lo);
    torch::NoGradGuard no_grad;
    auto gen = torch::make_generator<at::CPUGeneratorImpl>(0);
    auto ids = torch::randint(model->config().n_vocab, {B, T}, gen, torch::kInt64).to(device);
    for (int i = 0; i < 3; ++i) (void)model->forward(ids);  // warm-up: allocator, kernels
    sync(device);
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i) (void)model->forward(ids);
    sync(device);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("{\"impl\": \"lorank\", \"device\": \"%s\", \"dtype\": \"%s\", \"batch\": %lld, "
                "\"seq_len\": %lld, \"tokens_per_s\": %.1f, \"threads\": %lld}\n",
                device.str().c_str(), lorank::dtype_name(dtype).c_str(), (long long)B, (long long)T,
                double(B * T * iters) / s, (long long)at::get_num_threads());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
