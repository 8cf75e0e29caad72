// config/agent_capabilities.json: validation with JSON-pointer errors, the declarations sent to
// the model, and the runner executing the tool calls the acceptance phrases produce, against the
// local backend (consent first, budget before any request, artefacts and ledger rows after).
#include <gemstream/capabilities.h>
#include <gemstream/config.h>
#include <gemstream/costs.h>
#include <gemstream/error.h>
#include <gemstream/local_backend.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;
using namespace gemstream;
using json = nlohmann::json;

namespace {

std::string capabilities_text() {
  std::ifstream in(fs::path(GEMSTREAM_SOURCE_DIR) / "config" / "agent_capabilities.json");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The config error for the shipped file changed by `edit`.
std::string error_for(const std::function<void(json &)> &edit) {
  json doc = json::parse(capabilities_text());
  edit(doc);
  const MediaConfig media = MediaConfig::load_default();
  try {
    CapabilitySet::parse(doc.dump(), "caps.json", &media);
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    return e.what();
  }
  return "(accepted)";
}

json &capability(json &doc, const std::string &name) {
  for (auto &c : doc["capabilities"])
    if (c["name"] == name)
      return c;
  throw std::runtime_error("no capability " + name);
}

} // namespace

TEST(Capabilities, TheShippedFileLoadsAndValidates) {
  const MediaConfig media = MediaConfig::load_default();
  const CapabilitySet set = CapabilitySet::load_default(&media);
  ASSERT_EQ(set.capabilities().size(), 3u);
  const Capability *image = set.find("generate_card_image");
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(image->category, "media_generation");
  EXPECT_TRUE(image->requires_consent);
  EXPECT_EQ(image->execution, CapabilityExecution::Sync);
  EXPECT_EQ(image->required, std::vector<std::string>{"motif"});
  EXPECT_DOUBLE_EQ(set.estimated_usd(*image, media), 0.001);
  const Capability *video = set.find("generate_background_video");
  ASSERT_NE(video, nullptr);
  EXPECT_EQ(video->execution, CapabilityExecution::AsyncJob);
  EXPECT_DOUBLE_EQ(set.estimated_usd(*video, media), 4.0);
  const Capability *search = set.find("search_and_ground");
  ASSERT_NE(search, nullptr);
  EXPECT_EQ(search->execution, CapabilityExecution::BuiltinSearch);
  EXPECT_FALSE(search->requires_consent);
  EXPECT_DOUBLE_EQ(set.estimated_usd(*search, media), 0.000035);
}

TEST(Capabilities, ErrorsNameTheFileAndTheJsonPointer) {
  EXPECT_EQ(error_for([](json &d) { d["version"] = 2; }),
            "caps.json: /version: unsupported version 2 (this build reads version 1)");
  EXPECT_EQ(error_for([](json &d) {
              capability(d, "generate_card_image")["colour"] = "red";
            }).rfind("caps.json: /capabilities/0/colour: unknown field", 0),
            0u);
  EXPECT_EQ(error_for([](json &d) {
              capability(d, "generate_card_image")["parameters"]["required"] = {"moitf"};
            }),
            "caps.json: /capabilities/0/parameters/required/0: \"moitf\" is not a property");
  EXPECT_EQ(
      error_for([](json &d) {
        capability(d, "generate_card_image")["parameters"]["properties"]["motif"]["type"] =
            "string";
      }).rfind("caps.json: /capabilities/0/parameters/properties/motif/type: expected one of", 0),
      0u);
  EXPECT_EQ(error_for([](json &d) {
              capability(d, "generate_card_image")["trigger"]["argument"] = "subject";
            }),
            "caps.json: /capabilities/0/trigger/argument: \"subject\" is not a parameter");
  EXPECT_EQ(
      error_for([](json &d) {
        capability(d, "generate_card_image")["trigger"]["patterns"][0] = "(unclosed";
      }).rfind("caps.json: /capabilities/0/trigger/patterns/0: invalid regular expression", 0),
      0u);
  EXPECT_EQ(
      error_for([](json &d) {
        capability(d, "generate_card_image")["examples"].push_back("sing a song");
      }),
      "caps.json: /capabilities/0/examples/4: the example \"sing a song\" matches none of the "
      "trigger patterns");
  EXPECT_EQ(
      error_for([](json &d) {
        capability(d, "generate_card_image")["cost"]["media_model"] = "dall_e";
      }).rfind("caps.json: /capabilities/0/cost/media_model: unknown media model \"dall_e\"", 0),
      0u);
  EXPECT_EQ(error_for([](json &d) {
              capability(d, "generate_card_image")["question_template"] = "Draw {subject}?";
            }),
            "caps.json: /capabilities/0/question_template: unknown placeholder {subject} (allowed: "
            "{confirmed}, {cost}, {motif}, {style})");
  EXPECT_EQ(
      error_for([](json &d) {
        capability(d, "generate_card_image")["parameters"]["required"].push_back("confirmed");
      })
          .rfind(
              "caps.json: /capabilities/0/parameters/required: \"confirmed\" must not be required",
              0),
      0u);
  EXPECT_EQ(error_for([](json &d) { capability(d, "generate_card_image")["execution"] = "later"; }),
            "caps.json: /capabilities/0/execution: expected one of \"sync\", \"async_job\", "
            "\"builtin_search\", got \"later\"");
  EXPECT_EQ(error_for([](json &d) {
              capability(d, "search_and_ground")["name"] = "generate_card_image";
            }),
            "caps.json: /capabilities/2/name: the name \"generate_card_image\" is used twice");
  EXPECT_EQ(error_for([](json &d) {
              capability(d,
                         "generate_card_image")["trigger"]["enum_keywords"]["style"]["baroque"] = {
                  "ornate"};
            }),
            "caps.json: /capabilities/0/trigger/enum_keywords/style/baroque: \"baroque\" is not a "
            "value of the parameter's enum");
  EXPECT_EQ(
      error_for([](json &d) { capability(d, "generate_card_image").erase("requires_consent"); }),
      "caps.json: /capabilities/0/requires_consent: missing required field");
  EXPECT_EQ(error_for([](json &) {}), "(accepted)");
}

TEST(Capabilities, DeclarationsForLiveAndGenerateContent) {
  const CapabilitySet set = CapabilitySet::load_default();
  const auto functions = set.function_declarations();
  ASSERT_EQ(functions.size(), 2u); // search is the googleSearch tool
  EXPECT_EQ(functions[0].name, "generate_card_image");
  const json params = json::parse(functions[0].parameters_json);
  EXPECT_EQ(params.at("type"), "OBJECT");
  EXPECT_EQ(params.at("properties").at("confirmed").at("type"), "BOOLEAN");
  EXPECT_EQ(params.at("properties").at("style").at("enum"),
            json({"minimal", "abstract", "nature", "cosmic"}));
  EXPECT_EQ(params.at("required"), json({"motif"}));
  EXPECT_TRUE(set.uses_google_search());

  const auto live = set.live_function_declarations();
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[1].name, "generate_background_video");
  EXPECT_EQ(json::parse(live[1].parameters_json), json::parse(functions[1].parameters_json));

