// Test helpers for pipelines: run until a condition, collect bus messages.
#pragma once

#include <gst/gst.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace gemstream::test {

// Owns a pipeline built from a launch line; collects every bus message.
class Pipeline {
public:
  explicit Pipeline(const std::string &launch) {
    GError *err = nullptr;
    pipeline_ = gst_parse_launch(launch.c_str(), &err);
    if (err) {
      error_ = err->message;
      g_error_free(err);
    }
    if (pipeline_)
      bus_ = gst_element_get_bus(pipeline_);
  }
  ~Pipeline() {
    if (pipeline_) {
      gst_element_set_state(pipeline_, GST_STATE_NULL);
      gst_object_unref(pipeline_);
    }
    for (auto *m : messages_)
      gst_message_unref(m);
    if (bus_)
      gst_object_unref(bus_);
  }
  GstElement *get() const { return pipeline_; }
  const std::string &parse_error() const { return error_; }
  GstElement *by_name(const char *name) const {
    return gst_bin_get_by_name(GST_BIN(pipeline_), name);  // transfer full
  }

  // Plays until EOS or ERROR (or timeout); returns the terminating message type
  // (GST_MESSAGE_UNKNOWN on timeout).
  GstMessageType run(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    gst_element_set_state(pipeline_, GST_STATE_PLAYING);
    return wait_for(GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR), timeout);
  }

  // Pops messages (recording all) until one of `types` arrives.
  GstMessageType wait_for(GstMessageType types, std::chrono::milliseconds timeout,
                          const std::function<bool(GstMessage *)> &match = {}) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return GST_MESSAGE_UNKNOWN;
      GstMessage *m = gst_bus_timed_pop(bus_, left.count());
      if (!m)
        return GST_MESSAGE_UNKNOWN;
      messages_.push_back(m);
      // Extended types (stream collections, ...) share low bits with the basic ones.
      const GstMessageType type = GST_MESSAGE_TYPE(m);
      if (!(type & GST_MESSAGE_EXTENDED) && (type & types) && (!match || match(m)))
        return GST_MESSAGE_TYPE(m);
    }
  }

  std::vector<GstMessage *> messages(GstMessageType type) const {
    std::vector<GstMessage *> out;
    for (auto *m : messages_)
      if (GST_MESSAGE_TYPE(m) == type)
        out.push_back(m);
    return out;
  }
  // Element messages with this structure name.
  std::vector<const GstStructure *> element_messages(const char *name) const {
    std::vector<const GstStructure *> out;
    for (auto *m : messages_)
      if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ELEMENT &&
          gst_structure_has_name(gst_message_get_structure(m), name))
        out.push_back(gst_message_get_structure(m));
    return out;
  }
  GstMessage *first_error() const {
    for (auto *m : messages_)
      if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR)
        return m;
    return nullptr;
  }

private:
  GstElement *pipeline_ = nullptr;
  GstBus *bus_ = nullptr;
  std::string error_;
  std::vector<GstMessage *> messages_;
};

} // namespace gemstream::test
