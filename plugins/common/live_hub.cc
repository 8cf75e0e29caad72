#include "common/live_hub.h"

#include <map>
#include <utility>

namespace gemstream::gst {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, std::weak_ptr<LiveHub>> hubs;
};

Registry &registry() {
  // Leaked on purpose: hubs may be released from threads still running during static
  // destruction (a session's network thread).
  static Registry *r = new Registry();
  return *r;
}

} // namespace

std::shared_ptr<LiveHub> LiveHub::acquire(const std::string &name) {
  Registry &r = registry();
  std::lock_guard lock(r.mutex);
  std::weak_ptr<LiveHub> &entry = r.hubs[name];
  if (auto hub = entry.lock())
    return hub;
  std::shared_ptr<LiveHub> hub(new LiveHub(name));
  entry = hub;
  return hub;
}

LiveHub::~LiveHub() {
  Registry &r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.hubs.find(name_);
  // The entry may already name a newer hub created after this one's last reference went away.
  if (it != r.hubs.end() && it->second.expired())
    r.hubs.erase(it);
}

template <typename F> bool LiveHub::dispatch(std::uint64_t generation, F &&fn) {
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard lock(mutex_);
    if (!slot_ || (generation != 0 && generation != sink_generation_))
      return false;
    slot = slot_;
  }
  std::lock_guard dispatch(slot->dispatch);
  if (!slot->active)
    return false;
  if (generation != 0) {
    // Checked again under the dispatch mutex: the sink may have been replaced meanwhile.
    std::lock_guard lock(mutex_);
    if (generation != sink_generation_)
      return false;
  }
  fn(*slot->listener);
  return true;
}

std::uint64_t LiveHub::attach_sink() {
  std::uint64_t generation;
  {
    std::lock_guard lock(mutex_);
    if (sink_generation_ != 0)
      return 0;
    generation = sink_generation_ = ++last_generation_;
  }
  dispatch(0, [](LiveAudioListener &l) { l.on_sink_attached(true); });
  return generation;
}

void LiveHub::detach_sink(std::uint64_t generation) {
  {
    std::lock_guard lock(mutex_);
    if (generation == 0 || generation != sink_generation_)
      return;
    sink_generation_ = 0;
  }
  dispatch(0, [](LiveAudioListener &l) { l.on_sink_attached(false); });
}

bool LiveHub::model_audio(std::uint64_t generation, std::vector<std::int16_t> pcm,
                          int sample_rate) {
  if (generation == 0)
    return false;
  return dispatch(generation, [&](LiveAudioListener &l) {
    l.on_model_audio(std::move(pcm), sample_rate);
  });
}

void LiveHub::interrupted(std::uint64_t generation, std::int64_t arrival_us) {
  if (generation == 0)
    return;
  dispatch(generation, [&](LiveAudioListener &l) { l.on_interrupted(arrival_us); });
}

void LiveHub::finished(std::uint64_t generation) {
  if (generation == 0)
    return;
  {
    std::lock_guard lock(mutex_);
    if (generation != sink_generation_)
      return;
    finished_generation_ = generation;
  }
  dispatch(generation, [](LiveAudioListener &l) { l.on_finished(); });
}

bool LiveHub::attach_listener(std::shared_ptr<LiveAudioListener> listener) {
  auto slot = std::make_shared<Slot>();
  slot->listener = std::move(listener);
  bool sink_attached, finished;
  // Holding the dispatch mutex from before the slot is published until the initial state was
  // delivered keeps every later event behind that state.
  std::lock_guard dispatch(slot->dispatch);
  {
    std::lock_guard lock(mutex_);
    if (slot_)
      return false;
    slot_ = slot;
    sink_attached = sink_generation_ != 0;
    finished = sink_attached && finished_generation_ == sink_generation_;
  }
  if (sink_attached)
    slot->listener->on_sink_attached(true);
  if (finished)
    slot->listener->on_finished();
  return true;
}

void LiveHub::detach_listener(const LiveAudioListener *listener) {
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard lock(mutex_);
    if (!slot_ || slot_->listener.get() != listener)
      return;
    slot = std::move(slot_);
  }
  std::lock_guard dispatch(slot->dispatch);
  slot->active = false;
}

} // namespace gemstream::gst
