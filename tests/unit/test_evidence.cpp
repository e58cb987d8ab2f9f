// Saved evidence: a round trip that keeps every number, and errors that name the file, the module
// and the key for what a hand-edited or truncated file can hold.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "error.h"
#include "evidence.h"

namespace lorank {
namespace {

Evidence sample() {
  Evidence e;
  e.context = {"models/x", "data.jsonl", "cuda:0", "exact", 0, 3};
  e.data.n_examples = 10;
  e.data.n_supervised = 300;
  e.data.n_tokens = 900;
  e.data.probe_examples = 5;
  e.data.probe_supervised = 150;
  e.data.probe_tokens = 450;
  e.data.base_loss = 2.5;
  ModuleEvidence m{"model.layers.0.mlp.up_proj", "up_proj", 0, 4, 6, {}};
  m.spectrum.singular_values = {3.0, 1.0 / 3.0, 1e-300, 0.0};
  m.spectrum.noise_spectrum = {0.5, 0.25, 0.125, 0.0};
  m.spectrum.noise_edges = {0.5, 0.49, 0.51};
  e.modules.push_back(m);
  return e;
}

std::string error_of(const std::string& text) {
  try {
    parse_evidence(text, "ev.json");
  } catch (const Error& err) {
    return err.what();
  }
  return "";
}

TEST(Evidence, RoundTripKeepsEveryNumber) {
  const Evidence e = sample();
  const Evidence back = parse_evidence(evidence_json(e), "ev.json");
  EXPECT_EQ(back.context.model_path, "models/x");
  EXPECT_EQ(back.context.grad_mode, "exact");
  EXPECT_EQ(back.context.trainings_fit, 3);
  EXPECT_EQ(back.data.n_supervised, 300);
  EXPECT_EQ(back.data.probe_tokens, 450);
  EXPECT_EQ(back.data.base_loss, 2.5);
  ASSERT_EQ(back.modules.size(), 1u);
  const auto& m = back.modules[0];
  EXPECT_EQ(m.name, e.modules[0].name);
  EXPECT_EQ(m.d_in, 4);
  EXPECT_EQ(m.d_out, 6);
  EXPECT_EQ(m.spectrum.singular_values, e.modules[0].spectrum.singular_values);  // exact doubles
  EXPECT_EQ(m.spectrum.noise_spectrum, e.modules[0].spectrum.noise_spectrum);
  EXPECT_EQ(m.spectrum.noise_edges, e.modules[0].spectrum.noise_edges);
  EXPECT_TRUE(m.spectrum.singular_values_whitened.empty());
  EXPECT_EQ(evidence_json(back), evidence_json(e));
  // Evidence saved before trainings_fit existed reads as one training at a time.
  auto j = nlohmann::json::parse(evidence_json(e));
  j.erase("trainings_fit");
  EXPECT_EQ(parse_evidence(j.dump(), "old.json").context.trainings_fit, 1);
}

TEST(Evidence, ErrorsNameTheFileModuleAndKey) {
  auto j = nlohmann::json::parse(evidence_json(sample()));
  EXPECT_NE(error_of("{\"lorank_evidence\": 1,").find("ev.json: not valid JSON"),
            std::string::npos);
  EXPECT_NE(error_of("[1]").find("JSON object"), std::string::npos);

  auto wrong = j;
  wrong["lorank_evidence"] = 7;
  EXPECT_NE(error_of(wrong.dump()).find("unknown evidence version"), std::string::npos);

  auto no_values = j;
  no_values["modules"][0].erase("singular_values");
  const std::string missing = error_of(no_values.dump());
  EXPECT_NE(missing.find("ev.json [model.layers.0.mlp.up_proj]"), std::string::npos) << missing;
  EXPECT_NE(missing.find("\"singular_values\""), std::string::npos) << missing;

  auto too_many = j;
  too_many["modules"][0]["singular_values"].push_back(0.1);
  EXPECT_NE(error_of(too_many.dump()).find("more singular values than the module has"),
            std::string::npos);

  auto text_value = j;
  text_value["modules"][0]["noise_edges"][1] = "big";
  EXPECT_NE(error_of(text_value.dump()).find("[noise_edges]: not a number"), std::string::npos);

  auto no_edges = j;
  no_edges["modules"][0]["noise_edges"] = nlohmann::json::array();
  EXPECT_NE(error_of(no_edges.dump()).find("no noise edges"), std::string::npos);

  auto no_modules = j;
  no_modules["modules"] = nlohmann::json::array();
  EXPECT_NE(error_of(no_modules.dump()).find("\"modules\""), std::string::npos);

  auto bad_data = j;
  bad_data["data"]["examples"] = 1.5;
  EXPECT_NE(error_of(bad_data.dump()).find("ev.json [data]"), std::string::npos);

  // Values no probe can measure: a damaged (or hand-edited) file, refused.
  auto negative = j;
  negative["data"]["supervised_tokens"] = -5;
  EXPECT_NE(error_of(negative.dump()).find("\"supervised_tokens\" is negative"), std::string::npos);
  negative = j;
  negative["data"]["base_loss"] = -5.0;
  EXPECT_NE(error_of(negative.dump()).find("\"base_loss\" is negative"), std::string::npos);
  negative = j;
  negative["modules"][0]["singular_values"][0] = -1.0;
  EXPECT_NE(error_of(negative.dump()).find("a negative singular value"), std::string::npos);
}

TEST(Evidence, DuplicatesRoundTripAndOldFilesHaveNone) {
  Evidence e = sample();
  e.data.n_duplicates = 7;
  EXPECT_EQ(parse_evidence(evidence_json(e), "ev.json").data.n_duplicates, 7);
  auto j = nlohmann::json::parse(evidence_json(e));
  j["data"].erase("duplicates");
  EXPECT_EQ(parse_evidence(j.dump(), "old.json").data.n_duplicates, 0);
}

}  // namespace
}  // namespace lorank
