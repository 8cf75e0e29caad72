#include "gemstream/capabilities.h"

#include "gemstream/error.h"
#include "gemstream/grounding.h"
#include "gemstream/prompts.h"

#include "json_validation.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <thread>
#include <utility>

namespace gemstream {
namespace {

using json = nlohmann::json;
using namespace config_json;

constexpr const char *kConfirmed = "confirmed";

// ---- validation ------------------------------------------------------------------------------

const std::set<std::string, std::less<>> kSchemaTypes = {"STRING",  "NUMBER", "INTEGER",
                                                         "BOOLEAN", "ARRAY",  "OBJECT"};

// A Gemini Schema object (the OpenAPI subset FunctionDeclaration.parameters takes).
void check_schema(const Validator &v, const json &schema, const std::string &pointer) {
  ObjectReader r(v, schema, pointer);
  const std::string type = r.string("type");
  if (!kSchemaTypes.contains(type))
    v.fail(r.pointer_of("type"),
           "expected one of STRING, NUMBER, INTEGER, BOOLEAN, ARRAY, OBJECT (upper case), got " +
               in_quotes(type));
  if (r.has("description"))
    r.string_or_empty("description");
  for (const char *name : {"format", "nullable", "minimum", "maximum", "minItems", "maxItems",
                           "propertyOrdering", "title", "example"})
    r.allow(name);
  if (r.has("enum")) {
    if (type != "STRING")
      v.fail(r.pointer_of("enum"), "only a STRING can have an enum");
    const json &values = r.array("enum");
    if (values.empty())
      v.fail(r.pointer_of("enum"), "must not be empty");
    for (std::size_t i = 0; i < values.size(); ++i)
      ObjectReader::string_value(v, values[i], r.pointer_of("enum") + "/" + std::to_string(i));
  }
  if (type == "ARRAY")
    check_schema(v, r.field("items"), r.pointer_of("items"));
  std::set<std::string> properties;
  if (r.has("properties")) {
    if (type != "OBJECT")
      v.fail(r.pointer_of("properties"), "only an OBJECT can have properties");
    const ObjectReader props = r.object("properties");
    for (const auto &member : props.members().items()) {
      check_schema(v, member.value(), props.pointer_of(member.key()));
      properties.insert(member.key());
    }
  }
  if (r.has("required")) {
    const json &required = r.array("required");
    for (std::size_t i = 0; i < required.size(); ++i) {
      const std::string p = r.pointer_of("required") + "/" + std::to_string(i);
      const auto name = ObjectReader::string_value(v, required[i], p);
      if (!properties.contains(name))
        v.fail(p, in_quotes(name) + " is not a property");
    }
  }
  r.finish();
}

// Lower-case, single spaces, no trailing punctuation: how utterances are compared.
std::string normalise_utterance(std::string_view text) {
  std::string out;
  bool gap = false;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isspace(u)) {
      gap = !out.empty();
      continue;
    }
    if (gap)
      out += ' ';
    gap = false;
    out += static_cast<char>(std::tolower(u));
  }
  while (!out.empty() && std::string_view(".!?,;").find(out.back()) != std::string_view::npos)
    out.pop_back();
  return out;
}

// `phrase` occurs in `text` on word boundaries.
bool contains_words(std::string_view text, std::string_view phrase) {
  if (phrase.empty())
    return false;
  for (auto pos = text.find(phrase); pos != std::string_view::npos;
       pos = text.find(phrase, pos + 1)) {
    const auto end = pos + phrase.size();
    const bool start_ok = pos == 0 || !std::isalnum(static_cast<unsigned char>(text[pos - 1]));
    const bool end_ok = end == text.size() || !std::isalnum(static_cast<unsigned char>(text[end]));
    if (start_ok && end_ok)
      return true;
  }
  return false;
}

