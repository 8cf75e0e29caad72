// libgemstream-pipeline: runs launch lines and pipeline files, bus messages → typed events.
#include "gemstream/pipeline.h"

#include "gemstream/error.h"

#include <gst/gst.h>
#include <nlohmann/json.hpp>

#include <dlfcn.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#ifndef GEMSTREAM_PIPELINE_BUILD_LIB_DIR
#error "the build must define GEMSTREAM_PIPELINE_BUILD_LIB_DIR"
#endif

GST_DEBUG_CATEGORY_STATIC(gem_pipeline_debug);
#define GST_CAT_DEFAULT gem_pipeline_debug

namespace gemstream {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr const char *kWakeup = "gemstream-pipeline-wakeup";
constexpr auto kDestructorStopTimeout = std::chrono::seconds(2);
constexpr auto kStartFailureGrace = std::chrono::seconds(5);

struct GFree {
  void operator()(void *p) const noexcept { g_free(p); }
};
using GChars = std::unique_ptr<gchar, GFree>;
struct GErrorFree {
  void operator()(GError *e) const noexcept { g_error_free(e); }
};
using GErrorPtr = std::unique_ptr<GError, GErrorFree>;

void init_gstreamer() {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    GError *raw = nullptr;
    if (!gst_is_initialized() && !gst_init_check(nullptr, nullptr, &raw)) {
      GErrorPtr err(raw);
      failure = std::string("GStreamer could not be initialised: ") +
                (err ? err->message : "unknown error");
      return;
    }
    GST_DEBUG_CATEGORY_INIT(gem_pipeline_debug, "gemstream-pipeline", 0, "gemstream embedding API");
  });
  if (!failure.empty())
    throw Error(ErrorKind::Config, failure);
}

std::string str(const gchar *s) {
  return s ? std::string(s) : std::string();
}

std::string source_name(GstMessage *msg) {
  return GST_MESSAGE_SRC(msg) ? str(GST_OBJECT_NAME(GST_MESSAGE_SRC(msg))) : std::string();
}

json value_to_json(const GValue *v);

json structure_to_json(const GstStructure *s) {
  json out = json::object();
  const gint n = gst_structure_n_fields(s);
  for (gint i = 0; i < n; ++i) {
    const gchar *field = gst_structure_nth_field_name(s, static_cast<guint>(i));
    out[field] = value_to_json(gst_structure_get_value(s, field));
  }
  return out;
}

json value_to_json(const GValue *v) {
  const GType t = G_VALUE_TYPE(v);
  switch (G_TYPE_FUNDAMENTAL(t)) {
  case G_TYPE_STRING: {
    const gchar *s = g_value_get_string(v);
    return s ? json(s) : json(nullptr);
  }
  case G_TYPE_BOOLEAN: return json(static_cast<bool>(g_value_get_boolean(v)));
  case G_TYPE_INT: return json(g_value_get_int(v));
  case G_TYPE_UINT: return json(g_value_get_uint(v));
  case G_TYPE_LONG: return json(g_value_get_long(v));
  case G_TYPE_ULONG: return json(g_value_get_ulong(v));
  case G_TYPE_INT64: return json(g_value_get_int64(v));
  case G_TYPE_UINT64: return json(g_value_get_uint64(v));
  case G_TYPE_FLOAT: return json(g_value_get_float(v));
  case G_TYPE_DOUBLE: return json(g_value_get_double(v));
  default: break;
  }
  if (t == GST_TYPE_STRUCTURE) {
    const GstStructure *s = gst_value_get_structure(v);
    return s ? structure_to_json(s) : json(nullptr);
  }
  G_GNUC_BEGIN_IGNORE_DEPRECATIONS
  // GValueArray is deprecated but still what level and others post.
  if (t == g_value_array_get_type()) {
    json arr = json::array();
    if (const auto *va = static_cast<const GValueArray *>(g_value_get_boxed(v)))
      for (guint i = 0; i < va->n_values; ++i)
        arr.push_back(value_to_json(&va->values[i]));
    return arr;
  }
  G_GNUC_END_IGNORE_DEPRECATIONS
  if (t == GST_TYPE_ARRAY || t == GST_TYPE_LIST) {
    json arr = json::array();
    const guint n = t == GST_TYPE_ARRAY ? gst_value_array_get_size(v) : gst_value_list_get_size(v);
    for (guint i = 0; i < n; ++i)
      arr.push_back(value_to_json(t == GST_TYPE_ARRAY ? gst_value_array_get_value(v, i)
                                                      : gst_value_list_get_value(v, i)));
    return arr;
  }
  GChars text(gst_value_serialize(v));
  return text ? json(text.get()) : json(nullptr);
}

