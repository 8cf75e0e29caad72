// WS /api/v1/live-session: one Gemini Live conversation per WebSocket, for browsers and kiosks.
//
// Connect with the subprotocols ["gemstream.v1", "bearer.TOKEN"] (or ?token=TOKEN) and choose
// the audio encodings in the query:
//   input=opus|pcm   (default opus) binary messages from the client are
//                    opus: one raw Opus packet each (as WebCodecs' AudioEncoder emits them, no
//                          Ogg or WebM framing), any Opus sample rate, mono or stereo;
//                    pcm:  S16LE mono at `rate` Hz (8000..48000, default 16000), any length.
//   output=opus|pcm  (default opus) binary messages from the server are
//                    opus: one raw Opus packet each, 24 kHz mono, 20 ms per packet;
//                    pcm:  S16LE mono 24 kHz (the model's rate; every current model speaks
//                          at 24 kHz).
//   voice=NAME       a prebuilt voice ("Puck"); default: the service's.
//
// Client -> server text messages (JSON objects):
//   {"type":"text","text":"..."}                       a typed user turn
//   {"type":"video_frame","mimeType":"image/jpeg","data":"<base64>"}
//                                                      a webcam frame; about one per second
//   {"type":"audio_end"}                               the microphone paused: end the turn
//   {"type":"ping"}                                    answered with {"type":"pong"}
//
// Server -> client text messages:
//   {"type":"ready","sessionId":"...","input":{...},"output":{"encoding":"opus",
//    "sampleRate":24000,"channels":1,"frameDurationMs":20}}    the model listens. Audio sent
//        before it is kept and delivered. sessionId is empty unless the service names its
//        sessions (the Gemini Developer API's setupComplete carries no id).
//   {"type":"transcript","role":"user"|"model","text":"...","finished":false}
//        text is the next piece of the turn's transcript, to be appended to what came before;
//        finished:true ends that role's transcript of the turn.
//   {"type":"interrupted"}      the user barged in: stop playing and drop the queued audio
//   {"type":"turn_complete"}    the model finished its turn
//   {"type":"capability","event":"consent-requested|started|progress|finished|failed",
//    "capability":"generate_card_image","message":"...","jobId":"...","url":"...","urls":{...},
//    "usd":0.001}
//        a tool the model called (card image, background video, search). url: the card image
//        made; urls: a finished video job's files (clip, loopMp4, loopWebm, poster), as in the
//        notifications; usd: what it cost. A background video is a job of the gateway's
//        durable queue: its end is announced on /api/v1/notifications and told to the model,
//        which tells the user
//   {"type":"grounding","sources":[{"title":"...","uri":"..."}]}  search results the model used
//   {"type":"state","state":"reconnecting"|"ready"}   the upstream session is being resumed
//   {"type":"error","reason":"...","message":"..."}   then the server closes the socket
//
// Close codes, each after an error message naming the reason: 1001 the gateway is shutting
// down; 1003 an unusable message (bad JSON, an unknown type, a frame that is not a JPEG, binary
// messages the input encoding cannot decode, repeatedly); 1008 bad parameters, typed turns
// faster than one per 250 ms (rate_limited), or the user's daily budget is spent
// (budget_exceeded: checked before the upstream session starts, for a minute of conversation,
// and after each usage report, counting the user's other open conversations); 1009 a video
// frame over 700 KiB; 1011 the Gemini session failed; 1013 too many live sessions (the
// gateway's or the user's limit): retry later. The server itself closes with 1009 a message
// over 1 MiB and with 1008 a client that reads so slowly that 4 MiB wait for it, without an
// error message. Webcam frames closer than 200 ms apart and empty Opus packets are dropped.
//
// Threading: WsEndpoint callbacks run on the server's service thread: they decode, queue and
// post, and on_open builds the conversation (its LiveSession and tool runner threads) without
// waiting on the network; each LiveSession runs its own network thread, whose callbacks encode
// and post to the socket; budget checks and connecting (which read the ledger and the job
// store first) and closing a LiveSession (which waits up to ~150 ms for the service) run on the
// endpoint's worker thread.
#pragma once

#include "http_server.h"

#include "gemstream/capabilities.h"
#include "gemstream/config.h"
#include "gemstream/costs.h"
#include "gemstream/genai.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace gemstream::gateway {

struct LiveEndpointOptions {
  Endpoint endpoint;
  ClientOptions client;
  const MediaConfig *media = nullptr;
  std::shared_ptr<CostLedger> ledger;
  std::filesystem::path media_dir; // card images go to MEDIA/covers/USER/
  std::string model;               // empty: kDefaultLiveModel
  std::string system_instruction;
  std::size_t max_sessions = 32;
  std::size_t max_sessions_per_user = 4;
  // A confirmed background video from a conversation (with the video model the capability
  // runner chose): enqueue it on the durable queue as the REST route does and return the job id, calling `created` with it once the job is stored
  // and before any worker can run it (so its end cannot be reported before the conversation
  // knows it). Throws gemstream::Error when it cannot (budget, too many jobs); the model is
  // told why.
  std::function<std::string(const std::string &user, const std::string &description,
                            const std::string &mood, const std::string &model_key,
                            const std::function<void(const std::string &job_id)> &created)>
      enqueue_video;
  // Throws Error(BudgetExceeded) when `user` cannot spend `nanos` more today (the gateway's
  // budget, counting the estimates of unfinished jobs); `what` names the spending in the message.
  // Called on the endpoint's worker: before a conversation may start (for a minute of it) and
  // after each of its usage reports (for what it has cost so far, not yet in the ledger).
  std::function<void(const std::string &user, std::int64_t nanos, const std::string &what)>
      check_budget;
  std::function<void(const std::string &)> log;
};

class LiveEndpoint final : public WsEndpoint {
public:
  LiveEndpoint(Server &server, LiveEndpointOptions options);
  ~LiveEndpoint() override; // closes every conversation
  LiveEndpoint(const LiveEndpoint &) = delete;
  LiveEndpoint &operator=(const LiveEndpoint &) = delete;

  // A video job of `user` ended (a notification event): the conversation that asked for it, if
  // still open, tells the model so it can tell the user. Any thread.
  void job_event(const std::string &user, const nlohmann::json &event);
  // Closes every conversation and waits until they are closed (the Live sessions ended and
  // their costs recorded). Call it before Server::stop(). New conversations may open afterwards.
  void close_all();
  std::size_t active() const;

  void on_open(const WsSession &session) override;
  void on_message(const WsSession &session, std::string_view data, bool binary) override;
  void on_close(const WsSession &session) override;

  struct Conversation;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace gemstream::gateway
