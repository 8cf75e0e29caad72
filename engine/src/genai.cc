#include "gemstream/genai.h"

#include "codec.h"

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <utility>

namespace gemstream {
namespace {

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

std::string join(const std::vector<std::string> &items, const char *sep) {
  std::string out;
  for (const std::string &s : items) {
    if (!out.empty()) {
      out += sep;
    }
    out += s;
  }
  return out;
}

// Operation names are resource paths the caller may hand back from an earlier run
// ("resume it with operation=..."): allow exactly what a resource path can hold, so a name can
// never change the host, the query or climb out of the API version.
void check_operation_name(const std::string &name) {
  bool valid = !name.empty() && name.front() != '/' && name.find("..") == std::string::npos &&
               name.find("//") == std::string::npos;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '/';
    valid = valid && ok;
  }
  if (!valid) {
    throw Error(
        ErrorKind::InvalidArgument,
        "invalid operation name \"" + name +
            "\": expected something like \"models/veo-3.0-generate-001/operations/abc123\"");
  }
}

HttpResponse post_json(HttpClient &http, const ClientOptions &options, std::string url,
                       std::string body, const CancelToken &cancel, const RetryObserver &on_retry) {
  HttpRequest req;
  req.method = "POST";
  req.url = std::move(url);
  req.headers.emplace_back("Content-Type", "application/json");
  req.body = std::move(body);
  req.timeout = options.request_timeout;
  return http.request(req, options.retry, cancel, on_retry);
}

void remove_quietly(const std::string &path) {
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

ImageResult image_from_generate_content(codec::GenerateContentResponse resp) {
  ImageResult result;
  result.model_version = resp.model_version;
  if (resp.usage) {
    result.usage = resp.usage->summary();
  }
  for (codec::Candidate &cand : resp.candidates) {
    for (codec::Part &part : cand.content.parts) {
      auto *blob = std::get_if<codec::BlobPart>(&part);
      if (blob != nullptr && result.bytes.empty() && blob->mime_type.rfind("image/", 0) == 0) {
        result.mime_type = std::move(blob->mime_type);
        result.bytes = std::move(blob->data);
      }
    }
    result.text += cand.text();
  }
  if (!result.bytes.empty()) {
    return result;
  }

  if (!resp.block_reason.empty()) {
    std::string msg = "the prompt was blocked (blockReason " + resp.block_reason + ")";
    if (!resp.block_reason_message.empty()) {
      msg += ": " + resp.block_reason_message;
    }
    throw Error(ErrorKind::SafetyFiltered, msg);
  }
  if (resp.candidates.empty()) {
    throw Error(ErrorKind::Protocol,
                "malformed generateContent response: neither candidates nor promptFeedback");
  }
  const codec::Candidate &first = resp.candidates.front();
  std::string msg = "the model returned no image (finishReason " +
                    (first.finish_reason.empty() ? std::string("unset") : first.finish_reason) +
                    ")";
  // The model usually says why in its text (e.g. it will not depict a real person).
  std::string why = !first.finish_message.empty() ? first.finish_message : result.text;
  if (!why.empty()) {
    msg += ": " + why;
  } else {
    msg += "; rephrase the prompt or try another model";
  }
  throw Error(ErrorKind::SafetyFiltered, msg);
}

ImageResult image_from_predict(codec::PredictResponse resp) {
  std::vector<std::string> reasons;
  for (codec::ImagenPrediction &p : resp.predictions) {
    if (!p.bytes.empty()) {
      ImageResult result;
      result.mime_type = std::move(p.mime_type);
      result.bytes = std::move(p.bytes);
      return result;
    }
    reasons.push_back(p.rai_filtered_reason);
  }
  if (reasons.empty()) {
    // Imagen answers {} when every sample was filtered and no reason was requested.
    throw Error(ErrorKind::SafetyFiltered,
                "the model returned no image and no reason; the prompt was probably filtered");
  }
  throw Error(ErrorKind::SafetyFiltered, "the model returned no image: " + join(reasons, "; "));
}

GenerateResult result_from_generate_content(codec::GenerateContentResponse resp) {
  if (!resp.block_reason.empty()) {
    std::string msg = "the prompt was blocked (blockReason " + resp.block_reason + ")";
    if (!resp.block_reason_message.empty()) {
      msg += ": " + resp.block_reason_message;
    }
    throw Error(ErrorKind::SafetyFiltered, msg);
  }
  if (resp.candidates.empty()) {
    throw Error(ErrorKind::Protocol,
                "malformed generateContent response: neither candidates nor promptFeedback");
  }
  GenerateResult result;
  codec::Candidate &first = resp.candidates.front();
  for (codec::Part &part : first.content.parts) {
    if (auto *text = std::get_if<codec::TextPart>(&part); text != nullptr && !text->thought) {
      result.text += text->text;
      result.text_parts.push_back(std::move(text->text));
    } else if (auto *call = std::get_if<codec::FunctionCallPart>(&part)) {
      result.function_calls.push_back({call->id, call->name, call->args.dump()});
    }
  }
  result.finish_reason = first.finish_reason;
  if (first.grounding_metadata) {
    // Decoded once here so that a malformed one fails the call, not a later display.
    codec::decode_grounding_metadata(*first.grounding_metadata, "candidates[0].groundingMetadata");
    result.grounding_metadata_json = first.grounding_metadata->dump();
  }
  if (resp.usage) {
    result.usage = resp.usage->details();
  }
  result.model_version = std::move(resp.model_version);
  result.response_id = std::move(resp.response_id);
  const bool empty = result.text_parts.empty() && result.function_calls.empty();
  if (empty && (first.finish_reason == "SAFETY" || first.finish_reason == "PROHIBITED_CONTENT" ||
                first.finish_reason == "BLOCKLIST" || first.finish_reason == "SPII" ||
                first.finish_reason == "RECITATION")) {
    std::string msg = "the model refused to answer (finishReason " + first.finish_reason + ")";
    if (!first.finish_message.empty()) {
      msg += ": " + first.finish_message;
    }
    throw Error(ErrorKind::SafetyFiltered, msg);
  }
  return result;
}

} // namespace

InputPart InputPart::from_text(std::string text) {
  InputPart p;
  p.type = Type::Text;
  p.text = std::move(text);
  return p;
}

InputPart InputPart::from_bytes(std::string mime_type, std::string bytes) {
  InputPart p;
  p.type = Type::InlineData;
  p.mime_type = std::move(mime_type);
  p.data = std::move(bytes);
  return p;
}

InputPart InputPart::from_file(std::string mime_type, std::string file_uri) {
  InputPart p;
  p.type = Type::FileData;
  p.mime_type = std::move(mime_type);
  p.file_uri = std::move(file_uri);
  return p;
}

GenAiClient::GenAiClient(Endpoint endpoint, ClientOptions options)
    : endpoint_(std::move(endpoint)), options_(std::move(options)),
      http_(std::make_unique<HttpClient>(endpoint_.api_key)) {
  while (!endpoint_.base_url.empty() && endpoint_.base_url.back() == '/') {
    endpoint_.base_url.pop_back();
  }
  if (endpoint_.api_version.empty()) {
    endpoint_.api_version = "v1beta";
  }
}

GenAiClient::~GenAiClient() = default;

std::string GenAiClient::url_for(const std::string &api_path) const {
  std::string_view path = api_path;
  while (!path.empty() && path.front() == '/') {
    path.remove_prefix(1);
  }
  return endpoint_.base_url + "/" + endpoint_.api_version + "/" + std::string(path);
}

ImageResult GenAiClient::generate_image(const ImageRequest &req, const CancelToken &cancel,
                                        const RetryObserver &on_retry) {
  const std::string model = codec::model_resource(req.model_id);
  if (req.api == ImageApi::Predict) {
    HttpResponse resp = post_json(*http_, options_, url_for(model + ":predict"),
                                  codec::encode_imagen_request(req).dump(), cancel, on_retry);
    return image_from_predict(codec::decode_predict_response(resp.body));
  }
  HttpResponse resp =
      post_json(*http_, options_, url_for(model + ":generateContent"),
                codec::encode_image_generation_request(req).dump(), cancel, on_retry);
  return image_from_generate_content(codec::decode_generate_content_response(resp.body));
}

GenerateResult GenAiClient::generate_content(const GenerateRequest &req,
                                             const CancelToken &cancel,
                                             const RetryObserver &on_retry) {
  const std::string model = codec::model_resource(req.model_id);
  HttpResponse resp =
      post_json(*http_, options_, url_for(model + ":generateContent"),
                codec::encode_generate_content_request(req).dump(), cancel, on_retry);
  return result_from_generate_content(codec::decode_generate_content_response(resp.body));
}

Operation GenAiClient::start_video(const VideoRequest &req, const CancelToken &cancel,
                                   const RetryObserver &on_retry) {
  const std::string model = codec::model_resource(req.model_id);
  HttpResponse resp = post_json(*http_, options_, url_for(model + ":predictLongRunning"),
                                codec::encode_video_request(req).dump(), cancel, on_retry);
  return codec::decode_operation(resp.body);
}

Operation GenAiClient::get_operation(const std::string &name, const CancelToken &cancel,
                                     const RetryObserver &on_retry) {
  check_operation_name(name);
  HttpRequest req;
  req.method = "GET";
  req.url = url_for(name);
  req.timeout = options_.request_timeout;
  HttpResponse resp = http_->request(req, options_.retry, cancel, on_retry);
  return codec::decode_operation(resp.body);
}

Operation
GenAiClient::wait_operation(const std::string &name, std::chrono::milliseconds poll_interval,
                            std::chrono::milliseconds timeout, const CancelToken &cancel,
                            const std::function<void(int, std::chrono::milliseconds)> &on_poll,
                            const RetryObserver &on_retry) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto deadline = start + timeout;
  for (int poll = 1;; ++poll) {
    Operation op = get_operation(name, cancel, on_retry);
    if (op.done) {
      if (op.error) {
        throw *op.error;
      }
      if (op.video_uris.empty()) {
        if (op.rai_filtered_count > 0 || !op.rai_filtered_reasons.empty()) {
          std::string msg = "the model returned no video";
          msg += op.rai_filtered_reasons.empty() ? " (" + std::to_string(op.rai_filtered_count) +
                                                       " sample(s) filtered, no reason given)"
                                                 : ": " + join(op.rai_filtered_reasons, "; ");
          throw Error(ErrorKind::SafetyFiltered, msg);
        }
        throw Error(ErrorKind::Protocol,
                    "malformed operation response: operation " + name +
                        " finished without a video, an error or a filter reason");
      }
      return op;
    }
    const auto now = clock::now();
    if (on_poll) {
      on_poll(poll, std::chrono::duration_cast<std::chrono::milliseconds>(now - start));
    }
    if (now >= deadline) {
      throw Error(ErrorKind::Timeout, "operation " + name + " did not finish within " +
                                          seconds_text(timeout) +
                                          " s; resume it with operation=" + name);
    }
    // The last wait is cut short so one final poll lands on the deadline.
    auto wait = std::min(poll_interval, std::chrono::duration_cast<std::chrono::milliseconds>(
                                            deadline - now + std::chrono::milliseconds(1)));
    if (!cancel.wait_for(wait)) {
      throw Error(ErrorKind::Cancelled, "cancelled while waiting for operation " + name);
    }
  }
}