std::string value_to_text(const GValue *v) {
  if (G_VALUE_HOLDS_STRING(v))
    return str(g_value_get_string(v));
  GChars text(gst_value_serialize(v));
  return str(text.get());
}

std::string domain_name(GQuark domain) {
  if (domain == GST_CORE_ERROR)
    return "core";
  if (domain == GST_LIBRARY_ERROR)
    return "library";
  if (domain == GST_RESOURCE_ERROR)
    return "resource";
  if (domain == GST_STREAM_ERROR)
    return "stream";
  return str(g_quark_to_string(domain));
}

ErrorKind kind_from_domain(GQuark domain, int code) {
  if (domain == GST_RESOURCE_ERROR) {
    switch (code) {
    case GST_RESOURCE_ERROR_NOT_FOUND: return ErrorKind::NotFound;
    case GST_RESOURCE_ERROR_NOT_AUTHORIZED: return ErrorKind::PermissionDenied;
    case GST_RESOURCE_ERROR_BUSY: return ErrorKind::ResourceExhausted;
    case GST_RESOURCE_ERROR_SETTINGS: return ErrorKind::InvalidArgument;
    case GST_RESOURCE_ERROR_FAILED: return ErrorKind::Internal;
    default: return ErrorKind::Io;
    }
  }
  if (domain == GST_STREAM_ERROR) {
    switch (code) {
    case GST_STREAM_ERROR_DECODE:
    case GST_STREAM_ERROR_DEMUX:
    case GST_STREAM_ERROR_FORMAT:
    case GST_STREAM_ERROR_TYPE_NOT_FOUND:
    case GST_STREAM_ERROR_WRONG_TYPE:
    case GST_STREAM_ERROR_CODEC_NOT_FOUND: return ErrorKind::InvalidArgument;
    default: return ErrorKind::Internal;
    }
  }
  if (domain == GST_CORE_ERROR && code == GST_CORE_ERROR_MISSING_PLUGIN)
    return ErrorKind::NotFound;
  if (domain == GST_LIBRARY_ERROR && code == GST_LIBRARY_ERROR_SETTINGS)
    return ErrorKind::Config;
  return ErrorKind::Internal;
}

ErrorKind kind_from_name(const std::string &name, ErrorKind fallback) {
  static constexpr ErrorKind kAll[] = {ErrorKind::InvalidArgument,
                                       ErrorKind::Unauthenticated,
                                       ErrorKind::PermissionDenied,
                                       ErrorKind::NotFound,
                                       ErrorKind::ResourceExhausted,
                                       ErrorKind::Internal,
                                       ErrorKind::Unavailable,
                                       ErrorKind::DeadlineExceeded,
                                       ErrorKind::Network,
                                       ErrorKind::Timeout,
                                       ErrorKind::Cancelled,
                                       ErrorKind::Protocol,
                                       ErrorKind::SafetyFiltered,
                                       ErrorKind::Config,
                                       ErrorKind::Io,
                                       ErrorKind::TooLarge,
                                       ErrorKind::BudgetExceeded};
  for (ErrorKind k : kAll)
    if (name == to_string(k))
      return k;
  return fallback;
}

events::Error parse_error(GstMessage *msg) {
  GError *raw = nullptr;
  gchar *debug_raw = nullptr;
  gst_message_parse_error(msg, &raw, &debug_raw);
  GErrorPtr err(raw);
  GChars debug(debug_raw);
  events::Error e;
  e.source = source_name(msg);
  e.domain = domain_name(err->domain);
  e.code = err->code;
  e.message = str(err->message);
  e.debug = str(debug.get());
  e.kind = kind_from_domain(err->domain, err->code);
  const GstStructure *details = nullptr;
  gst_message_parse_error_details(msg, &details);
  if (details) {
    const gint n = gst_structure_n_fields(details);
    for (gint i = 0; i < n; ++i) {
      const gchar *field = gst_structure_nth_field_name(details, static_cast<guint>(i));
      e.details[field] = value_to_text(gst_structure_get_value(details, field));
    }
    if (auto it = e.details.find("error-kind"); it != e.details.end())
      e.kind = kind_from_name(it->second, e.kind);
  }
  return e;
}

// gst_parse_launch links a sometimes pad ("demux.video_0 ! queue") when the pad appears, and
// only warns when it cannot (the next element does not accept the stream, or the pad never
// appears). The pipeline then waits forever for data that cannot come, so the run ends there
// with an error naming the link.
std::optional<events::Error> delayed_link_failure(GstMessage *msg) {
  GError *raw = nullptr;
  gchar *debug_raw = nullptr;
  gst_message_parse_warning(msg, &raw, &debug_raw);
  GErrorPtr err(raw);
  GChars debug(debug_raw);
  if (!err || err->domain != GST_PARSE_ERROR || err->code != GST_PARSE_ERROR_DELAYED_LINK)
    return std::nullopt;
  events::Error e;
  e.source = source_name(msg);
  e.domain = domain_name(err->domain);
  e.code = err->code;
  e.message = "A link of the pipeline could not be made when its pad appeared (" +
              str(debug.get()) +
              "): the stream is not one the next element accepts, or the pad never appeared "
              "(e.g. a branch for an audio stream the input does not have).";
  e.debug = str(debug.get());
  e.kind = ErrorKind::Config;
  return e;
}