Capability parse_capability(const Validator &v, const json &value, const std::string &pointer,
                            const MediaConfig *media) {
  ObjectReader r(v, value, pointer);
  Capability c;
  c.name = r.string("name");
  check_key(v, r.pointer_of("name"), c.name);
  c.category = r.string("category");
  check_key(v, r.pointer_of("category"), c.category);
  c.description = r.string("description");

  const json &params = r.field("parameters");
  check_schema(v, params, r.pointer_of("parameters"));
  if (params.at("type") != "OBJECT")
    v.fail(r.pointer_of("parameters") + "/type", "the parameters of a function must be an OBJECT");
  c.parameters_json = params.dump();
  std::set<std::string, std::less<>> properties;
  if (const auto it = params.find("properties"); it != params.end())
    for (const auto &member : it->items())
      properties.insert(member.key());
  if (const auto it = params.find("required"); it != params.end())
    c.required = it->get<std::vector<std::string>>();

  const std::string availability = r.choice("availability", {"always", "when_configured", "never"});
  c.availability = availability == "always"            ? CapabilityAvailability::Always
                   : availability == "when_configured" ? CapabilityAvailability::WhenConfigured
                                                       : CapabilityAvailability::Never;
  c.requires_consent = r.boolean("requires_consent");
  const std::string execution = r.choice("execution", {"sync", "async_job", "builtin_search"});
  c.execution = execution == "sync"        ? CapabilityExecution::Sync
                : execution == "async_job" ? CapabilityExecution::AsyncJob
                                           : CapabilityExecution::BuiltinSearch;

  if (c.requires_consent) {
    if (properties.contains(kConfirmed)) {
      const json &confirmed = params.at("properties").at(kConfirmed);
      if (confirmed.at("type") != "BOOLEAN")
        v.fail(r.pointer_of("parameters") + "/properties/confirmed/type",
               "the consent flag must be a BOOLEAN");
      if (std::find(c.required.begin(), c.required.end(), kConfirmed) != c.required.end())
        v.fail(r.pointer_of("parameters") + "/required",
               "\"confirmed\" must not be required: the first call comes before the user agreed");
    }
  }

  {
    ObjectReader trigger = r.object("trigger");
    const json &patterns = trigger.array("patterns");
    if (patterns.empty())
      v.fail(trigger.pointer_of("patterns"), "must not be empty");
    std::vector<std::regex> compiled;
    for (std::size_t i = 0; i < patterns.size(); ++i) {
      const std::string p = trigger.pointer_of("patterns") + "/" + std::to_string(i);
      auto text = ObjectReader::string_value(v, patterns[i], p);
      try {
        compiled.emplace_back(text, std::regex::ECMAScript | std::regex::icase);
      } catch (const std::regex_error &e) {
        v.fail(p, std::string("invalid regular expression: ") + e.what());
      }
      if (compiled.back().mark_count() < 1)
        v.fail(p, "needs a capture group for the argument");
      c.trigger_patterns.push_back(std::move(text));
    }
    c.trigger_argument = trigger.string("argument");
    if (!properties.contains(c.trigger_argument))
      v.fail(trigger.pointer_of("argument"), in_quotes(c.trigger_argument) + " is not a parameter");
    if (trigger.has("enum_keywords")) {
      const ObjectReader keywords = trigger.object("enum_keywords");
      for (const auto &param : keywords.members().items()) {
        const ObjectReader values(v, param.value(), keywords.pointer_of(param.key()));
        if (!properties.contains(param.key()))
          v.fail(values.pointer(), in_quotes(param.key()) + " is not a parameter");
        const json &schema = params.at("properties").at(param.key());
        const auto allowed = schema.contains("enum") ? schema.at("enum") : json::array();
        for (const auto &entry : values.members().items()) {
          const std::string p = values.pointer_of(entry.key());
          if (std::find(allowed.begin(), allowed.end(), entry.key()) == allowed.end())
            v.fail(p, in_quotes(entry.key()) + " is not a value of the parameter's enum");
          if (!entry.value().is_array() || entry.value().empty())
            v.fail(p, "expected a non-empty array of words");
          std::vector<std::string> words;
          for (std::size_t i = 0; i < entry.value().size(); ++i)
            words.push_back(
                ObjectReader::string_value(v, entry.value()[i], p + "/" + std::to_string(i)));
          c.enum_keywords[param.key()][entry.key()] = std::move(words);
        }
      }
    }
    trigger.finish();

    if (r.has("examples")) {
      const json &examples = r.array("examples");
      for (std::size_t i = 0; i < examples.size(); ++i) {
        const std::string p = r.pointer_of("examples") + "/" + std::to_string(i);
        auto text = ObjectReader::string_value(v, examples[i], p);
        const std::string said = normalise_utterance(text);
        const bool triggers =
            std::any_of(compiled.begin(), compiled.end(), [&](const std::regex &re) {
              std::smatch m;
              return std::regex_match(said, m, re) && m.size() > 1 && m[1].length() > 0;
            });
        if (!triggers)
          v.fail(p, "the example " + in_quotes(text) + " matches none of the trigger patterns");
        c.examples.push_back(std::move(text));
      }
    }
  }

  {
    ObjectReader cost = r.object("cost");
    if (cost.has("media_model") == cost.has("pricing"))
      v.fail(cost.pointer(), "give exactly one of \"media_model\" and \"pricing\"");
    if (cost.has("media_model")) {
      c.cost_media_model = cost.string("media_model");
      if (media && !media->image_models.contains(c.cost_media_model) &&
          !media->video_models.contains(c.cost_media_model))
        v.fail(cost.pointer_of("media_model"),
               "unknown media model " + in_quotes(c.cost_media_model) + " (known: " +
                   known_keys(media->image_models) + ", " + known_keys(media->video_models) + ")");
    } else {
      c.cost_pricing =
          cost.choice("pricing", {"live_native_audio", "video_analysis", "search_grounding"});
    }
    cost.finish();
  }

  auto with_cost = properties;
  with_cost.insert("cost");
  c.cost_warning = r.string_or_empty("cost_warning");
  v.check_placeholder_set(r.pointer_of("cost_warning"), c.cost_warning, with_cost);
  c.question_template = r.string_or_empty("question_template");
  v.check_placeholder_set(r.pointer_of("question_template"), c.question_template, with_cost);
  if (c.requires_consent && c.question_template.empty())
    v.fail(r.pointer_of("question_template"),
           "a capability that requires consent needs the question to ask");
  if (c.requires_consent && !c.cost_media_model.empty() && c.cost_warning.empty())
    v.fail(r.pointer_of("cost_warning"),
           "a paid capability that requires consent needs a cost warning");
  c.done_template = r.string_or_empty("done_template");
  v.check_placeholder_set(r.pointer_of("done_template"), c.done_template, with_cost);
  if (r.has("finished_template")) {
    c.finished_template = r.string_or_empty("finished_template");
    v.check_placeholder_set(r.pointer_of("finished_template"), c.finished_template, with_cost);
  }
  r.finish();
  return c;
}

bool offered(const Capability &c, const DeclarationOptions &o) {
  if (c.availability == CapabilityAvailability::Never)
    return false;
  if (c.availability == CapabilityAvailability::WhenConfigured && !o.configured)
    return false;
  return true;
}

