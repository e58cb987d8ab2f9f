// The markers and texts that both recognising a chat_template and rendering one rely on.
#pragma once

namespace lorank::chat_markers {

inline constexpr const char* k_header_start = "<|start_header_id|>";
inline constexpr const char* k_im_start = "<|im_start|>";
inline constexpr const char* k_im_end = "<|im_end|>";

// Qwen2.5's and Qwen3's tool prompt, around the tools' tojson lines.
inline constexpr const char* k_qwen_tools_head =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\n<tools>";
inline constexpr const char* k_qwen_tools_tail =
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
    "\"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";

}  // namespace lorank::chat_markers