// decodebin3 (and uridecodebin3) names its pads after the streams it selected: video_0,
// audio_0, text_0. A pipeline that links "dec.audio_0" waits for ever on an input without
// audio: the pad never appears and, unlike a demuxer, decodebin3 does not signal
// no-more-pads, so gst_parse does not warn either. Once it has posted the streams it selected,
// a pad the launch line links beyond them ends the run with an error naming it.
std::optional<events::Error> unselected_stream_link(GstMessage *msg, const std::string &name,
                                                   const std::string &launch) {
  if (name.empty())
    return std::nullopt;
  struct Kind {
    const char *pad;
    GstStreamType type;
    const char *noun;
    unsigned selected = 0;
  };
  Kind kinds[] = {{"video_", GST_STREAM_TYPE_VIDEO, "video"},
                  {"audio_", GST_STREAM_TYPE_AUDIO, "audio"},
                  {"text_", GST_STREAM_TYPE_TEXT, "subtitle"}};
  const guint n = gst_message_streams_selected_get_size(msg);
  for (guint i = 0; i < n; ++i) {
    GstStream *stream = gst_message_streams_selected_get_stream(msg, i);
    if (!stream)
      continue;
    const GstStreamType type = gst_stream_get_stream_type(stream);
    gst_object_unref(stream);
    for (Kind &k : kinds)
      if (type & k.type)
        ++k.selected;
  }
  // The launch line's tokens, split at whitespace and links: "dec.audio_0 ! queue".
  std::size_t pos = 0;
  while (pos < launch.size()) {
    const std::size_t start = launch.find_first_not_of(" \t\r\n!", pos);
    if (start == std::string::npos)
      break;
    std::size_t end = launch.find_first_of(" \t\r\n!", start);
    if (end == std::string::npos)
      end = launch.size();
    pos = end;
    const std::string token = launch.substr(start, end - start);
    if (token.size() <= name.size() + 1 || token.compare(0, name.size(), name) != 0 ||
        token[name.size()] != '.')
      continue;
    const std::string pad = token.substr(name.size() + 1);
    for (const Kind &k : kinds) {
      const std::size_t prefix = std::char_traits<char>::length(k.pad);
      if (pad.compare(0, prefix, k.pad) != 0 || pad.size() == prefix ||
          pad.find_first_not_of("0123456789", prefix) != std::string::npos)
        continue;
      unsigned long index = 0;
      const char *digits = pad.data() + prefix;
      if (std::from_chars(digits, pad.data() + pad.size(), index).ec != std::errc() ||
          index < k.selected)
        continue;
      events::Error e;
      e.source = name;
      e.domain = "stream";
      e.code = GST_STREAM_ERROR_DEMUX;
      e.message = "The input has no " + std::string(k.noun) + " stream for the link from " + token +
                  ": " + name + " selected " + std::to_string(k.selected) + " " + k.noun +
                  " stream" + (k.selected == 1 ? "" : "s") +
                  ", so that branch would wait for ever. Leave the branch out for this input "
                  "(e.g. a pipeline parameter such as audio=false).";
      e.kind = ErrorKind::Config;
      return e;
    }
  }
  return std::nullopt;
}

std::optional<events::Error> unselected_stream_failure(GstMessage *msg, const std::string &launch) {
  // uridecodebin3 selects its streams in the decodebin3 inside it, which posts the message;
  // the launch line names the outer element.
  GstObject *o = GST_MESSAGE_SRC(msg) ? GST_OBJECT(gst_object_ref(GST_MESSAGE_SRC(msg))) : nullptr;
  std::optional<events::Error> found;
  while (o && !found) {
    GstObject *parent = gst_object_get_parent(o);
    if (parent) // the top-level pipeline has no pads to link
      found = unselected_stream_link(msg, str(GChars(gst_object_get_name(o)).get()), launch);
    gst_object_unref(o);
    o = parent;
  }
  if (o)
    gst_object_unref(o);
  return found;
}

// A message showing that a branch of the graph can never receive data.
std::optional<events::Error> unfinishable_graph(GstMessage *msg, const std::string &launch) {
  switch (GST_MESSAGE_TYPE(msg)) {
  case GST_MESSAGE_WARNING: return delayed_link_failure(msg);
  case GST_MESSAGE_STREAMS_SELECTED: return unselected_stream_failure(msg, launch);
  default: return std::nullopt;
  }
}

