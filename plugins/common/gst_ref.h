// RAII for GLib/GStreamer references at the C boundary.
#pragma once

#include <gst/gst.h>

#include <memory>
#include <utility>

namespace gemstream::gst {

// Ownership traits per type family. sink() turns a transfer-full pointer into a plain strong
// reference: GstObjects may arrive floating (from a factory), mini objects never do.
template <typename T> struct RefTraits;

#define GEMSTREAM_GST_OBJECT_TRAITS(T)                                                         \
  template <> struct RefTraits<T> {                                                          \
    static T *ref(T *p) { return static_cast<T *>(gst_object_ref(p)); }                       \
    static void unref(T *p) { gst_object_unref(p); }                                          \
    static void sink(T *p) {                                                                  \
      if (g_object_is_floating(p))                                                            \
        gst_object_ref_sink(p);                                                               \
    }                                                                                         \
  };
#define GEMSTREAM_MINI_OBJECT_TRAITS(T, ref_fn, unref_fn)                                      \
  template <> struct RefTraits<T> {                                                          \
    static T *ref(T *p) { return ref_fn(p); }                                                 \
    static void unref(T *p) { unref_fn(p); }                                                  \
    static void sink(T *) {}                                                                  \
  };

GEMSTREAM_GST_OBJECT_TRAITS(GstElement)
GEMSTREAM_GST_OBJECT_TRAITS(GstBus)
GEMSTREAM_GST_OBJECT_TRAITS(GstPad)
GEMSTREAM_MINI_OBJECT_TRAITS(GstMessage, gst_message_ref, gst_message_unref)
GEMSTREAM_MINI_OBJECT_TRAITS(GstBuffer, gst_buffer_ref, gst_buffer_unref)
GEMSTREAM_MINI_OBJECT_TRAITS(GstCaps, gst_caps_ref, gst_caps_unref)
GEMSTREAM_MINI_OBJECT_TRAITS(GstSample, gst_sample_ref, gst_sample_unref)
#undef GEMSTREAM_GST_OBJECT_TRAITS
#undef GEMSTREAM_MINI_OBJECT_TRAITS

// A strong reference. adopt() takes a transfer-full pointer (sinking floating GstObjects),
// retain() takes a transfer-none pointer and adds a reference.
template <typename T> class Ref {
public:
  Ref() = default;
  ~Ref() { reset(); }
  Ref(const Ref &o) : p_(o.p_ ? RefTraits<T>::ref(o.p_) : nullptr) {}
  Ref(Ref &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Ref &operator=(Ref o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }

  static Ref adopt(T *p) {
    Ref r;
    if (p)
      RefTraits<T>::sink(p);
    r.p_ = p;
    return r;
  }
  static Ref retain(T *p) {
    Ref r;
    r.p_ = p ? RefTraits<T>::ref(p) : nullptr;
    return r;
  }

  T *get() const noexcept { return p_; }
  T *release() noexcept { return std::exchange(p_, nullptr); }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  void reset() noexcept {
    if (p_)
      RefTraits<T>::unref(std::exchange(p_, nullptr));
  }

private:
  T *p_ = nullptr;
};

struct GFreeDeleter {
  void operator()(void *p) const noexcept { g_free(p); }
};
using GCharPtr = std::unique_ptr<gchar, GFreeDeleter>;

struct GErrorDeleter {
  void operator()(GError *e) const noexcept { g_error_free(e); }
};
using GErrorPtr = std::unique_ptr<GError, GErrorDeleter>;

} // namespace gemstream::gst
