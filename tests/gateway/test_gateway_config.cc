// The gateway configuration file: defaults, relative paths, hashed tokens, and errors that name
// the file and the JSON pointer of what is wrong.
#include "gateway_test_util.h"

#include <gemstream/error.h>

using namespace gemstream;
using namespace gemstream::gateway;
using namespace gemstream::testing;

namespace {

json minimal() {
  return {{"version", 1},
          {"auth", {{"tokens", json::array({{{"user", "alice"}, {"token", kAliceToken}}})}}},
          {"media", {{"dir", "media"}}},
          {"database", "jobs.sqlite"}};
}

// The Error(Config) message of parsing `doc`, or "" when it parses.
std::string config_error(const json &doc) {
  try {
    GatewayConfig::parse(doc.dump(), "gw.json", "/srv/gw");
    return "";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    return e.what();
  }
}

TEST(GatewayConfig, DefaultsAndPathsRelativeToTheFile) {
  const GatewayConfig c = GatewayConfig::parse(minimal().dump(), "gw.json", "/srv/gw");
  EXPECT_EQ(c.listen_address, "127.0.0.1");
  EXPECT_EQ(c.port, 8080);
  EXPECT_EQ(c.media_dir, "/srv/gw/media");
  EXPECT_EQ(c.database, "/srv/gw/jobs.sqlite");
  EXPECT_TRUE(c.ledger.empty());
  EXPECT_EQ(c.concurrency, 2);
  EXPECT_EQ(c.jobs_per_minute, 10);
  EXPECT_EQ(c.max_upload_bytes, 100'000'000u);
  EXPECT_TRUE(c.media_public);
  EXPECT_FALSE(c.daily_budget_usd);
  EXPECT_TRUE(c.loop.enabled);
  EXPECT_EQ(c.user_for_token(kAliceToken), "alice");
  EXPECT_FALSE(c.user_for_token("alice-token-0123456780"));
  EXPECT_FALSE(c.user_for_token(""));
}

TEST(GatewayConfig, HashedTokensAndBudgets) {
  json doc = minimal();
  doc["auth"]["tokens"].push_back(
      {{"user", "kiosk-1"}, {"token_sha256", token_sha256_hex(kBobToken)}});
  doc["budget"] = {{"daily_usd", 20}, {"users", {{"kiosk-1", 5.5}}}};
  doc["queue"] = {{"concurrency", 3}, {"jobs_per_minute", 4}, {"lease_seconds", 10}};
  doc["tls"] = {{"certificate", "/etc/gw/cert.pem"}, {"private_key", "key.pem"}};
  const GatewayConfig c = GatewayConfig::parse(doc.dump(), "gw.json", "/srv/gw");
  EXPECT_EQ(c.user_for_token(kBobToken), "kiosk-1");
  EXPECT_EQ(*c.daily_budget_usd, 20);
  EXPECT_EQ(c.user_budgets_usd.at("kiosk-1"), 5.5);
  EXPECT_EQ(c.concurrency, 3);
  EXPECT_EQ(c.jobs_per_minute, 4);
  EXPECT_EQ(c.lease, std::chrono::seconds(10));
  EXPECT_EQ(c.tls_certificate, "/etc/gw/cert.pem");
  EXPECT_EQ(c.tls_private_key, "/srv/gw/key.pem");
  // The hex digest of a known value (SHA-256 of "abc").
  EXPECT_EQ(token_sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(GatewayConfig, ErrorsNameTheFileAndTheJsonPointer) {
  {
    json d = minimal();
    d["auth"]["tokens"][0]["token"] = "short";
    EXPECT_EQ(config_error(d), "gw.json: /auth/tokens/0/token: must be 16 to 100 characters "
                               "(e.g. `openssl rand -hex 32`), got 5");
  }
  {
    json d = minimal();
    d["auth"]["tokens"][0]["token"] = "has space in the token";
    EXPECT_NE(config_error(d).find("gw.json: /auth/tokens/0/token: may only contain"),
              std::string::npos);
  }
  {
    json d = minimal();
    d["auth"]["tokens"][0]["user"] = "../etc";
    EXPECT_NE(config_error(d).find("gw.json: /auth/tokens/0/user: a user id is"),
              std::string::npos);
  }
  {
    json d = minimal();
    d["auth"]["tokens"][0]["token_sha256"] = token_sha256_hex("x");
    EXPECT_EQ(config_error(d),
              "gw.json: /auth/tokens/0: needs exactly one of \"token\" and \"token_sha256\"");
  }
  {
    json d = minimal();
    d["auth"]["tokens"].push_back({{"user", "bob"}, {"token", kAliceToken}});
    EXPECT_EQ(config_error(d), "gw.json: /auth/tokens/1: the same token is listed twice");
  }
  {
    json d = minimal();
    d["auth"]["tokens"] = json::array();
    EXPECT_NE(config_error(d).find("gw.json: /auth/tokens: needs at least one token"),
              std::string::npos);
  }
  {
    json d = minimal();
    d["queue"] = {{"concurency", 2}};
    EXPECT_NE(config_error(d).find("gw.json: /queue/concurency: unknown field"), std::string::npos);
  }
  {
    json d = minimal();
    d["queue"] = {{"concurrency", 0}};
    EXPECT_EQ(config_error(d), "gw.json: /queue/concurrency: must be from 1 to 64, got 0");
  }
  {
    json d = minimal();
    d["listen"] = {{"port", "8080"}};
    EXPECT_EQ(config_error(d), "gw.json: /listen/port: expected an integer, got string");
  }
  {
    json d = minimal();
    d["budget"] = {{"users", {{"mallory", 1}}}};
    EXPECT_EQ(config_error(d),
              "gw.json: /budget/users/mallory: no token in /auth/tokens belongs to user "
              "\"mallory\"");
  }
  {
    json d = minimal();
    d.erase("database");
    EXPECT_EQ(config_error(d), "gw.json: /database: missing required field");
  }
  {
    json d = minimal();
    d["version"] = 2;
    EXPECT_EQ(config_error(d), "gw.json: /version: this build reads version 1, got 2");
  }
  {
    json d = minimal();
    d["loop"] = {{"formats", {"mp4", "gif"}}};
    EXPECT_EQ(config_error(d),
              "gw.json: /loop/formats/1: expected one of \"mp4\", \"webm\", \"poster\", got "
              "\"gif\"");
  }
  try {
    GatewayConfig::parse("{\"version\": 1,", "gw.json", "/srv");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()).rfind("gw.json: invalid JSON at line 1", 0), 0u) << e.what();
  }
}

TEST(GatewayConfig, CorsOriginsAndLiveLimits) {
  json d = minimal();
  d["cors"] = {{"allowed_origins", {"https://app.example.com", "http://localhost:5173"}}};
  d["live"] = {{"max_sessions", 8}, {"max_sessions_per_user", 2}, {"model", "gemini-live-x"}};
  const GatewayConfig c = GatewayConfig::parse(d.dump(), "gw.json", "/srv/gw");
  EXPECT_EQ(c.cors_origins,
            (std::vector<std::string>{"https://app.example.com", "http://localhost:5173"}));
  EXPECT_EQ(c.live.max_sessions, 8u);
  EXPECT_EQ(c.live.max_sessions_per_user, 2u);
  EXPECT_EQ(c.live.model, "gemini-live-x");
  EXPECT_EQ(GatewayConfig::parse(minimal().dump(), "gw.json", "/srv/gw").live.max_sessions, 32u);

  d["cors"]["allowed_origins"][1] = "https://app.example.com/kiosk";
  EXPECT_NE(config_error(d).find("gw.json: /cors/allowed_origins/1: expected an origin"),
            std::string::npos)
      << config_error(d);
  d["cors"]["allowed_origins"][1] = "*";
  EXPECT_EQ(config_error(d), "");
  d["live"]["max_sessions_per_user"] = 0;
  EXPECT_NE(config_error(d).find("gw.json: /live/max_sessions_per_user"), std::string::npos);
  d["live"] = {{"voice", "Puck"}};
  EXPECT_NE(config_error(d).find("/live/voice"), std::string::npos) << config_error(d);
}

TEST(GatewayConfig, RedisStoreReplacesTheDatabase) {
  json doc = minimal();
  doc.erase("database");
  EXPECT_EQ(config_error(doc), "gw.json: /database: missing required field");
  doc["store"] = {{"redis", "redis://10.0.0.5:6380/2"}};
  GatewayConfig c = GatewayConfig::parse(doc.dump(), "gw.json", "/srv/gw");
  EXPECT_EQ(c.redis_url, "redis://10.0.0.5:6380/2");
  EXPECT_EQ(c.redis_prefix, "gemstream:");
  EXPECT_TRUE(c.database.empty());
  doc["store"]["prefix"] = "kiosks:";
  EXPECT_EQ(GatewayConfig::parse(doc.dump(), "gw.json", "/srv/gw").redis_prefix, "kiosks:");
  EXPECT_TRUE(GatewayConfig::parse(minimal().dump(), "gw.json", "/srv/gw").redis_url.empty());
  {
    json d = doc;
    d["store"]["redis"] = "http://u:hunter2-pass@10.0.0.5";
    const std::string e = config_error(d);
    EXPECT_NE(e.find("gw.json: /store/redis: expected a URL redis://"), std::string::npos) << e;
    EXPECT_EQ(e.find("hunter2"), std::string::npos) << "the password stays out of errors";
  }
  {
    json d = doc;
    d["store"]["prefix"] = "";
    EXPECT_EQ(config_error(d), "gw.json: /store/prefix: must not be empty");
    d["store"]["prefix"] = std::string(201, 'p');
    EXPECT_NE(config_error(d).find("gw.json: /store/prefix: must be at most 200 characters"),
              std::string::npos);
  }
  {
    json d = doc;
    d["store"]["sentinel"] = true;
    EXPECT_NE(config_error(d).find("gw.json: /store/sentinel:"), std::string::npos)
        << config_error(d);
  }
  {
    json d = doc;
    d["store"].erase("redis");
    EXPECT_EQ(config_error(d), "gw.json: /store/redis: missing required field");
  }
}

TEST(GatewayConfig, TheExampleFileIsValid) {
  const GatewayConfig c =
      GatewayConfig::load(fs::path(GEMSTREAM_SOURCE_DIR) / "config" / "gateway.example.json");
  EXPECT_FALSE(c.tokens.empty());
  EXPECT_EQ(c.concurrency, 2);
  EXPECT_EQ(c.jobs_per_minute, 10);
}

} // namespace