events::State to_state(GstState s) {
  switch (s) {
  case GST_STATE_READY: return events::State::Ready;
  case GST_STATE_PAUSED: return events::State::Paused;
  case GST_STATE_PLAYING: return events::State::Playing;
  default: return events::State::Null;
  }
}

const char *progress_type_name(GstProgressType type) {
  switch (type) {
  case GST_PROGRESS_TYPE_START: return "start";
  case GST_PROGRESS_TYPE_CONTINUE: return "continue";
  case GST_PROGRESS_TYPE_COMPLETE: return "complete";
  case GST_PROGRESS_TYPE_CANCELED: return "canceled";
  case GST_PROGRESS_TYPE_ERROR: return "error";
  }
  return "unknown";
}

// The non-terminal events a message maps to (EOS and ERROR are handled by the bus loop).
std::optional<Event> to_event(GstMessage *msg, GstElement *pipeline) {
  switch (GST_MESSAGE_TYPE(msg)) {
  case GST_MESSAGE_WARNING: {
    GError *raw = nullptr;
    gchar *debug_raw = nullptr;
    gst_message_parse_warning(msg, &raw, &debug_raw);
    GErrorPtr err(raw);
    GChars debug(debug_raw);
    return events::Warning{source_name(msg), str(err->message), str(debug.get())};
  }
  case GST_MESSAGE_PROGRESS: {
    GstProgressType type;
    gchar *code_raw = nullptr, *text_raw = nullptr;
    gst_message_parse_progress(msg, &type, &code_raw, &text_raw);
    GChars code(code_raw), text(text_raw);
    int percent = -1;
    gst_structure_get_int(gst_message_get_structure(msg), "percent", &percent);
    return events::Progress{source_name(msg), progress_type_name(type), str(code.get()),
                            str(text.get()), percent};
  }
  case GST_MESSAGE_ELEMENT: {
    const GstStructure *s = gst_message_get_structure(msg);
    if (!s)
      return std::nullopt;
    if (gst_structure_has_name(s, "gemstream-cost")) {
      events::Cost c;
      c.source = source_name(msg);
      c.kind = str(gst_structure_get_string(s, "kind"));
      c.model = str(gst_structure_get_string(s, "model"));
      c.model_key = str(gst_structure_get_string(s, "model-key"));
      gst_structure_get_double(s, "usd", &c.usd);
      gst_structure_get_double(s, "units", &c.units);
      return c;
    }
    if (gst_structure_has_name(s, "gemstream-operation"))
      return events::Operation{source_name(msg), str(gst_structure_get_string(s, "operation")),
                               str(gst_structure_get_string(s, "model"))};
    return events::Element{source_name(msg), gst_structure_get_name(s),
                           structure_to_json(s).dump()};
  }
  case GST_MESSAGE_STATE_CHANGED: {
    if (GST_MESSAGE_SRC(msg) != GST_OBJECT(pipeline))
      return std::nullopt;
    GstState old_state, new_state;
    gst_message_parse_state_changed(msg, &old_state, &new_state, nullptr);
    return events::StateChanged{to_state(old_state), to_state(new_state)};
  }
  default: return std::nullopt;
  }
}

gemstream::Error to_exception(const events::Error &e) {
  std::string text = e.source.empty() ? e.message : e.source + ": " + e.message;
  return gemstream::Error(e.kind, text);
}

// Which package provides an element, for the "missing element" message.
std::string provider_hint(const std::string &element) {
  static const std::pair<const char *, const char *> kProviders[] = {
      {"imagegensrc", "the gemstream plugin"},   {"veosrc", "the gemstream plugin"},
      {"videoloop", "the gemstream plugin"},     {"framesampler", "the gemstream plugin"},
      {"geminilivesrc", "the gemstream plugin"}, {"geminilivesink", "the gemstream plugin"},
      {"x264enc", "gstreamer1.0-plugins-ugly"},  {"avenc_aac", "gstreamer1.0-libav"},
      {"vp9enc", "gstreamer1.0-plugins-good"},   {"vp8enc", "gstreamer1.0-plugins-good"},
      {"jpegenc", "gstreamer1.0-plugins-good"},  {"mp4mux", "gstreamer1.0-plugins-good"},
      {"webmmux", "gstreamer1.0-plugins-good"},  {"qtdemux", "gstreamer1.0-plugins-good"},
      {"opusenc", "gstreamer1.0-plugins-base"},  {"decodebin3", "gstreamer1.0-plugins-base"},
  };
  for (const auto &[name, provider] : kProviders)
    if (element == name)
      return provider;
  return {};
}

} // namespace