  const json tools = json::parse(set.tools_json());
  ASSERT_EQ(tools.size(), 2u);
  EXPECT_EQ(tools[0].at("functionDeclarations").size(), 2u);
  EXPECT_EQ(tools[0].at("functionDeclarations")[0].at("description"), functions[0].description);
  EXPECT_EQ(tools[1], json({{"googleSearch", json::object()}}));

  DeclarationOptions as_function;
  as_function.search_as_function = true;
  EXPECT_EQ(set.function_declarations(as_function).size(), 3u);
  EXPECT_FALSE(set.uses_google_search(as_function));
  EXPECT_EQ(json::parse(set.tools_json(as_function)).size(), 1u);

  // A consent capability without a declared confirmed flag gets one; `never` is not offered;
  // `when_configured` needs configuration.
  json doc = json::parse(capabilities_text());
  capability(doc, "generate_card_image")["parameters"]["properties"].erase("confirmed");
  capability(doc, "generate_background_video")["availability"] = "never";
  capability(doc, "search_and_ground")["availability"] = "when_configured";
  const CapabilitySet edited = CapabilitySet::parse(doc.dump(), "edited.json");
  const auto declared = edited.function_declarations();
  ASSERT_EQ(declared.size(), 1u);
  EXPECT_EQ(json::parse(declared[0].parameters_json).at("properties").at("confirmed").at("type"),
            "BOOLEAN");
  EXPECT_TRUE(edited.uses_google_search());
  DeclarationOptions unconfigured;
  unconfigured.configured = false;
  EXPECT_FALSE(edited.uses_google_search(unconfigured));
}

