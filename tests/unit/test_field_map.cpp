// --fields: lorank's field names for a file's columns, and the value suggested when no schema fits.
#include <gtest/gtest.h>

#include "error.h"
#include "field_map.h"
#include "test_common.h"

namespace lorank {
namespace {

using test::error_of;
using json = nlohmann::ordered_json;

TEST(FieldMap, ParsesEntriesAndRefusesWhatNoSchemaReads) {
  const FieldMap m = parse_field_map({"prompt=question", "completion=answer"});
  EXPECT_EQ(m, (FieldMap{{"prompt", "question"}, {"completion", "answer"}}));
  EXPECT_TRUE(parse_field_map({}).empty());
  EXPECT_EQ(parse_field_map({"text=a=b"}).at("text"), "a=b");  // a column may hold '='
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"prompt"}, "malformed entry"},
      {{"=question"}, "malformed entry"},
      {{"prompt="}, "malformed entry"},
      {{"question=prompt"}, "no schema reads a field named \"question\""},
      {{"prompt=a", "prompt=b"}, "\"prompt\" given twice"},
      {{"prompt=a", "completion=a"}, "column \"a\" given twice"}};
  for (const auto& [items, what] : bad) {
    const std::string err = error_of([&] { parse_field_map(items); });
    EXPECT_NE(err.find("--fields"), std::string::npos) << err;
    EXPECT_NE(err.find(what), std::string::npos) << err;
  }
}

TEST(FieldMap, RenamesColumnsAndKeepsTheRest) {
  Record rec{json::parse(R"({"id": 7, "question": "q", "answer": "a", "prompt": "old"})"), 3};
  rename_fields(rec, {{"prompt", "question"}, {"completion", "answer"}}, "f.jsonl");
  EXPECT_EQ(rec.fields, json::parse(R"({"id": 7, "prompt": "q", "completion": "a"})"));
  // A swap, and a column mapped to its own name, are renames too.
  Record swap{json::parse(R"({"prompt": "c", "completion": "p"})"), 1};
  rename_fields(swap, {{"prompt", "completion"}, {"completion", "prompt"}}, "f.jsonl");
  EXPECT_EQ(swap.fields["prompt"], "p");
  EXPECT_EQ(swap.fields["completion"], "c");
  Record same{json::parse(R"({"text": "t"})"), 1};
  rename_fields(same, {{"text", "text"}}, "f.jsonl");
  EXPECT_EQ(same.fields, json::parse(R"({"text": "t"})"));
  // Optional fields may be missing; required ones fail at the record's line, naming the keys.
  Record no_input{json::parse(R"({"instruction": "i", "response": "r"})"), 2};
  rename_fields(no_input, {{"output", "response"}, {"input", "context"}}, "f.jsonl");
  EXPECT_EQ(no_input.fields, json::parse(R"({"instruction": "i", "output": "r"})"));
  Record gap{json::parse(R"({"q": "q"})"), 9};
  const std::string err = error_of([&] {
    rename_fields(gap, {{"prompt", "question"}}, "f.jsonl");
  });
  EXPECT_NE(err.find("f.jsonl:9"), std::string::npos) << err;
  EXPECT_NE(err.find(R"(got keys "q")"), std::string::npos) << err;
  // A number where text belongs is named by the file's column, with a way to make it text.
  Record number{json::parse(R"({"text": "t", "label": 1})"), 4};
  const std::string num = error_of([&] {
    rename_fields(number, {{"completion", "label"}}, "f.jsonl");
  });
  EXPECT_NE(num.find("f.jsonl:4"), std::string::npos) << num;
  EXPECT_NE(num.find("column \"label\", which --fields reads as completion, holds a JSON number"),
            std::string::npos)
      << num;
  EXPECT_NE(num.find("tostring"), std::string::npos) << num;
}

TEST(FieldMap, SuggestsTheFieldsForCommonColumnNames) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"question": "q", "answer": "a"})", "--fields prompt=question,completion=answer"},
      {R"({"input": "q", "output": "a"})", "--fields prompt=input,completion=output"},
      {R"({"prompt": "q", "response": "a"})", "--fields completion=response"},
      {R"({"query": "q", "response": "a"})", "--fields prompt=query,completion=response"},
      {R"({"instruction": "i", "context": "c", "response": "a"})",
       "--fields output=response,input=context"},
      {R"({"context": "c", "question": "q", "answer": "a"})",
       "--fields instruction=question,input=context,output=answer"},
      {R"({"problem": "q", "solution": "a"})", "--fields prompt=problem,completion=solution"}};
  for (const auto& [record, want] : cases) {
    const std::string got = suggest_field_map(json::parse(record));
    EXPECT_NE(got.find(want), std::string::npos) << record << ": " << got;
  }
  for (const char* none : {R"({"foo": "x", "bar": "y"})", R"({"question": "q"})",
                           R"({"question": 1, "answer": "a"})"}) {
    EXPECT_EQ(suggest_field_map(json::parse(none)), "") << none;
  }
}

}  // namespace
}  // namespace lorank
