// The bad-input catalogue (docs/bad_inputs.md) end to end through the lorank binary: each input
// exits non-zero with "error:", the file (and line or tensor), what was expected and a hint, and
// an output folder that already holds results is left byte for byte as it was.
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/model_fixtures.h"

namespace fs = std::filesystem;

namespace lorank {
namespace {

using test::expect_failure;
using test::read_file;
using test::TempDir;
using test::write_file;

// A copy of tiny-llama's folder, for a test to break one thing in.
std::string model_copy(const TempDir& dir) {
  const std::string src = test::tiny_llama_dir(), dst = dir.path + "/model";
  for (const char* f :
       {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"}) {
    write_file(dst + "/" + f, read_file(src + "/" + f));
  }
  return dst;
}

std::string inspect(const std::string& model_dir) {
  return "inspect --no-loss --device cpu --model " + model_dir;
}

// model.safetensors as its header and data section.
struct Safetensors {
  nlohmann::json header;
  std::string data;

  explicit Safetensors(const std::string& bytes) {
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    header = nlohmann::json::parse(bytes.substr(8, n));
    data = bytes.substr(8 + n);
  }
  std::string bytes() const {
    const std::string h = header.dump();
    uint64_t n = h.size();
    return std::string(reinterpret_cast<const char*>(&n), 8) + h + data;
  }
  // The tensor whose data comes `k`-th in the file.
  std::string by_position(size_t k) const {
    std::map<uint64_t, std::string> order;
    for (const auto& [name, info] : header.items()) {
      if (name != "__metadata__") order[info["data_offsets"][0].get<uint64_t>()] = name;
    }
    auto it = order.begin();
    std::advance(it, k);
    return it->second;
  }
};

// Rewrites <dir>/model.safetensors through `edit`.
template <typename Edit>
void edit_weights(const std::string& dir, Edit edit) {
  Safetensors st(read_file(dir + "/model.safetensors"));
  edit(st);
  write_file(dir + "/model.safetensors", st.bytes());
}

// Every file under `dir` (relative path -> bytes).
std::map<std::string, std::string> tree(const std::string& dir, const std::string& rel = "") {
  std::map<std::string, std::string> out;
  for (const std::string& name : list_dir(dir + rel)) {
    const std::string path = rel + "/" + name;
    if (fs::is_directory(dir + path)) {
      out.merge(tree(dir, path));
    } else {
      out[path] = read_file(dir + path);
    }
  }
  return out;
}

TEST(BadInput, TruncatedSafetensors) {
  TempDir tmp("bad-cut");
  const std::string dir = model_copy(tmp);
  const std::string bytes = read_file(dir + "/model.safetensors");
  write_file(dir + "/model.safetensors", bytes.substr(0, bytes.size() / 2));
  const std::string last = Safetensors(bytes).by_position(Safetensors(bytes).header.size() - 2);
  expect_failure(inspect(dir), {"model.safetensors [" + last + "]", "truncated", "expected",
                                "hint:", "re-download"});
}

TEST(BadInput, SafetensorsHeaderNotJson) {
  TempDir tmp("bad-json");
  const std::string dir = model_copy(tmp);
  std::string bytes = read_file(dir + "/model.safetensors");
  bytes[9] = '?';  // the first key's opening quote
  write_file(dir + "/model.safetensors", bytes);
  expect_failure(inspect(dir), {"model.safetensors", "header is not valid JSON",
                                "expected a JSON object", "hint:"});
}

TEST(BadInput, SafetensorsAbsurdHeaderLength) {
  TempDir tmp("bad-len");
  const std::string dir = model_copy(tmp);
  std::string bytes = read_file(dir + "/model.safetensors");
  const uint64_t absurd = uint64_t(1) << 62;
  std::memcpy(bytes.data(), &absurd, 8);
  write_file(dir + "/model.safetensors", bytes);
  expect_failure(inspect(dir), {"model.safetensors", "100 MB", std::to_string(absurd), "hint:"});
}

TEST(BadInput, SafetensorsOffsetsOutOfRange) {
  TempDir tmp("bad-range");
  const std::string dir = model_copy(tmp);
  std::string last;
  edit_weights(dir, [&](Safetensors& st) {
    last = st.by_position(st.header.size() - 2);  // the tensor stored last
    auto& info = st.header[last];
    const uint64_t begin = info["data_offsets"][0];
    info["shape"] = {1 << 20};  // 2 MiB of BF16 that the file does not have
    info["data_offsets"] = {begin, begin + (2 << 20)};
  });
  expect_failure(inspect(dir), {"model.safetensors [" + last + "]", "past the end of the file",
                                "expected", "hint:"});
}

TEST(BadInput, SafetensorsOverlappingTensors) {
  TempDir tmp("bad-overlap");
  const std::string dir = model_copy(tmp);
  std::string first, second;
  edit_weights(dir, [&](Safetensors& st) {
    first = st.by_position(0);
    second = st.by_position(1);
    auto& offsets = st.header[second]["data_offsets"];
    offsets = {offsets[0].get<uint64_t>() - 2, offsets[1].get<uint64_t>() - 2};
  });
  expect_failure(inspect(dir), {"model.safetensors [" + second + "]",
                                "overlaps tensor '" + first + "'", "expected begin =", "hint:"});
}

TEST(BadInput, TensorShapeDisagreesWithConfig) {
  TempDir tmp("bad-shape");
  const std::string dir = model_copy(tmp);
  std::string cfg = read_file(dir + "/config.json");
  const std::string key = "\"intermediate_size\": 768";
  ASSERT_NE(cfg.find(key), std::string::npos) << cfg;
  cfg.replace(cfg.find(key), key.size(), "\"intermediate_size\": 512");
  write_file(dir + "/config.json", cfg);
  expect_failure(inspect(dir),
                 {"model.safetensors [model.layers.0.mlp.", "wrong tensor shape",
                  "expected [512, 256], got [768, 256]", "hint:", "intermediate_size"});
}

// Sets the first BF16 value of `tensor` to `bits` (0x7FC0 NaN, 0x7F80 +Inf).
void poison(const std::string& dir, const std::string& tensor, uint16_t bits) {
  edit_weights(dir, [&](Safetensors& st) {
    ASSERT_EQ(st.header[tensor]["dtype"], "BF16");
    const uint64_t at = st.header[tensor]["data_offsets"][0];
    std::memcpy(st.data.data() + at, &bits, 2);
  });
}

TEST(BadInput, NanWeightNamesTheTensor) {
  TempDir tmp("bad-nan");
  const std::string dir = model_copy(tmp);
  poison(dir, "model.layers.1.mlp.up_proj.weight", 0x7FC0);
  expect_failure(inspect(dir), {"model.safetensors [model.layers.1.mlp.up_proj.weight]",
                                "NaN or Inf", "expected finite values", "got 1 NaN/Inf", "hint:"});
}

TEST(BadInput, InfWeightNamesTheTensor) {
  TempDir tmp("bad-inf");
  const std::string dir = model_copy(tmp);
  poison(dir, "model.norm.weight", 0x7F80);
  expect_failure(inspect(dir), {"model.safetensors [model.norm.weight]", "NaN or Inf",
                                "expected finite values", "hint:"});
}

TEST(BadInput, InvalidUtf8InJsonlNamesTheLine) {
  TempDir tmp("bad-utf8");
  write_file(tmp.path + "/latin1.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"caf\xe9\"}\n");
  expect_failure("inspect --no-loss --data " + tmp.path + "/latin1.jsonl",
                 {"latin1.jsonl:2", "not valid UTF-8", "expected UTF-8", "hint:", "iconv"});
}

TEST(BadInput, InvalidUtf8InCsvNamesTheLine) {
  TempDir tmp("bad-utf8-csv");
  write_file(tmp.path + "/latin1.csv", "text\nok\ncaf\xe9\n");
  expect_failure(
      "inspect --no-loss --data " + tmp.path + "/latin1.csv",
      {"latin1.csv:3", "not valid UTF-8", "expected UTF-8", "\"text\" cell", "hint:", "iconv"});
}

TEST(BadInput, MissingTokenizer) {
  TempDir tmp("bad-tok");
  const std::string dir = model_copy(tmp);
  fs::remove(dir + "/tokenizer.json");
  expect_failure(inspect(dir),
                 {dir, "no tokenizer", "expected tokenizer.json or tokenizer.model", "hint:"});
}

TEST(BadInput, MissingTokenizerConfig) {
  TempDir tmp("bad-tok-config");
  const std::string dir = model_copy(tmp);
  fs::remove(dir + "/tokenizer_config.json");
  expect_failure(inspect(dir), {dir + "/tokenizer_config.json", "not found", "eos_token",
                                "hint:", "Hugging Face repository"});
}

TEST(BadInput, ModelPathIsAFile) {
  TempDir tmp("bad-model-file");
  const std::string dir = model_copy(tmp);
  expect_failure(inspect(dir + "/config.json"),
                 {dir + "/config.json", "is a file, not a model folder", "hint:"});
}

// The folders users pass for a model that are not one: each said for what it is.
TEST(BadInput, FoldersThatAreNotAModelSayWhatTheyAre) {
  TempDir tmp("bad-not-a-model");
  const std::string adapter = tmp.path + "/adapter";
  write_file(adapter + "/adapter_config.json",
             R"({"peft_type": "LORA", "r": 8, "base_model_name_or_path": "/models/base-8b"})");
  write_file(adapter + "/tokenizer.json", read_file(test::tiny_llama_dir() + "/tokenizer.json"));
  expect_failure(inspect(adapter), {adapter, "a PEFT adapter", "adapter_config.json",
                                    "its base model is /models/base-8b", "hint:"});
  const std::string cache = tmp.path + "/models--org--name";
  fs::create_directories(cache + "/snapshots/abc123");
  expect_failure(inspect(cache), {cache, "Hugging Face cache folder",
                                  "its snapshot: --model " + cache + "/snapshots/abc123"});
  fs::create_directories(tmp.path + "/empty");
  expect_failure(inspect(tmp.path + "/empty"), {"no config.json in the model folder", "hint:"});
  fs::create_directories(tmp.path + "/empty-hub");  // not this machine's cache, which may hold it
  const auto hub_id =
      test::run_command("HF_HUB_CACHE=" + tmp.path + "/empty-hub " + std::string(LORANK_BINARY) +
                        " " + inspect("meta-llama/Llama-3.1-8B"));
  EXPECT_EQ(hub_id.exit_code, 1) << hub_id.output;
  for (const char* needle : {"looks like a Hugging Face Hub id", "empty-hub/ does not hold it",
                             "huggingface-cli download meta-llama/Llama-3.1-8B"})
    EXPECT_NE(hub_id.output.find(needle), std::string::npos) << needle << "\n" << hub_id.output;
  // A Hub id already downloaded without --local-dir: read from the cache, as transformers does.
  const std::string hub = tmp.path + "/hub", repo = hub + "/models--org--tiny-llama";
  write_file(repo + "/refs/main", "c0ffee\n");
  const std::string snapshot = model_copy(tmp);
  fs::create_directories(repo + "/snapshots");
  fs::create_directory_symlink(snapshot, repo + "/snapshots/c0ffee");
  fs::create_directories(repo + "/snapshots/0ld");
  const auto cached = test::run_command("HF_HUB_CACHE=" + hub + " " + std::string(LORANK_BINARY) +
                                        " " + inspect("org/tiny-llama"));
  EXPECT_EQ(cached.exit_code, 0) << cached.output;
  EXPECT_NE(cached.output.find("read from the Hugging Face cache, " + repo + "/snapshots/c0ffee"),
            std::string::npos)
      << cached.output;
  expect_failure(inspect(repo), {"its snapshot: --model " + repo + "/snapshots/c0ffee"});
  // PEFT names a Hub model by its id: so does the adapter_config.json, valid on any machine
  const auto peft = test::run_command("HF_HUB_CACHE=" + hub + " " + std::string(LORANK_BINARY) +
                                      " recommend -q --device cpu --max-tokens 2000 --format peft "
                                      "--model org/tiny-llama");
  EXPECT_EQ(peft.exit_code, 0) << peft.output;
  EXPECT_NE(peft.output.find("\"base_model_name_or_path\": \"org/tiny-llama\""), std::string::npos)
      << peft.output;

  const std::string quant = model_copy(tmp);
  auto cfg = nlohmann::json::parse(read_file(quant + "/config.json"));
  cfg["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}};
  write_file(quant + "/config.json", cfg.dump());
  expect_failure(inspect(quant), {"config.json", "a quantized checkpoint", "quant_method \"gptq\"",
                                  "unquantized", "hint:"});
  cfg.erase("quantization_config");
  cfg["model_type"] = "llava";
  cfg["text_config"] = {{"model_type", "llama"}};
  write_file(quant + "/config.json", cfg.dump());
  expect_failure(inspect(quant), {"unsupported model_type \"llava\"", "text_config", "hint:"});
}

// "--out=~/x" reaches lorank unexpanded: it is the home folder, never a folder named "~".
TEST(BadInput, TildeAfterEqualsMeansHome) {
  TempDir home("tilde-home");
  auto r = test::run_command("cd " + home.path + " && HOME=" + home.path + " " + LORANK_BINARY +
                             " recommend --device cpu -q --max-tokens 2000 --out=~/rec");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(home.path + "/rec/adapter_config.json"));
  EXPECT_FALSE(fs::exists(home.path + "/~"));
  // Without HOME (cron, some containers), the user's entry names the home folder, as in the shell;
  // a folder named "~" was made before.
  const passwd* pw = ::getpwuid(::getuid());
  if (!pw || !pw->pw_dir) GTEST_SKIP() << "no password entry for this user";
  r = test::run_command("cd " + home.path + " && env -u HOME " + LORANK_BINARY +
                        " inspect --no-loss -q --data=~/no-such-lorank-data.jsonl");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(std::string(pw->pw_dir) + "/no-such-lorank-data.jsonl"),
            std::string::npos)
      << r.output;
}

// A relative path is written out absolute: from a folder whose name is Latin-1, it would carry
// U+FFFD into adapter_config.json and the configs. Refused at once; an absolute path still runs.
TEST(BadInput, RelativePathFromANonUtf8FolderIsRefused) {
  TempDir tmp("bad-latin1-cwd");
  const std::string dir = tmp.path + "/caf\xe9";
  fs::create_directory(dir);
  fs::create_symlink(test::repo_path("assets/demo.jsonl"), dir + "/d.jsonl");
  auto r = test::run_command("cd '" + dir + "' && " + LORANK_BINARY +
                             " inspect --no-loss -q --data d.jsonl");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("d.jsonl: a relative path in a folder whose path is not valid UTF-8"),
            std::string::npos)
      << r.output;
  r = test::run_command("cd '" + dir + "' && " + LORANK_BINARY + " inspect --no-loss -q --data " +
                        test::repo_path("assets/demo.jsonl"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// A trained adapter's folder is never recommend's --out, --force or not: its adapter_config.json
// would stop describing its weights.
TEST(BadInput, RecommendOutIntoATrainedAdapterIsRefused) {
  TempDir tmp("bad-out-adapter");
  write_file(tmp.path + "/adapter_config.json", "{\"r\": 8}");
  write_file(tmp.path + "/adapter_model.safetensors", "weights");
  for (const char* force : {"", " --force"}) {
    expect_failure("recommend --device cpu -q --max-tokens 2000 --out " + tmp.path + force,
                   {tmp.path, "holds a trained adapter", "choose another --out"});
  }
  EXPECT_EQ(read_file(tmp.path + "/adapter_config.json"), "{\"r\": 8}");
}

// Output that cannot be written (a full disk; here a closed stdout, and /dev/full where it is the
// device: some sandboxes make it a plain file) is an error, not an empty config and exit 0.
TEST(BadInput, StdoutThatCannotBeWrittenFails) {
  const std::string cmd =
      std::string(LORANK_BINARY) + " recommend --device cpu -q --max-tokens 2000 --format peft";
  std::vector<std::string> sinks = {">&-"};
  struct stat st {};
  if (::stat("/dev/full", &st) == 0 && S_ISCHR(st.st_mode)) sinks.push_back("> /dev/full");
  for (const std::string& sink : sinks) {
    auto r = test::run_command("{ " + cmd + " " + sink + "; }");  // stderr stays open
    EXPECT_NE(r.exit_code, 0) << sink << "\n" << r.output;
    EXPECT_NE(r.output.find("stdout: cannot write the output"), std::string::npos) << r.output;
  }
}

const std::string kTrainArgs =
    "--device cpu --max-examples 32 --batch 4 --max-steps 2 "
    "--n-evals 1 -q --out ";

// A 4-step training into `out`, not quiet, with the shell's `redirect` after it.
test::CommandResult train_in_shell(const std::string& out, const std::string& redirect) {
  return test::run_command("sh -c '" + std::string(LORANK_BINARY) +
                           " train --device cpu --max-examples 32 --batch 4 --max-steps 4 "
                           "--n-evals 2 --out " +
                           out + redirect + "'");
}

// A reader of the output that is gone (`| head`, a tee that died with the terminal) made the next
// write raise SIGPIPE, which ended a training without a word or a checkpoint; it goes on now.
TEST(BadInput, TrainingWhoseReaderIsGoneGoesOn) {
  TempDir tmp("bad-sigpipe");
  const std::string out = tmp.path + "/out";
  auto r = train_in_shell(out, " 2>&1 | true");
  EXPECT_TRUE(fs::exists(out + "/train_summary.json")) << r.output;
  EXPECT_TRUE(fs::exists(out + "/adapter_model.safetensors")) << r.output;
}

// With stdout and stderr closed (a daemon, `>&- 2>&-`), the next file opened took descriptor 2 and
// metrics.jsonl received the progress lines; now they go nowhere and the file stays JSON lines.
TEST(BadInput, ClosedStdoutAndStderrKeepTheMetricsClean) {
  TempDir tmp("bad-closed-fds");
  const std::string out = tmp.path + "/out";
  auto r = train_in_shell(out, " >&- 2>&-");
  // The exit code says that stdout could not take the result, as for any closed stdout.
  EXPECT_TRUE(fs::exists(out + "/train_summary.json")) << r.output;
  std::istringstream lines(read_file(out + "/metrics.jsonl"));
  int n = 0;
  for (std::string line; std::getline(lines, line); ++n)
    EXPECT_TRUE(nlohmann::json::accept(line)) << "line " << n + 1 << ": " << line;
  EXPECT_GE(n, 4);
}

// `cmd` (train or sweep) writes results into a folder; the same command again is refused and
// leaves every file as it was, as does --resume in a folder holding someone else's file (--force
// would train there, replacing only lorank's own files).
void expect_results_kept(const std::string& cmd, const std::string& tag) {
  TempDir tmp(tag);
  const std::string out = tmp.path + "/out";
  auto first = test::run_lorank(cmd + " " + kTrainArgs + out);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const auto before = tree(out);
  ASSERT_GE(before.size(), 3u);
  expect_failure(cmd + " " + kTrainArgs + out, {out, "already holds",
                                                "expected an empty or new "
                                                "folder",
                                                "hint:", "--resume", "--force"});
  EXPECT_EQ(tree(out), before);

  const std::string mine = tmp.path + "/mine";
  write_file(mine + "/notes.txt", "my notes");
  expect_failure(cmd + " --resume " + kTrainArgs + mine, {mine, "not from a lorank", "hint:"});
  EXPECT_EQ(tree(mine), (std::map<std::string, std::string>{{"/notes.txt", "my notes"}}));
}

// --resume on another model of the same shapes (a fine-tune, another checkpoint) or in another
// dtype is refused, for a stopped run, a finished one and a sweep: the run would mix two models.
TEST(BadInput, ResumeOnAnotherModelIsRefused) {
  TempDir tmp("bad-resume-model");
  const std::string other = model_copy(tmp);
  Safetensors st(read_file(other + "/model.safetensors"));
  const std::string name = st.by_position(3);
  st.data[st.header[name]["data_offsets"][0].get<size_t>()] ^= 0x40;  // one weight's sign bit
  write_file(other + "/model.safetensors", st.bytes());
  const std::string stopped = tmp.path + "/stopped", finished = tmp.path + "/finished";
  const std::string train =
      "train --device cpu --max-examples 32 --batch 4 --max-steps 4 "
      "--n-evals 1 -q --out ";
  auto first = test::run_lorank(train + stopped + " --stop-after 2");
  ASSERT_NE(first.exit_code, 1) << first.output;
  expect_failure(train + stopped + " --resume --model " + other,
                 {"checkpoint.safetensors", "other settings or data", "model \"", "hint:"});
  expect_failure(train + stopped + " --resume --dtype bf16",
                 {"dtype \"fp32\" -> \"bf16\"", "the --model and --dtype it was started with"});
  auto done = test::run_lorank(train + finished);
  ASSERT_EQ(done.exit_code, 0) << done.output;
  expect_failure(train + finished + " --resume --model " + other,
                 {"train_summary.json", "other settings or data", "model \""});
  auto same = test::run_lorank(train + finished + " --resume");
  EXPECT_EQ(same.exit_code, 0) << same.output;
  const std::string sweep = tmp.path + "/sweep";
  const std::string args =
      "sweep --ranks 1 --lrs 0.003 --device cpu --max-examples 32 --batch 4 "
      "--max-steps 2 --n-evals 1 -q --out " +
      sweep;
  ASSERT_EQ(test::run_lorank(args).exit_code, 0);
  expect_failure(args + " --resume --model " + other, {"sweep_config.json", "model \""});
}

// Finite weights that overflow in the forward pass: inspect printed a loss of -nan and exited 0,
// recommend failed in an eigendecomposition with a C++ backtrace, train said to lower --lr.
TEST(BadInput, WeightsThatOverflowAreSaidOnce) {
  TempDir tmp("bad-overflow");
  const std::string model = model_copy(tmp);
  Safetensors st(read_file(model + "/model.safetensors"));
  const auto& info = st.header["model.norm.weight"];
  ASSERT_EQ(info["dtype"], "BF16");
  for (size_t at = info["data_offsets"][0]; at < info["data_offsets"][1].get<size_t>(); at += 2) {
    st.data[at] = '\x96';  // bf16 0x7E96: 1e38
    st.data[at + 1] = '\x7E';
  }
  write_file(model + "/model.safetensors", st.bytes());
  for (const std::string& cmd : std::vector<std::string>{
           "inspect", "recommend", "train --max-steps 1 --out " + tmp.path + "/t"}) {
    const auto r = expect_failure(cmd + " -q --device cpu --max-examples 16 --model " + model,
                                  {"the base model: its loss on this data is not finite", "hint:"});
    EXPECT_EQ(r.output.find("lower --lr"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("frame #"), std::string::npos) << r.output;
  }
}

// An output that is an input is refused even with --force: the data file, a file of the model,
// or the model folder itself (adapter files beside config.json make transformers read it as an
// adapter). Nothing changes.
TEST(BadInput, OutputsThatAreInputsAreRefusedEvenWithForce) {
  TempDir tmp("bad-out-input");
  const std::string model = model_copy(tmp);
  const std::string data = tmp.path + "/data.jsonl";
  write_file(data, read_file(test::repo_path("assets/demo.jsonl")));
  const auto model_before = tree(model);
  const std::string inputs = " --model " + model + " --data " + data;
  expect_failure("recommend --force -q --save-evidence " + data + inputs,
                 {data, "--save-evidence is an input of this run", "hint:"});
  expect_failure("recommend --force -q --save-evidence " + model + "/config.json" + inputs,
                 {"--save-evidence is a file of the model", "hint:"});
  expect_failure("recommend --force -q --out " + model + inputs,
                 {"--out is the model folder", "hint:"});
  expect_failure("train --force" + inputs + " " + kTrainArgs + model,
                 {"--out is the model folder", "transformers"});
  expect_failure("sweep --ranks 1 --lrs 1e-3 --force" + inputs + " " + kTrainArgs + model,
                 {"--out is the model folder"});
  // --force would delete the adapter_config.json the run reads
  const std::string rec = tmp.path + "/rec";
  write_file(rec + "/adapter_config.json",
             R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]})");
  expect_failure("train --force --adapter-config " + rec + inputs + " " + kTrainArgs + rec,
                 {"--out is an input of this run", "hint:"});
  EXPECT_TRUE(fs::exists(rec + "/adapter_config.json"));
  EXPECT_EQ(tree(model), model_before);
  EXPECT_EQ(read_file(data), read_file(test::repo_path("assets/demo.jsonl")));
}

// sweep --jobs: each training process reads the data again, and a pipe is empty by then.
TEST(BadInput, SweepJobsRefuseDataFromAPipe) {
  TempDir tmp("bad-jobs-pipe");
  const auto r = test::run_command(
      "cat " + test::repo_path("assets/demo.jsonl") + " | " + std::string(LORANK_BINARY) +
      " sweep --jobs 2 --ranks 1,2 --lrs 1e-3 --data /dev/stdin " + kTrainArgs + tmp.path + "/out");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("/dev/stdin: --jobs trains in several processes"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("hint: save the data to a file first"), std::string::npos) << r.output;
}

// A run started with --force beside the user's own file continues with --resume, as its stop
// message says (before, --resume refused the folder and --force would have discarded the run).
TEST(BadInput, RunStartedWithForceBesideAFileResumes) {
  TempDir tmp("bad-force-resume");
  const std::string out = tmp.path + "/proj";
  write_file(out + "/notes.txt", "my notes");
  const std::string train =
      "train --device cpu --max-examples 32 --batch 4 --max-steps 4 --n-evals 1 --out " + out;
  auto first = test::run_lorank(train + " --force --stop-after 2");
  EXPECT_NE(first.output.find("with --resume instead of --force"), std::string::npos)
      << first.output;
  auto resumed = test::run_lorank(train + " --resume -q");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(fs::exists(out + "/adapter_model.safetensors"));
  EXPECT_EQ(read_file(out + "/notes.txt"), "my notes");
}

// A Latin-1 file name cannot go into the JSON outputs and trainer configs that name it: refused
// before any work, naming the option, exit code 2.
TEST(BadInput, ArgumentThatIsNotUtf8IsRefusedFirst) {
  auto r = expect_failure("inspect --json --data caf\xE9.jsonl",
                          {"--data: not valid UTF-8", "byte 0xE9 at offset 3", "rename"});
  EXPECT_EQ(r.exit_code, 2);
  r = expect_failure("train --out=out\xE9", {"--out: not valid UTF-8"});
  EXPECT_EQ(r.exit_code, 2);
}

// The data's warnings and the split go into train --json and train_summary.json, not only stderr.
TEST(BadInput, TrainJsonKeepsTheDataWarnings) {
  TempDir tmp("train-json-warnings");
  const std::string out = tmp.path + "/out";
  auto r = test::run_lorank(
      "train --device cpu --max-examples 40 --batch 4 --max-steps 2 "
      "--n-evals 1 -q --max-len 160 --json --out " +
      out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  const auto summary = nlohmann::json::parse(read_file(out + "/train_summary.json"));
  for (const auto& doc : {j, summary}) {
    ASSERT_FALSE(doc["warnings"].empty()) << doc.dump();
    EXPECT_NE(doc["warnings"][0].get<std::string>().find("cut to it"), std::string::npos)
        << doc.dump();
    const int64_t n_train = doc["examples"]["train"], n_val = doc["examples"]["val"];
    EXPECT_GT(n_train, n_val) << doc.dump();
    EXPECT_GT(n_val, 0) << doc.dump();
    EXPECT_LE(n_train + n_val, 40) << doc.dump();  // less what --max-len left no target in
  }
}

// lr 0.3 blows the run up before its first evaluation; the later evaluations fall, so the loss
// that "never fell" is not the sign. The adapter kept is worse than the base model: said, with
// both losses, in the warnings and the summary. A sound run is not warned about.
TEST(BadInput, AdapterWorseThanTheBaseModelIsSaid) {
  TempDir tmp("train-worse-than-base");
  const std::string args =
      "train --device cpu --max-examples 40 --r 4 --batch 4 --max-steps 8 --n-evals 2 -q --json ";
  auto r = test::run_lorank(args + "--lr 0.3 --out " + tmp.path + "/blown");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  ASSERT_FALSE(j["warnings"].empty()) << j.dump();
  const std::string w = j["warnings"].back();
  EXPECT_NE(w.find("the adapter kept is worse than none"), std::string::npos) << w;
  EXPECT_NE(w.find("lower --lr"), std::string::npos) << w;
  const auto summary = nlohmann::json::parse(read_file(tmp.path + "/blown/train_summary.json"));
  EXPECT_EQ(summary["warnings"].back(), w);
  EXPECT_GT(summary["best_val_loss"].get<double>(), summary["base_val_loss"].get<double>());
  r = test::run_lorank(args + "--lr 1e-3 --out " + tmp.path + "/sound");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("worse than none"), std::string::npos) << r.output;
  const auto sound = nlohmann::json::parse(read_file(tmp.path + "/sound/train_summary.json"));
  // measured only when the best is above step 1's batch loss (eight steps here barely move it)
  EXPECT_TRUE(sound["base_val_loss"].is_null() ||
              sound["best_val_loss"].get<double>() <= sound["base_val_loss"].get<double>())
      << sound.dump();
}

TEST(BadInput, TrainOutputHoldingResultsIsKept) {
  expect_results_kept("train", "bad-train-out");
}

TEST(BadInput, SweepOutputHoldingResultsIsKept) {
  expect_results_kept("sweep --ranks 1 --lrs 0.003", "bad-sweep-out");
}

// TensorBoard and transformers' Trainer write runs/ folders of their own: a sweep's --force keeps
// them (it removed any runs/), and a folder holding only one is not "a sweep".
TEST(BadInput, SweepForceKeepsAnotherToolsRunsFolder) {
  TempDir tmp("bad-sweep-runs");
  const std::string out = tmp.path + "/out";
  const std::string events = "/runs/Dec02_10-00-00_host/events.out.tfevents.1.host";
  write_file(out + events, "tb");
  const std::string sweep = "sweep --ranks 1 --lrs 0.003 " + kTrainArgs + out;
  expect_failure(sweep, {out, "holds files that are not from a lorank sweep", "--force replaces"});
  write_file(out + "/runs/r2-lr0.003/adapter_config.json", "{}");  // a run of an earlier sweep
  auto r = test::run_lorank(sweep + " --force");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_file(out + events), "tb");
  EXPECT_FALSE(fs::exists(out + "/runs/r2-lr0.003"));
  EXPECT_TRUE(fs::exists(out + "/runs/r1-lr0.003/adapter_model.safetensors"));
}

TEST(BadInput, RecommendOutputHoldingAConfigIsKept) {
  TempDir tmp("bad-rec-out");
  const std::string out = tmp.path + "/configs";
  write_file(out + "/axolotl.yaml", "lora_r: 64  # mine\n");
  expect_failure("recommend --quiet --device cpu --out " + out,
                 {out + "/axolotl.yaml", "refusing to overwrite", "expected a folder without",
                  "hint:", "--force"});
  EXPECT_EQ(tree(out),
            (std::map<std::string, std::string>{{"/axolotl.yaml", "lora_r: 64  # mine\n"}}));
}

// A typo in a LoRA key would train another adapter than the one asked for, and PEFT says nothing.
TEST(BadInput, LoraKeysThatMatchNoModule) {
  TempDir tmp("bad-lora-keys");
  const std::string out = tmp.path + "/out";
  expect_failure("train --rank-pattern qproj=4 " + kTrainArgs + out,
                 {"--rank-pattern", "key 'qproj' selects none of the", "hint:"});
  expect_failure("train --alpha-pattern q_proj=16,foo=2 " + kTrainArgs + out,
                 {"--alpha-pattern", "key 'foo'", "hint:"});
  expect_failure("train --targets q_proj,foo " + kTrainArgs + out,
                 {"--targets", "'foo' matches no linear layer", "hint:", "q_proj k_proj"});
  expect_failure("sweep --ranks 1 --lrs 1e-3 --targets q_proj,foo " + kTrainArgs + out,
                 {"--targets", "'foo' matches no linear layer"});
  EXPECT_FALSE(fs::exists(out + "/adapter_config.json"));
}

TEST(BadInput, SweepGridIsChecked) {
  TempDir tmp("bad-sweep-grid");
  const std::string out = tmp.path + "/out";
  expect_failure("sweep --ranks 1 --lrs 20 " + kTrainArgs + out,
                 {"--lrs", "learning rate out of range", "1e-12 to 10", "got 20", "hint:"});
  expect_failure("sweep --ranks 2,2 --lrs 1e-3 " + kTrainArgs + out,
                 {"--ranks", "a value given twice", "hint:"});
  auto r = expect_failure("sweep --ranks 2 --lrs 1e-3,0.001 " + kTrainArgs + out,
                          {"--lrs", "given twice"});
  EXPECT_EQ(r.exit_code, 2);
  // Each rank's learning rate is chosen by validation loss: without any, nothing is trained.
  r = expect_failure("sweep --ranks 2 --lrs 1e-3 --val-fraction 0 " + kTrainArgs + out,
                     {"--val-fraction", "a sweep needs validation data", "--val FILE", "hint:"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_FALSE(fs::exists(out));
}

// The probe's module selection names the option it came from.
TEST(BadInput, ProbeTargetsAndLayersNameTheirOption) {
  auto r = expect_failure("probe --quiet --device cpu --targets q_proj,foo",
                          {"--targets: unknown module type 'foo'", "hint:"});
  EXPECT_EQ(r.exit_code, 2);  // a value not in the option's set
  expect_failure("recommend --quiet --device cpu --layers 0,99",
                 {"--layers: layer out of range", "0 <= layer < 4", "got 99", "has 4"});
}

// inspect reports the dtype the tensors are stored in; config.json's only when it disagrees.
TEST(BadInput, ConfigDtypeThatDisagreesWithTheTensorsIsSaid) {
  TempDir tmp("bad-dtype");
  const std::string model = model_copy(tmp);
  auto cfg = nlohmann::json::parse(read_file(model + "/config.json"));
  auto same = test::run_lorank(inspect(model) + " --max-examples 4");
  ASSERT_EQ(same.exit_code, 0) << same.output;
  EXPECT_NE(same.output.find("weights BF16;"), std::string::npos) << same.output;
  cfg.erase("torch_dtype");
  cfg["dtype"] = "float32";
  write_file(model + "/config.json", cfg.dump());
  auto other = test::run_lorank(inspect(model) + " --max-examples 4");
  ASSERT_EQ(other.exit_code, 0) << other.output;
  EXPECT_NE(other.output.find("weights BF16 (config.json says float32)"), std::string::npos)
      << other.output;
}

// A tokenizer from another model: its ids beyond the embedding are refused when the data is read,
// naming the record and the tokenizer, not by the first forward pass.
TEST(BadInput, TokenIdsBeyondTheModelsVocabulary) {
  TempDir tmp("bad-vocab");
  const std::string model = model_copy(tmp);
  auto tok = nlohmann::json::parse(read_file(model + "/tokenizer.json"));
  tok["added_tokens"].push_back({{"id", 8192},
                                 {"content", "<|extra|>"},
                                 {"single_word", false},
                                 {"lstrip", false},
                                 {"rstrip", false},
                                 {"normalized", false},
                                 {"special", true}});
  write_file(model + "/tokenizer.json", tok.dump());
  write_file(tmp.path + "/d.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b <|extra|>\"}\n");
  expect_failure(
      "recommend --quiet --device cpu --model " + model + " --data " + tmp.path + "/d.jsonl",
      {"d.jsonl:2: token id beyond the model's vocabulary", "vocab_size 8192", "id 8192, <|extra|>",
       "8193 tokens", "hint:"});
}

// The probe deals examples into shards (4 by default): fewer examples get the --shards that fits.
TEST(BadInput, TooFewExamplesForTheShards) {
  TempDir tmp("bad-shards");
  const std::string demo = lorank::test::read_file(lorank::test::repo_path("assets/demo.jsonl"));
  const std::string one = tmp.path + "/one.jsonl", three = tmp.path + "/three.jsonl";
  write_file(one, demo.substr(0, demo.find('\n') + 1));
  size_t at = 0;
  for (int i = 0; i < 3; ++i) at = demo.find('\n', at) + 1;
  write_file(three, demo.substr(0, at));
  expect_failure("recommend --quiet --device cpu --data " + three,
                 {"--shards: more shards than examples", "got 3 examples", "--shards 3"});
  expect_failure("recommend --quiet --device cpu --data " + one,
                 {"--shards", "got 1 example", "2 different examples"});
  // Copies of an example go to one shard (the halves must not share data): they count once.
  const std::string copies = tmp.path + "/copies.jsonl";
  write_file(copies, demo.substr(0, at) + demo.substr(0, at) + demo.substr(0, at));
  expect_failure(
      "recommend --quiet --device cpu --data " + copies,
      {"--shards: more shards than distinct examples", "got 3 distinct examples", "--shards 3"});
}

// Where recommend cannot write, it says so before the probe rather than after it.
TEST(BadInput, RecommendOutputsThatCannotBeWritten) {
  TempDir tmp("bad-rec-write");
  expect_failure(
      "recommend --quiet --device cpu --save-evidence " + tmp.path + "/none/ev.json",
      {tmp.path + "/none/ev.json", "--save-evidence: its folder does not exist", "hint:"});
  expect_failure("recommend --quiet --device cpu --save-evidence " + tmp.path,
                 {"--save-evidence: is a folder", "hint:"});
  write_file(tmp.path + "/file", "x");
  expect_failure("recommend --quiet --device cpu --out " + tmp.path + "/file/configs",
                 {"--out: a file is in the way", tmp.path + "/file is a file", "hint:"});
}

// An --out that is a link to nowhere is named as such (it was "File exists"); a folder recommend
// wrote is named as that, with the option that reads it.
TEST(BadInput, OutputFoldersSayWhatIsInTheWay) {
  TempDir tmp("bad-out-kind");
  fs::create_symlink(tmp.path + "/nowhere", tmp.path + "/link");
  for (const char* sub : {"train", "recommend"}) {
    expect_failure(std::string(sub) + " --quiet --device cpu --out " + tmp.path + "/link",
                   {"--out: a symbolic link to a place that does not exist",
                    "it points to " + tmp.path + "/nowhere", "hint: create"});
  }
  EXPECT_FALSE(fs::exists(tmp.path + "/nowhere"));
  const std::string rec = tmp.path + "/rec";
  fs::create_directory(rec);
  write_file(rec + "/recommendation.json", "{}");
  write_file(rec + "/adapter_config.json", "{}");
  expect_failure("train --quiet --device cpu --out " + rec,
                 {rec + ": holds the output of lorank recommend", "--adapter-config " + rec});
  EXPECT_EQ(read_file(rec + "/adapter_config.json"), "{}");
}

}  // namespace
}  // namespace lorank
