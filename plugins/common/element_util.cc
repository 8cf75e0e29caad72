#include "common/element_util.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace gemstream::gst {
namespace {

struct DomainCode {
  GQuark domain;
  gint code;
};

DomainCode domain_code_for(ErrorKind kind) {
  switch (kind) {
  case ErrorKind::Unauthenticated:
  case ErrorKind::PermissionDenied:
    return {GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_AUTHORIZED};
  case ErrorKind::NotFound:
    return {GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND};
  case ErrorKind::InvalidArgument:
    return {GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS};
  case ErrorKind::ResourceExhausted:
    return {GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_BUSY};
  case ErrorKind::Network:
    return {GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ};
  case ErrorKind::Internal:
  case ErrorKind::Unavailable:
  case ErrorKind::DeadlineExceeded:
  case ErrorKind::Timeout:
    return {GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_READ};
  case ErrorKind::Protocol:
    return {GST_STREAM_ERROR, GST_STREAM_ERROR_DECODE};
  case ErrorKind::SafetyFiltered:
    return {GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED};
  case ErrorKind::Config:
    return {GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS};
  case ErrorKind::Io:
    return {GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_WRITE};
  case ErrorKind::TooLarge:
    return {GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NO_SPACE_LEFT};
  case ErrorKind::Cancelled:
  case ErrorKind::BudgetExceeded:
    return {GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED};
  }
  return {GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_FAILED};
}

// Short, actionable text for the user; the engine message goes into the debug string.
std::string user_text(const Error &e, const char *what) {
  std::string prefix = what ? std::string(what) + ": " : std::string();
  switch (e.kind()) {
  case ErrorKind::Unauthenticated:
  case ErrorKind::PermissionDenied:
    return prefix + "The API key was rejected (" + e.message() +
           "). Check GOOGLE_API_KEY or the api-key property.";
  case ErrorKind::ResourceExhausted:
    return prefix + "Quota or rate limit exceeded, retries exhausted: " + e.message();
  case ErrorKind::Network:
    return prefix + "Could not reach the service: " + e.message();
  default:
    return prefix + e.message();
  }
}

} // namespace

void post_engine_error(GstElement *element, const Error &error, const char *what,
                       const char *file, const char *function, int line) {
  DomainCode dc = domain_code_for(error.kind());
  GstStructure *details = gst_structure_new("details", "error-kind", G_TYPE_STRING,
                                            to_string(error.kind()), nullptr);
  if (error.http_status() > 0) {
    gst_structure_set(details, "http-status-code", G_TYPE_UINT, static_cast<guint>(error.http_status()),
                      "rpc-status", G_TYPE_STRING, error.status().c_str(), "request-path",
                      G_TYPE_STRING, error.path().c_str(), nullptr);
  }
  if (!error.reason().empty())
    gst_structure_set(details, "reason", G_TYPE_STRING, error.reason().c_str(), nullptr);
  if (auto ra = error.retry_after())
    gst_structure_set(details, "retry-after", G_TYPE_UINT,
                      static_cast<guint>((ra->count() + 999) / 1000), nullptr);
  std::string text = user_text(error, what);
  // Error::what() is built without secrets (no key, no query strings).
  gst_element_message_full_with_details(element, GST_MESSAGE_ERROR, dc.domain, dc.code,
                                        g_strdup(text.c_str()), g_strdup(error.what()), file,
                                        function, line, details);
}

void post_exception(GstElement *element, const std::exception &e, const char *file,
                    const char *function, int line) {
  gst_element_message_full(element, GST_MESSAGE_ERROR, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_FAILED,
                           g_strdup_printf("Internal error: %s", e.what()), nullptr, file,
                           function, line);
}

void post_cost_message(GstElement *element, const char *kind, const std::string &model_id,
                       const std::string &model_key, double usd, double units) {
  GstStructure *s = gst_structure_new("gemstream-cost", "kind", G_TYPE_STRING, kind, "model",
                                      G_TYPE_STRING, model_id.c_str(), "model-key", G_TYPE_STRING,
                                      model_key.c_str(), "usd", G_TYPE_DOUBLE, usd, "units",
                                      G_TYPE_DOUBLE, units, nullptr);
  gst_element_post_message(element, gst_message_new_element(GST_OBJECT(element), s));
}

std::string value_to_string(const GValue *value) {
  const gchar *s = g_value_get_string(value);
  return s ? std::string(s) : std::string();
}

std::string read_file(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorKind::Io, "cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace gemstream::gst