std::string declared_parameters(const Capability &c) {
  json params = json::parse(c.parameters_json);
  if (c.requires_consent) {
    json &props = params["properties"];
    if (!props.contains(kConfirmed))
      props[kConfirmed] = {{"type", "BOOLEAN"},
                           {"description", "True only after the user agreed to the cost."}};
  }
  return params.dump();
}

// ---- running ---------------------------------------------------------------------------------

std::string random_suffix() {
  static std::mutex mutex;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard lock(mutex);
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string out(10, ' ');
  for (auto &ch : out)
    ch = kAlphabet[rng() % (sizeof kAlphabet - 1)];
  return out;
}

std::string extension_for(const std::string &mime) {
  if (mime == "image/jpeg")
    return ".jpg";
  if (mime == "image/webp")
    return ".webp";
  return ".png";
}

// A new file name in `dir` from `slug`: "slug.ext", else "slug-2.ext", ... The slug holds only
// [a-z0-9-], so the path cannot leave the directory.
std::filesystem::path unique_path(const std::filesystem::path &dir, const std::string &slug,
                                  const std::string &ext) {
  std::error_code ec;
  for (int n = 1; n < 10000; ++n) {
    auto candidate = dir / (n == 1 ? slug + ext : slug + "-" + std::to_string(n) + ext);
    if (!std::filesystem::exists(candidate, ec) &&
        !std::filesystem::exists(candidate.string() + ".part", ec))
      return candidate;
  }
  return dir / (slug + "-" + random_suffix() + ext);
}

void write_atomically(const std::filesystem::path &path, const std::string &bytes) {
  const std::string part = path.string() + ".part";
  {
    std::ofstream out(part, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::error_code ec;
      std::filesystem::remove(part, ec);
      throw Error(ErrorKind::Io, "cannot write " + path.string());
    }
  }
  std::error_code ec;
  std::filesystem::rename(part, path, ec);
  if (ec) {
    std::filesystem::remove(part, ec);
    throw Error(ErrorKind::Io, "cannot write " + path.string() + ": " + ec.message());
  }
}

std::string arg_string(const json &args, const char *name) {
  const auto it = args.find(name);
  return it != args.end() && it->is_string() ? it->get<std::string>() : std::string();
}

double usd_of(std::int64_t nanos) {
  return static_cast<double>(nanos) / static_cast<double>(kNanosPerUsd);
}

struct CallFailed {
  std::string message;
};

} // namespace

// ---- CapabilitySet -----------------------------------------------------------------------------

CapabilitySet CapabilitySet::parse(const std::string &json_text, const std::filesystem::path &name,
                                   const MediaConfig *media) {
  const Validator v(name.string());
  const json document = parse_document(v, json_text);
  ObjectReader root(v, document, "");
  if (const int version = root.positive_integer("version"); version != kVersion)
    v.fail(root.pointer_of("version"), "unsupported version " + std::to_string(version) +
                                           " (this build reads version " +
                                           std::to_string(kVersion) + ")");
  if (root.has("$schema_notes"))
    root.object("$schema_notes"); // documentation for people; any content
  const json &list = root.array("capabilities");
  CapabilitySet set;
  set.source_ = name;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string pointer = root.pointer_of("capabilities") + "/" + std::to_string(i);
    Capability c = parse_capability(v, list[i], pointer, media);
    if (set.find(c.name))
      v.fail(pointer + "/name", "the name " + in_quotes(c.name) + " is used twice");
    set.capabilities_.push_back(std::move(c));
  }
  root.finish();
  return set;
}

CapabilitySet CapabilitySet::load(const std::filesystem::path &file, const MediaConfig *media) {
  return parse(read_file(file), file, media);
}

CapabilitySet CapabilitySet::load_default(const MediaConfig *media) {
  return load(data_dir() / "config" / "agent_capabilities.json", media);
}

const Capability *CapabilitySet::find(const std::string &name) const noexcept {
  for (const auto &c : capabilities_)
    if (c.name == name)
      return &c;
  return nullptr;
}

std::vector<FunctionDeclaration>
CapabilitySet::function_declarations(const DeclarationOptions &options) const {
  std::vector<FunctionDeclaration> out;
  for (const auto &c : capabilities_) {
    if (!offered(c, options) ||
        (c.execution == CapabilityExecution::BuiltinSearch && !options.search_as_function))
      continue;
    out.push_back({c.name, c.description, declared_parameters(c)});
  }
  return out;
}

std::vector<LiveFunctionDeclaration>
CapabilitySet::live_function_declarations(const DeclarationOptions &options) const {
  std::vector<LiveFunctionDeclaration> out;
  for (auto &f : function_declarations(options))
    out.push_back({std::move(f.name), std::move(f.description), std::move(f.parameters_json)});
  return out;
}

bool CapabilitySet::uses_google_search(const DeclarationOptions &options) const {
  if (options.search_as_function)
    return false;
  return std::any_of(capabilities_.begin(), capabilities_.end(), [&](const Capability &c) {
    return c.execution == CapabilityExecution::BuiltinSearch && offered(c, options);
  });
}

std::string CapabilitySet::tools_json(const DeclarationOptions &options) const {
  json tools = json::array();
  json declarations = json::array();
  for (const auto &f : function_declarations(options))
    declarations.push_back({{"name", f.name},
                            {"description", f.description},
                            {"parameters", json::parse(f.parameters_json)}});
  if (!declarations.empty())
    tools.push_back({{"functionDeclarations", std::move(declarations)}});
  if (uses_google_search(options))
    tools.push_back({{"googleSearch", json::object()}});
  return tools.dump();
}

