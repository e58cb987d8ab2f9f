// The lorank binary end to end: inspect's numbers against transformers' goldens, and bad input
// giving a clear message (file, what was expected, a hint) and a non-zero exit.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "model/model_fixtures.h"

namespace {

using lorank::test::asset;
using lorank::test::expect_failure;
using lorank::test::repo_path;
using lorank::test::run_lorank;
using lorank::test::TempDir;
using lorank::test::write_file;

nlohmann::json golden_loss(const std::string& rel) {
  auto meta = nlohmann::json::parse(lorank::test::read_file(asset("golden/golden_meta.json")));
  return meta["tiny-llama"]["loss"][rel];
}

nlohmann::json inspect_json(const std::string& args) {
  // fp32 on the CPU: the goldens are transformers' fp32 losses (a CUDA build would pick bf16).
  auto r = run_lorank("inspect --quiet --json --device cpu --dtype fp32 " + args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(r.output.substr(r.output.find('{')));
}

TEST(CliInspect, DemoLossMatchesTransformers) {
  auto j = inspect_json("");  // the embedded default: assets/tiny-llama + assets/demo.jsonl
  auto g = golden_loss("assets/demo.jsonl");
  EXPECT_EQ(j["base_loss"]["supervised_tokens"], g["supervised_tokens"]);
  EXPECT_NEAR(j["base_loss"]["mean_loss_per_supervised_token"].get<double>(),
              g["mean_loss_per_supervised_token"].get<double>(), 1e-4);
  EXPECT_EQ(j["data"]["schema"], "alpaca");
  EXPECT_EQ(j["data"]["examples"], 200);
  EXPECT_EQ(j["model"]["params"]["total"], 5245184);  // pretraining.json's count
  EXPECT_NE(j["runtime"]["blas"].get<std::string>(), "");
  EXPECT_FALSE(j["base_loss"]["sampled"].get<bool>());  // under --loss-tokens: every example
  EXPECT_EQ(j["base_loss"]["standard_error"].get<double>(), 0.0);
}

TEST(CliInspect, SampledLossIsWithinItsStandardErrorsOfTheWholeLoss) {
  auto j = inspect_json("--loss-tokens 8000");
  auto g = golden_loss("assets/demo.jsonl");
  const auto& b = j["base_loss"];
  ASSERT_TRUE(b["sampled"].get<bool>());
  EXPECT_LT(b["examples"].get<int64_t>(), 200);
  EXPECT_GE(b["tokens"].get<int64_t>(), 8000);
  EXPECT_LT(b["supervised_tokens"].get<int64_t>(), g["supervised_tokens"].get<int64_t>());
  const double se = b["standard_error"].get<double>();
  EXPECT_GT(se, 0.0);
  EXPECT_LT(se, 0.2);
  EXPECT_NEAR(b["mean_loss_per_supervised_token"].get<double>(),
              g["mean_loss_per_supervised_token"].get<double>(), 3 * se);
}

TEST(CliInspect, MessagesTaskLossMatchesTransformers) {
  const std::string rel = "tests/assets/data/wordnet-gloss.jsonl";
  auto j = inspect_json("--data " + repo_path(rel));
  auto g = golden_loss(rel);
  EXPECT_EQ(j["data"]["chat_format"], "llama3");
  EXPECT_EQ(j["base_loss"]["supervised_tokens"], g["supervised_tokens"]);
  EXPECT_NEAR(j["base_loss"]["mean_loss_per_supervised_token"].get<double>(),
              g["mean_loss_per_supervised_token"].get<double>(), 1e-4);
}

// A forced chat format is checked against the vocabulary: tiny-llama's (Llama 3's) has
// <|start_header_id|> as one token and no <|im_start|>.
TEST(CliInspect, ForcedChatFormatForeignToTheVocabularyIsSaid) {
  const std::string data =
      " --no-loss --device cpu --data " + repo_path("tests/assets/data/wordnet-gloss.jsonl");
  auto own = run_lorank("inspect --chat-format llama3" + data);
  ASSERT_EQ(own.exit_code, 0) << own.output;
  EXPECT_EQ(own.output.find("warning:"), std::string::npos) << own.output;
  auto foreign = run_lorank("inspect --chat-format chatml" + data);
  ASSERT_EQ(foreign.exit_code, 0) << foreign.output;
  EXPECT_NE(foreign.output.find("--chat-format chatml: its turn marker <|im_start|> is"),
            std::string::npos)
      << foreign.output;
}

TEST(CliInspect, MissingModelFolder) {
  expect_failure("inspect --model /nonexistent/model", {"/nonexistent/model", "hint:"});
}

TEST(CliInspect, MalformedJsonlNamesFileAndLine) {
  TempDir dir("cli-bad");
  write_file(dir.path + "/bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"broken\n{\"text\": \"x\"}\n");
  expect_failure("inspect --no-loss --data " + dir.path + "/bad.jsonl",
                 {"bad.jsonl:2", "expected one JSON object per line", "hint:"});
}

TEST(CliInspect, EmptyDataset) {
  TempDir dir("cli-empty");
  write_file(dir.path + "/empty.jsonl", "\n\n");
  expect_failure("inspect --no-loss --data " + dir.path + "/empty.jsonl",
                 {"empty.jsonl", "expected at least one record", "hint:"});
}

TEST(CliInspect, EmptyCompletionNamesLine) {
  TempDir dir("cli-nocomp");
  write_file(dir.path + "/d.jsonl",
             "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\", \"completion\": \"\"}\n");
  expect_failure("inspect --no-loss --data " + dir.path + "/d.jsonl",
                 {"d.jsonl:2", "expected a non-empty completion", "hint:", "--skip-empty"});
}

TEST(CliInspect, PickleOnlyModelSaysHowToConvert) {
  TempDir dir("cli-pickle");
  write_file(dir.path + "/config.json", lorank::test::read_file(repo_path("assets/tiny-llama/config.json")));
  write_file(dir.path + "/tokenizer.json", lorank::test::read_file(repo_path("assets/tiny-llama/tokenizer.json")));
  write_file(dir.path + "/pytorch_model.bin", "not really a pickle");
  expect_failure(
      "inspect --no-loss --model " + dir.path,
      {dir.path, "pickle", "expected model.safetensors", "hint:", "safe_serialization=True"});
}

TEST(CliInspect, UnknownModelType) {
  TempDir dir("cli-arch");
  std::string cfg = lorank::test::read_file(repo_path("assets/tiny-llama/config.json"));
  cfg.replace(cfg.find("\"llama\""), 7, "\"gpt_neox\"");
  write_file(dir.path + "/config.json", cfg);
  write_file(dir.path + "/tokenizer.json", lorank::test::read_file(repo_path("assets/tiny-llama/tokenizer.json")));
  expect_failure("inspect --no-loss --model " + dir.path,
                 {"config.json", "gpt_neox", "expected one of llama", "hint:"});
}

// `cmake --install` puts the module and the demo where the binary looks for them first, so an
// installed lorank runs without the checkout; a LORANK_ASSETS_DIR without the demo is said.
TEST(CliInstall, TheInstalledBinaryRunsTheDemoFromItsOwnCopy) {
  TempDir prefix("cli-install");
  const std::string build_dir = std::filesystem::path(LORANK_BINARY).parent_path().string();
  auto installed = lorank::test::run_command("cmake --install " + build_dir + " --prefix " +
                                             prefix.path + " > /dev/null");
  ASSERT_EQ(installed.exit_code, 0) << installed.output;
  EXPECT_TRUE(std::filesystem::exists(prefix.path + "/lib/lorank/liblorank_spm.so"));
  const std::string lorank = "env -u LORANK_ASSETS_DIR " + prefix.path + "/bin/lorank";
  auto r = lorank::test::run_command(lorank + " inspect --quiet --json --no-loss --device cpu " +
                                     "--max-examples 5 2> /dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  const std::string assets = prefix.path + "/share/lorank/assets";
  EXPECT_EQ(j["model"]["path"], assets + "/tiny-llama");
  EXPECT_EQ(j["data"]["path"], assets + "/demo.jsonl");

  auto bad = lorank::test::run_command("LORANK_ASSETS_DIR=" + prefix.path + " " + prefix.path +
                                       "/bin/lorank inspect --no-loss --device cpu");
  EXPECT_NE(bad.exit_code, 0);
  for (const char* needle : {"LORANK_ASSETS_DIR=", "demo.jsonl", "hint:"})
    EXPECT_NE(bad.output.find(needle), std::string::npos) << needle << "\n" << bad.output;
}

// Examples past config.json's max_position_embeddings (1024) are kept but said, with the fix.
TEST(CliInspect, ExamplesPastTheModelsPositionsAreSaid) {
  TempDir dir("cli-maxpos");
  std::string text;
  for (int i = 0; i < 400; ++i) text += "word" + std::to_string(i) + " ";
  write_file(dir.path + "/long.jsonl", nlohmann::json({{"text", text}}).dump() + "\n");
  auto r = run_lorank("inspect --no-loss --device cpu --max-len 4096 --data " + dir.path +
                      "/long.jsonl");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("past the model's max_position_embeddings 1024"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("--max-len 1024"), std::string::npos) << r.output;
  auto within = run_lorank("inspect --no-loss --device cpu --data " + dir.path + "/long.jsonl");
  EXPECT_EQ(within.output.find("max_position_embeddings"), std::string::npos) << within.output;
}

// --show: an example as the model reads it, each run of text marked supervised or not; with two
// assistant turns both replies are supervised, and the text between them is not.
TEST(CliInspect, FieldsReadAFilesOwnColumnNames) {
  TempDir dir("cli-fields");
  const std::string data = dir.path + "/qa.jsonl";
  write_file(data, R"({"question": "2+2?", "answer": "4"})"
                   "\n");
  expect_failure("inspect --no-loss --data " + data,
                 {"qa.jsonl:1", "hint:", "--fields prompt=question,completion=answer"});
  auto j =
      inspect_json("--no-loss --show 1 --fields prompt=question,completion=answer --data " + data);
  EXPECT_EQ(j["data"]["schema"], "prompt/completion");
  EXPECT_EQ(j["data"]["fields"],
            nlohmann::json::parse(R"({"completion": "answer", "prompt": "question"})"));
  auto human = run_lorank(
      "inspect --no-loss --device cpu --fields prompt=question,completion=answer --data " + data);
  EXPECT_NE(human.output.find("prompt/completion (--fields completion=answer,prompt=question)"),
            std::string::npos)
      << human.output;
  std::string supervised, context;
  for (const auto& p : j["data"]["shown"][0]["parts"])
    (p["supervised"].get<bool>() ? supervised : context) += p["text"];
  EXPECT_NE(context.find("2+2?"), std::string::npos) << context;
  EXPECT_EQ(supervised.rfind("4", 0), 0u) << supervised;
  expect_failure("inspect --no-loss --fields question=prompt --data " + data,
                 {"--fields", "no schema reads a field named \"question\"", "hint:"});
}

TEST(CliInspect, ShowMarksTheSupervisedText) {
  TempDir dir("cli-show");
  write_file(
      dir.path + "/mt.jsonl",
      R"({"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}, )"
      R"({"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6"}]})"
      "\n");
  auto j = inspect_json("--no-loss --show 1 --data " + dir.path + "/mt.jsonl");
  EXPECT_EQ(j["data"]["supervised_part"], "every assistant turn");
  EXPECT_EQ(j["data"]["multi_turn_records"], 1);
  const auto& parts = j["data"]["shown"][0]["parts"];
  ASSERT_EQ(parts.size(), 4u) << parts;
  std::string supervised, context;
  for (const auto& p : parts) (p["supervised"].get<bool>() ? supervised : context) += p["text"];
  EXPECT_EQ(supervised, "4<|eot_id|>6<|eot_id|>");
  EXPECT_NE(context.find("and 3+3?"), std::string::npos) << context;
  auto last = inspect_json("--no-loss --show 1 --turns last --data " + dir.path + "/mt.jsonl");
  EXPECT_EQ(last["data"]["supervised_part"], "the last assistant turn");
  EXPECT_EQ(last["data"]["shown"][0]["parts"].size(), 2u);
  auto human =
      run_lorank("inspect --no-loss --device cpu --show 1 --data " + dir.path + "/mt.jsonl");
  EXPECT_NE(human.output.find("[[4<|eot_id|>]]"), std::string::npos) << human.output;
}

TEST(CliInspect, GpuMemoryLimitNeedsCuda) {
  expect_failure("inspect --no-loss --device cpu --gpu-memory 8",
                 {"--gpu-memory", "needs a CUDA device", "hint:"});
  EXPECT_NE(run_lorank("inspect --gpu-memory -1").exit_code, 0);
}

TEST(CliInspect, NumbersAreValidated) {
  auto r = run_lorank("inspect --max-len abc");
  EXPECT_NE(r.exit_code, 0);
  r = run_lorank("inspect --max-len -5");
  EXPECT_NE(r.exit_code, 0);
  r = run_lorank("inspect --device tpu");
  EXPECT_NE(r.exit_code, 0);
}

// LibTorch would print its own warning with a C++ backtrace for these, then ignore them.
TEST(CliInspect, BadThreadCountsInTheEnvironmentAreSaidPlainly) {
  auto r = lorank::test::run_command("OMP_NUM_THREADS=0 MKL_NUM_THREADS=x " +
                                     std::string(LORANK_BINARY) + " inspect -q --max-examples 4");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: OMP_NUM_THREADS=0 is not a positive number of threads: "
                          "ignored (--threads sets them)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("warning: MKL_NUM_THREADS=x is not"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("Exception raised from"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("frame #"), std::string::npos) << r.output;
}

// Under `ulimit -v` OpenBLAS can hang instead of failing when a reservation is refused: said first.
TEST(CliInspect, AddressSpaceLimitIsSaid) {
  auto r = lorank::test::run_command("ulimit -v 8000000 && " + std::string(LORANK_BINARY) +
                                     " inspect --no-loss -q --max-examples 4");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: the address space is limited to 7.63 GiB (ulimit -v)"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(run_lorank("inspect --no-loss -q --max-examples 4").output.find("ulimit -v"),
            std::string::npos);
}

// On a terminal the bar redraws in place, each redraw within the width (a wider line wraps, and
// "\r\033[K" clears only its last row, leaving a trail); TERM=dumb gets plain lines.
TEST(CliProgress, BarsFitTheTerminalAndDumbTerminalsGetPlainLines) {
  if (lorank::test::run_command("command -v script").exit_code != 0)
    GTEST_SKIP() << "no script(1) to give lorank a terminal";
  const std::string recommend =
      std::string(LORANK_BINARY) + " recommend --device cpu --max-tokens 3000 2>&1 >/dev/null";
  auto r = lorank::test::run_command("TERM=xterm script -qfec 'stty cols 50; " + recommend +
                                     "' /dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_NE(r.output.find("\r\033[K"), std::string::npos) << r.output;
  size_t at = 0;
  int redraws = 0;
  while ((at = r.output.find("\r\033[K", at)) != std::string::npos) {
    at += 4;
    const size_t end = r.output.find_first_of("\r\n", at);
    const std::string line = r.output.substr(at, end - at);
    // A final line may wrap: it ends the bar with a newline, which the terminal writes as "\r\n".
    if (end != std::string::npos &&
        (r.output[end] == '\n' || r.output.compare(end, 2, "\r\n") == 0))
      continue;
    EXPECT_LE(line.size(), 49u) << line;
    ++redraws;
  }
  EXPECT_GE(redraws, 1) << "no redraw before the final line: nothing was checked\n" << r.output;
  r = lorank::test::run_command("TERM=dumb script -qfec 'stty cols 50; " + recommend +
                                "' /dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("\033["), std::string::npos) << r.output;
}

// A command line refused by itself: exit code 2, and the error says each of `needles`.
void expect_usage_error(const std::string& args, const std::vector<std::string>& needles) {
  EXPECT_EQ(expect_failure(args, needles).exit_code, 2) << args;
}

// What CLI11 refuses reads as lorank's own errors: the option, what was expected (bounds as
// written, not "0 not in range 0.000000 to 10"), what was given, a hint; exit code 2.
TEST(CliUsage, RefusedCommandLinesSayWhatWasExpected) {
  expect_usage_error("train --lr 0", {"error: --lr: expected a number in [1e-12, 10], got 0",
                                      "hint:", "train --help"});
  expect_usage_error("recommend --max-rank abc",
                     {"--max-rank: expected an integer in [1, 65536], got 'abc'"});
  expect_usage_error("recomend",
                     {"error: recomend: unknown subcommand", "did you mean", " recommend?"});
  expect_usage_error("", {"Subcommands:"});
  expect_usage_error("train --max-steps 2 --max-steps 3",
                     {"error: --max-steps: given 2 times (expected once)"});
  expect_usage_error("sweep --ranks 4,x", {"error: --ranks: not a number"});
  auto r = run_lorank("train --help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--lr FLOAT in [1e-12, 10]"), std::string::npos) << r.output;
  // A flag and its --no- form are two lines, not CLI11's "--rslora,--no-rslora{false}".
  EXPECT_EQ(r.output.find("{false}"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--no-rslora"), std::string::npos) << r.output;
  // One --checkpointing everywhere: auto, on or off, and alone it means on.
  for (const char* sub : {"train", "sweep", "probe", "recommend"}) {
    r = run_lorank(std::string(sub) + " --help");
    EXPECT_NE(r.output.find("--checkpointing TEXT:{auto,on,off}"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("(default auto; given alone: on)"), std::string::npos) << r.output;
  }
  expect_usage_error("train --checkpointing maybe", {"--checkpointing"});
  // "--name=" with nothing after it: CLI11 alone would read it as the bare option (here: on), or
  // give the option the next argument.
  expect_usage_error("train --checkpointing= --out /tmp/never",
                     {"error: --checkpointing: nothing after '='"});
  expect_usage_error("train --out= --max-steps 1", {"error: --out: nothing after '='"});
  // A chat format is checked with the command line, whatever the data (the demo is alpaca).
  expect_usage_error("inspect --no-loss --chat-format foo",
                     {"error: --chat-format: foo not in {llama3,"});
  // Numbers are decimal: CLI11 read "010" as octal 8 and "0x10" as hex 16.
  expect_usage_error("inspect --no-loss --max-examples 0x10",
                     {"--max-examples: expected an integer in [0, 1e+15], got '0x10'"});
  expect_usage_error("sweep --ranks 0x10", {"--ranks: not a decimal number: 0x10"});
  expect_usage_error("train --rank-pattern q_proj=0x10 --out /tmp/never",
                     {"--rank-pattern: bad value for q_proj"});
  r = run_lorank("inspect --no-loss -q --json --max-examples 010");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output.substr(r.output.find('{')))["data"]["records"], 10)
      << r.output;
  // A count in scientific notation, as the ranges print it, when it is a whole number.
  r = run_lorank("inspect --no-loss -q --json --max-examples 1.2e1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output.substr(r.output.find('{')))["data"]["records"], 12)
      << r.output;
  expect_usage_error("inspect --no-loss --max-examples 1.5e0",
                     {"--max-examples: expected an integer in [0, 1e+15], got '1.5e0'"});
  // A list of numbers given twice is a slip CLI11 would merge into one list; text lists may come
  // entry by entry (here the run is refused for its --lr, after the patterns were read).
  expect_usage_error(
      "sweep --ranks 4 --lrs 1e-3 --ranks=8 --out /tmp/never",
      {"error: --ranks: given 2 times (expected one comma-separated list: --ranks 4,8)",
       "--help lists the options"});
  expect_usage_error(
      "train --rank-pattern q_proj=4 --rank-pattern v_proj=8 --lr 0 --out /tmp/never",
      {"error: --lr: expected a number in [1e-12, 10], got 0"});
  // Pattern values within --rank's and --alpha's ranges (inf was cast to an integer), each key
  // once.
  expect_usage_error(
      "train --rank-pattern q_proj=inf --out /tmp/never",
      {"--rank-pattern: bad value for q_proj", "an integer in [1, 65536]", "got inf"});
  expect_usage_error("train --alpha-pattern q_proj=inf --out /tmp/never",
                     {"--alpha-pattern: bad value for q_proj", "a number in (0, 1e9]"});
  expect_usage_error("train --rank-pattern q_proj=4,q_proj=8 --out /tmp/never",
                     {"--rank-pattern: key q_proj given twice"});
  // Values wrong whatever the machine and data: a device named twice, a batch grad-accum can't
  // split.
  expect_usage_error("inspect --no-loss --device cpu,cpu", {"--device: a device is listed twice"});
  expect_usage_error("train --batch 8 --grad-accum 3 --out /tmp/never",
                     {"--grad-accum: value out of range", "a divisor of --batch (8)"});
}

// LORANK_TRACE=1: where a run's time goes, in order, in seconds since the process started; nothing
// without it. lorank ends with _Exit (no LibTorch teardown): what it printed still arrives whole.
TEST(CliTrace, TracePointsComeInOrderAndTheOutputArrivesWhole) {
  const std::string args = "inspect --quiet --json --device cpu --dtype fp32 --max-examples 8";
  ::setenv("LORANK_TRACE", "1", 1);
  auto traced = run_lorank(args);
  ::unsetenv("LORANK_TRACE");
  ASSERT_EQ(traced.exit_code, 0) << traced.output;
  double last = 0;
  size_t at = 0;
  const std::vector<std::string> order = {"main", "tokenizer loaded", "model loaded",
                                          "data loaded", "exit"};
  for (const std::string& what : order) {
    const size_t line = traced.output.find(") " + what + "\n", at);
    ASSERT_NE(line, std::string::npos) << what << " missing or out of order:\n" << traced.output;
    const size_t start = traced.output.rfind("trace ", line);
    const double t = std::stod(traced.output.substr(start + 6));
    EXPECT_GE(t, last) << what;
    EXPECT_LT(t, 600.0) << what << ": not seconds since the process started";
    last = t;
    at = line + 1;
  }
  EXPECT_GT(last, 0.0);
  const std::string json = traced.output.substr(traced.output.find('{'));
  EXPECT_TRUE(nlohmann::json::parse(json).contains("base_loss")) << json;

  auto plain = run_lorank(args);
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_EQ(plain.output.find("trace "), std::string::npos) << plain.output;
}

// Memory handed back by lorank's CPU allocator is reused uninitialised: nothing may depend on it.
TEST(CliCpuMemory, TheAnswerIsTheSameWithoutLoranksAllocator) {
  ::setenv("LORANK_TRACE", "1", 1);
  auto installed = run_lorank("--version");
  ::unsetenv("LORANK_TRACE");
  EXPECT_NE(installed.output.find(") CPU blocks of 32 MiB and more: "), std::string::npos)
      << installed.output;
  const std::string args = "recommend --json --quiet --device cpu --max-examples 48";
  auto with = run_lorank(args);
  ASSERT_EQ(with.exit_code, 0) << with.output;
  ::setenv("LORANK_CPU_BLOCK_CACHE", "0", 1);
  auto without = run_lorank(args);
  ::unsetenv("LORANK_CPU_BLOCK_CACHE");
  ASSERT_EQ(without.exit_code, 0) << without.output;
  EXPECT_EQ(with.output, without.output);
}

}  // namespace
