#include "evaluate.h"

#include <algorithm>
#include <chrono>

#include "model.h"
#include "progress.h"

namespace lorank {

std::vector<std::vector<size_t>> length_sorted_batches(const std::vector<Example>& examples,
                                                       const std::vector<size_t>& indices,
                                                       const EvalOptions& opts) {
  std::vector<size_t> order = indices;
  // Longest first: the first batch shows at once whether memory suffices. Ties keep file order.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return examples[a].ids.size() > examples[b].ids.size();
  });
  std::vector<std::vector<size_t>> batches;
  std::vector<size_t> cur;
  int64_t cur_len = 0;
  for (size_t i : order) {
    int64_t len = int64_t(examples[i].ids.size());
    int64_t padded = std::max(cur_len, len) * int64_t(cur.size() + 1);
    if (!cur.empty() && (padded > opts.batch_tokens || int64_t(cur.size()) >= opts.max_batch)) {
      batches.push_back(std::move(cur));
      cur.clear();
      cur_len = 0;
    }
    cur.push_back(i);
    cur_len = std::max(cur_len, len);
  }
  if (!cur.empty()) batches.push_back(std::move(cur));
  return batches;
}

BatchTensors to_tensors(const Batch& b, const torch::Device& device) {
  auto shape = std::vector<int64_t>{b.batch_size, b.seq_len};
  auto ids = torch::tensor(b.ids, torch::kInt64).reshape(shape);
  auto u8 = [&](const std::vector<uint8_t>& v) {
    return torch::from_blob(const_cast<uint8_t*>(v.data()), shape, torch::kUInt8).to(torch::kInt64);
  };
  return {ids.to(device), u8(b.attention_mask).to(device), u8(b.loss_mask).to(device)};
}

EvalResult evaluate_loss(Model& model, const std::vector<Example>& examples,
                         const std::vector<size_t>& indices, const EvalOptions& opts,
                         Progress* progress) {
  torch::NoGradGuard no_grad;
  auto start = std::chrono::steady_clock::now();
  EvalResult r;
  double sum = 0;
  for (const auto& batch_idx : length_sorted_batches(examples, indices, opts)) {
    Batch batch = make_batch(examples, batch_idx, opts.pad_id);
    BatchTensors t = to_tensors(batch, model.device());
    auto hidden = model.hidden_states(t.ids, t.attention_mask);  // (B, T, C)
    LossResult loss = lm_loss(model, hidden, t.ids, t.attention_mask, t.loss_mask, 256);
    sum += loss.sum.item<double>();
    r.n_supervised += loss.n_tokens;
    int64_t real = t.attention_mask.sum().item<int64_t>();
    r.n_tokens += real;
    if (progress) progress->advance(real);
  }
  r.mean_loss = r.n_supervised > 0 ? sum / double(r.n_supervised) : 0.0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace lorank
