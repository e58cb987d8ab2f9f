#include <gtest/gtest.h>

#include "error.h"
#include "hf_config.h"
#include "test_common.h"

using lorank::ModelConfig;
using lorank::test::asset;
using lorank::test::shared_path;

namespace {

ModelConfig parse(const std::string& text) { return lorank::parse_model_config(text, "config.json"); }

// Expects parse() to throw and returns the message.
std::string parse_error(const std::string& text) {
  try {
    parse(text);
  } catch (const lorank::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for: " << text;
  return "";
}

const char* k_minimal = R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
  "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128)";

}  // namespace

TEST(HfConfig, TinyLlamaTransformers5Form) {
  std::string dir = shared_path("models/tiny-llama");
  if (dir.empty()) GTEST_SKIP() << "shared/models/tiny-llama absent";
  ModelConfig c = lorank::load_model_config(dir);
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.n_vocab, 8192);
  EXPECT_EQ(c.n_embd, 256);
  EXPECT_EQ(c.n_layer, 4);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.n_ff, 768);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);  // only inside rope_parameters
  EXPECT_EQ(c.rope.type, "default");
  EXPECT_EQ(c.max_pos, 1024);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias || c.qk_norm);
  EXPECT_EQ(c.dtype, "bfloat16");  // "dtype", not "torch_dtype"
  EXPECT_EQ(c.bos_id.value_or(-1), 0);
  EXPECT_EQ(c.eos_ids, std::vector<int64_t>{1});
  EXPECT_EQ(lorank::count_parameters(c).total(), 5245184);  // pretraining.json "params"
}

TEST(HfConfig, SmallLlamaClassicForm) {
  std::string dir = shared_path("models/small-llama");
  if (dir.empty()) GTEST_SKIP() << "shared/models/small-llama absent";
  ModelConfig c = lorank::load_model_config(dir + "/config.json");
  EXPECT_EQ(c.n_embd, 512);
  EXPECT_EQ(c.n_layer, 6);
  EXPECT_EQ(c.n_head, 8);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.n_ff, 1536);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope.type, "default");  // "rope_scaling": null
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.dtype, "bfloat16");
  // model.safetensors.index.json metadata.total_parameters
  EXPECT_EQ(lorank::count_parameters(c).total(), 26483200);
}

TEST(HfConfig, Qwen2HasQkvBiasOnly) {
  ModelConfig c = lorank::load_model_config(asset("configs/qwen2.5-0.5b.json"));
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_EQ(c.head_dim, 64);  // 896 / 14, no head_dim key
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.sliding_window, 0);  // use_sliding_window false
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(lorank::count_parameters(c).total(), 494032768);  // published Qwen2.5-0.5B size
}

TEST(HfConfig, Qwen3HasQkNormAndExplicitHeadDim) {
  ModelConfig c = lorank::load_model_config(asset("configs/qwen3-0.6b.json"));
  EXPECT_EQ(c.model_type, "qwen3");
  EXPECT_EQ(c.head_dim, 128);  // != 1024 / 16
  EXPECT_EQ(c.q_dim(), 2048);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias || c.o_bias);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);  // integer in the file
  auto p = lorank::count_parameters(c);
  EXPECT_EQ(p.total() - p.embed, 440467456);  // by hand; Qwen publishes 0.44B non-embedding
}

// Qwen3Config's head_dim defaults to 128, where the other configs split hidden_size evenly.
TEST(HfConfig, Qwen3WithoutHeadDimTakesItsConfigsDefault) {
  std::string qwen3 = k_minimal;
  qwen3.replace(qwen3.find("llama"), 5, "qwen3");
  EXPECT_EQ(parse(qwen3 + "}").head_dim, 128);
  EXPECT_EQ(parse(std::string(k_minimal) + "}").head_dim, 16);  // 64 / 4
}

TEST(HfConfig, MistralSlidingWindow) {
  ModelConfig c = lorank::load_model_config(asset("configs/mistral-7b-v0.1.json"));
  EXPECT_EQ(c.model_type, "mistral");
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.eos_ids, std::vector<int64_t>{2});
  EXPECT_EQ(lorank::count_parameters(c).total(), 7241732096);  // published Mistral 7B size
}

