// Symbol visibility: libgemstream is built with hidden visibility; the public API is marked.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define GEMSTREAM_API __attribute__((visibility("default")))
#else
#define GEMSTREAM_API
#endif