std::uint64_t
GenAiClient::download_video(const std::string &uri, const std::string &path,
                            const CancelToken &cancel,
                            const std::function<void(std::uint64_t, std::uint64_t)> &on_progress,
                            const RetryObserver &on_retry) {
  if (path.empty()) {
    throw Error(ErrorKind::InvalidArgument, "no output path given for the video download");
  }
  const std::string id = codec::file_id_from_uri(uri);
  HttpRequest req;
  req.method = "GET";
  // Fetched through our own base URL: the service's uri names Google's host even when a proxy or
  // the local backend is configured.
  req.url = url_for("files/" + id + ":download?alt=media");
  req.timeout = options_.request_timeout;
  req.follow_redirects = true;
  req.download_path = path;
  req.max_body_bytes = options_.max_download_bytes;
  req.on_progress = on_progress;
  // HttpClient writes "<path>.part" and removes it on any failure, so errors leave no file.
  const HttpResponse resp = http_->request(req, options_.retry, cancel, on_retry);

  // Content-Length counts encoded bytes; with a Content-Encoding curl hands us decoded ones.
  std::optional<std::uint64_t> expected;
  const auto length = resp.headers.find("content-length");
  const auto encoding = resp.headers.find("content-encoding");
  if (length != resp.headers.end() &&
      (encoding == resp.headers.end() || encoding->second == "identity")) {
    std::uint64_t n = 0;
    const std::string &v = length->second;
    if (auto [end, err] = std::from_chars(v.data(), v.data() + v.size(), n);
        err == std::errc() && end == v.data() + v.size()) {
      expected = n;
    }
  }
  std::error_code ec;
  const std::uint64_t on_disk = std::filesystem::file_size(path, ec);
  if (ec) {
    throw Error(ErrorKind::Io, "cannot read the downloaded video " + path + ": " + ec.message());
  }
  if (on_disk == 0) {
    remove_quietly(path);
    throw Error(ErrorKind::Protocol, "the service sent an empty video for file " + id);
  }
  if (on_disk != resp.body_bytes || (expected && on_disk != *expected)) {
    remove_quietly(path);
    throw Error(ErrorKind::Network,
                "video download of file " + id + " was truncated: got " + std::to_string(on_disk) +
                    " of " + std::to_string(expected.value_or(resp.body_bytes)) + " bytes");
  }
  return on_disk;
}

} // namespace gemstream
