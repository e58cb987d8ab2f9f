// lorank::Error: the message the CLI prints, and its parts kept apart for library callers.
#include <gtest/gtest.h>

#include <string>

#include "error.h"
#include "tokenizer.h"

namespace lorank {
namespace {

TEST(Error, PartsStayApartBesideTheWholeMessage) {
  try {
    fail("data.jsonl:12", "no 'text' field", "a string", "a number", "name the field with --field");
    FAIL() << "fail() returned";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "data.jsonl:12: no 'text' field (expected a string, got a number)\n"
              "  hint: name the field with --field");
    EXPECT_EQ(e.where(), "data.jsonl:12");
    EXPECT_EQ(e.reason(), "no 'text' field");
    EXPECT_EQ(e.expected(), "a string");
    EXPECT_EQ(e.got(), "a number");
    EXPECT_EQ(e.hint(), "name the field with --field");
  }
  try {
    fail_usage("--format", "unknown format 'x'");
    FAIL() << "fail_usage() returned";
  } catch (const UsageError& e) {
    EXPECT_EQ(e.where(), "--format");
    EXPECT_EQ(e.hint(), "");
  }
  EXPECT_EQ(join_hints("", "then this"), "then this");
  EXPECT_EQ(join_hints("first this", "then this"), "first this\n  hint: then this");
  const Error bare("something went wrong");
  EXPECT_EQ(bare.reason(), "something went wrong");
  EXPECT_EQ(bare.where(), "");
}

TEST(Error, AReaderNamesTheFileAndAHintApart) {
  try {
    load_tokenizer_json("/nonexistent/tokenizer.json");
    FAIL() << "a missing file loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "/nonexistent/tokenizer.json");
    EXPECT_FALSE(e.hint().empty());
    EXPECT_EQ(std::string(e.what()).find(e.hint()) != std::string::npos, true);
    EXPECT_EQ(e.reason().find("hint:"), std::string::npos) << e.reason();
  }
}

}  // namespace
}  // namespace lorank
