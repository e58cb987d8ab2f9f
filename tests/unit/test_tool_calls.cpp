// Tool calls in chat records against the templates that write them (Qwen2.5's, Qwen3's,
// Llama 3.1's): tests/assets/golden/tool_golden.json is tools/make_tool_golden.py's rendering of
// tests/assets/tools/conversations.jsonl with jinja2 as transformers sets it up.
#include <gtest/gtest.h>

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

#include "chat_template.h"
#include "dataset.h"
#include "records.h"
#include "test_common.h"
#include "tokenizer.h"

namespace lorank {
namespace {

using json = nlohmann::json;

const char* const k_conversations = "tools/conversations.jsonl";

ChatFormat format_of(const json& t) {
  return detect_chat_format(
      test::read_file(
          test::repo_path("tests/fuzz/corpus/fuzz_chat_template/" + t["file"].get<std::string>())),
      "tokenizer_config.json");
}

TokenizerConfig config_of(const json& t) {
  TokenizerConfig config;
  config.bos_token = t["bos_token"].get<std::string>();
  config.eos_token = "<|eos|>";
  return config;
}

TEST(ToolCalls, WholeConversationsAreTheTemplatesText) {
  const json golden = json::parse(test::read_file(test::asset("golden/tool_golden.json")));
  const std::string path = test::asset(k_conversations);
  const std::vector<Record> records = read_records(path);
  ASSERT_EQ(golden["templates"].size(), 3u);
  int n_compared = 0, n_refused = 0;
  for (const auto& [name, t] : golden["templates"].items()) {
    const ChatFormat chat = format_of(t);
    EXPECT_NE(chat.tool_style, ToolStyle::none) << name;
    ASSERT_EQ(t["records"].size(), records.size()) << name;
    for (size_t i = 0; i < records.size(); ++i) {
      const json& ref = t["records"][i];
      auto run = [&] {
        return format_record(records[i], Schema::messages, &chat, config_of(t), path,
                             TurnLoss::whole);
      };
      if (ref.contains("error")) {  // the template refuses it: so does lorank, naming the line
        const std::string err = test::error_of([&] { run(); });
        EXPECT_NE(err.find(":" + std::to_string(records[i].line)), std::string::npos)
            << name << " record " << i << " (" << ref["error"] << "): " << err;
        ++n_refused;
        continue;
      }
      EXPECT_EQ(run().completion, ref["text"].get<std::string>()) << name << " record " << i;
      ++n_compared;
    }
  }
  EXPECT_EQ(n_compared, 19);
  EXPECT_EQ(n_refused, 2);  // Llama 3.1: two calls in one message; a call without "function"
}

// --turns all: each assistant message is one supervised reply (a tool call too), each tool result
// context, and the turns put together are the whole text (but Qwen3's, whose last reply is the
// bench completion, without the <think> block the whole text gives it).
TEST(ToolCalls, CallsAreRepliesAndResultsAreContext) {
  const json golden = json::parse(test::read_file(test::asset("golden/tool_golden.json")));
  const std::string path = test::asset(k_conversations);
  const std::vector<Record> records = read_records(path);
  for (const auto& [name, t] : golden["templates"].items()) {
    const ChatFormat chat = format_of(t);
    for (size_t i = 0; i < records.size(); ++i) {
      if (t["records"][i].contains("error")) continue;
      const FormattedText f =
          format_record(records[i], Schema::messages, &chat, config_of(t), path, TurnLoss::replies);
      std::vector<std::string> replies;
      std::string joined, contexts;
      for (const auto& [context, reply] : f.earlier) {
        joined += context + reply;
        contexts += context;
        replies.push_back(reply);
      }
      joined += f.prompt + f.completion;
      contexts += f.prompt;
      replies.push_back(f.completion);
      if (name != "qwen3")
        EXPECT_EQ(joined, t["records"][i]["text"].get<std::string>()) << name << " record " << i;
      size_t k = 0;
      for (const auto& m : records[i].fields["messages"]) {
        const std::string what = name + " record " + std::to_string(i) + " message " + m.dump();
        if (m["role"] == "tool") {  // Llama 3.1's template writes it through tojson, quoted
          const std::string text = m["content"].get<std::string>();
          EXPECT_NE(contexts.find(name == "llama31" ? json(text).dump() : text), std::string::npos)
              << what;
          continue;
        }
        if (m["role"] != "assistant") continue;
        ASSERT_LT(k, replies.size()) << what;
        const std::string& reply = replies[k++];
        if (m.contains("tool_calls")) {
          const auto& call = m["tool_calls"][0];
          const auto& fn = call.contains("function") ? call["function"] : call;
          EXPECT_NE(reply.find("\"" + fn["name"].get<std::string>() + "\""), std::string::npos)
              << what << "\nreply: " << reply;
        } else {
          EXPECT_NE(reply.find(m["content"].get<std::string>()), std::string::npos) << what;
        }
        if (m.contains("reasoning_content") && name == "qwen3")  // supervised in every mode
          EXPECT_NE(reply.find("<think>\n" + m["reasoning_content"].get<std::string>()),
                    std::string::npos)
              << what << "\nreply: " << reply;
        EXPECT_EQ(reply.find("tool_response"), std::string::npos) << what;
        EXPECT_EQ(reply.find("ipython"), std::string::npos) << what;
      }
      EXPECT_EQ(k, replies.size()) << name << " record " << i;
    }
  }
}

TEST(ToolCalls, TemplatesWithoutToolTurnsRefuseThem) {
  const std::string path = test::asset(k_conversations);
  const std::vector<Record> records = read_records(path);
  TokenizerConfig config;
  config.eos_token = "</s>";
  for (const std::string name : {"llama3", "chatml", "mistral-v3"}) {
    const ChatFormat chat = chat_format_by_name(name);
    EXPECT_EQ(chat.tool_style, ToolStyle::none) << name;
    const std::string err = test::error_of([&] {
      format_record(records[0], Schema::messages, &chat, config, path, TurnLoss::replies);
    });
    EXPECT_NE(err.find("conversations.jsonl:1"), std::string::npos) << err;
    EXPECT_NE(err.find("has no place for tool calls"), std::string::npos) << err;
    EXPECT_NE(err.find("--chat-format the model was trained with"), std::string::npos) << err;
  }
  EXPECT_EQ(chat_format_by_name("qwen3").tool_style, ToolStyle::qwen);
  // A record's tools alone these templates leave out, as transformers does.
  const ChatFormat llama3 = chat_format_by_name("llama3");
  EXPECT_EQ(format_record(records[5], Schema::messages, &llama3, config, path, TurnLoss::whole)
                .completion.find("Environment"),
            std::string::npos);
}

// Qwen's templates skip roles they do not know (ShareGPT's function_call and observation): the
// call would never be trained, so lorank refuses them, saying how to write them.
TEST(ToolCalls, QwenRefusesRolesItsTemplateLeavesOut) {
  const std::string dir = test::make_temp_dir("tool-roles");
  test::write_file(
      dir + "/d.jsonl",
      R"({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{}"}, {"from": "observation", "value": "1"}, {"from": "gpt", "value": "a"}]})"
      "\n");
  const std::vector<Record> records = read_records(dir + "/d.jsonl");
  TokenizerConfig config;
  config.eos_token = "</s>";
  const ChatFormat qwen3 = chat_format_by_name("qwen3");
  const std::string err = test::error_of(
      [&] { format_record(records[0], Schema::messages, &qwen3, config, dir + "/d.jsonl"); });
  EXPECT_NE(err.find("d.jsonl:1: messages[1]: a role this template leaves out"), std::string::npos)
      << err;
  EXPECT_NE(err.find("role \"function_call\""), std::string::npos) << err;
  EXPECT_NE(err.find("tool_calls"), std::string::npos) << err;
  EXPECT_EQ(chat_format_by_name("llama3.1").tool_style, ToolStyle::llama31);
}