TEST(Capabilities, AcceptancePhrasesBecomeToolCalls) {
  const CapabilitySet set = CapabilitySet::load_default();
  auto call = set.match_utterance("Create a card with a meditation image.");
  ASSERT_TRUE(call);
  EXPECT_EQ(call->name, "generate_card_image");
  EXPECT_EQ(json::parse(call->args_json), json({{"motif", "meditation"}, {"confirmed", false}}));

  call = set.match_utterance("make my chat background a peaceful beach sunset");
  ASSERT_TRUE(call);
  EXPECT_EQ(call->name, "generate_background_video");
  EXPECT_EQ(
      json::parse(call->args_json),
      json({{"description", "peaceful beach sunset"}, {"mood", "calm"}, {"confirmed", false}}));

  call = set.match_utterance("What's the latest on AI regulation?");
  ASSERT_TRUE(call);
  EXPECT_EQ(call->name, "search_and_ground");
  EXPECT_EQ(json::parse(call->args_json), json({{"query", "ai regulation"}}));

  EXPECT_FALSE(set.match_utterance("here is my workout video, what do you see?"));
  EXPECT_FALSE(set.match_utterance("hello there"));
}

TEST(Capabilities, TemplatesAndSlugs) {
  EXPECT_EQ(fill_capability_template("Shall I draw {motif}? It costs {cost}. {unknown}",
                                     R"({"motif":"a {cost} owl","n":3})", {{"cost", "$0.001"}}),
            "Shall I draw a {cost} owl? It costs $0.001. {unknown}");
  EXPECT_EQ(file_slug("Meditation at Dawn!", "cover"), "meditation-at-dawn");
  EXPECT_EQ(file_slug("../../etc/passwd", "cover"), "etc-passwd");
  EXPECT_EQ(file_slug("/", "cover"), "cover");
  EXPECT_EQ(file_slug("\u00e9t\u00e9", "cover"), "t");
  EXPECT_EQ(file_slug(std::string(100, 'a'), "x").size(), 48u);
}

// ---- the runner against the local backend ------------------------------------------------------

namespace {

class RunnerTest : public ::testing::Test {
protected:
  void SetUp() override {
    backend_.start();
    dir_ = fs::temp_directory_path() /
           ("gemstream-runner-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ledger_ = std::make_shared<CostLedger>(dir_ / "ledger.sqlite");
    unsetenv("GEMSTREAM_DAILY_BUDGET_USD");
  }
  void TearDown() override {
    runner_.reset();
    fs::remove_all(dir_);
  }

  CapabilityRunner &runner() {
    if (!runner_) {
      CapabilityRunnerOptions o;
      o.endpoint = Endpoint{backend_.base_url(), "", "v1beta", false};
      o.client.retry.max_attempts = 1;
      o.covers_dir = dir_ / "covers";
      o.videos_dir = dir_ / "videos";
      o.user = "alice";
      o.poll_interval = std::chrono::milliseconds(50);
      o.operation_timeout = std::chrono::seconds(60);
      MediaConfig media = MediaConfig::load_default();
      runner_ = std::make_unique<CapabilityRunner>(CapabilitySet::load_default(&media), media,
                                                   ledger_, o, [this](const CapabilityEvent &e) {
                                                     std::lock_guard lock(mutex_);
                                                     events_.push_back(e);
                                                     cv_.notify_all();
                                                   });
    }
    return *runner_;
  }

  std::vector<CapabilityEvent> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }

  std::optional<CapabilityEvent> wait_for(CapabilityEvent::Type type,
                                          std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    std::optional<CapabilityEvent> found;
    cv_.wait_for(lock, timeout, [&] {
      for (const auto &e : events_)
        if (e.type == type)
          found = e;
      return found.has_value();
    });
    return found;
  }

