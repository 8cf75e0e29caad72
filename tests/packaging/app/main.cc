// Makes a card cover with the installed cover-image pipeline file: the embedding API's example.
#include <gemstream/pipeline.h>

#include <chrono>
#include <cstdio>

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MOTIF OUTPUT.png\n", argv[0]);
    return 2;
  }
  std::printf("plugin: %s\n", gemstream::find_gemstream_plugin().c_str());
  try {
    auto pipeline = gemstream::Pipeline::load(
        "cover-image", {{"prompt", argv[1]}, {"style", "minimal"}, {"output", argv[2]}});
    pipeline->start();
    while (auto event = pipeline->wait_event(std::chrono::seconds(60))) {
      if (const auto *cost = std::get_if<gemstream::events::Cost>(&*event))
        std::printf("%s: $%.3f\n", cost->model.c_str(), cost->usd);
      if (gemstream::is_terminal(*event))
        break;
    }
    const auto outcome = pipeline->wait(std::chrono::seconds(5));
    if (!outcome || !outcome->ok()) {
      std::fprintf(stderr, "failed: %s\n",
                   outcome && outcome->error ? outcome->error->message.c_str() : "no EOS");
      return 1;
    }
    std::printf("wrote %s\n", argv[2]);
    return 0;
  } catch (const gemstream::Error &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
