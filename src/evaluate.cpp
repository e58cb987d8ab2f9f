#include "evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "compat.h"
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

namespace {

// Adds one batch's summed loss to `sum`, on the device, and its counts to `r`.
void evaluate_batch(Model& model, const std::vector<Example>& examples,
                    const std::vector<size_t>& batch_idx, const EvalOptions& opts,
                    torch::Tensor& sum, EvalResult& r, Progress* progress) {
  if (opts.before_batch) opts.before_batch(int64_t(batch_idx.size()));
  BatchTensors t = to_tensors(make_batch(examples, batch_idx, opts.pad_id), model);
  auto hidden = batch_hidden_states(model, t);  // (B, T, C)
  sum += batch_loss(model, hidden, t, 256).sum.to(torch::kFloat64);
  r.n_supervised += t.n_supervised;
  r.n_tokens += t.n_real;
  if (progress) progress->advance(t.n_real);
}

}  // namespace

int64_t padded_tokens(const std::vector<Example>& examples, const std::vector<size_t>& idx) {
  int64_t longest = 0;
  for (size_t i : idx) longest = std::max(longest, int64_t(examples[i].ids.size()));
  return longest * int64_t(idx.size());
}

std::vector<size_t> batches_from(const std::vector<std::vector<size_t>>& batches, size_t first) {
  std::vector<size_t> out;
  for (size_t b = first; b < batches.size(); ++b)
    out.insert(out.end(), batches[b].begin(), batches[b].end());
  return out;
}

void shrink_batches_after_oom(EvalOptions& opts, const std::vector<Example>& examples,
                              const std::vector<size_t>& failed, const c10::Error& oom,
                              const std::string& doing) {
  compat::empty_cuda_cache();  // the failed pass's tensors are gone; hand their blocks back
  const int64_t n = int64_t(failed.size()), padded = padded_tokens(examples, failed);
  if (n <= 1) {
    const std::string said = compat::out_of_memory_summary(oom);
    const int64_t line = examples[failed[0]].source_line;
    fail(doing, "CUDA out of memory with a batch of 1 example (" + said + ")",
         "an example that fits in memory",
         std::to_string(padded) + " tokens" +
             (line > 0 ? " (the record on line " + std::to_string(line) + ")" : std::string()),
         "lower --max-len, or use a smaller model");
  }
  // Halving the padded tokens of the failed batch, not just the limit, ensures it splits.
  opts.batch_tokens = std::max<int64_t>(1, std::min(opts.batch_tokens, padded) / 2);
  opts.max_batch = std::max<int64_t>(1, opts.max_batch / 2);
  notice("CUDA out of memory in " + doing + ", a batch of " + std::to_string(n) + " examples (" +
         std::to_string(padded) + " padded tokens); redoing the rest with at most " +
         std::to_string(opts.max_batch) + " examples and " + std::to_string(opts.batch_tokens) +
         " tokens per batch");
}

void require_finite_base_loss(double loss) {
  if (std::isfinite(loss)) return;
  fail("the base model", "its loss on this data is not finite", "a finite loss",
       format_number("%g", loss),
       "the weights are finite but overflow in the forward pass: is the checkpoint damaged, or "
       "not a trained model? transformers gives the same on it");
}

EvalResult evaluate_loss(Model& model, const std::vector<Example>& examples,
                         const std::vector<size_t>& indices, const EvalOptions& opts,
                         Progress* progress) {
  torch::NoGradGuard no_grad;
  auto start = std::chrono::steady_clock::now();
  EvalOptions o = opts;  // limits shrink on out of memory
  EvalResult r;
  torch::Tensor sum =
      torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(model.output_device()));
  std::vector<size_t> pending = indices;
  while (!pending.empty()) {
    const std::vector<std::vector<size_t>> batches = length_sorted_batches(examples, pending, o);
    size_t done = 0;
    try {
      for (; done < batches.size(); ++done) {
        evaluate_batch(model, examples, batches[done], o, sum, r, progress);
      }
      pending.clear();
    } catch (const c10::Error& e) {
      if (!compat::is_out_of_memory(e)) throw;
      shrink_batches_after_oom(o, examples, batches[done], e, "evaluation");
      pending = batches_from(batches, done);  // still longest first
    }
  }
  const double total = sum.item<double>();  // the one wait for the device
  r.mean_loss = r.n_supervised > 0 ? total / double(r.n_supervised) : 0.0;
  r.batch_tokens = o.batch_tokens;
  r.max_batch = o.max_batch;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace lorank
