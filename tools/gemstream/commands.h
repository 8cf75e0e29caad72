// The gemstream subcommands. Each takes the arguments after its name and returns an exit code.
#pragma once

#include <string>
#include <vector>

namespace gemstream::cli {

extern const char *const kImageUsage;
extern const char *const kVideoUsage;
extern const char *const kDemoUsage;
extern const char *const kLoopUsage;
extern const char *const kBackgroundUsage;
extern const char *const kBackendUsage;
extern const char *const kRunUsage;
extern const char *const kInspectUsage;
extern const char *const kPipelinesUsage;
extern const char *const kAskUsage;
extern const char *const kAgentUsage;
extern const char *const kAnalyzeUsage;
extern const char *const kCostsUsage;
extern const char *const kServeUsage;

int cmd_image(const std::vector<std::string> &args);
int cmd_video(const std::vector<std::string> &args);
int cmd_demo(const std::vector<std::string> &args);
int cmd_loop(const std::vector<std::string> &args);
int cmd_background(const std::vector<std::string> &args);
int cmd_backend(const std::vector<std::string> &args);
int cmd_run(const std::vector<std::string> &args);
int cmd_inspect(const std::vector<std::string> &args);
int cmd_pipelines(const std::vector<std::string> &args);
int cmd_ask(const std::vector<std::string> &args);
int cmd_agent(const std::vector<std::string> &args);
int cmd_analyze(const std::vector<std::string> &args);
int cmd_costs(const std::vector<std::string> &args);
int cmd_serve(const std::vector<std::string> &args);

} // namespace gemstream::cli
