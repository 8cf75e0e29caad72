// The gateway configuration file: strict validation with errors that name the file and the JSON
// pointer, as for the project's other configuration files (json_validation.h).
#include "gemstream/gateway.h"

#include "gemstream/error.h"

#include "json_validation.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace gemstream::gateway {
namespace {

using json = nlohmann::json;
using namespace config_json;

constexpr std::size_t kMinTokenLength = 16;
// "gemstream.v1, bearer.TOKEN" must fit libwebsockets' 127-byte subprotocol header buffer.
constexpr std::size_t kMaxTokenLength = 100;

bool is_user_id(std::string_view id) {
  if (id.empty() || id.size() > 64)
    return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

// URL-unreserved characters: the token travels unchanged in a header, a query string and a
// WebSocket subprotocol.
bool is_token_text(std::string_view token) {
  return std::all_of(token.begin(), token.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' ||
           c == '~';
  });
}

std::array<unsigned char, 32> sha256(std::string_view text) {
  std::array<unsigned char, 32> digest{};
  unsigned int length = 0;
  if (EVP_Digest(text.data(), text.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != digest.size())
    throw Error(ErrorKind::Internal, "SHA-256 failed");
  return digest;
}

std::optional<std::array<unsigned char, 32>> from_hex(std::string_view hex) {
  if (hex.size() != 64)
    return std::nullopt;
  std::array<unsigned char, 32> out{};
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < 32; ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    out[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return out;
}

std::filesystem::path resolve(const std::filesystem::path &base, const std::string &text) {
  const std::filesystem::path p(text);
  return p.is_absolute() || base.empty() ? p : base / p;
}

// An integer in [min, max].
int integer_in(const Validator &v, ObjectReader &r, std::string_view name, int min, int max) {
  const json &value = r.field(name);
  if (!value.is_number())
    v.fail_type(r.pointer_of(name), "integer", value);
  const double n = value.get<double>();
  if (n != std::floor(n))
    v.fail(r.pointer_of(name), "expected an integer, got " + value.dump());
  if (n < min || n > max)
    v.fail(r.pointer_of(name), "must be from " + std::to_string(min) + " to " +
                                   std::to_string(max) + ", got " + value.dump());
  return static_cast<int>(n);
}

double number_in(const Validator &v, ObjectReader &r, std::string_view name, double min,
                 double max) {
  const double n = r.number(name);
  if (!(n >= min && n <= max)) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "must be from %g to %g, got %g", min, max, n);
    v.fail(r.pointer_of(name), buf);
  }
  return n;
}

std::chrono::milliseconds seconds_in(const Validator &v, ObjectReader &r, std::string_view name,
                                     double min, double max) {
  return std::chrono::milliseconds(std::llround(number_in(v, r, name, min, max) * 1000));
}

void allow_all(ObjectReader &r, std::initializer_list<std::string_view> names) {
  for (auto n : names)
    r.allow(n);
}

void parse_tokens(const Validator &v, ObjectReader &auth, GatewayConfig &cfg) {
  const json &tokens = auth.array("tokens");
  const std::string pointer = auth.pointer_of("tokens");
  if (tokens.empty())
    v.fail(pointer, "needs at least one token: nobody could use the gateway");
  std::set<std::array<unsigned char, 32>> seen;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    ObjectReader entry(v, tokens[i], pointer + "/" + std::to_string(i));
    allow_all(entry, {"user", "token", "token_sha256", "comment"});
    TokenEntry t;
    t.user = entry.string("user");
    if (!is_user_id(t.user))
      v.fail(entry.pointer_of("user"),
             "a user id is 1 to 64 letters, digits, '_' or '-' (it names directories), got " +
                 in_quotes(t.user));
    const bool plain = entry.has("token"), hashed = entry.has("token_sha256");
    if (plain == hashed)
      v.fail(entry.pointer(), "needs exactly one of \"token\" and \"token_sha256\"");
    if (plain) {
      const std::string token = entry.string("token");
      if (token.size() < kMinTokenLength || token.size() > kMaxTokenLength)
        v.fail(entry.pointer_of("token"), "must be " + std::to_string(kMinTokenLength) + " to " +
                                              std::to_string(kMaxTokenLength) +
                                              " characters (e.g. `openssl rand -hex 32`), "
                                              "got " +
                                              std::to_string(token.size()));
      if (!is_token_text(token))
        v.fail(entry.pointer_of("token"),
               "may only contain letters, digits, '-', '.', '_' and '~' (it travels in headers, "
               "URLs and WebSocket subprotocols)");
      t.sha256 = sha256(token);
    } else {
      const std::string hex = entry.string("token_sha256");
      auto digest = from_hex(hex);
      if (!digest)
        v.fail(entry.pointer_of("token_sha256"), "expected 64 hexadecimal digits (SHA-256)");
      t.sha256 = *digest;
    }
    if (entry.has("comment"))
      entry.string_or_empty("comment");
    if (!seen.insert(t.sha256).second)
      v.fail(entry.pointer(), "the same token is listed twice");
    entry.finish();
    cfg.tokens.push_back(std::move(t));
  }
}

} // namespace

