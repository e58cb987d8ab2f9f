// The loadable module that wraps libsentencepiece behind a C interface (see tokenizer_spm_module.h
// for why it is a separate module). Nothing allocated here is freed by the caller or vice versa:
// results go out through sink callbacks.
#include "tokenizer_spm_module.h"

#include <sentencepiece_processor.h>

#include <string>
#include <vector>

namespace {

using Processor = sentencepiece::SentencePieceProcessor;

const Processor& as_processor(const void* handle) {
  return *static_cast<const Processor*>(handle);
}

}  // namespace

extern "C" {

LORANK_SPM_EXPORT void* lorank_spm_load(const char* path, lorank_spm_bytes_sink error,
                                        void* context) {
  auto* sp = new Processor();
  auto status = sp->Load(path);
  if (!status.ok()) {
    std::string message = status.ToString();
    error(context, message.data(), message.size());
    delete sp;
    return nullptr;
  }
  return sp;
}

LORANK_SPM_EXPORT void lorank_spm_free(void* handle) {
  delete static_cast<Processor*>(handle);
}

LORANK_SPM_EXPORT int lorank_spm_piece_size(const void* handle) {
  return as_processor(handle).GetPieceSize();
}

LORANK_SPM_EXPORT int lorank_spm_bos_id(const void* handle) {
  return as_processor(handle).bos_id();
}

LORANK_SPM_EXPORT int lorank_spm_is_special(const void* handle, int id) {
  const Processor& sp = as_processor(handle);
  return sp.IsControl(id) || sp.IsUnknown(id);
}

LORANK_SPM_EXPORT int lorank_spm_piece_to_id(const void* handle, const char* piece, size_t size) {
  const Processor& sp = as_processor(handle);
  std::string text(piece, size);
  int id = sp.PieceToId(text);
  return id >= 0 && sp.IdToPiece(id) == text ? id : -1;  // PieceToId falls back to unk
}

LORANK_SPM_EXPORT void lorank_spm_id_to_piece(const void* handle, int id, lorank_spm_bytes_sink out,
                                              void* context) {
  const std::string& piece = as_processor(handle).IdToPiece(id);
  out(context, piece.data(), piece.size());
}

LORANK_SPM_EXPORT int lorank_spm_encode(const void* handle, const char* text, size_t size,
                                        lorank_spm_ids_sink out, lorank_spm_bytes_sink error,
                                        void* context) {
  std::vector<int> ids;
  auto status = as_processor(handle).Encode(std::string_view(text, size), &ids);
  if (!status.ok()) {
    std::string message = status.ToString();
    error(context, message.data(), message.size());
    return 1;
  }
  out(context, ids.data(), ids.size());
  return 0;
}

LORANK_SPM_EXPORT int lorank_spm_decode(const void* handle, const int* ids, size_t count,
                                        lorank_spm_bytes_sink out, lorank_spm_bytes_sink error,
                                        void* context) {
  std::string text;
  auto status = as_processor(handle).Decode(std::vector<int>(ids, ids + count), &text);
  if (!status.ok()) {
    std::string message = status.ToString();
    error(context, message.data(), message.size());
    return 1;
  }
  out(context, text.data(), text.size());
  return 0;
}

}  // extern "C"