  LocalBackend backend_;
  fs::path dir_;
  std::shared_ptr<CostLedger> ledger_;
  std::unique_ptr<CapabilityRunner> runner_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<CapabilityEvent> events_;
};

std::string slurp(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace

TEST_F(RunnerTest, ConsentIsAskedBeforeAnythingIsSpent) {
  const CapabilitySet set = CapabilitySet::load_default();
  const auto call = set.match_utterance("create a card with a meditation image");
  ASSERT_TRUE(call);
  const json response = json::parse(runner().call("call-1", call->name, call->args_json));
  EXPECT_EQ(response.at("status"), "consent_required");
  EXPECT_EQ(response.at("question"),
            "Creating a card cover image is a paid request. Shall I create "
            "a card cover showing meditation? It costs about $0.001.");
  EXPECT_DOUBLE_EQ(response.at("estimated_cost_usd"), 0.001);
  EXPECT_NE(response.at("instruction").get<std::string>().find("confirmed=true"),
            std::string::npos);
  EXPECT_TRUE(backend_.requests().empty());
  EXPECT_TRUE(ledger_->entries().empty());
  ASSERT_EQ(events().size(), 1u);
  EXPECT_EQ(events()[0].type, CapabilityEvent::Type::ConsentRequested);

  const json video =
      json::parse(runner().call("call-2", "generate_background_video",
                                R"({"description":"peaceful beach sunset","confirmed":"yes"})"));
  EXPECT_EQ(video.at("status"), "consent_required"); // only a boolean true consents
  EXPECT_NE(video.at("question").get<std::string>().find("It costs about $4.00."),
            std::string::npos);
  EXPECT_TRUE(backend_.requests().empty());
}

TEST_F(RunnerTest, ConfirmedImageLandsInTheCoversDirectoryAndTheLedger) {
  const json response =
      json::parse(runner().call("call-1", "generate_card_image",
                                R"({"motif":"meditation","style":"minimal","confirmed":true})"));
  ASSERT_EQ(response.at("status"), "done") << response.dump();
  const fs::path path = response.at("path").get<std::string>();
  EXPECT_EQ(path, dir_ / "covers" / "meditation.png");
  const std::string png = slurp(path);
  ASSERT_GT(png.size(), 100u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(response.at("message"), "Your card cover showing meditation is ready.");
  EXPECT_DOUBLE_EQ(response.at("cost_usd"), 0.001);

  const auto rows = ledger_->entries();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].user, "alice");
  EXPECT_EQ(rows[0].kind, CostKind::Image);
  EXPECT_EQ(rows[0].model, "gemini-2.5-flash-image");
  EXPECT_EQ(rows[0].usd_nanos, 1'000'000);

  // The prompt sent was built from the card-cover template.
  const auto requests = backend_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_NE(requests[0].path.find("gemini-2.5-flash-image:generateContent"), std::string::npos);
  EXPECT_NE(requests[0].body.find("meditation"), std::string::npos);

  const auto ev = events();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].type, CapabilityEvent::Type::Started);
  EXPECT_EQ(ev[1].type, CapabilityEvent::Type::Finished);
  EXPECT_EQ(ev[1].artefact, path.string());
  EXPECT_DOUBLE_EQ(ev[1].usd, 0.001);

  // A second image of the same motif does not overwrite the first; a hostile motif stays inside.
  const json again = json::parse(
      runner().call("call-2", "generate_card_image", R"({"motif":"meditation","confirmed":true})"));
  EXPECT_EQ(fs::path(again.at("path").get<std::string>()).filename(), "meditation-2.png");
  const json hostile = json::parse(runner().call(
      "call-3", "generate_card_image", R"({"motif":"../../../tmp/evil","confirmed":true})"));
  const fs::path evil = hostile.at("path").get<std::string>();
  EXPECT_EQ(fs::canonical(evil).parent_path(), fs::canonical(dir_ / "covers"));
  EXPECT_EQ(ledger_->entries().size(), 3u);
}

TEST_F(RunnerTest, BudgetRefusalHappensBeforeAnyRequest) {
  ledger_->set_daily_budget("alice", 0.0005);
  const json response = json::parse(
      runner().call("call-1", "generate_card_image", R"({"motif":"meditation","confirmed":true})"));
  ASSERT_TRUE(response.contains("error")) << response.dump();
  EXPECT_EQ(response.at("error"),
            "this card image would cost $0.001; today's spending for alice is "
            "$0.00 of the $0.0005 daily budget (set by the ledger setting for alice)");
  EXPECT_TRUE(backend_.requests().empty());
  EXPECT_TRUE(ledger_->entries().empty());
  EXPECT_FALSE(fs::exists(dir_ / "covers" / "meditation.png"));
  ASSERT_EQ(events().size(), 1u);
  EXPECT_EQ(events()[0].type, CapabilityEvent::Type::Failed);

  ledger_->set_daily_budget("alice", 3.0);
  const json video =
      json::parse(runner().call("call-2", "generate_background_video",
                                R"({"description":"peaceful beach sunset","confirmed":true})"));
  EXPECT_NE(video.at("error").get<std::string>().find("this background video would cost $4.00"),
            std::string::npos);
  EXPECT_TRUE(backend_.requests().empty());
}

