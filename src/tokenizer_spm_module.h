// C interface of the SentencePiece module (liblorank_spm.so). Debian's libsentencepiece exports its
// bundled protobuf 3.14, which clashes with LibTorch's libprotobuf 3.21 in one process (a crash at
// start-up, before main). tokenizer_spm.cpp therefore dlopen()s this module RTLD_LOCAL |
// RTLD_DEEPBIND, so libsentencepiece binds to its own protobuf and exports nothing globally.
#pragma once

#include <stddef.h>

#define LORANK_SPM_EXPORT __attribute__((visibility("default")))

extern "C" {

typedef void (*lorank_spm_bytes_sink)(void* context, const char* data, size_t size);
typedef void (*lorank_spm_ids_sink)(void* context, const int* ids, size_t count);

// Null on failure, with the reason sent to `error`.
void* lorank_spm_load(const char* path, lorank_spm_bytes_sink error, void* context);
void lorank_spm_free(void* handle);
int lorank_spm_piece_size(const void* handle);
int lorank_spm_bos_id(const void* handle);
int lorank_spm_is_special(const void* handle, int id);  // control or unknown piece
int lorank_spm_piece_to_id(const void* handle, const char* piece, size_t size);  // -1: none
void lorank_spm_id_to_piece(const void* handle, int id, lorank_spm_bytes_sink out, void* context);
// 0 on success; otherwise the reason goes to `error`.
int lorank_spm_encode(const void* handle, const char* text, size_t size, lorank_spm_ids_sink out,
                      lorank_spm_bytes_sink error, void* context);
int lorank_spm_decode(const void* handle, const int* ids, size_t count, lorank_spm_bytes_sink out,
                      lorank_spm_bytes_sink error, void* context);
}