bool is_terminal(const Event &event) noexcept {
  return std::holds_alternative<events::Eos>(event) ||
         std::holds_alternative<events::Error>(event) ||
         std::holds_alternative<events::Stopped>(event);
}

const char *to_string(events::State state) noexcept {
  switch (state) {
  case events::State::Null: return "NULL";
  case events::State::Ready: return "READY";
  case events::State::Paused: return "PAUSED";
  case events::State::Playing: return "PLAYING";
  }
  return "UNKNOWN";
}

std::string find_gemstream_plugin() {
  init_gstreamer();
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  GstRegistry *registry = gst_registry_get();
  auto registered = [&]() -> std::optional<std::string> {
    GstPlugin *plugin = gst_registry_find_plugin(registry, "gemstream");
    if (!plugin)
      return std::nullopt;
    std::string file = str(gst_plugin_get_filename(plugin));
    gst_object_unref(plugin);
    return file.empty() ? std::string("(registered statically)") : file;
  };
  if (auto file = registered())
    return *file;

  std::vector<fs::path> candidates;
  std::error_code ec;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void *>(&find_gemstream_plugin), &info) && info.dli_fname) {
    const fs::path lib_dir = fs::path(info.dli_fname).parent_path();
    if (fs::equivalent(lib_dir, GEMSTREAM_PIPELINE_BUILD_LIB_DIR, ec))
      candidates.emplace_back(GEMSTREAM_PLUGIN_BUILD_DIR);
    candidates.push_back(lib_dir / "gstreamer-1.0");
  }
  candidates.emplace_back(GEMSTREAM_PLUGIN_INSTALL_DIR);
  for (const auto &dir : candidates) {
    if (!fs::is_directory(dir, ec))
      continue;
    GST_DEBUG("scanning %s for the gemstream plugin", dir.c_str());
    gst_registry_scan_path(registry, dir.c_str());
    if (auto file = registered())
      return *file;
  }
  return {};
}

// State shared by the Pipeline and its bus thread. The thread holds a reference, so a
// Pipeline destroyed from its own bus-thread callback tears down safely after it returns.
struct PipelineShared {
  struct CallbackSlot {
    // Held while the callback runs and while the Pipeline disables the slot; recursive so a
    // main-context callback may destroy the Pipeline.
    std::recursive_mutex call_mutex;
    std::function<void(const Event &)> fn;
    bool alive = true;

    std::mutex pending_mutex;
    std::deque<Event> pending; // MainContext mode: waiting for the main loop
    bool scheduled = false;
  };

  std::string launch;
  PipelineOptions options;
  GstElement *pipeline = nullptr;
  GstBus *bus = nullptr;
  GMainContext *context = nullptr;
  std::shared_ptr<CallbackSlot> slot = std::make_shared<CallbackSlot>();

  mutable std::mutex mutex;
  std::condition_variable changed;
  std::deque<Event> queue;
  std::uint64_t dropped = 0;
  bool started = false;
  bool quit = false;
  bool abort_requested = false;
  bool stop_requested = false;
  std::optional<Clock::time_point> stop_deadline;
  std::optional<Outcome> outcome;
  // The terminal event has been passed to a BusThread callback: wait() returns after that, so
  // an application can read what its callback collected once wait() returns.
  bool terminal_dispatched = false;
  std::atomic<std::thread::id> bus_thread_id{};
  // Sends EOS to the sources. A source's send_event blocks while its streaming thread is busy
  // downstream (a sink waiting on the clock, a full queue), so it runs here, never on the
  // caller's thread or on the bus thread that enforces the stop timeout. Setting NULL unblocks
  // it: sinks change state first and release the streaming threads.
  std::thread stopper;

  ~PipelineShared() {
    if (pipeline)
      gst_element_set_state(pipeline, GST_STATE_NULL);
    if (stopper.joinable())
      stopper.join();
    if (pipeline)
      gst_object_unref(pipeline);
    if (bus)
      gst_object_unref(bus);
    if (context)
      g_main_context_unref(context);
  }

  void wake() {
    gst_bus_post(bus, gst_message_new_application(nullptr, gst_structure_new_empty(kWakeup)));
  }

  static gboolean drain_pending(gpointer data) {
    auto *slot = static_cast<std::shared_ptr<CallbackSlot> *>(data);
    for (;;) {
      std::optional<Event> event;
      {
        std::lock_guard lock((*slot)->pending_mutex);
        if ((*slot)->pending.empty()) {
          (*slot)->scheduled = false;
          return G_SOURCE_REMOVE;
        }
        event = std::move((*slot)->pending.front());
        (*slot)->pending.pop_front();
      }
      std::lock_guard call((*slot)->call_mutex);
      if ((*slot)->alive && (*slot)->fn)
        (*slot)->fn(*event);
    }
  }