std::optional<FunctionCall>
CapabilitySet::match_utterance(const std::string &utterance,
                               const DeclarationOptions &options) const {
  const std::string said = normalise_utterance(utterance);
  for (const auto &c : capabilities_) {
    if (!offered(c, options))
      continue;
    for (const auto &pattern : c.trigger_patterns) {
      std::smatch m;
      const std::regex re(pattern, std::regex::ECMAScript | std::regex::icase);
      if (!std::regex_match(said, m, re) || m.size() < 2 || m[1].length() == 0)
        continue;
      json args = {{c.trigger_argument, m[1].str()}};
      for (const auto &[param, values] : c.enum_keywords) {
        for (const auto &[value, words] : values) {
          const bool hit = std::any_of(words.begin(), words.end(), [&](const std::string &w) {
            return contains_words(said, normalise_utterance(w));
          });
          if (hit) {
            args[param] = value;
            break;
          }
        }
      }
      if (c.requires_consent)
        args[kConfirmed] = false;
      return FunctionCall{{}, c.name, args.dump()};
    }
  }
  return std::nullopt;
}

double CapabilitySet::estimated_usd(const Capability &c, const MediaConfig &media) const {
  if (!c.cost_media_model.empty()) {
    if (auto it = media.image_models.find(c.cost_media_model); it != media.image_models.end())
      return it->second.usd_per_image;
    if (auto it = media.video_models.find(c.cost_media_model); it != media.video_models.end())
      return it->second.usd_per_second * it->second.duration_seconds;
  }
  if (c.cost_pricing == "search_grounding")
    return media.pricing.search_grounding.usd_per_1000_requests / 1000.0;
  return 0;
}

std::string fill_capability_template(const std::string &text, const std::string &args_json,
                                     const std::map<std::string, std::string> &extra) {
  std::map<std::string, std::string> values = extra;
  const json args = json::parse(args_json, nullptr, false);
  if (args.is_object())
    for (auto it = args.begin(); it != args.end(); ++it)
      values.emplace(it.key(),
                     it.value().is_string() ? it.value().get<std::string>() : it.value().dump());
  // One pass: a value containing "{x}" is not expanded again.
  std::string out;
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] == '{') {
      const auto close = text.find('}', i);
      if (close != std::string::npos) {
        const auto it = values.find(text.substr(i + 1, close - i - 1));
        if (it != values.end()) {
          out += it->second;
          i = close + 1;
          continue;
        }
      }
    }
    out += text[i++];
  }
  return out;
}

std::string file_slug(const std::string &text, const std::string &fallback) {
  std::string out;
  bool dash = false;
  for (char ch : text) {
    const auto u = static_cast<unsigned char>(ch);
    if (std::isalnum(u) && u < 0x80) {
      if (dash && !out.empty())
        out += '-';
      dash = false;
      out += static_cast<char>(std::tolower(u));
      if (out.size() >= 48)
        break;
    } else {
      dash = true;
    }
  }
  while (!out.empty() && out.back() == '-')
    out.pop_back();
  return out.empty() ? fallback : out;
}

const char *to_string(CapabilityEvent::Type type) noexcept {
  switch (type) {
  case CapabilityEvent::Type::ConsentRequested: return "consent-requested";
  case CapabilityEvent::Type::Started: return "started";
  case CapabilityEvent::Type::Progress: return "progress";
  case CapabilityEvent::Type::Finished: return "finished";
  case CapabilityEvent::Type::Failed: return "failed";
  }
  return "unknown";
}

// ---- CapabilityRunner --------------------------------------------------------------------------

struct CapabilityRunner::Impl {
  CapabilitySet caps;
  MediaConfig media;
  std::shared_ptr<CostLedger> ledger;
  CapabilityRunnerOptions options;
  EventCallback on_event;
  std::string user;

  std::mutex mutex;
  std::condition_variable idle_cv;
  std::map<std::string, CancelToken> running; // call id -> its token (calls and jobs)
  std::set<std::string> cancelled;            // submitted calls cancelled before they answered
  std::vector<std::thread> jobs;
  int busy = 0; // running jobs + queued or running submitted calls
  bool stopping = false;

  // The submit() worker.
  std::deque<std::pair<LiveFunctionCall, std::function<void(LiveFunctionResponse)>>> queue;
  std::condition_variable queue_cv;
  std::thread worker;

  void emit(CapabilityEvent::Type type, const std::string &call_id, const Capability &c,
            std::string message, std::string job_id = {}, std::string artefact = {},
            double usd = 0) {
    if (!on_event)
      return;
    CapabilityEvent e;
    e.type = type;
    e.call_id = call_id;
    e.capability = c.name;
    e.job_id = std::move(job_id);
    e.message = std::move(message);
    e.artefact = std::move(artefact);
    e.usd = usd;
    on_event(e);
  }

  CancelToken begin(const std::string &call_id) {
    std::lock_guard lock(mutex);
    CancelToken token;
    if (stopping)
      token.cancel();
    running[call_id] = token;
    return token;
  }
  void end(const std::string &call_id) {
    std::lock_guard lock(mutex);
    running.erase(call_id);
  }

  std::string call(const std::string &call_id, const std::string &name,
                   const std::string &args_json);
  json consent_response(const std::string &call_id, const Capability &c, const json &args);
  json run_image(const std::string &call_id, const Capability &c, const json &args);
  json start_video(const std::string &call_id, const Capability &c, const json &args);
  void video_job(std::string call_id, const Capability *c, std::string job_id,
                 std::string operation, std::string description, std::string model_key, int seconds,
                 CancelToken cancel);
  json run_search(const std::string &call_id, const Capability &c, const json &args);
  void run_worker();
};