TEST(ToolCalls, BadToolFieldsNameTheRecord) {
  const std::string dir = test::make_temp_dir("tool-calls");
  const ChatFormat chat = chat_format_by_name("qwen3");
  TokenizerConfig config;
  config.eos_token = "</s>";
  auto error_for = [&](const std::string& line) {
    test::write_file(dir + "/d.jsonl", line + "\n");
    const std::vector<Record> records = read_records(dir + "/d.jsonl");
    return test::error_of(
        [&] { format_record(records[0], Schema::messages, &chat, config, dir + "/d.jsonl"); });
  };
  const std::string user = R"({"role": "user", "content": "q"})";
  std::string err = error_for(
      R"({"messages": [)" + user +
      R"(, {"role": "assistant", "content": null, "tool_calls": [{"function": {"arguments": {}}}]}]})");
  EXPECT_NE(err.find("d.jsonl:1: messages[1].tool_calls[0]: a tool call without a name"),
            std::string::npos)
      << err;
  err = error_for(R"({"messages": [)" + user +
                  R"(, {"role": "assistant", "content": null, "tool_calls": {"name": "f"}}]})");
  EXPECT_NE(err.find("tool_calls must be a list"), std::string::npos) << err;
  err = error_for(R"({"messages": [)" + user + R"(, {"role": "assistant", "content": null}]})");
  EXPECT_NE(err.find("content must be a string"), std::string::npos) << err;
  err = error_for(R"({"messages": [)" + user +
                  R"(, {"role": "assistant", "content": "a"}], "tools": "[{"})");
  EXPECT_NE(err.find("field \"tools\" is a string that is not JSON"), std::string::npos) << err;
  EXPECT_EQ(err.find("[json.exception"), std::string::npos) << err;  // the parser's words alone
  err = error_for(R"({"messages": [)" + user +
                  R"(, {"role": "assistant", "content": "a"}], "tools": {"a": 1}})");
  EXPECT_NE(err.find("field \"tools\" must be a list"), std::string::npos) << err;
  // nested 50k deep (100 KB): writing it as JSON recursed until the stack ran out (a segfault)
  const std::string deep = std::string(50000, '[') + std::string(50000, ']');
  err = error_for(R"({"messages": [)" + user +
                  R"(, {"role": "assistant", "content": "a"}], "tools": )" + deep + "}");
  EXPECT_NE(err.find("field \"tools\" is nested too deeply to write as JSON"), std::string::npos)
      << err;
  EXPECT_NE(err.find("got 50000 levels"), std::string::npos) << err;
  err = error_for(
      R"({"messages": [)" + user +
      R"(, {"role": "assistant", "content": null, "tool_calls": [{"function": {"name": "f", "arguments": )" +
      deep + "}}]}]}");
  EXPECT_NE(err.find("messages[1].tool_calls[0].arguments is nested too deeply"), std::string::npos)
      << err;
}

TEST(ToolCalls, PythonJsonWritesAsJsonDumps) {
  const auto j = nlohmann::ordered_json::parse(
      R"({"b": [1, 2.0, 1e-7, 1e16, 0.0001, 123456789.125, -0.5, 1.5e300], "a": {"x": "é\t\"", "y": []}, "c": {}})");
  EXPECT_EQ(
      python_json(j),
      R"({"b": [1, 2.0, 1e-07, 1e+16, 0.0001, 123456789.125, -0.5, 1.5e+300], "a": {"x": "é\t\"", "y": []}, "c": {}})");
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
  // repr's digits at a power of two, where the correctly rounded ones do not read back
  EXPECT_EQ(python_json(nlohmann::ordered_json(std::ldexp(1.0, -24))), "5.960464477539063e-08");
#endif
  EXPECT_EQ(python_json(nlohmann::ordered_json::parse(R"({"k": [1, {"z": null}], "e": []})"), 4),
            "{\n    \"k\": [\n        1,\n        {\n            \"z\": null\n        }\n    ],\n"
            "    \"e\": []\n}");
}

}  // namespace
}  // namespace lorank