  // Caller holds `mutex`.
  void enqueue_locked(const Event &event) {
    if (queue.size() >= std::max<std::size_t>(options.max_queued_events, 1)) {
      queue.pop_front();
      ++dropped;
    }
    queue.push_back(event);
  }

  void dispatch(const Event &event) {
    if (options.callback_context == CallbackContext::BusThread) {
      std::lock_guard call(slot->call_mutex);
      if (slot->alive && slot->fn)
        slot->fn(event);
      return;
    }
    bool schedule = false;
    {
      std::lock_guard lock(slot->pending_mutex);
      slot->pending.push_back(event);
      schedule = !slot->scheduled;
      slot->scheduled = true;
    }
    if (schedule) {
      g_main_context_invoke_full(context, G_PRIORITY_DEFAULT, &PipelineShared::drain_pending,
                                 new std::shared_ptr<CallbackSlot>(slot), [](gpointer p) {
                                   delete static_cast<std::shared_ptr<CallbackSlot> *>(p);
                                 });
    }
  }

  void deliver(const Event &event) {
    {
      std::lock_guard lock(mutex);
      enqueue_locked(event);
    }
    changed.notify_all();
    dispatch(event);
  }

  // Sets NULL (so sinks have closed their files), then publishes the outcome together with the
  // terminal event, so a wait_event() caller never sees the run over before that event.
  void finish(Outcome::Ending ending, std::optional<events::Error> error) {
    gst_element_set_state(pipeline, GST_STATE_NULL);
    Event terminal = events::Stopped{};
    if (ending == Outcome::Ending::Eos)
      terminal = events::Eos{};
    else if (ending == Outcome::Ending::Error)
      terminal = *error;
    {
      std::lock_guard lock(mutex);
      Outcome o;
      o.ending = ending;
      o.error = std::move(error);
      o.stop_requested = stop_requested;
      outcome = std::move(o);
      enqueue_locked(terminal);
    }
    changed.notify_all();
    GST_DEBUG("%s: run ended (%d)", launch.c_str(), static_cast<int>(ending));
    dispatch(terminal);
    {
      std::lock_guard lock(mutex);
      terminal_dispatched = true;
    }
    changed.notify_all();
  }

  void bus_loop() {
    for (;;) {
      GstClockTime timeout = GST_CLOCK_TIME_NONE;
      bool abort_now = false;
      {
        std::lock_guard lock(mutex);
        if (quit || outcome)
          return;
        abort_now = abort_requested;
        if (stop_deadline) {
          const auto left = *stop_deadline - Clock::now();
          timeout = left.count() > 0
                        ? static_cast<GstClockTime>(
                              std::chrono::duration_cast<std::chrono::nanoseconds>(left).count())
                        : 0;
        }
      }
      if (abort_now) {
        finish(Outcome::Ending::Stopped, std::nullopt);
        return;
      }
      GstMessage *msg = gst_bus_timed_pop(bus, timeout);
      if (!msg) {
        bool expired = false;
        {
          std::lock_guard lock(mutex);
          expired = stop_deadline && Clock::now() >= *stop_deadline;
        }
        if (expired) {
          GST_DEBUG("EOS did not arrive before the stop timeout; forcing NULL");
          finish(Outcome::Ending::Stopped, std::nullopt);
          return;
        }
        continue;
      }
      std::unique_ptr<GstMessage, decltype(&gst_message_unref)> owned(msg, gst_message_unref);
      switch (GST_MESSAGE_TYPE(msg)) {
      case GST_MESSAGE_APPLICATION:
        break; // a wake-up: the flags are re-read at the top of the loop
      case GST_MESSAGE_EOS:
        if (GST_MESSAGE_SRC(msg) == GST_OBJECT(pipeline)) {
          finish(Outcome::Ending::Eos, std::nullopt);
          return;
        }
        break;
      case GST_MESSAGE_ERROR: {
        events::Error e = parse_error(msg);
        GST_DEBUG("error from %s: %s", e.source.c_str(), e.message.c_str());
        finish(Outcome::Ending::Error, std::move(e));
        return;
      }
      default:
        if (auto e = unfinishable_graph(msg, launch)) {
          GST_DEBUG("%s", e->message.c_str());
          finish(Outcome::Ending::Error, std::move(*e));
          return;
        }
        if (auto event = to_event(msg, pipeline))
          deliver(*event);
        break;
      }
    }
  }
};

