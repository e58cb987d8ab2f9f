#include "evidence.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "error.h"
#include "files.h"
#include "json_excerpt.h"

namespace lorank {

namespace {

using json = nlohmann::json;

constexpr int kVersion = 1;
const char* kHint = "the file should be one that `lorank recommend --save-evidence` wrote";

json spectrum_json(const ModuleSpectrum& s) {
  return {{"singular_values", s.singular_values},
          {"noise_spectrum", s.noise_spectrum},
          {"noise_edges", s.noise_edges},
          {"singular_values_whitened", s.singular_values_whitened},
          {"noise_spectrum_whitened", s.noise_spectrum_whitened},
          {"noise_edges_whitened", s.noise_edges_whitened}};
}

const json& field(const json& obj, const std::string& key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) fail(where, "missing key \"" + key + "\"", "", "", kHint);
  return *it;
}

template <typename T>
T number(const json& obj, const std::string& key, const std::string& where) {
  const json& v = field(obj, key, where);
  const bool ok = std::is_integral<T>::value ? v.is_number_integer() : v.is_number();
  if (!ok)
    fail(where, "key \"" + key + "\" has the wrong type", "a number", json_excerpt(v, 40), kHint);
  return v.get<T>();
}

// Counts, losses and singular values: a negative one is a damaged file, not a measurement.
template <typename T>
T non_negative(const json& obj, const std::string& key, const std::string& where) {
  const T v = number<T>(obj, key, where);
  if (!(v >= 0))
    fail(where, "key \"" + key + "\" is negative", ">= 0", json_excerpt(obj[key], 40), kHint);
  return v;
}

std::string text(const json& obj, const std::string& key, const std::string& where) {
  const json& v = field(obj, key, where);
  if (!v.is_string())
    fail(where, "key \"" + key + "\" has the wrong type", "a string", json_excerpt(v, 40), kHint);
  return v.get<std::string>();
}

// An array of numbers (T = double) or of strings.
template <typename T>
std::vector<T> array_of(const json& obj, const std::string& key, const std::string& where) {
  constexpr bool text = std::is_same<T, std::string>::value;
  const json& v = field(obj, key, where);
  if (!v.is_array())
    fail(where, "key \"" + key + "\" has the wrong type",
         text ? "an array of strings" : "an array of numbers", json_excerpt(v, 40), kHint);
  std::vector<T> out;
  for (const auto& x : v) {
    if (text ? !x.is_string() : !x.is_number())
      fail(where + " [" + key + "]", text ? "not a string" : "not a number",
           text ? "a string" : "a number", json_excerpt(x, 40), kHint);
    out.push_back(x.get<T>());
  }
  return out;
}

ModuleEvidence parse_module(const json& m, const std::string& where) {
  if (!m.is_object())
    fail(where, "a module must be a JSON object", "object", json_excerpt(m, 40), kHint);
  ModuleEvidence e;
  e.name = text(m, "name", where);
  const std::string at = where + " [" + e.name + "]";
  e.kind = text(m, "kind", at);
  e.layer = number<int64_t>(m, "layer", at);
  e.d_in = number<int64_t>(m, "d_in", at);
  e.d_out = number<int64_t>(m, "d_out", at);
  if (e.d_in <= 0 || e.d_out <= 0) {
    fail(at, "module sizes must be positive", "d_in, d_out >= 1",
         std::to_string(e.d_in) + ", " + std::to_string(e.d_out), kHint);
  }
  auto& s = e.spectrum;
  s.singular_values = array_of<double>(m, "singular_values", at);
  s.noise_spectrum = array_of<double>(m, "noise_spectrum", at);
  s.noise_edges = array_of<double>(m, "noise_edges", at);
  s.singular_values_whitened = array_of<double>(m, "singular_values_whitened", at);
  s.noise_spectrum_whitened = array_of<double>(m, "noise_spectrum_whitened", at);
  s.noise_edges_whitened = array_of<double>(m, "noise_edges_whitened", at);
  const size_t most = size_t(std::min(e.d_in, e.d_out));
  for (const auto* v : {&s.singular_values, &s.noise_spectrum}) {
    if (v->size() > most) {
      fail(at, "more singular values than the module has", "<= " + std::to_string(most),
           std::to_string(v->size()), kHint);
    }
  }
  if (s.noise_edges.empty()) fail(at, "no noise edges", ">= 1 split", "0", kHint);
  for (const auto* v :
       {&s.singular_values, &s.noise_spectrum, &s.noise_edges, &s.singular_values_whitened,
        &s.noise_spectrum_whitened, &s.noise_edges_whitened}) {
    for (double x : *v) {
      if (!(x >= 0))
        fail(at, "a negative singular value or noise edge", ">= 0", std::to_string(x), kHint);
    }
  }
  return e;
}

DataFacts parse_data(const json& d, const std::string& where) {
  DataFacts f;
  f.n_examples = non_negative<int64_t>(d, "examples", where);
  f.n_supervised = non_negative<int64_t>(d, "supervised_tokens", where);
  f.n_tokens = non_negative<int64_t>(d, "tokens", where);
  f.probe_examples = non_negative<int64_t>(d, "probe_examples", where);
  f.probe_supervised = non_negative<int64_t>(d, "probe_supervised_tokens", where);
  f.probe_tokens = non_negative<int64_t>(d, "probe_tokens", where);
  f.base_loss = non_negative<double>(d, "base_loss", where);
  // Evidence saved before the count was kept has none.
  if (d.contains("duplicates")) f.n_duplicates = non_negative<int64_t>(d, "duplicates", where);
  return f;
}

}  // namespace

