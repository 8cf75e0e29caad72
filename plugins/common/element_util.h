// Helpers shared by the gemstream elements: error posting, the exception guard, element
// messages and string properties.
#pragma once

#include <gemstream/error.h>
#include <gst/gst.h>

#include <exception>
#include <string>

namespace gemstream::gst {

// Posts a GST_MESSAGE_ERROR for an engine error, with the domain/code the style guide names
// (401/403 and bad keys → RESOURCE/NOT_AUTHORIZED, 404 → NOT_FOUND, network → OPEN_READ,
// protocol → STREAM/DECODE, ...) and a details structure (http-status-code, rpc-status,
// retry-after, request-path, error-kind). `what` says what the element was doing.
void post_engine_error(GstElement *element, const Error &error, const char *what,
                       const char *file, const char *function, int line);

#define GEM_POST_ENGINE_ERROR(el, err, what)                                                    \
  ::gemstream::gst::post_engine_error(GST_ELEMENT(el), (err), (what), __FILE__, GST_FUNCTION,   \
                                      __LINE__)

// Posts an unexpected C++ exception as LIBRARY/FAILED.
void post_exception(GstElement *element, const std::exception &e, const char *file,
                    const char *function, int line);

// Runs `fn`; any exception becomes an error message on the bus and `on_error` is returned.
// Every vfunc that calls into C++ goes through this: no exception crosses into C.
template <typename R, typename F>
R guarded(GstElement *element, R on_error, const char *function, F &&fn) noexcept {
  try {
    return fn();
  } catch (const Error &e) {
    post_engine_error(element, e, nullptr, __FILE__, function, __LINE__);
  } catch (const std::exception &e) {
    post_exception(element, e, __FILE__, function, __LINE__);
  } catch (...) {
    post_exception(element, std::runtime_error("unknown exception"), __FILE__, function, __LINE__);
  }
  return on_error;
}

#define GEM_GUARDED(el, on_error, ...) ::gemstream::gst::guarded((el), (on_error), GST_FUNCTION, __VA_ARGS__)

// The `gemstream-cost` element message: kind ("image", "video"), model (id), model-key,
// usd (double), units (images or seconds).
void post_cost_message(GstElement *element, const char *kind, const std::string &model_id,
                       const std::string &model_key, double usd, double units);

// g_value helpers for std::string properties.
std::string value_to_string(const GValue *value);

// Reads a whole file (image-location). Throws Error(Io) with the path and errno text.
std::string read_file(const std::string &path);

} // namespace gemstream::gst