struct Pipeline::Impl {
  std::shared_ptr<PipelineShared> shared = std::make_shared<PipelineShared>();
  std::thread bus_thread;
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Pipeline> Pipeline::from_launch(const std::string &launch_line,
                                                PipelineOptions options) {
  init_gstreamer();
  find_gemstream_plugin();
  GstParseContext *ctx = gst_parse_context_new();
  std::unique_ptr<GstParseContext, decltype(&gst_parse_context_free)> ctx_owner(
      ctx, gst_parse_context_free);
  GError *raw = nullptr;
  GstElement *element =
      gst_parse_launch_full(launch_line.c_str(), ctx, GST_PARSE_FLAG_FATAL_ERRORS, &raw);
  GErrorPtr err(raw);
  if (!element) {
    std::unique_ptr<gchar *, decltype(&g_strfreev)> missing(
        gst_parse_context_get_missing_elements(ctx), g_strfreev);
    if (err && g_error_matches(err.get(), GST_PARSE_ERROR, GST_PARSE_ERROR_NO_SUCH_ELEMENT) &&
        missing && missing.get()[0]) {
      std::string names, hints;
      for (gchar **m = missing.get(); *m; ++m) {
        names += std::string(names.empty() ? "" : ", ") + *m;
        const std::string hint = provider_hint(*m);
        if (!hint.empty() && hints.find(hint) == std::string::npos)
          hints += std::string(hints.empty() ? "" : "; ") + hint;
      }
      std::string text = "missing GStreamer element(s): " + names;
      if (!hints.empty())
        text += " (provided by " + hints + ")";
      if (hints.find("gemstream") != std::string::npos)
        text += ". Install the gemstream plugin, or point GST_PLUGIN_PATH at the directory "
                "holding libgstgemstream.so";
      throw Error(ErrorKind::NotFound, text);
    }
    throw Error(ErrorKind::Config, std::string("cannot build the pipeline: ") +
                                       (err ? err->message : "unknown parse error"));
  }
  if (!GST_IS_PIPELINE(element)) {
    GstElement *pipeline = gst_pipeline_new(nullptr);
    gst_bin_add(GST_BIN(pipeline), element);
    element = pipeline;
  }
  gst_object_ref_sink(element);

  auto impl = std::make_unique<Impl>();
  auto &s = *impl->shared;
  s.launch = launch_line;
  s.options = options;
  s.pipeline = element;
  s.bus = gst_pipeline_get_bus(GST_PIPELINE(element));
  return std::unique_ptr<Pipeline>(new Pipeline(std::move(impl)));
}

std::unique_ptr<Pipeline> Pipeline::from_file(const PipelineFile &file,
                                              const std::map<std::string, std::string> &values,
                                              PipelineOptions options) {
  const std::string line = file.resolve(values);
  try {
    return from_launch(line, options);
  } catch (const Error &e) {
    throw Error(e.kind(), file.source().string() + ": " + e.message());
  }
}

std::unique_ptr<Pipeline> Pipeline::load(const std::string &name_or_path,
                                         const std::map<std::string, std::string> &values,
                                         PipelineOptions options) {
  return from_file(PipelineFile::load(PipelineFile::find(name_or_path)), values, options);
}

Pipeline::~Pipeline() {
  auto shared = impl_->shared;
  if (impl_->bus_thread.joinable() && std::this_thread::get_id() == shared->bus_thread_id) {
    // Destroyed from a bus-thread callback: the thread finishes the teardown after it returns.
    {
      std::lock_guard lock(shared->mutex);
      shared->abort_requested = true;
    }
    {
      std::lock_guard call(shared->slot->call_mutex);
      shared->slot->alive = false;
    }
    impl_->bus_thread.detach();
    return;
  }
  if (impl_->bus_thread.joinable()) {
    if (!finished())
      stop(kDestructorStopTimeout);
    {
      std::lock_guard lock(shared->mutex);
      shared->quit = true;
    }
    shared->wake();
    impl_->bus_thread.join();
  }
  std::lock_guard call(shared->slot->call_mutex);
  shared->slot->alive = false;
}

void Pipeline::set_callback(std::function<void(const Event &)> callback) {
  auto &slot = *impl_->shared->slot;
  std::lock_guard call(slot.call_mutex);
  slot.fn = std::move(callback);
}

void Pipeline::start() {
  auto shared = impl_->shared;
  {
    std::lock_guard lock(shared->mutex);
    if (shared->started)
      throw Error(ErrorKind::InvalidArgument, "the pipeline was already started; a pipeline "
                                              "runs once, create a new one to run again");
    shared->started = true;
    if (shared->options.callback_context == CallbackContext::MainContext)
      shared->context = g_main_context_ref_thread_default();
  }
  impl_->bus_thread = std::thread([shared] {
    shared->bus_thread_id = std::this_thread::get_id();
    shared->bus_loop();
  });
  GST_DEBUG("starting %s", shared->launch.c_str());
  if (gst_element_set_state(shared->pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE)
    return;
  // The failing element posts its reason on the bus; the bus thread turns it into the outcome.
  auto outcome = wait(std::chrono::duration_cast<std::chrono::milliseconds>(kStartFailureGrace));
  if (!outcome) {
    abort();
    outcome = wait();
  }
  if (outcome && outcome->error)
    throw to_exception(*outcome->error);
  throw Error(ErrorKind::Internal, "the pipeline could not be set to PLAYING");
}

void Pipeline::request_stop(std::chrono::milliseconds timeout) {
  auto &s = *impl_->shared;
  {
    std::lock_guard lock(s.mutex);
    if (s.outcome)
      return;
    if (!s.started) {
      Outcome o;
      o.stop_requested = true;
      s.stop_requested = true;
      s.outcome = o;
      s.terminal_dispatched = true;
      s.changed.notify_all();
      return;
    }
    const auto deadline = Clock::now() + timeout;
    if (!s.stop_deadline || deadline < *s.stop_deadline)
      s.stop_deadline = deadline;
    if (s.stop_requested) {
      s.changed.notify_all();
      s.wake();
      return;
    }
    s.stop_requested = true;
  }
  GST_DEBUG("stop requested: sending EOS to the sources");
  // Each source rather than the pipeline: gst_element_send_event() on the pipeline would hold
  // its state lock while a source blocks, and the forced NULL could not start until then.
  GstElement *pipeline = GST_ELEMENT(gst_object_ref(s.pipeline));
  s.stopper = std::thread([pipeline] {
    GstIterator *it = gst_bin_iterate_sources(GST_BIN(pipeline));
    GValue item = G_VALUE_INIT;
    bool done = false;
    while (!done) {
      switch (gst_iterator_next(it, &item)) {
      case GST_ITERATOR_OK: {
        // The vfunc rather than gst_element_send_event(), which holds the source's state lock
        // while it waits: the forced NULL transition needs that lock before it can release
        // the streaming thread the wait depends on.
        auto *source = GST_ELEMENT(g_value_get_object(&item));
        if (auto send = GST_ELEMENT_GET_CLASS(source)->send_event)
          send(source, gst_event_new_eos());
        g_value_reset(&item);
        break;
      }
      case GST_ITERATOR_RESYNC: gst_iterator_resync(it); break;
      default: done = true; break;
      }
    }
    g_value_unset(&item);
    gst_iterator_free(it);
    gst_object_unref(pipeline);
  });
  s.wake();
}

Outcome Pipeline::stop(std::chrono::milliseconds timeout) {
  request_stop(timeout);
  if (std::this_thread::get_id() == impl_->shared->bus_thread_id) {
    Outcome pending;
    pending.stop_requested = true;
    return pending;
  }
  return *wait();
}

void Pipeline::abort() {
  auto &s = *impl_->shared;
  {
    std::lock_guard lock(s.mutex);
    if (s.outcome)
      return;
    if (!s.started) {
      s.outcome = Outcome{};
      s.terminal_dispatched = true;
      s.changed.notify_all();
      return;
    }
    s.abort_requested = true;
  }
  s.wake();
  if (std::this_thread::get_id() != s.bus_thread_id)
    wait();
}

std::optional<Outcome> Pipeline::wait(std::optional<std::chrono::milliseconds> timeout) {
  auto &s = *impl_->shared;
  std::unique_lock lock(s.mutex);
  // On the bus thread (from a callback) nothing can change while we wait.
  if (std::this_thread::get_id() == s.bus_thread_id)
    return s.outcome;
  auto done = [&] {
    return s.outcome.has_value() &&
           (s.terminal_dispatched || s.options.callback_context == CallbackContext::MainContext);
  };
  if (timeout) {
    if (!s.changed.wait_for(lock, *timeout, done))
      return std::nullopt;
  } else {
    s.changed.wait(lock, done);
  }
  return s.outcome;
}

std::optional<Event> Pipeline::wait_event(std::chrono::milliseconds timeout) {
  auto &s = *impl_->shared;
  std::unique_lock lock(s.mutex);
  if (!s.changed.wait_for(lock, timeout, [&] { return !s.queue.empty() || s.outcome; }))
    return std::nullopt;
  if (s.queue.empty())
    return std::nullopt;
  Event event = std::move(s.queue.front());
  s.queue.pop_front();
  return event;
}

bool Pipeline::finished() const {
  std::lock_guard lock(impl_->shared->mutex);
  return impl_->shared->outcome.has_value();
}

std::uint64_t Pipeline::dropped_events() const {
  std::lock_guard lock(impl_->shared->mutex);
  return impl_->shared->dropped;
}

const std::string &Pipeline::launch_line() const noexcept {
  return impl_->shared->launch;
}

} // namespace gemstream
