#include "evaluate.h"

#include <algorithm>
#include <chrono>

#include "error.h"
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

BatchTensors to_tensors(const Batch& b, const Model& model) {
  const int64_t B = b.batch_size, T = b.seq_len, BT = B * T;
  const int64_t n_vocab = model.config().n_vocab;
  BatchTensors t;
  // One host buffer: ids, attention mask, loss mask, then positions and targets.
  std::vector<int64_t> buf(size_t(3 * BT));
  for (int64_t i = 0; i < BT; ++i) {
    const int64_t id = b.ids[size_t(i)];
    if (id < 0 || id >= n_vocab) {
      fail("batch", "token id out of range", "0 <= id < " + std::to_string(n_vocab),
           std::to_string(id), "the tokenizer does not belong to this model");
    }
    buf[size_t(i)] = id;
    buf[size_t(BT + i)] = b.attention_mask[size_t(i)];
    buf[size_t(2 * BT + i)] = b.loss_mask[size_t(i)];
    t.n_real += b.attention_mask[size_t(i)];
  }
  t.padded = t.n_real < BT;
  std::vector<int64_t> pos, tgt;
  for (int64_t r = 0; r < B; ++r) {
    for (int64_t c = 0; c + 1 < T; ++c) {
      const size_t next = size_t(r * T + c + 1);
      if (b.loss_mask[next] && b.attention_mask[next]) {
        pos.push_back(r * T + c);
        tgt.push_back(b.ids[next]);
      }
    }
  }
  t.n_supervised = int64_t(pos.size());
  buf.insert(buf.end(), pos.begin(), pos.end());
  buf.insert(buf.end(), tgt.begin(), tgt.end());
  auto host = torch::from_blob(buf.data(), {int64_t(buf.size())}, torch::kInt64);
  const torch::Device dev = model.device();
  torch::Tensor all = dev.is_cuda() ? host.pin_memory().to(dev, /*non_blocking=*/true) : host.clone();
  const int64_t N = t.n_supervised;
  t.ids = all.narrow(0, 0, BT).view({B, T});
  t.attention_mask = all.narrow(0, BT, BT).view({B, T});
  t.loss_mask = all.narrow(0, 2 * BT, BT).view({B, T});
  t.positions = all.narrow(0, 3 * BT, N);
  t.targets = all.narrow(0, 3 * BT + N, N);
  return t;
}

torch::Tensor batch_hidden_states(Model& model, const BatchTensors& t) {
  return model.hidden_states(t.ids, t.padded ? t.attention_mask : torch::Tensor(),
                             /*host_checked=*/true);
}

LossResult batch_loss(Model& model, const torch::Tensor& hidden, const BatchTensors& t,
                      int64_t chunk) {
  return lm_loss_at(model, hidden, t.positions, t.targets, t.n_supervised, chunk);
}

EvalResult evaluate_loss(Model& model, const std::vector<Example>& examples,
                         const std::vector<size_t>& indices, const EvalOptions& opts,
                         Progress* progress) {
  torch::NoGradGuard no_grad;
  auto start = std::chrono::steady_clock::now();
  EvalResult r;
  torch::Tensor sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(model.device()));
  for (const auto& batch_idx : length_sorted_batches(examples, indices, opts)) {
    BatchTensors t = to_tensors(make_batch(examples, batch_idx, opts.pad_id), model);
    auto hidden = batch_hidden_states(model, t);  // (B, T, C)
    sum += batch_loss(model, hidden, t, 256).sum.to(torch::kFloat64);
    r.n_supervised += t.n_supervised;
    r.n_tokens += t.n_real;
    if (progress) progress->advance(t.n_real);
  }
  const double total = sum.item<double>();  // the one wait for the device
  r.mean_loss = r.n_supervised > 0 ? total / double(r.n_supervised) : 0.0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace lorank