TEST(HfConfig, MistralWindowDefaultAndNull) {
  std::string base = R"({"model_type": "mistral", "vocab_size": 100, "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128)";
  EXPECT_EQ(parse(base + "}").sliding_window, 4096);  // MistralConfig default
  EXPECT_EQ(parse(base + R"(, "sliding_window": null})").sliding_window, 0);
}

TEST(HfConfig, Llama3RopeScalingClassic) {
  ModelConfig c = lorank::load_model_config(asset("configs/llama-3.2-1b.json"));
  EXPECT_EQ(c.rope.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope.original_max_pos, 8192);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(lorank::count_parameters(c).total(), 1235814400);  // published Llama 3.2 1B size
}

TEST(HfConfig, Llama3RopeParametersTransformers5) {
  ModelConfig c = parse(std::string(k_minimal) + R"(, "rope_parameters": {"rope_type": "llama3",
    "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192}, "dtype": "float16"})");
  EXPECT_EQ(c.rope.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.dtype, "float16");
}

TEST(HfConfig, LegacyTypeKeyAndLinearScaling) {
  ModelConfig c = parse(std::string(k_minimal) + R"(, "rope_scaling": {"type": "linear", "factor": 2.0}})");
  EXPECT_EQ(c.rope.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope.factor, 2.0);
}

TEST(HfConfig, DefaultsFollowLlamaConfig) {
  ModelConfig c = parse(std::string(k_minimal) + "}");
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.max_pos, 2048);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.bos_id.has_value());
}

TEST(HfConfig, EosList) {
  ModelConfig c = parse(std::string(k_minimal) + R"(, "eos_token_id": [128001, 128008, 128009]})");
  EXPECT_EQ(c.eos_ids, (std::vector<int64_t>{128001, 128008, 128009}));
}

TEST(HfConfig, UnknownModelTypeListsSupported) {
  std::string msg = parse_error(R"({"model_type": "gpt2", "vocab_size": 10})");
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gpt2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("llama, mistral, qwen2, qwen3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hint:"), std::string::npos) << msg;
}

TEST(HfConfig, MissingKeyIsNamed) {
  std::string msg = parse_error(R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4})");
  EXPECT_NE(msg.find("\"intermediate_size\""), std::string::npos) << msg;
  msg = parse_error(std::string(k_minimal) + R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})");
  EXPECT_NE(msg.find("rope_scaling.low_freq_factor"), std::string::npos) << msg;
  msg = parse_error(R"({"vocab_size": 100})");
  EXPECT_NE(msg.find("model_type"), std::string::npos) << msg;
}

TEST(HfConfig, BadValuesAreRejected) {
  EXPECT_NE(parse_error(std::string(k_minimal) + R"(, "num_key_value_heads": 3})").find("multiple"),
            std::string::npos);
  const std::string yarn = parse_error(
      std::string(k_minimal) + R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})");
  EXPECT_NE(yarn.find("unsupported RoPE scaling \"yarn\""), std::string::npos) << yarn;
  EXPECT_EQ(yarn.find("Qwen's releases"), std::string::npos) << yarn;  // trained with YaRN maybe
  // Qwen adds YaRN only for long inputs: without it, shorter data reads as the release does.
  std::string qwen = k_minimal;
  qwen.replace(qwen.find("llama"), 5, "qwen2");
  const std::string qwen_yarn =
      parse_error(qwen + R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})");
  EXPECT_NE(qwen_yarn.find("config.json has no \"rope_scaling\" entry"), std::string::npos)
      << qwen_yarn;
  EXPECT_NE(parse_error(std::string(k_minimal) + R"(, "hidden_act": "gelu"})").find("silu"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "vocab_size": "100"})").find("vocab_size"),
            std::string::npos);
  EXPECT_NE(parse_error("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "qwen2", "vocab_size": 100, "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
    "use_sliding_window": true})").find("use_sliding_window"), std::string::npos);
}

TEST(HfConfig, MissingFileNamesPath) {
  try {
    lorank::load_model_config("/nonexistent/model");
    FAIL();
  } catch (const lorank::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model: model folder not found"),
              std::string::npos)
        << e.what();
  }
}
