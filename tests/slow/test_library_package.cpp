// lorank as a C++ library: `cmake --install` gives headers, static libraries and a CMake package,
// examples/library builds against them alone, and its flow (load, probe, recommend, export) gives
// the config `lorank recommend --format peft` prints, byte for byte.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "test_common.h"

namespace lorank {
namespace {

namespace fs = std::filesystem;

TEST(LibraryPackage, TheExampleBuiltAgainstTheInstallGivesTheClisConfig) {
  const std::string work = test::make_temp_dir("library-package");
  const std::string prefix = work + "/prefix", example = work + "/example";
  const std::string build_dir = fs::path(LORANK_BINARY).parent_path().string();
  auto r =
      test::run_command("cmake --install " + build_dir + " --prefix " + prefix + " > /dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* file : {"include/lorank/recommend.h", "lib/liblorank_core.a",
                           "lib/liblorank_base.a", "lib/cmake/lorank/lorankConfig.cmake"})
    EXPECT_TRUE(fs::exists(prefix + "/" + file)) << file;
  for (const char* file : {"compat.h", "tokenizer_spm_module.h", "tokenizer_unicode.h"})
    EXPECT_FALSE(fs::exists(prefix + "/include/lorank/" + file)) << file << " is internal";
  // Only the install and LibTorch: the source tree's headers are not on the example's path.
  r = test::run_command("cmake -S " + test::repo_path("examples/library") + " -B " + example +
                        " -DCMAKE_PREFIX_PATH=" + prefix + " -DTorch_DIR=" + LORANK_TORCH_DIR +
                        " > /dev/null && cmake --build " + example + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::string model = test::repo_path("assets/tiny-llama");
  const std::string data = test::repo_path("assets/demo.jsonl");
  // run_command adds 2>&1: in a subshell each stream keeps a file of its own.
  const auto lib = test::run_command("(" + example + "/recommend_rank " + model + " " + data +
                                     " > " + work + "/lib.json 2> " + work + "/lib.err)");
  const std::string lib_err = test::read_file(work + "/lib.err");
  ASSERT_EQ(lib.exit_code, 0) << lib.output << lib_err;
  const auto cli = test::run_command(prefix + "/bin/lorank recommend -q --format peft --model " +
                                     model + " --data " + data + " > " + work + "/cli.json");
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  const std::string lib_json = test::read_file(work + "/lib.json");
  EXPECT_NE(lib_json.find("\"r\": "), std::string::npos) << lib_json;
  EXPECT_EQ(lib_json, test::read_file(work + "/cli.json"));
  EXPECT_NE(lib_err.find("confidence"), std::string::npos) << lib_err;

  // The torch-free library: a tokenizer.model loads the SentencePiece module this install holds
  // (the compiled-in path is the configured prefix, and the build tree's module is there too).
  const auto bpe = test::run_command(example + "/tokenize " + model + " 'Hello world' 2>&1");
  ASSERT_EQ(bpe.exit_code, 0) << bpe.output;
  EXPECT_NE(bpe.output.find("bpe (tokenizer.json)"), std::string::npos) << bpe.output;
  const std::string spm = test::shared_path("tokenizers/llama2/tokenizer.model");
  if (!spm.empty()) {
    const auto ids = test::run_command(example + "/tokenize " + spm + " 'Hello world' 2>&1");
    ASSERT_EQ(ids.exit_code, 0) << ids.output;
    EXPECT_NE(ids.output.find("module " + prefix + "/lib/lorank/liblorank_spm.so"),
              std::string::npos)
        << ids.output;
  }

  // COMPONENTS base never looks for LibTorch: with find_package(Torch) disabled it still builds.
  const std::string base_only = work + "/example-base";
  r = test::run_command(
      "cmake -S " + test::repo_path("examples/library") + " -B " + base_only +
      " -DCMAKE_PREFIX_PATH=" + prefix +
      " -DLORANK_EXAMPLE_CORE=OFF -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON --no-warn-unused-cli" +
      " > /dev/null && cmake --build " + base_only + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(base_only + "/recommend_rank"));
  const auto alone = test::run_command(base_only + "/tokenize " + model + " 'Hello world' 2>&1");
  EXPECT_EQ(alone.output, bpe.output);

  // A library error is an exception carrying lorank's message and hint, not an exit.
  const auto bad =
      test::run_command(example + "/recommend_rank " + model + " " + work + "/missing.jsonl 2>&1");
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("missing.jsonl"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("hint:"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace lorank