json CapabilityRunner::Impl::consent_response(const std::string &call_id, const Capability &c,
                                              const json &args) {
  const double usd = caps.estimated_usd(c, media);
  const std::map<std::string, std::string> extra = {{"cost", format_usd(usd)}};
  const std::string warning = fill_capability_template(c.cost_warning, args.dump(), extra);
  const std::string question = fill_capability_template(c.question_template, args.dump(), extra);
  const std::string say = warning.empty() ? question : warning + " " + question;
  emit(CapabilityEvent::Type::ConsentRequested, call_id, c, say);
  return {{"status", "consent_required"},
          {"question", say},
          {"cost_warning", warning},
          {"estimated_cost_usd", usd},
          {"instruction", "Nothing was done and nothing was spent. Ask the user exactly this "
                          "question, including the cost. Only if they agree, call " +
                              c.name + " again with the same arguments and confirmed=true."}};
}

std::string CapabilityRunner::Impl::call(const std::string &call_id, const std::string &name,
                                         const std::string &args_json) {
  const Capability *c = caps.find(name);
  if (!c || c->availability == CapabilityAvailability::Never)
    return json{{"error", "there is no function called " + name}}.dump();
  json args = json::parse(args_json.empty() ? "{}" : args_json, nullptr, false);
  if (!args.is_object())
    return json{{"error", "the arguments of " + name + " are not a JSON object"}}.dump();
  for (const auto &required : c->required) {
    const auto it = args.find(required);
    if (it == args.end() || (it->is_string() && it->get_ref<const std::string &>().empty()))
      return json{{"error", name + " needs the argument \"" + required + "\""}}.dump();
  }
  if (c->requires_consent) {
    const auto confirmed = args.find(kConfirmed);
    if (confirmed == args.end() || *confirmed != true)
      return consent_response(call_id, *c, args).dump();
  }
  try {
    if (name == "generate_card_image")
      return run_image(call_id, *c, args).dump();
    if (name == "generate_background_video")
      return start_video(call_id, *c, args).dump();
    if (name == "search_and_ground" || c->execution == CapabilityExecution::BuiltinSearch)
      return run_search(call_id, *c, args).dump();
    throw CallFailed{"this agent cannot run " + name + " yet"};
  } catch (const CallFailed &f) {
    emit(CapabilityEvent::Type::Failed, call_id, *c, f.message);
    return json{{"error", f.message}}.dump();
  } catch (const Error &e) {
    emit(CapabilityEvent::Type::Failed, call_id, *c, e.what());
    return json{
        {"error", e.kind() == ErrorKind::Cancelled ? std::string("cancelled") : e.message()}}
        .dump();
  }
}

json CapabilityRunner::Impl::run_image(const std::string &call_id, const Capability &c,
                                       const json &args) {
  const std::string motif = arg_string(args, "motif");
  const std::string model_name = !options.image_model.empty()  ? options.image_model
                                 : !c.cost_media_model.empty() ? c.cost_media_model
                                                               : media.defaults.card_cover_auto;
  const ImageModel &model = media.image_model(model_name);
  const std::string prompt = build_card_cover_prompt(
      media, {motif, arg_string(args, "style"), arg_string(args, "palette")});
  CostEntry cost = price_images(media, model.key, 1);
  ledger->check_budget(user, cost.usd(), "this card image");

  emit(CapabilityEvent::Type::Started, call_id, c,
       "creating a card image of " + motif + " with " + model.display_name);
  const CancelToken cancel = begin(call_id);
  struct End {
    Impl *self;
    const std::string &id;
    ~End() { self->end(id); }
  } end{this, call_id};

  GenAiClient client(options.endpoint, options.client);
  ImageResult image = client.generate_image(
      {model.id, model.api, prompt, media.defaults.image_aspect_ratio}, cancel);

  std::error_code ec;
  std::filesystem::create_directories(options.covers_dir, ec);
  if (ec)
    throw Error(ErrorKind::Io, "cannot create the covers directory " + options.covers_dir.string() +
                                   ": " + ec.message());
  const auto path =
      unique_path(options.covers_dir, file_slug(motif, "cover"), extension_for(image.mime_type));
  write_atomically(path, image.bytes);

  cost.user = user;
  cost.request_id = image.model_version;
  cost.note = "card image \"" + motif + "\" -> " + path.string() + "; " + cost.note;
  ledger->record(cost);
  const std::string message =
      fill_capability_template(c.done_template, args.dump(), {{"cost", format_usd(cost.usd())}});
  emit(CapabilityEvent::Type::Finished, call_id, c, message, {}, path.string(), cost.usd());
  return {{"status", "done"},
          {"message", message},
          {"path", path.string()},
          {"model", model.id},
          {"cost_usd", usd_of(cost.usd_nanos)}};
}