std::unique_ptr<JobStore> open_job_store(const GatewayConfig &config) {
  if (!config.redis_url.empty())
    return open_redis_job_store(config.redis_url, config.redis_prefix);
  return open_sqlite_job_store(config.database);
}

std::string token_sha256_hex(std::string_view token) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : sha256(token)) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::optional<std::string> GatewayConfig::user_for_token(std::string_view token) const {
  if (token.empty())
    return std::nullopt;
  const auto digest = sha256(token);
  // Every entry is compared, in constant time, so timing does not tell how close a guess came.
  const TokenEntry *match = nullptr;
  for (const auto &entry : tokens) {
    if (CRYPTO_memcmp(entry.sha256.data(), digest.data(), digest.size()) == 0)
      match = &entry;
  }
  if (!match)
    return std::nullopt;
  return match->user;
}

GatewayConfig GatewayConfig::load(const std::filesystem::path &file) {
  return parse(read_file(file), file, file.parent_path());
}

GatewayConfig GatewayConfig::parse(const std::string &json_text, const std::filesystem::path &name,
                                   const std::filesystem::path &base_dir) {
  const Validator v(name.string());
  const json doc = parse_document(v, json_text);
  ObjectReader root(v, doc, "");
  allow_all(root, {"version", "listen", "tls", "auth", "media", "database", "store", "ledger",
                   "queue", "budget", "loop", "live", "cors", "comment"});
  GatewayConfig cfg;
  cfg.source = name;

  {
    const json &version = root.field("version");
    if (!version.is_number_integer() || version.get<int>() != kVersion)
      v.fail("/version",
             "this build reads version " + std::to_string(kVersion) + ", got " + version.dump());
  }
  if (root.has("comment"))
    root.string_or_empty("comment");

  if (root.has("listen")) {
    ObjectReader listen = root.object("listen");
    allow_all(listen, {"address", "port"});
    if (listen.has("address"))
      cfg.listen_address = listen.string("address");
    if (listen.has("port"))
      cfg.port = static_cast<std::uint16_t>(integer_in(v, listen, "port", 0, 65535));
    listen.finish();
  }

  if (root.has("tls")) {
    ObjectReader tls = root.object("tls");
    cfg.tls_certificate = resolve(base_dir, tls.string("certificate"));
    cfg.tls_private_key = resolve(base_dir, tls.string("private_key"));
    tls.finish();
  }

  {
    ObjectReader auth = root.object("auth");
    parse_tokens(v, auth, cfg);
    auth.finish();
  }

  {
    ObjectReader media = root.object("media");
    allow_all(media, {"dir", "public", "max_upload_bytes"});
    cfg.media_dir = resolve(base_dir, media.string("dir"));
    if (media.has("public"))
      cfg.media_public = media.boolean("public");
    if (media.has("max_upload_bytes")) {
      const double bytes = media.positive_number("max_upload_bytes");
      if (bytes != std::floor(bytes) || bytes > 2e9)
        v.fail(media.pointer_of("max_upload_bytes"),
               "expected a whole number of bytes up to 2000000000 (the Files API limit)");
      cfg.max_upload_bytes = static_cast<std::uint64_t>(bytes);
    }
    media.finish();
  }

  if (root.has("store")) {
    ObjectReader store = root.object("store");
    allow_all(store, {"redis", "prefix"});
    cfg.redis_url = store.string("redis");
    if (cfg.redis_url.rfind("redis://", 0) != 0)
      v.fail(store.pointer_of("redis"),
             "expected a URL redis://[[user]:password@]host[:port][/db]");
    if (store.has("prefix")) {
      cfg.redis_prefix = store.string("prefix");
      if (cfg.redis_prefix.size() > 200)
        v.fail(store.pointer_of("prefix"),
               "must be at most 200 characters (every key of the job store starts with it)");
    }
    store.finish();
  }
  // With a Redis store the SQLite file is not used, so it is optional.
  if (cfg.redis_url.empty() || root.has("database"))
    cfg.database = resolve(base_dir, root.string("database"));
  if (root.has("ledger"))
    cfg.ledger = resolve(base_dir, root.string("ledger"));

  if (root.has("queue")) {
    ObjectReader queue = root.object("queue");
    allow_all(queue, {"concurrency", "jobs_per_minute", "poll_interval_seconds", "lease_seconds",
                      "max_attempts", "max_unfinished_jobs_per_user"});
    if (queue.has("concurrency"))
      cfg.concurrency = integer_in(v, queue, "concurrency", 1, 64);
    if (queue.has("jobs_per_minute"))
      cfg.jobs_per_minute = integer_in(v, queue, "jobs_per_minute", 1, 10000);
    if (queue.has("poll_interval_seconds"))
      cfg.poll_interval = seconds_in(v, queue, "poll_interval_seconds", 0.01, 600);
    if (queue.has("lease_seconds"))
      cfg.lease = seconds_in(v, queue, "lease_seconds", 1, 3600);
    if (queue.has("max_attempts"))
      cfg.max_attempts = integer_in(v, queue, "max_attempts", 1, 100);
    if (queue.has("max_unfinished_jobs_per_user"))
      cfg.max_unfinished_jobs_per_user =
          static_cast<std::size_t>(integer_in(v, queue, "max_unfinished_jobs_per_user", 1, 10000));
    queue.finish();
  }

  if (root.has("budget")) {
    ObjectReader budget = root.object("budget");
    allow_all(budget, {"daily_usd", "users"});
    if (budget.has("daily_usd"))
      cfg.daily_budget_usd = budget.price("daily_usd");
    if (budget.has("users")) {
      ObjectReader users = budget.object("users");
      for (const auto &member : users.members().items()) {
        const std::string &user = member.key();
        const bool known = std::any_of(cfg.tokens.begin(), cfg.tokens.end(),
                                       [&](const TokenEntry &t) { return t.user == user; });
        if (!known)
          v.fail(users.pointer_of(user),
                 "no token in /auth/tokens belongs to user " + in_quotes(user));
        cfg.user_budgets_usd[user] = users.price(user);
      }
    }
    budget.finish();
  }

  if (root.has("loop")) {
    ObjectReader loop = root.object("loop");
    allow_all(loop, {"enabled", "formats", "crossfade_seconds", "height"});
    if (loop.has("enabled"))
      cfg.loop.enabled = loop.boolean("enabled");
    if (loop.has("formats")) {
      const json &formats = loop.array("formats");
      cfg.loop.formats.clear();
      for (std::size_t i = 0; i < formats.size(); ++i) {
        const std::string pointer = loop.pointer_of("formats") + "/" + std::to_string(i);
        const std::string f = ObjectReader::string_value(v, formats[i], pointer);
        if (f != "mp4" && f != "webm" && f != "poster")
          v.fail(pointer, "expected one of \"mp4\", \"webm\", \"poster\", got " + in_quotes(f));
        if (std::find(cfg.loop.formats.begin(), cfg.loop.formats.end(), f) !=
            cfg.loop.formats.end())
          v.fail(pointer, in_quotes(f) + " is listed twice");
        cfg.loop.formats.push_back(f);
      }
      if (cfg.loop.formats.empty() && cfg.loop.enabled)
        v.fail(loop.pointer_of("formats"), "needs at least one format (or set enabled to false)");
    }
    if (loop.has("crossfade_seconds"))
      cfg.loop.crossfade_seconds = number_in(v, loop, "crossfade_seconds", 0.04, 4);
    if (loop.has("height")) {
      cfg.loop.height = integer_in(v, loop, "height", 0, 4320);
      if (cfg.loop.height % 2 != 0)
        v.fail(loop.pointer_of("height"), "must be even (video encoders need even sizes)");
    }
    loop.finish();
  }

  if (root.has("cors")) {
    ObjectReader cors = root.object("cors");
    const json &origins = cors.array("allowed_origins");
    for (std::size_t i = 0; i < origins.size(); ++i) {
      const std::string pointer = cors.pointer_of("allowed_origins") + "/" + std::to_string(i);
      const std::string o = ObjectReader::string_value(v, origins[i], pointer);
      const auto scheme = o.find("://");
      const bool origin_like = scheme != std::string::npos &&
                               (o.compare(0, scheme, "http") == 0 ||
                                o.compare(0, scheme, "https") == 0) &&
                               o.size() > scheme + 3 &&
                               o.find('/', scheme + 3) == std::string::npos;
      if (o != "*" && !origin_like)
        v.fail(pointer, "expected an origin such as \"https://app.example.com\" (scheme, host "
                        "and optional port, no path) or \"*\", got " + in_quotes(o));
      cfg.cors_origins.push_back(o);
    }
    cors.finish();
  }

  if (root.has("live")) {
    ObjectReader live = root.object("live");
    allow_all(live, {"model", "system_instruction", "max_sessions", "max_sessions_per_user"});
    if (live.has("model"))
      cfg.live.model = live.string("model");
    if (live.has("system_instruction"))
      cfg.live.system_instruction = live.string_or_empty("system_instruction");
    if (live.has("max_sessions"))
      cfg.live.max_sessions = static_cast<std::size_t>(integer_in(v, live, "max_sessions", 0, 10000));
    if (live.has("max_sessions_per_user"))
      cfg.live.max_sessions_per_user =
          static_cast<std::size_t>(integer_in(v, live, "max_sessions_per_user", 1, 10000));
    live.finish();
  }

  root.finish();
  return cfg;
}

} // namespace gemstream::gateway
