// How a record's conversation becomes the chat template's input: its messages (OpenAI, ShareGPT or
// TRL's conversational shape), their tool calls, and the record's tool definitions.
#pragma once

#include <string>
#include <vector>

#include "chat_template.h"
#include "records.h"

namespace lorank {

// Where a record keeps its conversation: "messages" [{role, content}], ShareGPT's
// "conversations" [{from, value}], or TRL's conversational "prompt" + "completion" lists.
struct ConversationShape {
  std::vector<const char*> keys;
  const char* role_key = "role";
  const char* content_key = "content";
  bool sharegpt = false;
};

ConversationShape conversation_shape(const nlohmann::ordered_json& fields);

// The messages in order; errors name `where` (file:line) and the item ("messages[2]").
std::vector<ChatMessage> read_messages(const Record& rec, const std::string& where);
ChatTools read_tools(const Record& rec, const std::string& where);

}  // namespace lorank