json CapabilityRunner::Impl::start_video(const std::string &call_id, const Capability &c,
                                         const json &args) {
  const std::string description = arg_string(args, "description");
  std::string model_name = options.video_model;
  if (model_name.empty())
    model_name = EnvSettings::from_environment().video_model;
  if (model_name.empty())
    model_name = !c.cost_media_model.empty() ? c.cost_media_model : media.defaults.background_video;
  const VideoModel &model = media.video_model(model_name);
  const std::string prompt =
      build_background_video_prompt(media, {description, arg_string(args, "mood")});
  const CostEntry estimate = price_video(media, model.key, model.duration_seconds);
  if (options.submit_video) {
    const std::string job_id =
        options.submit_video(description, arg_string(args, "mood"), model.key);
    emit(CapabilityEvent::Type::Started, call_id, c,
         "queued a background video of " + description + " (job " + job_id + ")", job_id);
    return {{"status", "started"},
            {"job_id", job_id},
            {"estimated_cost_usd", estimate.usd()},
            {"message", "The background video of " + description +
                            " is queued; it takes a minute or two. Tell the user it started; "
                            "its completion is reported separately."}};
  }
  ledger->check_budget(user, estimate.usd(), "this background video");

  VideoRequest req;
  req.model_id = model.id;
  req.prompt = prompt;
  req.aspect_ratio = media.defaults.video_aspect_ratio;
  req.resolution = media.defaults.video_resolution;
  req.negative_prompt = media.background_video.negative_prompt;
  req.duration_seconds = model.duration_seconds;
  const CancelToken cancel = begin(call_id);
  Operation op;
  try {
    op = GenAiClient(options.endpoint, options.client).start_video(req, cancel);
  } catch (...) {
    end(call_id);
    throw;
  }
  const std::string job_id = "job-" + random_suffix();
  emit(CapabilityEvent::Type::Started, call_id, c,
       "generating a background video of " + description + " with " + model.display_name +
           " (operation " + op.name + ")",
       job_id);
  {
    std::lock_guard lock(mutex);
    if (stopping) {
      running.erase(call_id);
      throw Error(ErrorKind::Cancelled, "the runner is shutting down");
    }
    ++busy;
    jobs.emplace_back(&Impl::video_job, this, call_id, &c, job_id, op.name, description, model.key,
                      model.duration_seconds, cancel);
  }
  return {{"status", "started"},
          {"job_id", job_id},
          {"operation", op.name},
          {"estimated_cost_usd", estimate.usd()},
          {"message", "The background video of " + description +
                          " is being generated; this takes a minute or two. Tell the user it "
                          "started; its completion is reported separately."}};
}

void CapabilityRunner::Impl::video_job(std::string call_id, const Capability *c, std::string job_id,
                                       std::string operation, std::string description,
                                       std::string model_key, int seconds, CancelToken cancel) {
  try {
    GenAiClient client(options.endpoint, options.client);
    const auto poll = options.poll_interval.count() > 0
                          ? options.poll_interval
                          : std::chrono::milliseconds(static_cast<std::int64_t>(
                                media.defaults.poll_interval_seconds * 1000));
    const auto timeout = options.operation_timeout.count() > 0
                             ? options.operation_timeout
                             : std::chrono::milliseconds(static_cast<std::int64_t>(
                                   media.defaults.operation_timeout_seconds * 1000));
    const Operation done = client.wait_operation(
        operation, poll, timeout, cancel, [&](int n, std::chrono::milliseconds elapsed) {
          emit(CapabilityEvent::Type::Progress, call_id, *c,
               "still generating (poll " + std::to_string(n) + ", " +
                   std::to_string(elapsed.count() / 1000) + " s)",
               job_id);
        });
    std::error_code ec;
    std::filesystem::create_directories(options.videos_dir, ec);
    if (ec)
      throw Error(ErrorKind::Io,
                  "cannot create " + options.videos_dir.string() + ": " + ec.message());
    const auto path = unique_path(options.videos_dir, file_slug(description, "background"), ".mp4");
    client.download_video(done.video_uris.front(), path.string(), cancel);
    // The clip is paid for once it is done: recorded before any post-processing can fail.
    CostEntry cost = price_video(media, model_key, seconds);
    cost.user = user;
    cost.request_id = operation;
    cost.note = "background video \"" + description + "\" -> " + path.string() + "; " + cost.note;
    ledger->record(cost);
    std::vector<std::string> outputs;
    if (options.finish_video) {
      emit(CapabilityEvent::Type::Progress, call_id, *c, "making the loop outputs", job_id);
      const auto made = options.finish_video(path, cancel, [&](const std::string &step) {
        emit(CapabilityEvent::Type::Progress, call_id, *c, step, job_id);
      });
      for (const auto &p : made)
        outputs.push_back(p.string());
    }
    CapabilityEvent finished;
    finished.type = CapabilityEvent::Type::Finished;
    finished.call_id = call_id;
    finished.capability = c->name;
    finished.job_id = job_id;
    finished.message = fill_capability_template(
        c->finished_template.empty() ? c->done_template : c->finished_template,
        json{{"description", description}}.dump(), {{"cost", format_usd(cost.usd())}});
    finished.artefact = path.string();
    finished.outputs = std::move(outputs);
    finished.usd = cost.usd();
    if (on_event)
      on_event(finished);
  } catch (const std::exception &e) {
    emit(CapabilityEvent::Type::Failed, call_id, *c,
         std::string("the background video failed: ") + e.what(), job_id);
  }
  end(call_id);
  std::lock_guard lock(mutex);
  cancelled.erase(call_id);
  --busy;
  idle_cv.notify_all();
}

