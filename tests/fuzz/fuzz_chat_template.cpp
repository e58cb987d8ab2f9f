// libFuzzer target: tokenizer_config.json's chat_template text through format recognition, then a
// conversation (with and without a system message) rendered in the recognised format.
#include "chat_template.h"
#include "error.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<lorank::ChatMessage> with_system = {{"system", "Be brief."},
                                                               {"user", " Hi?\n"},
                                                               {"assistant", "Hello. "},
                                                               {"user", "And?"},
                                                               {"assistant", " Bye"}};
  static const std::vector<lorank::ChatMessage> without_system(with_system.begin() + 1,
                                                               with_system.end());
  try {
    lorank::ChatFormat format =
        lorank::detect_chat_format(lorank::fuzz::bytes(data, size), "tokenizer_config.json");
    for (const auto* messages : {&without_system, &with_system}) {
      try {
        lorank::ChatTexts texts =
            lorank::render_chat(format, *messages, "<s>", "</s>", "d.jsonl:1");
        volatile size_t sink = texts.prompt.size() + texts.completion.size();
        (void)sink;
      } catch (const lorank::Error&) {  // e.g. a format with no place for a system message
      }
    }
  } catch (const lorank::Error&) {
  }
  return 0;
}