json data_facts_json(const DataFacts& d) {
  return {{"examples", d.n_examples},
          {"supervised_tokens", d.n_supervised},
          {"tokens", d.n_tokens},
          {"probe_examples", d.probe_examples},
          {"probe_supervised_tokens", d.probe_supervised},
          {"probe_tokens", d.probe_tokens},
          {"base_loss", d.base_loss},
          {"duplicates", d.n_duplicates}};
}

std::string evidence_json(const Evidence& e) {
  json modules = json::array();
  for (const auto& m : e.modules) {
    json j = spectrum_json(m.spectrum);
    j.update({{"name", m.name},
              {"kind", m.kind},
              {"layer", m.layer},
              {"d_in", m.d_in},
              {"d_out", m.d_out}});
    modules.push_back(std::move(j));
  }
  const auto& c = e.context;
  json j = {{"lorank_evidence", kVersion},
            {"model", c.model_path},
            {"data_path", c.data_path},
            {"device", c.device},
            {"grad_mode", c.grad_mode},
            {"sketch_rank", c.sketch_rank},
            {"trainings_fit", c.trainings_fit},
            {"data", data_facts_json(e.data)},
            {"data_args", c.data_args},
            {"targets", c.targets},
            {"layers", c.layers},
            {"data_warnings", c.data_warnings},
            {"device_args", c.device_args},
            {"probe_args", c.probe_args},
            {"threads", c.threads},
            {"lorank_version", c.lorank_version},
            {"modules", modules}};
  return json_output(j, -1) + "\n";
}

Evidence parse_evidence(const std::string& text_in, const std::string& where) {
  json root;
  try {
    root = json::parse(text_in);
  } catch (const json::exception& e) {
    fail(where, "not valid JSON: " + std::string(e.what()), "", "", kHint);
  }
  if (!root.is_object())
    fail(where, "evidence must be a JSON object", "object", root.type_name(), kHint);
  const int64_t version = number<int64_t>(root, "lorank_evidence", where);
  if (version != kVersion) {
    fail(where, "unknown evidence version", std::to_string(kVersion), std::to_string(version),
         "save the evidence again with this lorank");
  }
  Evidence e;
  e.context.model_path = text(root, "model", where);
  e.context.data_path = text(root, "data_path", where);
  e.context.device = text(root, "device", where);
  e.context.grad_mode = text(root, "grad_mode", where);
  e.context.sketch_rank = number<int64_t>(root, "sketch_rank", where);
  // Evidence saved before the key existed: one training at a time, as on the CPU.
  if (root.contains("trainings_fit"))
    e.context.trainings_fit = std::max<int64_t>(1, number<int64_t>(root, "trainings_fit", where));
  // Evidence saved before the key existed: the check command asks for the data options.
  e.context.data_args_known = root.contains("data_args");
  if (e.context.data_args_known) {
    e.context.data_args = array_of<std::string>(root, "data_args", where);
    e.context.targets = array_of<std::string>(root, "targets", where);
  }
  if (root.contains("layers"))  // evidence saved before the key existed: every layer
    e.context.layers = array_of<int64_t>(root, "layers", where);
  if (root.contains("data_warnings"))  // evidence saved before the key existed has none
    e.context.data_warnings = array_of<std::string>(root, "data_warnings", where);
  if (root.contains("device_args"))  // likewise: the printed commands then run on the default
    e.context.device_args = array_of<std::string>(root, "device_args", where);
  if (root.contains("probe_args")) {  // likewise: unknown, and said so by an empty list and 0
    e.context.probe_args = array_of<std::string>(root, "probe_args", where);
    e.context.threads = number<int64_t>(root, "threads", where);
    e.context.lorank_version = text(root, "lorank_version", where);
  }
  const json& data = field(root, "data", where);
  if (!data.is_object())
    fail(where, "key \"data\" has the wrong type", "an object", json_excerpt(data, 40), kHint);
  e.data = parse_data(data, where + " [data]");
  const json& modules = field(root, "modules", where);
  if (!modules.is_array() || modules.empty()) {
    fail(where, "key \"modules\" must list the probed modules", "a non-empty array",
         json_excerpt(modules, 40), kHint);
  }
  for (const auto& m : modules) e.modules.push_back(parse_module(m, where));
  return e;
}

Evidence load_evidence(const std::string& path) {
  return parse_evidence(read_text_file(path, kHint), path);
}

}  // namespace lorank