json CapabilityRunner::Impl::run_search(const std::string &call_id, const Capability &c,
                                        const json &args) {
  std::string query = arg_string(args, "query");
  if (query.empty())
    query = arg_string(args, c.trigger_argument.c_str());
  // The search fee plus a typical grounded answer (about 1000 tokens).
  TokenUsage typical;
  typical.input_tokens = 200;
  typical.output_tokens = 800;
  const CostEntry estimate = price_search(media, options.search_model, typical);
  ledger->check_budget(user, estimate.usd(), "this search");
  emit(CapabilityEvent::Type::Started, call_id, c, "searching the web for " + query);
  const CancelToken cancel = begin(call_id);
  struct End {
    Impl *self;
    const std::string &id;
    ~End() { self->end(id); }
  } end{this, call_id};

  GenerateRequest req;
  req.model_id = options.search_model;
  req.parts.push_back(InputPart::from_text(query));
  req.google_search = true;
  const GenerateResult result =
      GenAiClient(options.endpoint, options.client).generate_content(req, cancel);
  Grounding grounding;
  if (!result.grounding_metadata_json.empty())
    grounding = parse_grounding_metadata(result.grounding_metadata_json);
  CostEntry cost = price_search(media, options.search_model,
                                result.usage ? token_usage(*result.usage) : TokenUsage{});
  cost.user = user;
  cost.request_id = result.response_id;
  cost.note = "search \"" + query + "\"; " + cost.note;
  ledger->record(cost);

  json sources = json::array();
  for (const auto &s : grounding.sources)
    sources.push_back({{"title", s.title}, {"uri", s.uri}});
  const std::string answer = insert_citation_markers(result.text_parts, grounding);
  emit(CapabilityEvent::Type::Finished, call_id, c,
       "found " + std::to_string(grounding.sources.size()) + " source(s) about " + query, {}, {},
       cost.usd());
  return {{"status", "done"},
          {"answer", answer},
          {"sources", std::move(sources)},
          {"queries", grounding.web_search_queries},
          {"cost_usd", usd_of(cost.usd_nanos)}};
}

void CapabilityRunner::Impl::run_worker() {
  for (;;) {
    std::pair<LiveFunctionCall, std::function<void(LiveFunctionResponse)>> item;
    {
      std::unique_lock lock(mutex);
      queue_cv.wait(lock, [this] { return stopping || !queue.empty(); });
      if (stopping && queue.empty())
        return;
      item = std::move(queue.front());
      queue.pop_front();
    }
    const LiveFunctionCall &fc = item.first;
    std::string response = call(fc.id, fc.name, fc.args_json);
    bool answer = false;
    {
      std::lock_guard lock(mutex);
      answer = !cancelled.erase(fc.id) && !stopping;
    }
    if (answer && item.second)
      item.second(LiveFunctionResponse{fc.id, fc.name, std::move(response)});
    std::lock_guard lock(mutex);
    --busy;
    idle_cv.notify_all();
  }
}

CapabilityRunner::CapabilityRunner(CapabilitySet capabilities, MediaConfig media,
                                   std::shared_ptr<CostLedger> ledger,
                                   CapabilityRunnerOptions options, EventCallback on_event)
    : impl_(std::make_unique<Impl>()) {
  if (!ledger)
    throw Error(ErrorKind::InvalidArgument, "CapabilityRunner needs a cost ledger");
  impl_->caps = std::move(capabilities);
  impl_->media = std::move(media);
  impl_->ledger = std::move(ledger);
  impl_->options = std::move(options);
  impl_->on_event = std::move(on_event);
  impl_->user = impl_->options.user.empty() ? current_user() : impl_->options.user;
  impl_->worker = std::thread(&Impl::run_worker, impl_.get());
}

CapabilityRunner::~CapabilityRunner() {
  std::vector<std::thread> jobs;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
    for (auto &[id, token] : impl_->running)
      token.cancel();
    // Queued calls are dropped unanswered: the session they belong to is going away.
    impl_->busy -= static_cast<int>(impl_->queue.size());
    impl_->queue.clear();
    jobs.swap(impl_->jobs);
  }
  impl_->queue_cv.notify_all();
  impl_->worker.join();
  for (auto &t : jobs)
    t.join();
}

std::string CapabilityRunner::call(const std::string &call_id, const std::string &name,
                                   const std::string &args_json) {
  return impl_->call(call_id, name, args_json);
}

void CapabilityRunner::submit(const LiveFunctionCall &call,
                              std::function<void(LiveFunctionResponse)> done) {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping)
      return;
    ++impl_->busy;
    impl_->queue.emplace_back(call, std::move(done));
  }
  impl_->queue_cv.notify_one();
}

void CapabilityRunner::cancel(const std::string &call_id) {
  std::unique_lock lock(impl_->mutex);
  const auto queued = std::find_if(impl_->queue.begin(), impl_->queue.end(),
                                   [&](const auto &item) { return item.first.id == call_id; });
  if (queued != impl_->queue.end()) {
    const std::string name = queued->first.name;
    impl_->queue.erase(queued);
    --impl_->busy;
    impl_->idle_cv.notify_all();
    lock.unlock();
    if (const Capability *c = impl_->caps.find(name))
      impl_->emit(CapabilityEvent::Type::Failed, call_id, *c, "cancelled before it started");
    return;
  }
  if (const auto it = impl_->running.find(call_id); it != impl_->running.end()) {
    impl_->cancelled.insert(call_id);
    it->second.cancel();
  }
}

bool CapabilityRunner::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mutex);
  return impl_->idle_cv.wait_for(lock, timeout, [this] { return impl_->busy == 0; });
}

int CapabilityRunner::pending() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->busy;
}

const CapabilitySet &CapabilityRunner::capabilities() const noexcept {
  return impl_->caps;
}

// ---- LiveToolBridge ---------------------------------------------------------------------------

struct LiveToolBridge::Impl {
  mutable std::mutex mutex;
  std::weak_ptr<LiveSession> session;
  std::unique_ptr<CapabilityRunner> runner;
  bool model_in_turn = false;
  std::deque<std::string> reports; // waiting for the model's turn to end
  int awaiting_answer = 0;