TEST_F(RunnerTest, BackgroundVideoRunsAsAJobAndReportsCompletion) {
  backend_.set_polls_until_done(2);
  const json response = json::parse(
      runner().call("call-1", "generate_background_video",
                    R"({"description":"peaceful beach sunset","mood":"calm","confirmed":true})"));
  ASSERT_EQ(response.at("status"), "started") << response.dump();
  const std::string job = response.at("job_id");
  EXPECT_EQ(job.rfind("job-", 0), 0u);
  EXPECT_NE(response.at("operation").get<std::string>().find("/operations/"), std::string::npos);
  EXPECT_TRUE(ledger_->entries().empty()); // Veo bills a finished video

  const auto finished = wait_for(CapabilityEvent::Type::Finished, std::chrono::seconds(60));
  ASSERT_TRUE(finished) << "no completion event";
  EXPECT_EQ(finished->job_id, job);
  EXPECT_EQ(finished->call_id, "call-1");
  EXPECT_EQ(fs::path(finished->artefact), dir_ / "videos" / "peaceful-beach-sunset.mp4");
  EXPECT_EQ(slurp(finished->artefact).substr(4, 4), "ftyp");
  EXPECT_DOUBLE_EQ(finished->usd, 4.0);
  EXPECT_TRUE(runner().wait_idle(std::chrono::seconds(5)));
  const auto rows = ledger_->entries();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].kind, CostKind::Video);
  EXPECT_EQ(rows[0].usd_nanos, 4 * kNanosPerUsd);
  EXPECT_EQ(rows[0].request_id, response.at("operation"));

  bool progress = false;
  for (const auto &e : events())
    progress = progress || e.type == CapabilityEvent::Type::Progress;
  EXPECT_TRUE(progress);
}

TEST_F(RunnerTest, BadCallsAreAnsweredNotThrown) {
  EXPECT_EQ(json::parse(runner().call("c", "launch_rocket", "{}")).at("error"),
            "there is no function called launch_rocket");
  EXPECT_EQ(
      json::parse(runner().call("c", "generate_card_image", R"({"confirmed":true})")).at("error"),
      "generate_card_image needs the argument \"motif\"");
  EXPECT_EQ(json::parse(runner().call("c", "generate_card_image", "[1]")).at("error"),
            "the arguments of generate_card_image are not a JSON object");
  const json bad_style = json::parse(runner().call(
      "c", "generate_card_image", R"({"motif":"owl","style":"baroque","confirmed":true})"));
  EXPECT_NE(bad_style.at("error").get<std::string>().find("baroque"), std::string::npos);
  EXPECT_TRUE(backend_.requests().empty());

  backend_.fail_next(1, 403);
  const json denied =
      json::parse(runner().call("c", "generate_card_image", R"({"motif":"owl","confirmed":true})"));
  EXPECT_TRUE(denied.contains("error"));
  EXPECT_TRUE(ledger_->entries().empty());
}

TEST_F(RunnerTest, SubmitAnswersOnTheWorker) {
  std::mutex m;
  std::condition_variable cv;
  std::optional<LiveFunctionResponse> got;
  runner().submit({"fc-7", "generate_card_image", R"({"motif":"lighthouse"})"},
                  [&](LiveFunctionResponse r) {
                    std::lock_guard lock(m);
                    got = std::move(r);
                    cv.notify_all();
                  });
  std::unique_lock lock(m);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return got.has_value(); }));
  EXPECT_EQ(got->id, "fc-7");
  EXPECT_EQ(got->name, "generate_card_image");
  EXPECT_EQ(json::parse(got->response_json).at("status"), "consent_required");
  EXPECT_TRUE(runner().wait_idle(std::chrono::seconds(5)));
}