  std::shared_ptr<LiveSession> current() const {
    std::lock_guard lock(mutex);
    return session.lock();
  }

  // Sends the queued reports when the model is idle. Called without `mutex` held.
  void flush_reports() {
    std::shared_ptr<LiveSession> s;
    std::deque<std::string> due;
    {
      std::lock_guard lock(mutex);
      if (model_in_turn || reports.empty())
        return;
      s = session.lock();
      if (!s)
        return;
      due.swap(reports);
      awaiting_answer += static_cast<int>(due.size());
      model_in_turn = true; // it answers the report
    }
    for (const auto &text : due)
      s->send_client_content({LiveTurn{"user", text}}, true);
  }
};

LiveToolBridge::LiveToolBridge(CapabilitySet capabilities, MediaConfig media,
                               std::shared_ptr<CostLedger> ledger,
                               CapabilityRunnerOptions options,
                               CapabilityRunner::EventCallback on_event)
    : impl_(std::make_shared<Impl>()) {
  // The runner's threads end before the runner's destructor returns, and the runner is
  // destroyed before impl_ (it is its member): a plain pointer is safe here.
  Impl *impl = impl_.get();
  impl_->runner = std::make_unique<CapabilityRunner>(
      std::move(capabilities), std::move(media), std::move(ledger), std::move(options),
      [impl, on_event = std::move(on_event)](const CapabilityEvent &event) {
        std::string report = job_report(event);
        if (!report.empty()) {
          // Queued before the runner's count drops, so pending() never reads 0 in between.
          std::lock_guard lock(impl->mutex);
          impl->reports.push_back(std::move(report));
        }
        if (on_event)
          on_event(event);
        impl->flush_reports();
      });
}

LiveToolBridge::~LiveToolBridge() {
  detach();
  impl_->runner.reset();
}

void LiveToolBridge::declare(LiveConfig &config, const DeclarationOptions &options) const {
  const CapabilitySet &caps = impl_->runner->capabilities();
  for (auto &declaration : caps.live_function_declarations(options)) {
    const bool taken =
        std::any_of(config.functions.begin(), config.functions.end(),
                    [&](const LiveFunctionDeclaration &f) { return f.name == declaration.name; });
    if (taken)
      throw Error(ErrorKind::InvalidArgument,
                  "the function " + declaration.name + " is declared twice: by the tools and by " +
                      caps.source().string());
    config.functions.push_back(std::move(declaration));
  }
  if (caps.uses_google_search(options))
    config.google_search = true;
}

void LiveToolBridge::attach(const std::shared_ptr<LiveSession> &session) {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->session = session;
  }
  impl_->flush_reports();
}

void LiveToolBridge::detach() {
  std::lock_guard lock(impl_->mutex);
  impl_->session.reset();
}

bool LiveToolBridge::handles(const std::string &function_name) const {
  const Capability *c = impl_->runner->capabilities().find(function_name);
  return c && c->availability != CapabilityAvailability::Never;
}

std::vector<LiveFunctionCall>
LiveToolBridge::handle(const std::vector<LiveFunctionCall> &calls) {
  std::vector<LiveFunctionCall> others;
  for (const auto &call : calls) {
    if (!handles(call.name)) {
      others.push_back(call);
      continue;
    }
    std::weak_ptr<Impl> weak = impl_;
    impl_->runner->submit(call, [weak](LiveFunctionResponse response) {
      auto impl = weak.lock();
      if (!impl)
        return;
      if (auto session = impl->current())
        session->send_tool_response({std::move(response)});
    });
  }
  return others;
}

void LiveToolBridge::cancel(const std::vector<std::string> &ids) {
  for (const auto &id : ids)
    impl_->runner->cancel(id);
}

void LiveToolBridge::model_output() {
  std::lock_guard lock(impl_->mutex);
  impl_->model_in_turn = true;
}

void LiveToolBridge::model_turn_complete() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->model_in_turn = false;
    if (impl_->awaiting_answer > 0)
      --impl_->awaiting_answer; // reports are sent only between turns: this turn answered one
  }
  impl_->flush_reports();
}

void LiveToolBridge::report_job(const CapabilityEvent &event) {
  std::string report = job_report(event);
  if (report.empty())
    return;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->reports.push_back(std::move(report));
  }
  impl_->flush_reports();
}

int LiveToolBridge::pending() const {
  const int running = impl_->runner->pending();
  std::lock_guard lock(impl_->mutex);
  return running + static_cast<int>(impl_->reports.size());
}

int LiveToolBridge::awaiting_answer() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->awaiting_answer;
}

CapabilityRunner &LiveToolBridge::runner() noexcept {
  return *impl_->runner;
}

std::string LiveToolBridge::job_report(const CapabilityEvent &event) {
  if (event.job_id.empty())
    return {};
  if (event.type == CapabilityEvent::Type::Finished) {
    std::string files;
    if (!event.artefact.empty())
      files = event.artefact;
    for (const auto &output : event.outputs)
      files += (files.empty() ? "" : ", ") + output;
    return "[job " + event.job_id + " finished] " + event.message +
           (files.empty() ? "" : " Files: " + files + ".") +
           " Tell the user it is ready, in one short sentence.";
  }
  if (event.type == CapabilityEvent::Type::Failed)
    return "[job " + event.job_id + " failed] " + event.message +
           " Tell the user, in one short sentence, that it did not work and why.";
  return {};
}

} // namespace gemstream
